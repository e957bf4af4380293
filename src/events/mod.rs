//! Attendance events: what is sent for a recognized face, and what became of it. The
//! dispatcher thread (dispatcher.rs) owns the cooldown and the durable outbox (outbox.rs), and
//! fans events out to equal sinks (sink.rs): durable ones (the webhook: webhook.rs; MQTT:
//! src/mqtt/) each follow the outbox on a thread of their own (runner.rs), live ones (the
//! WebSocket hub) get each event once it is resolved. Every event is kept in the local event
//! log (log.rs) that `GET /events` reads (as JSON, or CSV: csv.rs); stats.rs counts for
//! `/health` and `/metrics`. The event command (`EVENT_COMMAND`, command.rs) is a live sink
//! with a bounded queue and a thread of its own. Each counted attendance event gets its punch,
//! in or out, from the dispatcher (punches.rs; `PUNCH_SCHEDULE`: punch.rs). report.rs makes
//! the day's attendance report from the log's records (daily.rs gives it the roster and the
//! records, for `GET /reports/daily` and `report daily`).

mod command;
pub(crate) mod csv;
pub mod daily;
mod dispatcher;
pub(crate) mod log;
pub mod outbox;
mod punch;
mod punches;
pub mod report;
mod runner;
mod sink;
mod stats;
pub mod utc;
mod webhook;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::camera::Direction;
use crate::engine::FaceBox;
pub use crate::gallery::Label;
use crate::gallery::UNKNOWN;
use crate::recognizer::Recognition;
pub use command::{CommandConfig, CommandSink, CommandStats, COMMAND};
pub use dispatcher::{Delivered, Destinations, Dispatcher, FnSink, LabelLookup};
pub use log::{EventLog, EventLogReader};
pub use punch::{Punch, Schedule};
pub use punches::Punches;
pub use sink::{Outgoing, Sink};
pub use stats::{OutboxStats, SinkStats};
pub use webhook::{WebhookConfig, WebhookSender, WebhookSink};

/// A person (or `Unknown`) seen in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique across restarts and boxes; the webhook's `Idempotency-Key`.
    pub event_id: String,
    /// The person, or `Unknown`.
    pub student_id: String,
    /// The face's distance to the person's closest sample (`None` for a stranger).
    pub distance: Option<f64>,
    /// Unix seconds.
    pub ts: i64,
    /// The frame's width and height, in pixels.
    pub frame: (usize, usize),
    /// The face's box in the frame.
    pub bbox: FaceBox,
    /// The two people a face was as close to, neither ahead by the margin: the event is
    /// `attendance.ambiguous` and `student_id` is `Unknown`.
    candidates: Option<[String; 2]>,
    /// What the camera's decision rested on (camera events only; boxed: most events have none).
    decision: Option<Box<Decision>>,
    /// The camera that saw the face (camera events only).
    camera: Option<Box<Seer>>,
    /// The person's display name and group, when the gallery has them.
    label: Option<Box<Label>>,
    /// In or out (attendance events, once the dispatcher decided).
    punch: Option<Punch>,
}

/// The camera that saw a face: its name and direction, and whether its events keep a cooldown
/// of their own (a box with several cameras: a person seen at the entrance and then at the exit
/// is two events).
#[derive(Debug, Clone, PartialEq)]
pub struct Seer {
    /// The camera's name (`CAMERA_NAME`, `CAMERA_<N>_NAME`).
    pub name: String,
    /// Its direction, when set.
    pub direction: Option<Direction>,
    /// Its events' cooldown is its own.
    pub own_cooldown: bool,
}

/// What a camera event's decision rested on: the agreeing frames, the closest of them, its
/// runner-up (the closest other person) and the face's size and sharpness in that frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Frames that agreed on the identity.
    pub frames: u32,
    /// The closest distance among them.
    pub best_distance: Option<f64>,
    /// The runner-up: the closest other person.
    pub second_label: Option<String>,
    /// The runner-up's distance.
    pub second_distance: Option<f64>,
    /// The face's size in pixels (smaller side of its box) in the closest frame.
    pub face_px: u32,
    /// The face's sharpness ([`crate::quality::sharpness`]) in that frame.
    pub sharpness: f64,
}

