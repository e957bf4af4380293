//! The live view's newest frame (`GET /stream.mjpg`): the processing thread publishes each
//! frame and its faces here, and each viewer's thread takes the newest one it has not sent yet,
//! at most `STREAM_MAX_FPS` times a second.
//!
//! The recognition loop never waits for a viewer: with nobody watching, publishing costs one
//! atomic load; with viewers, the frame is moved in (no copy, no drawing, no encoding) and the
//! one before it let go. Drawing and JPEG encoding happen on the viewers' threads, once per frame
//! a viewer takes, shared by every viewer that takes the same frame. As in the camera loop,
//! newest frame wins: a viewer slower than the camera skips frames, never queues them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::annotate;
use super::tracker::Seen;
use crate::image_io::{self, RgbImage};
use crate::locks::lock;
use crate::metrics::Family;

/// Frames wider than this are scaled down before they are drawn on and encoded: a Pi's CPU
/// time per viewer, and the LAN's bytes, follow the pixel count, and a phone's screen shows
/// no more.
pub const MAX_WIDTH: usize = 640;
/// JPEG quality of the parts: small enough for a phone on Wi-Fi, sharp enough to read names.
pub const JPEG_QUALITY: i32 = 80;

/// How the live view is bounded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveSettings {
    /// Most frames a second sent to one viewer (`STREAM_MAX_FPS`).
    pub max_fps: f64,
    /// Most viewers at once (`STREAM_MAX_CLIENTS`); 0 turns the live view off.
    pub max_viewers: usize,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            max_fps: 5.0,
            max_viewers: 4,
        }
    }
}

impl LiveSettings {
    /// The shortest time between two frames sent to one viewer.
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.max_fps)
    }
}

/// One published frame, shared by the viewers that take it.
pub struct LiveFrame {
    seq: u64,
    image: RgbImage,
    faces: Vec<Seen>,
    /// The frame as it is sent (scaled, drawn on, encoded), made by the first viewer that
    /// needs it; `None` when it could not be encoded.
    jpeg: OnceLock<Option<Vec<u8>>>,
}

impl LiveFrame {
    /// Its number: frames are numbered from 1 as they are published.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The frame with its faces' boxes and captions, at most [`MAX_WIDTH`] wide, as a JPEG.
    pub fn jpeg(&self, live: &Live) -> Option<&[u8]> {
        self.jpeg
            .get_or_init(|| {
                live.rendered.fetch_add(1, Ordering::Relaxed);
                let mut view = image_io::downscale_to_width(&self.image, MAX_WIDTH);
                let scale = view.width as f64 / self.image.width.max(1) as f64;
                annotate::draw_scaled(&mut view, &self.faces, scale);
                encode(&view)
            })
            .as_deref()
    }
}

fn encode(image: &RgbImage) -> Option<Vec<u8>> {
    match image_io::encode_jpeg_quality(image, JPEG_QUALITY) {
        Ok(jpeg) => Some(jpeg),
        Err(e) => {
            log::warn!("live view: a frame could not be encoded: {e}");
            None
        }
    }
}

/// A frame that says there is no camera picture yet, for viewers that came before the first
/// frame (or while the camera is gone): they see why, and a viewer that left is noticed when
/// this is written.
pub fn placeholder(message: &str) -> Option<Vec<u8>> {
    let (w, h) = (MAX_WIDTH, MAX_WIDTH * 3 / 4);
    let mut image = RgbImage::from_raw(w, h, vec![64; w * h * 3])?;
    annotate::notice(&mut image, message);
    encode(&image)
}

struct Latest {
    seq: u64,
    frame: Option<Arc<LiveFrame>>,
    closed: bool,
}

/// The viewers' shared newest frame and their count.
pub struct Live {
    settings: LiveSettings,
    viewers: AtomicUsize,
    latest: Mutex<Latest>,
    published: Condvar,
    /// Frames rendered (drawn and encoded) and parts written to viewers.
    rendered: AtomicU64,
    sent: AtomicU64,
    /// Viewers served so far, and those dropped because they stopped reading.
    served: AtomicU64,
    stalled: AtomicU64,
}

/// What a viewer waiting for a frame got.
pub enum Next {
    /// A frame newer than the last one it took.
    Frame(Arc<LiveFrame>),
    /// None came in time.
    Timeout,
    /// The service is stopping.
    Closed,
}

impl Live {
    /// The live view, with no frame yet.
    pub fn new(settings: LiveSettings) -> Live {
        Live {
            settings,
            viewers: AtomicUsize::new(0),
            latest: Mutex::new(Latest {
                seq: 0,
                frame: None,
                closed: false,
            }),
            published: Condvar::new(),
            rendered: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            served: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
        }
    }

