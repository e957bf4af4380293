//! The box's own camera: a capture thread reads a [`FrameSource`] into a newest-frame-wins
//! slot; a processing thread converts, recognizes and hands each frame's results on (to the
//! event dispatcher in `serve`, to the terminal in `cam-demo`). A source that fails or
//! disappears is reopened with back-off; nothing here exits or spins on errors.

pub(crate) mod annotate;
pub(crate) mod capture;
pub mod confirm;
pub mod frame;
pub(crate) mod live;
mod pipeline;
pub mod probe;
mod slot;
pub mod sources;
pub mod tracker;
mod view;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gallery::UNKNOWN;
use crate::image_io::RgbImage;
use crate::liveness::{Heartbeat, Liveness};
use crate::metrics::{self, Family};
pub use crate::pipeline::StageTimes;
pub use confirm::{ConfirmSettings, Decided};
use frame::RawFrame;
pub use pipeline::{
    Decider, Looked, Pipeline, PipelineSettings, Stepped, DEFAULT_CAMERA_MATCH_MARGIN,
    DEFAULT_CAMERA_TOLERANCE,
};
use slot::LatestSlot;
pub use sources::{FrameSource, ReplaySource, SourceError, SourceSpec};
pub use tracker::{Measured, Seen};
pub use view::CameraView;

/// Which way people pass a camera: an entrance's camera sees them come `in`, an exit's go `out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// People coming in.
    In,
    /// People going out.
    Out,
}

impl Direction {
    /// `in` or `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl std::str::FromStr for Direction {
    type Err = String;

    fn from_str(s: &str) -> Result<Direction, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "in" => Ok(Direction::In),
            "out" => Ok(Direction::Out),
            other => Err(format!("a direction is in or out, got {other:?}")),
        }
    }
}

/// Opens (or reopens) the frame source.
pub type OpenSource = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, SourceError> + Send>;

/// What one processed frame gave.
pub struct FrameResult {
    /// The frame, upright RGB.
    pub image: RgbImage,
    /// Every face found in it, with its label (carried by the tracker or recognized now).
    pub faces: Vec<Seen>,
    /// What each stage took.
    pub times: StageTimes,
    /// From capture to the end of recognition.
    pub latency: Duration,
    /// The faces whose identity this frame decided (confirmed over frames): only these make
    /// events, so neither a label carried over by the tracker nor a single frame ever does.
    pub decided: Vec<Decided>,
}

/// What the processing thread does with each frame's result.
pub type OnFrame = Box<dyn FnMut(FrameResult) + Send>;

/// Counters for `/health` and the demo, shared by the camera threads.
#[derive(Default)]
pub struct CameraStats {
    captured: AtomicU64,
    processed: AtomicU64,
    frame_errors: AtomicU64,
    source_errors: AtomicU64,
    /// Unix ms of the last frame captured (0: none yet).
    last_frame_ms: AtomicU64,
    /// Unix ms since when the source has been unavailable (0: it is fine).
    unavailable_since_ms: AtomicU64,
    source: Mutex<String>,
    state: Mutex<String>,
    dropped: AtomicU64,
    faces_detected: AtomicU64,
    faces_encoded: AtomicU64,
    faces_tracked: AtomicU64,
    faces_skipped_small: AtomicU64,
    faces_skipped_blurry: AtomicU64,
    /// Faces freshly encoded that were close to two people (`CAMERA_MATCH_MARGIN`).
    faces_ambiguous: AtomicU64,
    /// Encoded faces that decided nothing yet (waiting for `CAMERA_CONFIRM_FRAMES`).
    faces_held_back: AtomicU64,
    /// Decisions ([`confirm`]): a person, two people at once, nobody.
    confirmed: AtomicU64,
    confirmed_ambiguous: AtomicU64,
    confirmed_unknown: AtomicU64,
    /// What stream sources skipped ([`sources::Skipped`]).
    frames_oversize: AtomicU64,
    frames_truncated: AtomicU64,
    stream_garbage_bytes: AtomicU64,
}

use crate::clock::unix_ms as now_ms;
use crate::locks::lock;

fn set(m: &Mutex<String>, value: String) {
    *lock(m) = value;
}

impl CameraStats {
    /// Frames processed since the start.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// The capture side's state, as `/health` shows it (`running`, `reopening`, ...).
    pub fn state(&self) -> String {
        lock(&self.state).clone()
    }