impl Event {
    /// An event for `student_id` at `distance`, seen now in a frame of `frame` pixels at `bbox`,
    /// with a fresh id.
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
            candidates: None,
            decision: None,
            camera: None,
            label: None,
            punch: None,
        }
    }

    /// The event of a recognition: `attendance.ambiguous` naming both candidates when it is.
    pub fn of(r: &Recognition, frame: (usize, usize)) -> Event {
        let mut event = Event::new(&r.label, r.distance, frame, r.bbox);
        event.candidates = r.ambiguous.clone();
        event
    }

    /// The event carries what the camera's decision rested on.
    pub fn with_decision(mut self, decision: Decision) -> Event {
        self.decision = Some(Box::new(decision));
        self
    }

    /// The event was seen by `camera`.
    pub fn with_camera(mut self, camera: Seer) -> Event {
        self.camera = Some(Box::new(camera));
        self
    }

    /// The person's name and group (nothing when both are unknown).
    pub fn with_label(mut self, label: Label) -> Event {
        self.set_label(label);
        self
    }

    /// Sets the person's name and group (nothing when both are unknown).
    pub fn set_label(&mut self, label: Label) {
        self.label = (label.name.is_some() || label.group.is_some()).then(|| Box::new(label));
    }

    /// The person's display name, when known.
    pub fn name(&self) -> Option<&str> {
        self.label.as_ref().and_then(|l| l.name.as_deref())
    }

    /// The person's group, when known.
    pub fn group(&self) -> Option<&str> {
        self.label.as_ref().and_then(|l| l.group.as_deref())
    }

    /// In or out.
    pub fn with_punch(mut self, punch: Punch) -> Event {
        self.punch = Some(punch);
        self
    }

    /// Sets in or out.
    pub fn set_punch(&mut self, punch: Option<Punch>) {
        self.punch = punch;
    }

    /// In or out, once decided.
    pub fn punch(&self) -> Option<Punch> {
        self.punch
    }

    /// The camera that saw it, for camera events.
    pub fn camera(&self) -> Option<&Seer> {
        self.camera.as_deref()
    }

    /// What the camera's decision rested on, for camera events.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.as_deref()
    }

    /// The two people an ambiguous face was as close to.
    pub fn candidates(&self) -> Option<&[String; 2]> {
        self.candidates.as_ref()
    }

    /// The event's kind as the webhook names it: `attendance.recognized` or
    /// `attendance.ambiguous`.
    pub fn kind_name(&self) -> &'static str {
        if self.candidates.is_some() {
            "attendance.ambiguous"
        } else {
            "attendance.recognized"
        }
    }

    /// Events of one key share a cooldown: a person's, strangers', and each pair of people a
    /// face was ambiguous between.
    /// A camera with a cooldown of its own (several cameras) keys its events by its name too.
    pub fn cooldown_key(&self) -> String {
        let key = match &self.candidates {
            Some([a, b]) => {
                let (a, b) = if a <= b { (a, b) } else { (b, a) };
                format!("{UNKNOWN}:{a}:{b}")
            }
            None => self.student_id.clone(),
        };
        match self.camera() {
            // Camera names have no `/`: the key cannot be forged by an id.
            Some(camera) if camera.own_cooldown => format!("{}/{key}", camera.name),
            _ => key,
        }
    }

    /// The webhook body: the original service's, plus `event_id` (and `candidates`,
    /// `decision`, `camera`, `direction`, `name`, `group` and `punch` when there are).
    pub fn webhook_payload(&self) -> serde_json::Value {
        let mut payload = json!({
            "event": self.kind_name(),
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
        });
        self.add_details(&mut payload);
        payload
    }

    fn add_details(&self, body: &mut serde_json::Value) {
        if let Some(candidates) = &self.candidates {
            body["candidates"] = json!(candidates);
        }
        if let Some(decision) = &self.decision {
            body["decision"] = json!(decision);
        }
        if let Some(camera) = self.camera() {
            body["camera"] = json!(camera.name);
            if let Some(direction) = camera.direction {
                body["direction"] = json!(direction);
            }
        }
        if let Some(name) = self.name() {
            body["name"] = json!(name);
        }
        if let Some(group) = self.group() {
            body["group"] = json!(group);
        }
        if let Some(punch) = self.punch {
            body["punch"] = json!(punch);
        }
    }

    /// The live message for this event (the WebSocket feed): the original's, with the
    /// webhook's report as `dispatch`, and every durable sink's under `sinks`.
    pub fn live_message(&self, delivered: &Delivered) -> String {
        let mut message = json!({
            "type": if self.candidates.is_some() { "ambiguous" } else { "recognized" },
            "event_id": self.event_id,
            "student_id": self.student_id,
            "distance": self.distance,
            "ts": self.ts,
            "dispatch": delivered.report,
            "sinks": delivered.sinks,
        });
        self.add_details(&mut message);
        message.to_string()
    }
}

