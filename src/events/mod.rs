//! Attendance events: one dispatcher thread owns the webhook sender and the per-person
//! cooldown, and hands every event with its delivery report to the WebSocket hub.

mod webhook;

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::engine::FaceBox;
use crate::gallery::UNKNOWN;
use crate::recognizer::Recognition;
pub use webhook::{WebhookConfig, WebhookSender};

/// A person (or `Unknown`) seen in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub student_id: String,
    pub distance: Option<f64>,
    /// Unix seconds.
    pub ts: i64,
    pub frame: (usize, usize),
    pub bbox: FaceBox,
}

impl Event {
    pub fn new(
        student_id: &str,
        distance: Option<f64>,
        frame: (usize, usize),
        bbox: FaceBox,
    ) -> Event {
        Event {
            student_id: student_id.to_string(),
            distance,
            ts: unix_now(),
            frame,
            bbox,
        }
    }

    /// The webhook body, exactly as the original service sent it.
    pub fn webhook_payload(&self) -> serde_json::Value {
        json!({
            "event": "attendance.recognized",
            "student_id": self.student_id,
            "distance": self.distance,
            "ts": self.ts,
            "frame_info": {"w": self.frame.0, "h": self.frame.1},
            "box": {
                "top": self.bbox.top,
                "right": self.bbox.right,
                "bottom": self.bbox.bottom,
                "left": self.bbox.left,
            },
        })
    }

    /// The WebSocket message for this event and its delivery report.
    pub fn ws_message(&self, report: &Report) -> String {
        json!({
            "type": "recognized",
            "student_id": self.student_id,
            "distance": self.distance,
            "ts": self.ts,
            "dispatch": report,
        })
        .to_string()
    }
}

/// The events of one frame's results: every recognized face, and unknown ones when asked.
pub fn events_for(
    results: &[Recognition],
    frame: (usize, usize),
    send_unknown: bool,
) -> Vec<Event> {
    results
        .iter()
        .filter(|r| send_unknown || r.label != UNKNOWN)
        .map(|r| Event::new(&r.label, r.distance, frame, r.bbox))
        .collect()
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// What became of one event: `{"status":"sent","http_status":200,"message":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The main API answered 2xx.
    Sent,
    /// The main API answered otherwise, or could not be reached.
    Failed,
    /// The same person was reported less than the cooldown ago.
    Skipped,
    /// No webhook is configured.
    Disabled,
    /// Not delivered within the caller's wait; the dispatcher is still on it.
    Queued,
}

impl Report {
    fn status(status: Status) -> Report {
        Report {
            status,
            http_status: None,
            message: None,
        }
    }
}

/// Where delivered events go next (the WebSocket hub); a plain function so tests and the
/// camera loop can plug in.
pub type Broadcast = Box<dyn Fn(String) + Send>;

enum Job {
    Deliver(Event, Sender<Report>),
    Stop,
}

/// Handle to the dispatcher thread.
pub struct Dispatcher {
    jobs: Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    webhook_enabled: bool,
    /// How long a caller waits for one report before answering `queued`.
    wait: Duration,
}

impl Dispatcher {
    /// Starts the dispatcher thread. `cooldown`: at most one webhook call per person per period.
    pub fn start(
        webhook: Option<WebhookSender>,
        cooldown: Duration,
        broadcast: Broadcast,
    ) -> Dispatcher {
        let webhook_enabled = webhook.is_some();
        // A hanging main API costs at most the webhook's own timeout, plus a margin.
        let wait = webhook
            .as_ref()
            .map(|w| w.timeout() + Duration::from_secs(1))
            .unwrap_or(Duration::from_secs(1));
        let (jobs, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || run(rx, webhook, cooldown, broadcast))
            .ok();
        if thread.is_none() {
            log::error!("could not start the event dispatcher thread");
        }
        Dispatcher {
            jobs,
            thread: Mutex::new(thread),
            webhook_enabled,
            wait,
        }
    }

    pub fn webhook_enabled(&self) -> bool {
        self.webhook_enabled
    }

    /// Delivers the events in order and returns their reports, waiting a bounded time: an
    /// event not done by then reports `queued` and is still delivered.
    pub fn dispatch(&self, events: Vec<Event>) -> Vec<Report> {
        let pending: Vec<Option<Receiver<Report>>> = events
            .into_iter()
            .map(|event| {
                let (tx, rx) = mpsc::channel();
                self.jobs.send(Job::Deliver(event, tx)).ok().map(|_| rx)
            })
            .collect();
        let deadline = Instant::now() + self.wait * pending.len().max(1) as u32;
        pending
            .into_iter()
            .map(|rx| {
                let left = deadline.saturating_duration_since(Instant::now());
                rx.and_then(|rx| rx.recv_timeout(left).ok())
                    .unwrap_or_else(|| Report::status(Status::Queued))
            })
            .collect()
    }

    /// Queues the events for delivery without waiting for their reports (the camera loop).
    pub fn submit(&self, events: Vec<Event>) {
        for event in events {
            let (tx, _) = mpsc::channel();
            let _ = self.jobs.send(Job::Deliver(event, tx));
        }
    }

    /// Delivers what is queued, then stops the thread.
    pub fn shutdown(&self) {
        let _ = self.jobs.send(Job::Stop);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(
    jobs: Receiver<Job>,
    webhook: Option<WebhookSender>,
    cooldown: Duration,
    broadcast: Broadcast,
) {
    let mut last_sent: HashMap<String, Instant> = HashMap::new();
    while let Ok(Job::Deliver(event, reply)) = jobs.recv() {
        let report = match &webhook {
            None => Report::status(Status::Disabled),
            Some(_)
                if last_sent
                    .get(&event.student_id)
                    .is_some_and(|t| t.elapsed() < cooldown) =>
            {
                Report::status(Status::Skipped)
            }
            Some(sender) => {
                last_sent.insert(event.student_id.clone(), Instant::now());
                let r = sender.send(&event.webhook_payload());
                if r.status == Status::Failed {
                    log::warn!(
                        "webhook for {}: failed ({})",
                        event.student_id,
                        r.message.as_deref().unwrap_or("no answer")
                    );
                }
                r
            }
        };
        broadcast(event.ws_message(&report));
        let _ = reply.send(report);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn event(id: &str) -> Event {
        Event::new(
            id,
            Some(0.3),
            (640, 480),
            FaceBox {
                top: 1,
                right: 4,
                bottom: 3,
                left: 2,
            },
        )
    }

    #[test]
    fn payload_is_the_originals() {
        let e = event("alip");
        let p = e.webhook_payload();
        assert_eq!(p["event"], "attendance.recognized");
        assert_eq!(p["frame_info"], json!({"w": 640, "h": 480}));
        assert_eq!(
            p["box"],
            json!({"top": 1, "right": 4, "bottom": 3, "left": 2})
        );
        let ws: serde_json::Value =
            serde_json::from_str(&e.ws_message(&Report::status(Status::Skipped))).unwrap();
        assert_eq!(ws["type"], "recognized");
        assert_eq!(ws["dispatch"], json!({"status": "skipped"}));
    }

    #[test]
    fn without_webhook_events_are_broadcast_as_disabled() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let d = Dispatcher::start(
            None,
            Duration::from_secs(5),
            Box::new(move |m| sink.lock().unwrap().push(m)),
        );
        let reports = d.dispatch(vec![event("a"), event("a")]);
        assert_eq!(
            reports.iter().map(|r| r.status).collect::<Vec<_>>(),
            [Status::Disabled, Status::Disabled]
        );
        d.shutdown();
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
