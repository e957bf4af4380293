//! The kiosk screen's board: what the greeting screen on the box (`GET /kiosk`) shows now.
//!
//! Contract:
//! - One thing is shown at a time, the newest: a greeting (a recognized person: the name from
//!   the event's `name` when it has one, else the id; the local time of the event, `HH:MM`; its
//!   `punch` when it has one; the face crop of this sighting when the camera saw it), a
//!   stranger, or an ambiguous face. It goes back to idle after `KIOSK_GREETING_SECONDS`, on the
//!   server's side too: an expired greeting, its name and its crop are no longer answered.
//! - Each thing shown gets a new sequence number (`seq`): the screen plays its sound once per
//!   number. Numbers only grow while the service runs.
//! - Greetings come from a live event sink ([`KioskSink`], named `kiosk`): every resolved
//!   recognized event, a repeat within the cooldown included (it greets again; the event log
//!   and the durable sinks still count it once). Strangers and ambiguous faces come from the
//!   camera's decisions ([`Kiosk::stranger`], [`Kiosk::ambiguous`]), whether or not they
//!   become events (`CAMERA_SEND_UNKNOWN`).
//! - Face crops are kept in memory only, never written: the camera hands the crop of each
//!   recognized face it decided ([`Kiosk::recognized_face`]) while a screen polls (within
//!   [`WATCHED`]), by event id, in a ring of [`CROPS_KEPT`] each kept at most [`CROP_KEPT`];
//!   the greeting takes its own crop out of the ring. No list of who came is kept: only the
//!   current greeting.
//! - Nothing here fails on what an event says: a payload that does not read, or is not a
//!   recognized event, greets nobody.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::engine::FaceBox;
use crate::events::{Outgoing, Report, Sink, Status};
use crate::gallery::UNKNOWN;
use crate::image_io::{self, RgbImage};
use crate::localtime::BoxZone;
use crate::locks::lock;

/// Face crops waiting for their greeting, at most.
pub const CROPS_KEPT: usize = 8;
/// A crop not taken by a greeting within this is dropped.
pub const CROP_KEPT: Duration = Duration::from_secs(30);
/// The camera keeps crops only while a screen polled the state within this.
pub const WATCHED: Duration = Duration::from_secs(10);
/// Crops are scaled down to at most this wide before they are encoded.
pub const CROP_MAX_WIDTH: usize = 360;
/// The longest name shown (characters); a longer one is cut.
pub const NAME_MAX_CHARS: usize = 100;

/// `KIOSK_GREETING_SECONDS` and `KIOSK_SOUND`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KioskSettings {
    /// How long a greeting (or a stranger's notice) stays before the idle clock.
    pub greeting: Duration,
    /// Whether the screen plays sounds (it also has its own mute switch).
    pub sound: bool,
}

impl Default for KioskSettings {
    /// 5 s, with sound.
    fn default() -> KioskSettings {
        KioskSettings {
            greeting: Duration::from_secs(5),
            sound: true,
        }
    }
}

/// What is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Greeting {
        name: String,
        time: String,
        punch: Option<String>,
    },
    Stranger,
    Ambiguous,
}

#[derive(Debug)]
struct Current {
    seq: u64,
    kind: Kind,
    since: Instant,
    photo: Option<Arc<[u8]>>,
}

#[derive(Default)]
struct Board {
    seq: u64,
    current: Option<Current>,
    /// Crops by event id, oldest first.
    crops: VecDeque<(String, Instant, Arc<[u8]>)>,
}

/// The board the screen reads (see the module's contract).
pub struct Kiosk {
    settings: KioskSettings,
    board: Mutex<Board>,
    /// The box's time zone: the greeting's time and the idle clock.
    zone: BoxZone,
    /// `crate::clock::unix_ms` of the last poll (0: never).
    polled_ms: AtomicU64,
}