/// The events of one frame's results: every recognized face, and unknown (and ambiguous) ones
/// when asked.
pub fn events_for(
    results: &[Recognition],
    frame: (usize, usize),
    send_unknown: bool,
) -> Vec<Event> {
    results
        .iter()
        .filter(|r| send_unknown || r.label != UNKNOWN)
        .map(|r| Event::of(r, frame))
        .collect()
}

pub use crate::clock::unix_ms as unix_now_ms;

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    crate::clock::unix_secs() as i64
}

/// What became of one event: `{"status":"sent","http_status":200,"message":"…"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Delivered, queued, skipped, disabled or failed.
    pub status: Status,
    /// The main API's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What went wrong, or the main API's answer, in short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where an event stands (`status` in every report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

impl Status {
    /// The status as JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "sent",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Disabled => "disabled",
            Status::Queued => "queued",
        }
    }
}

impl Report {
    /// A report with `status` and nothing else.
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

    fn delivered(status: Status) -> Delivered {
        Delivered {
            report: Report::status(status),
            sinks: serde_json::Map::new(),
        }
    }

    #[test]
    fn status_names_are_the_json_ones() {
        for s in [
            Status::Sent,
            Status::Failed,
            Status::Skipped,
            Status::Disabled,
            Status::Queued,
        ] {
            assert_eq!(json!(s), s.as_str());
        }
    }

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
            serde_json::from_str(&e.live_message(&delivered(Status::Skipped))).unwrap();
        assert_eq!(ws["type"], "recognized");
        assert_eq!(ws["dispatch"], json!({"status": "skipped"}));
        assert!(p.get("decision").is_none() && p.get("candidates").is_none());
    }

    #[test]
    fn an_ambiguous_face_is_its_own_event_with_both_candidates_and_its_own_cooldown() {
        let mut r = Recognition::new(test_event("x").bbox, UNKNOWN, Some(0.3));
        r.ambiguous = Some(["budi".into(), "alip".into()]);
        let decision = Decision {
            frames: 3,
            best_distance: Some(0.31),
            second_label: Some("budi".into()),
            second_distance: Some(0.33),
            face_px: 180,
            sharpness: 640.2,
        };
        let e = Event::of(&r, (640, 480)).with_decision(decision);
        let p = e.webhook_payload();
        assert_eq!(p["event"], "attendance.ambiguous");
        assert_eq!(p["student_id"], UNKNOWN);
        assert_eq!(p["candidates"], json!(["budi", "alip"]));
        assert_eq!(
            p["decision"],
            json!({"frames": 3, "best_distance": 0.31, "second_label": "budi",
                   "second_distance": 0.33, "face_px": 180, "sharpness": 640.2})
        );
        assert_eq!(e.cooldown_key(), "Unknown:alip:budi");
        assert_eq!(test_event("alip").cooldown_key(), "alip");
        let ws: serde_json::Value =
            serde_json::from_str(&e.live_message(&delivered(Status::Sent))).unwrap();
        assert_eq!(ws["type"], "ambiguous");
        assert_eq!(ws["decision"]["frames"], 3);
        // Without send_unknown an ambiguous face makes no event.
        assert!(events_for(&[r.clone()], (640, 480), false).is_empty());
        assert_eq!(events_for(&[r], (640, 480), true).len(), 1);
    }
}