    /// Its limits (frame rate, viewers).
    pub fn settings(&self) -> &LiveSettings {
        &self.settings
    }

    /// Whether anybody watches (one atomic load: the processing thread asks every frame).
    pub fn watched(&self) -> bool {
        self.viewers.load(Ordering::Acquire) > 0
    }

    /// Viewers now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Relaxed)
    }

    /// Called by the processing thread with each frame; keeps it only while somebody watches.
    pub fn publish(&self, image: RgbImage, faces: Vec<Seen>) {
        if !self.watched() {
            return;
        }
        let mut latest = lock(&self.latest);
        latest.seq += 1;
        let frame = LiveFrame {
            seq: latest.seq,
            image,
            faces,
            jpeg: OnceLock::new(),
        };
        let previous = latest.frame.replace(Arc::new(frame));
        drop(latest);
        self.published.notify_all();
        // Freed outside the lock (when no viewer still holds it).
        drop(previous);
    }

    /// A viewer's place, or `None` when all `STREAM_MAX_CLIENTS` are taken.
    pub fn join(self: &Arc<Self>) -> Option<Viewer> {
        let max = self.settings.max_viewers;
        self.viewers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(Viewer {
            live: self.clone(),
            last_seq: 0,
            last: None,
        })
    }

    /// Wakes every viewer for good (the service is stopping).
    pub fn close(&self) {
        lock(&self.latest).closed = true;
        self.published.notify_all();
    }

    /// Whether [`Live::close`] was called (the service is stopping).
    pub fn is_closed(&self) -> bool {
        lock(&self.latest).closed
    }

    /// The live view's part of `/health`.
    pub fn to_json(&self) -> Value {
        let mut answer = json!({
            "viewers": self.viewers(),
            "max_viewers": self.settings.max_viewers,
            "max_fps": self.settings.max_fps,
        });
        for (name, _, value) in self.counters() {
            answer[name] = json!(value);
        }
        answer
    }

    /// The counters `/health` and `/metrics` show, with what each counts.
    fn counters(&self) -> [(&'static str, &'static str, u64); 4] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "viewers_served",
                "Viewers of /stream.mjpg served.",
                n(&self.served),
            ),
            (
                "viewers_stalled",
                "Viewers dropped for not reading within HTTP_TIMEOUT_SECONDS.",
                n(&self.stalled),
            ),
            (
                "frames_rendered",
                "Live frames drawn and JPEG-encoded.",
                n(&self.rendered),
            ),
            (
                "frames_sent",
                "Live frames sent, all viewers together.",
                n(&self.sent),
            ),
        ]
    }

    /// The cameras' live views' part of `/metrics`, labelled `camera="NAME"`.
    pub fn families(lives: &[(&str, &Live)]) -> Vec<Family> {
        let Some((_, first)) = lives.first() else {
            return Vec::new();
        };
        let mut families = vec![lives.iter().fold(
            Family::gauge("stream_viewers", "Viewers of /stream.mjpg now."),
            |family, (camera, live)| family.sample(&[("camera", camera)], live.viewers() as f64),
        )];
        for (i, (name, help, _)) in first.counters().iter().enumerate() {
            families.push(lives.iter().fold(
                Family::counter(&format!("stream_{name}"), help),
                |family, (camera, live)| {
                    family.sample(&[("camera", camera)], live.counters()[i].2 as f64)
                },
            ));
        }
        families
    }
}

/// One viewer's place; dropping it frees the place (and, for the last viewer, the frame).
pub struct Viewer {
    live: Arc<Live>,
    last_seq: u64,
    last: Option<Arc<LiveFrame>>,
}

impl Viewer {
    /// The live view this viewer watches.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// The newest frame newer than the last one taken, not before `not_before` (the rate cap)
    /// and waiting at most until `deadline`.
    pub fn next(&mut self, not_before: Instant, deadline: Instant) -> Next {
        let mut latest = lock(&self.live.latest);
        loop {
            if latest.closed {
                return Next::Closed;
            }
            let now = Instant::now();
            if now >= not_before {
                if let Some(frame) = latest.frame.as_ref().filter(|f| f.seq > self.last_seq) {
                    self.last_seq = frame.seq;
                    self.last = Some(frame.clone());
                    return Next::Frame(frame.clone());
                }
            }
            if now >= deadline {
                return Next::Timeout;
            }
            let until = if now < not_before {
                not_before.min(deadline)
            } else {
                deadline
            };
            latest = crate::locks::wait_timeout(&self.live.published, latest, until - now);
        }
    }

    /// The last frame taken, to send again while no newer one comes.
    pub fn last(&self) -> Option<Arc<LiveFrame>> {
        self.last.clone()
    }

