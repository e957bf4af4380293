//! Attendance events: what is sent for a recognized face, and what became of it. The
//! dispatcher thread (dispatcher.rs) owns the cooldown, the durable outbox (outbox.rs) and the
//! webhook (webhook.rs), and hands every event with its report to the WebSocket hub.

mod dispatcher;
pub mod outbox;
mod webhook;

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::engine::FaceBox;
use crate::gallery::UNKNOWN;
use crate::recognizer::Recognition;
pub use dispatcher::{Broadcast, Delivery, Dispatcher, OutboxStats};
pub use webhook::{WebhookConfig, WebhookSender};

/// A person (or `Unknown`) seen in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique across restarts and boxes; the webhook's `Idempotency-Key`.
    pub event_id: String,
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
            event_id: outbox::new_event_id(),
            student_id: student_id.to_string(),
            distance,
            ts: unix_now(),
            frame,
            bbox,
        }
    }

    /// The webhook body: the original service's, plus `event_id`.
    pub fn webhook_payload(&self) -> serde_json::Value {
        json!({
            "event": "attendance.recognized",
            "event_id": self.event_id,
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
            "event_id": self.event_id,
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

pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
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
    /// Not delivered and not kept for retries: the outbox could not be written (disk full or
    /// read-only) and the one direct attempt failed.
    Failed,
    /// The same person was reported less than the cooldown ago.
    Skipped,
    /// No webhook is configured.
    Disabled,
    /// In the outbox, not delivered yet (the main API is down, slow, or answered an error; the
    /// report carries its last answer): it is retried until delivered.
    Queued,
}

impl Report {
    pub fn status(status: Status) -> Report {
        Report {
            status,
            http_status: None,
            message: None,
        }
    }
}

/// An event of `id` for unit tests.
#[cfg(test)]
pub(crate) fn test_event(id: &str) -> Event {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_the_originals() {
        let e = test_event("alip");
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
}