impl Kiosk {
    /// An idle board, showing times in `zone` (the box's, `BOX_TIMEZONE`).
    pub fn new(settings: KioskSettings, zone: BoxZone) -> Kiosk {
        Kiosk {
            settings,
            board: Mutex::new(Board::default()),
            zone,
            polled_ms: AtomicU64::new(0),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> KioskSettings {
        self.settings
    }

    /// Whether a screen polled the state within [`WATCHED`].
    pub fn watched(&self) -> bool {
        let polled = self.polled_ms.load(Ordering::Relaxed);
        polled > 0 && crate::clock::unix_ms().saturating_sub(polled) < WATCHED.as_millis() as u64
    }

    /// The camera recognized a face in `image` at `bbox`, made into event `event_id`: its crop
    /// is kept for that event's greeting, while a screen watches.
    pub fn recognized_face(&self, event_id: &str, image: &RgbImage, bbox: &FaceBox) {
        if !self.watched() {
            return;
        }
        let crop = crate::unknowns::crop_with_margin(image, bbox);
        let crop = image_io::downscale_to_width(&crop, CROP_MAX_WIDTH);
        let jpeg = match image_io::encode_jpeg(&crop) {
            Ok(jpeg) => jpeg,
            Err(e) => {
                log::debug!("kiosk: a face crop did not encode: {e}");
                return;
            }
        };
        let mut board = lock(&self.board);
        board.crops.retain(|(_, at, _)| at.elapsed() < CROP_KEPT);
        while board.crops.len() >= CROPS_KEPT {
            board.crops.pop_front();
        }
        board
            .crops
            .push_back((event_id.to_string(), Instant::now(), jpeg.into()));
    }

    /// The camera decided on a stranger.
    pub fn stranger(&self) {
        self.show(Kind::Stranger, None);
    }

    /// The camera decided on a face between two people.
    pub fn ambiguous(&self) {
        self.show(Kind::Ambiguous, None);
    }

    /// Greets the person of a live event message (see [`crate::events::Event::live_message`]):
    /// `true` when it was a recognized person's event.
    pub fn greet(&self, event_id: &str, message: &str) -> bool {
        let Ok(event) = serde_json::from_str::<Value>(message) else {
            return false;
        };
        let Some(id) = event["student_id"].as_str() else {
            return false;
        };
        if event["type"] != "recognized" || id == UNKNOWN {
            return false;
        }
        let name = event["name"]
            .as_str()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(id);
        let name: String = name.chars().take(NAME_MAX_CHARS).collect();
        let punch = match event["punch"].as_str() {
            Some(p @ ("in" | "out")) => Some(p.to_string()),
            _ => None,
        };
        let at_ms = event["ts"]
            .as_u64()
            .map_or_else(crate::clock::unix_ms, |s| s.saturating_mul(1000));
        let time = self.zone.hhmm(at_ms);
        let photo = {
            let mut board = lock(&self.board);
            let found = board.crops.iter().position(|(id, _, _)| id == event_id);
            found
                .and_then(|i| board.crops.remove(i))
                .map(|(_, _, jpeg)| jpeg)
        };
        self.show(Kind::Greeting { name, time, punch }, photo);
        true
    }

    fn show(&self, kind: Kind, photo: Option<Arc<[u8]>>) {
        let mut board = lock(&self.board);
        board.seq += 1;
        board.current = Some(Current {
            seq: board.seq,
            kind,
            since: Instant::now(),
            photo,
        });
    }

    /// The current thing shown, an expired one dropped first.
    fn current<T>(&self, read: impl FnOnce(u64, Option<&Current>) -> T) -> T {
        let mut board = lock(&self.board);
        let expired = board
            .current
            .as_ref()
            .is_some_and(|c| c.since.elapsed() >= self.settings.greeting);
        if expired {
            board.current = None;
        }
        read(board.seq, board.current.as_ref())
    }

    /// `GET /kiosk/state`: what to show now, with the local clock and the screen's settings.
    /// Counts as a poll (see [`Kiosk::watched`]).
    pub fn state(&self) -> Value {
        let now = crate::clock::unix_ms();
        self.polled_ms.store(now, Ordering::Relaxed);
        let mut state = self.current(|seq, current| {
            let mut state = json!({"seq": seq, "state": "idle"});
            match current.map(|c| (c.seq, &c.kind, c.photo.is_some())) {
                None => {}
                Some((seq, Kind::Greeting { name, time, punch }, photo)) => {
                    state["state"] = json!("greeting");
                    state["name"] = json!(name);
                    state["time"] = json!(time);
                    state["punch"] = json!(punch);
                    state["photo"] = json!(photo.then(|| format!("/kiosk/photo/{seq}.jpg")));
                }
                Some((_, Kind::Stranger, _)) => state["state"] = json!("stranger"),
                Some((_, Kind::Ambiguous, _)) => state["state"] = json!("ambiguous"),
            }
            state
        });
        state["clock"] = json!(self.zone.hhmm(now));
        state["date"] = json!(self.zone.date_of(now).to_string());
        state["greeting_seconds"] = json!(self.settings.greeting.as_secs_f64());
        state["sound"] = json!(self.settings.sound);
        state
    }

    /// The crop of greeting `seq`, while it is the one shown.
    pub fn photo(&self, seq: u64) -> Option<Arc<[u8]>> {
        self.current(|_, current| {
            current
                .filter(|c| c.seq == seq)
                .and_then(|c| c.photo.clone())
        })
    }
}

/// The live sink that greets each resolved recognized event (named `kiosk`).
pub struct KioskSink(pub Arc<Kiosk>);

impl Sink for KioskSink {
    fn name(&self) -> &'static str {
        "kiosk"
    }

    fn durable(&self) -> bool {
        false
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        // Strangers' and ambiguous events are the camera's to show (not each twice).
        if self.0.greet(event.event_id, event.payload) {
            Report::status(Status::Sent)
        } else {
            Report::status(Status::Skipped)
        }
    }

    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kiosk(greeting_ms: u64) -> Kiosk {
        Kiosk::new(
            KioskSettings {
                greeting: Duration::from_millis(greeting_ms),
                sound: true,
            },
            BoxZone::utc(),
        )
    }

    fn face_image() -> RgbImage {
        RgbImage::from_raw(40, 40, vec![128; 40 * 40 * 3]).unwrap()
    }

    const BOX: FaceBox = FaceBox {
        top: 10,
        right: 30,
        bottom: 30,
        left: 10,
    };

    #[test]
    fn a_recognized_event_greets_by_name_else_id_and_expires() {
        let k = kiosk(300);
        assert_eq!(k.state()["state"], "idle");
        let seq0 = k.state()["seq"].as_u64().unwrap();
        // 07:42 UTC, with the lead's fields.
        let message = json!({"type": "recognized", "event_id": "e1", "student_id": "alip",
            "name": "Alip Nugraha", "punch": "in", "ts": 27_720});
        assert!(k.greet("e1", &message.to_string()));
        let s = k.state();
        assert_eq!(
            (&s["state"], &s["name"], &s["time"], &s["punch"]),
            (
                &json!("greeting"),
                &json!("Alip Nugraha"),
                &json!("07:42"),
                &json!("in")
            )
        );
        assert_eq!(s["seq"].as_u64(), Some(seq0 + 1));
        assert_eq!(s["photo"], Value::Null, "no crop was kept: nobody watched");
        // Before the names: the id, and no punch.
        let bare = json!({"type": "recognized", "student_id": "budi", "ts": 0});
        assert!(k.greet("e2", &bare.to_string()));
        let s = k.state();
        assert_eq!((&s["name"], &s["punch"]), (&json!("budi"), &Value::Null));
        std::thread::sleep(Duration::from_millis(350));
        let s = k.state();
        assert_eq!(s["state"], "idle");
        assert!(s.get("name").is_none(), "{s}");
        assert_eq!(s["seq"].as_u64(), Some(seq0 + 2), "idle keeps the number");
    }

    #[test]
    fn strangers_ambiguous_and_garbage_greet_nobody() {
        let mut sink = KioskSink(Arc::new(kiosk(5000)));
        for payload in [
            "not json",
            "[]",
            r#"{"type":"recognized","student_id":"Unknown"}"#,
            r#"{"type":"ambiguous","student_id":"Unknown","candidates":["a","b"]}"#,
            r#"{"type":"recognized","student_id":7}"#,
        ] {
            let report = sink.deliver(&Outgoing {
                event_id: "x",
                payload,
                webhook: None,
                repeat: false,
            });
            assert_eq!(report.status, Status::Skipped, "{payload}");
        }
        assert_eq!(sink.0.state()["state"], "idle");
        sink.0.stranger();
        assert_eq!(sink.0.state()["state"], "stranger");
        sink.0.ambiguous();
        assert_eq!(sink.0.state()["state"], "ambiguous");
    }

    #[test]
    fn a_watched_screen_gets_the_crop_of_its_greeting_only() {
        let k = kiosk(5000);
        k.recognized_face("e0", &face_image(), &BOX);
        k.state();
        assert!(k.watched());
        for n in 0..CROPS_KEPT + 2 {
            k.recognized_face(&format!("e{n}"), &face_image(), &BOX);
        }
        // The oldest two fell out of the ring.
        assert!(k.greet("e1", r#"{"type":"recognized","student_id":"a"}"#));
        let s = k.state();
        assert_eq!(s["photo"], Value::Null, "{s}");
        assert!(k.greet("e5", r#"{"type":"recognized","student_id":"a"}"#));
        let s = k.state();
        let seq = s["seq"].as_u64().unwrap();
        assert_eq!(s["photo"], json!(format!("/kiosk/photo/{seq}.jpg")));
        let jpeg = k.photo(seq).unwrap();
        assert!(jpeg.starts_with(&[0xFF, 0xD8]));
        assert!(
            k.photo(seq - 1).is_none(),
            "only the current greeting's crop"
        );
        // Taken once: a second greeting of that event has no crop.
        assert!(k.greet("e5", r#"{"type":"recognized","student_id":"a"}"#));
        assert!(k.photo(seq + 1).is_none());
    }

    #[test]
    fn long_names_are_cut() {
        let k = kiosk(5000);
        let long = "x".repeat(500);
        let m = json!({"type": "recognized", "student_id": "a", "name": long});
        assert!(k.greet("e", &m.to_string()));
        assert_eq!(
            k.state()["name"].as_str().unwrap().chars().count(),
            NAME_MAX_CHARS
        );
    }
}