    /// Counts a part written to this viewer.
    pub fn sent(&self) {
        self.live.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts this viewer as dropped for not reading.
    pub fn stalled(&self) {
        self.live.stalled.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.last = None;
        if self.live.viewers.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Nobody watches: let the frame go. A frame published in between stays until the
            // next viewer replaces it.
            let frame = lock(&self.live.latest).frame.take();
            drop(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(v: u8) -> RgbImage {
        RgbImage::from_raw(4, 3, vec![v; 4 * 3 * 3]).unwrap()
    }

    fn live(max_viewers: usize) -> Arc<Live> {
        Arc::new(Live::new(LiveSettings {
            max_fps: 100.0,
            max_viewers,
        }))
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(20)
    }

    fn first_pixel(next: Next) -> u8 {
        match next {
            Next::Frame(f) => f.image.pixels[0],
            Next::Timeout => panic!("timed out"),
            Next::Closed => panic!("closed"),
        }
    }

    #[test]
    fn nothing_is_kept_while_nobody_watches() {
        let live = live(2);
        live.publish(image(1), Vec::new());
        let latest = lock(&live.latest);
        assert!(latest.frame.is_none());
        assert_eq!(latest.seq, 0, "not even numbered");
    }

    #[test]
    fn the_newest_frame_wins_and_each_is_taken_once() {
        let live = live(2);
        let mut viewer = live.join().unwrap();
        for v in 1..=3 {
            live.publish(image(v), Vec::new());
        }
        assert_eq!(first_pixel(viewer.next(Instant::now(), soon())), 3);
        assert!(matches!(viewer.next(Instant::now(), soon()), Next::Timeout));
        live.publish(image(4), Vec::new());
        // A second viewer gets the frame too: each has its own place in the sequence.
        let mut other = live.join().unwrap();
        assert_eq!(first_pixel(other.next(Instant::now(), soon())), 4);
        assert_eq!(first_pixel(viewer.next(Instant::now(), soon())), 4);
        assert_eq!(viewer.last().unwrap().seq(), 4);
    }

    #[test]
    fn places_are_capped_and_freed_and_the_last_viewer_lets_the_frame_go() {
        let live = live(2);
        let (a, b) = (live.join().unwrap(), live.join().unwrap());
        assert!(live.join().is_none(), "third viewer refused");
        live.publish(image(1), Vec::new());
        drop(a);
        assert_eq!(live.viewers(), 1);
        assert!(
            lock(&live.latest).frame.is_some(),
            "kept for the other viewer"
        );
        let c = live.join().unwrap();
        drop((b, c));
        assert_eq!(live.viewers(), 0);
        assert!(lock(&live.latest).frame.is_none(), "let go");
        assert!(!live.watched());
    }

    #[test]
    fn a_viewer_waits_for_the_rate_and_wakes_for_a_frame_or_the_close() {
        let live = live(1);
        let mut viewer = live.join().unwrap();
        live.publish(image(1), Vec::new());
        let started = Instant::now();
        let not_before = started + Duration::from_millis(100);
        assert_eq!(
            first_pixel(viewer.next(not_before, started + Duration::from_secs(10))),
            1
        );
        assert!(started.elapsed() >= Duration::from_millis(100), "rate kept");

        let publisher = {
            let live = live.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                live.publish(image(2), Vec::new());
                std::thread::sleep(Duration::from_millis(50));
                live.close();
            })
        };
        let far = Instant::now() + Duration::from_secs(10);
        assert_eq!(first_pixel(viewer.next(Instant::now(), far)), 2);
        assert!(matches!(viewer.next(Instant::now(), far), Next::Closed));
        publisher.join().unwrap();
        assert!(live.is_closed());
    }

    #[test]
    fn a_frame_is_rendered_once_for_all_viewers_and_big_ones_are_scaled_down() {
        let live = live(2);
        let (mut a, mut b) = (live.join().unwrap(), live.join().unwrap());
        let big = RgbImage::from_raw(1280, 720, vec![100; 1280 * 720 * 3]).unwrap();
        live.publish(big, Vec::new());
        let (Next::Frame(fa), Next::Frame(fb)) = (
            a.next(Instant::now(), soon()),
            b.next(Instant::now(), soon()),
        ) else {
            panic!("no frame");
        };
        let jpeg = fa.jpeg(&live).unwrap().to_vec();
        assert_eq!(fb.jpeg(&live).unwrap(), jpeg.as_slice());
        assert_eq!(live.to_json()["frames_rendered"], 1);
        let decoded = image_io::decode(&jpeg, u64::MAX).unwrap();
        assert_eq!((decoded.width, decoded.height), (MAX_WIDTH, 360));
        let notice = image_io::decode(&placeholder("waiting").unwrap(), u64::MAX).unwrap();
        assert_eq!(notice.width, MAX_WIDTH);
    }
}