    /// False when the source has been gone, or silent, for longer than `stale_after`.
    pub fn healthy(&self, stale_after: Duration) -> bool {
        let now = now_ms();
        let limit = stale_after.as_millis() as u64;
        let gone = self.unavailable_since_ms.load(Ordering::Relaxed);
        if gone != 0 {
            return now.saturating_sub(gone) <= limit;
        }
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        self.state() == "ended" || last == 0 || now.saturating_sub(last) <= limit
    }

    /// The counters, as `/health` names them, with what each counts: the one list that both
    /// `/health` and `/metrics` read.
    fn counters(&self) -> [(&'static str, &'static str, u64); 18] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            (
                "frames_captured",
                "Frames read from the source.",
                n(&self.captured),
            ),
            ("frames_processed", "Frames recognized.", n(&self.processed)),
            (
                "frames_dropped",
                "Frames replaced by a newer one before processing (newest frame wins).",
                n(&self.dropped),
            ),
            (
                "frame_errors",
                "Frames that could not be decoded.",
                n(&self.frame_errors),
            ),
            (
                "faces_detected",
                "Faces the detector found.",
                n(&self.faces_detected),
            ),
            (
                "faces_encoded",
                "Faces encoded (landmarks and encoder run).",
                n(&self.faces_encoded),
            ),
            (
                "faces_tracked",
                "Faces that kept their identity from an earlier frame without being encoded.",
                n(&self.faces_tracked),
            ),
            (
                "faces_skipped_small",
                "Faces smaller than CAMERA_MIN_FACE_PX.",
                n(&self.faces_skipped_small),
            ),
            (
                "faces_skipped_blurry",
                "Faces less sharp than CAMERA_MIN_SHARPNESS.",
                n(&self.faces_skipped_blurry),
            ),
            (
                "faces_ambiguous",
                "Encoded faces close to two people (CAMERA_MATCH_MARGIN).",
                n(&self.faces_ambiguous),
            ),
            (
                "faces_held_back",
                "Encoded faces that decided nothing yet (CAMERA_CONFIRM_FRAMES).",
                n(&self.faces_held_back),
            ),
            (
                "confirmed",
                "Faces decided as a person.",
                n(&self.confirmed),
            ),
            (
                "confirmed_ambiguous",
                "Faces decided as ambiguous between two people.",
                n(&self.confirmed_ambiguous),
            ),
            (
                "confirmed_unknown",
                "Faces decided as nobody enrolled.",
                n(&self.confirmed_unknown),
            ),
            (
                "source_errors",
                "Times the source failed while open.",
                n(&self.source_errors),
            ),
            (
                "frames_oversize",
                "Frames of a stream larger than CAMERA_MAX_FRAME_KB, skipped.",
                n(&self.frames_oversize),
            ),
            (
                "frames_truncated",
                "Frames of a stream cut short, skipped.",
                n(&self.frames_truncated),
            ),
            (
                "stream_garbage_bytes",
                "Bytes of a stream that belonged to no frame, skipped.",
                n(&self.stream_garbage_bytes),
            ),
        ]
    }

    /// The counters as `/health`'s `camera` object.
    pub fn to_json(&self) -> Value {
        let last = self.last_frame_ms.load(Ordering::Relaxed);
        let mut answer = json!({
            "source": *lock(&self.source),
            "state": self.state(),
        });
        for (name, _, value) in self.counters().into_iter() {
            answer[name] = json!(value);
        }
        answer["last_frame_age_seconds"] =
            json!((last != 0).then(|| now_ms().saturating_sub(last) as f64 / 1000.0));
        answer
    }

    /// Counters for a camera reading `source` (as it may be shown), before it is opened.
    pub fn for_source(source: String) -> CameraStats {
        let stats = CameraStats::default();
        set(&stats.source, source);
        set(&stats.state, "starting".into());
        stats
    }

    /// The cameras' part of `/metrics`: each camera's counters, whether it is healthy, its state
    /// and the age of its last frame, labelled `camera="NAME"`.
    pub fn families(cameras: &[(&str, &CameraStats)], stale_after: Duration) -> Vec<Family> {
        let Some((_, first)) = cameras.first() else {
            return Vec::new();
        };
        let mut families: Vec<Family> = first
            .counters()
            .iter()
            .enumerate()
            .map(|(i, (name, help, _))| {
                cameras.iter().fold(
                    Family::counter(&format!("camera_{name}"), help),
                    |family, (camera, stats)| {
                        family.sample(&[("camera", camera)], stats.counters()[i].2 as f64)
                    },
                )
            })
            .collect();
        let mut up = Family::gauge(
            "camera_up",
            "1 while the camera delivers frames (as /health's ok).",
        );
        let mut state = Family::gauge(
            "camera_state",
            "The camera loop's state: starting, running, retrying, ended.",
        );
        let mut age = Family::gauge(
            "camera_last_frame_age_seconds",
            "Since the last frame captured.",
        );
        for (camera, stats) in cameras {
            up = up.sample(
                &[("camera", camera)],
                f64::from(u8::from(stats.healthy(stale_after))),
            );
            // The state's words after a colon are the reason (free text): not a label value.
            let now = stats.state();
            let now = now.split(':').next().unwrap_or_default();
            state = state.sample(&[("camera", camera), ("state", now)], 1.0);
            let last = stats.last_frame_ms.load(Ordering::Relaxed);
            if last != 0 {
                age = age.sample(
                    &[("camera", camera)],
                    now_ms().saturating_sub(last) as f64 / 1000.0,
                );
            }
        }
        families.extend([up, state, age]);
        families
    }
}

