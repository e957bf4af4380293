//! What the service does with each camera frame: the faces whose identity the camera decided
//! become events, strangers are kept for review, the greeting screen hears of them (`/kiosk`),
//! the frame is offered to the captures and handed to the live view.

use std::sync::Arc;

use crate::camera::capture::Captures;
use crate::camera::live::Live;
use crate::camera::{FrameResult, OnFrame};
use crate::events::{Dispatcher, Event, Seer};
use crate::gallery::UNKNOWN;
use crate::kiosk::Kiosk;
use crate::unknowns::Unknowns;

/// Where the camera's frames go; [`FrameWiring::into_handler`] makes the camera's callback.
pub struct FrameWiring {
    /// The camera whose frames these are (its events say so).
    pub camera: Seer,
    /// The events of decided faces (cooldown, webhook, WebSocket, MQTT).
    pub dispatcher: Arc<Dispatcher>,
    /// Strangers and ambiguous faces also become events (`CAMERA_SEND_UNKNOWN`).
    pub send_unknown: bool,
    /// The store of unknown faces kept for review, when it could be opened.
    pub unknowns: Option<Arc<Unknowns>>,
    /// Smallest face kept as an unknown: the enrollment minimum (`ENROLL_MIN_FACE`).
    pub min_face_px: u32,
    /// Frames asked for by `/capture`.
    pub captures: Arc<Captures>,
    /// The live view (`/stream.mjpg`).
    pub live: Arc<Live>,
    /// The greeting screen's board (`/kiosk`).
    pub kiosk: Arc<Kiosk>,
}

impl FrameWiring {
    /// The camera's callback: each frame is offered to the captures, its decided faces become
    /// events, its strangers are kept, and last it is moved to the live view (kept only while
    /// someone watches).
    pub fn into_handler(self) -> OnFrame {
        let mut events = camera_events_shown(
            self.dispatcher,
            self.send_unknown,
            self.camera,
            Some(self.kiosk),
        );
        let mut keep = keep_unknowns(self.unknowns, self.min_face_px);
        let (to_capture, to_viewers) = (self.captures, self.live);
        Box::new(move |f: FrameResult| {
            to_capture.offer(&f.image, f.faces.len());
            events(&f);
            keep(&f);
            to_viewers.publish(f.image, f.faces);
        })
    }
}

/// What `serve` does with each camera frame: the faces whose identity it decided (confirmed
/// over frames) become events carrying their decision, through the same path as
/// `/recognize/realtime` (cooldown, webhook, WebSocket), saying which camera saw them.
/// Strangers and ambiguous faces only with `send_unknown`.
pub fn camera_events(
    dispatcher: Arc<Dispatcher>,
    send_unknown: bool,
    camera: Seer,
) -> impl FnMut(&FrameResult) + Send {
    camera_events_shown(dispatcher, send_unknown, camera, None)
}

/// [`camera_events`], and the greeting screen told of each decided face before its event goes:
/// a recognized face's crop under its event's id (for the greeting the `kiosk` sink makes of
/// that event), a stranger or an ambiguous face at once, whether or not it makes an event.
fn camera_events_shown(
    dispatcher: Arc<Dispatcher>,
    send_unknown: bool,
    camera: Seer,
    kiosk: Option<Arc<Kiosk>>,
) -> impl FnMut(&FrameResult) + Send {
    move |f: &FrameResult| {
        let frame = (f.image.width, f.image.height);
        let mut batch: Vec<Event> = Vec::new();
        for d in &f.decided {
            let r = &d.recognition;
            let known = r.label != UNKNOWN;
            let event = (send_unknown || known).then(|| {
                Event::of(r, frame)
                    .with_decision(d.decision.clone())
                    .with_camera(camera.clone())
            });
            if let Some(kiosk) = &kiosk {
                match (&event, known, r.ambiguous.is_some()) {
                    (Some(e), true, _) => kiosk.recognized_face(&e.event_id, &f.image, &r.bbox),
                    (_, false, true) => kiosk.ambiguous(),
                    (_, false, false) => kiosk.stranger(),
                    (None, true, _) => {}
                }
            }
            batch.extend(event);
        }
        if !batch.is_empty() {
            dispatcher.submit(batch);
        }
    }
}

/// The camera's strangers kept for review ([`crate::unknowns`]): faces decided as nobody
/// (confirmed over frames, not ambiguous between two people) and large enough to be enrolled
/// later (`ENROLL_MIN_FACE`). A store that cannot be written costs a log line, not the frame.
pub fn keep_unknowns(
    unknowns: Option<Arc<Unknowns>>,
    min_face_px: u32,
) -> impl FnMut(&FrameResult) + Send {
    move |f: &FrameResult| {
        let Some(store) = unknowns.as_ref().filter(|s| !s.settings().is_off()) else {
            return;
        };
        let strangers = f.decided.iter().filter(|d| {
            d.recognition.label == UNKNOWN
                && d.recognition.ambiguous.is_none()
                && d.measured.face_px >= min_face_px
        });
        for d in strangers {
            let m = &d.measured;
            let kept = store.record(
                &f.image,
                d.recognition.bbox,
                &m.encoding,
                m.face_px,
                m.sharpness,
            );
            if let Err(e) = kept {
                log::warn!("unknown faces: could not keep one: {e}");
            }
        }
    }
}