/// A running camera: its capture and processing threads, stopped by [`Camera::stop`].
pub struct Camera {
    stop: Arc<AtomicBool>,
    slot: Arc<LatestSlot<(RawFrame, Instant)>>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<CameraStats>,
    liveness: Liveness,
}

/// The first wait before a failed source is opened again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two tries of a failed source.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Camera {
    /// Starts camera `name`'s capture and processing threads.
    pub fn start(
        name: &str,
        open: OpenSource,
        pipeline: Pipeline,
        stats: Arc<CameraStats>,
        on_frame: OnFrame,
    ) -> std::io::Result<Camera> {
        let stop = Arc::new(AtomicBool::new(false));
        let slot = Arc::new(LatestSlot::default());
        let liveness = Liveness::default();
        let capture = {
            let (stop, slot, stats) = (stop.clone(), slot.clone(), stats.clone());
            let heartbeat = liveness.watch(format!("camera-capture ({name})"));
            let name = name.to_string();
            std::thread::Builder::new()
                .name("camera-capture".into())
                .spawn(move || capture(&name, open, &slot, &stats, &stop, heartbeat))?
        };
        let process = {
            let (stop, slot, stats) = (stop.clone(), slot.clone(), stats.clone());
            let heartbeat = liveness.watch(format!("camera-process ({name})"));
            std::thread::Builder::new()
                .name("camera-process".into())
                .spawn(move || process(pipeline, &slot, &stats, &stop, on_frame, heartbeat))?
        };
        Ok(Camera {
            stop,
            slot,
            threads: vec![capture, process],
            stats,
            liveness,
        })
    }

    /// The counters `/health` and `/metrics` read.
    pub fn stats(&self) -> &Arc<CameraStats> {
        &self.stats
    }

    /// The capture and processing threads' heartbeats (a replay that ended counts as fine).
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Whether both threads are done (a replay that ended, without looping).
    pub fn finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Stops both threads and waits for them.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.slot.close();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Sleeps `d` in small steps, returning early when asked to stop.
fn nap(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// Records that the source is gone. Said once per outage, not once per retry.
fn note_outage(name: &str, stats: &CameraStats, why: &str, complained: &mut bool) {
    if !*complained {
        log::warn!("camera {name}: {why}; retrying");
        *complained = true;
        stats
            .unavailable_since_ms
            .store(now_ms(), Ordering::Relaxed);
    }
    set(&stats.state, format!("retrying: {why}"));
}

fn count_skipped(stats: &CameraStats, skipped: sources::Skipped) {
    let add = |c: &AtomicU64, n: u64| {
        if n > 0 {
            c.fetch_add(n, Ordering::Relaxed);
        }
    };
    add(&stats.frames_oversize, skipped.oversize);
    add(&stats.frames_truncated, skipped.truncated);
    add(&stats.stream_garbage_bytes, skipped.garbage_bytes);
}

fn capture(
    name: &str,
    mut open: OpenSource,
    slot: &LatestSlot<(RawFrame, Instant)>,
    stats: &CameraStats,
    stop: &AtomicBool,
    heartbeat: Heartbeat,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut complained = false;
    // A source is back, and the back-off starts again from the shortest, only once it gives a
    // frame: a program that starts and dies at once is retried ever more slowly, not in a loop.
    let retry = |why: &str, complained: &mut bool, backoff: &mut Duration| {
        note_outage(name, stats, why, complained);
        nap(*backoff, stop);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    };
    'reopen: while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        let mut source = match open() {
            Ok(source) => source,
            Err(SourceError::Ended) => {
                set(&stats.state, "ended".into());
                break;
            }
            Err(SourceError::NoFrameYet) => continue,
            Err(SourceError::Unavailable(why)) => {
                retry(&why, &mut complained, &mut backoff);
                continue;
            }
        };
        set(&stats.source, source.describe());
        if !complained {
            set(&stats.state, "starting".into());
        }
        log::info!("camera {name}: {}", source.describe());
        let mut delivering = false;
        while !stop.load(Ordering::Relaxed) {
            heartbeat.beat();
            let got = source.next_frame();
            count_skipped(stats, source.skipped());
            match got {
                Ok(frame) => {
                    if !delivering {
                        delivering = true;
                        if complained {
                            log::info!("camera {name}: back");
                        }
                        // A stream knows what it is once it answered (an HTTP camera).
                        set(&stats.source, source.describe());
                        complained = false;
                        backoff = FIRST_BACKOFF;
                        stats.unavailable_since_ms.store(0, Ordering::Relaxed);
                        set(&stats.state, "running".into());
                    }
                    stats.captured.fetch_add(1, Ordering::Relaxed);
                    stats.last_frame_ms.store(now_ms(), Ordering::Relaxed);
                    slot.put((frame, Instant::now()));
                    stats.dropped.store(slot.dropped(), Ordering::Relaxed);
                }
                Err(SourceError::NoFrameYet) => {}
                Err(SourceError::Ended) => {
                    set(&stats.state, "ended".into());
                    break 'reopen;
                }
                Err(SourceError::Unavailable(why)) => {
                    stats.source_errors.fetch_add(1, Ordering::Relaxed);
                    // Whatever the source started ends before it is started again.
                    drop(source);
                    retry(&why, &mut complained, &mut backoff);
                    continue 'reopen;
                }
            }
        }
    }
    slot.close();
    heartbeat.finish();
}

fn process(
    mut pipeline: Pipeline,
    slot: &LatestSlot<(RawFrame, Instant)>,
    stats: &CameraStats,
    stop: &AtomicBool,
    mut on_frame: OnFrame,
    heartbeat: Heartbeat,
) {
    loop {
        heartbeat.beat();
        let Some((raw, captured_at)) = slot.take(Duration::from_millis(200)) else {
            if stop.load(Ordering::Relaxed) || stats.state() == "ended" {
                break;
            }
            continue;
        };
        let frame = match pipeline.process(&raw) {
            Ok(frame) => frame,
            Err(e) => {
                // A corrupt frame costs one frame, not the loop.
                stats.frame_errors.fetch_add(1, Ordering::Relaxed);
                log::debug!("camera: bad frame: {e}");
                continue;
            }
        };
        let count = |c: &AtomicU64, n: usize| c.fetch_add(n as u64, Ordering::Relaxed);
        count(
            &stats.faces_detected,
            frame.faces.len() + frame.skipped_small + frame.skipped_blurry,
        );
        count(&stats.faces_encoded, frame.encoded);
        count(
            &stats.faces_tracked,
            frame.faces.iter().filter(|s| s.tracked()).count(),
        );
        count(&stats.faces_skipped_small, frame.skipped_small);
        count(&stats.faces_skipped_blurry, frame.skipped_blurry);
        count(
            &stats.faces_ambiguous,
            frame
                .faces
                .iter()
                .filter(|s| !s.tracked() && s.recognition.ambiguous.is_some())
                .count(),
        );
        count(&stats.faces_held_back, frame.held_back());
        for d in &frame.decided {
            let counter = match (&d.recognition.ambiguous, d.recognition.label.as_str()) {
                (Some(_), _) => &stats.confirmed_ambiguous,
                (None, UNKNOWN) => &stats.confirmed_unknown,
                (None, _) => &stats.confirmed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        // The per-face stages only when a face was encoded (a frame of tracked faces has none).
        frame.times.record(metrics::Path::Camera, frame.encoded > 0);
        stats.processed.fetch_add(1, Ordering::Relaxed);
        on_frame(FrameResult {
            image: frame.image,
            faces: frame.faces,
            times: frame.times,
            latency: captured_at.elapsed(),
            decided: frame.decided,
        });
    }
    heartbeat.finish();
}
