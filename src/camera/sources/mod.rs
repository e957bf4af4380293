//! Where frames come from. The capture thread sees only [`FrameSource`]; [`open`] makes one
//! from a camera's [`SourceSpec`] (what `CAMERA_DEVICE` says):
//!
//! | spec | source | file |
//! |---|---|---|
//! | `/dev/video0`, `/dev/v4l/by-id/...` | the V4L2 driver (MJPEG, else YUYV) | [`v4l2`] |
//! | `frames:PATH` | replayed JPEGs, or an MJPEG file or pipe read as it comes | [`replay`] |
//! | `exec:COMMAND` | a program's MJPEG output (`sh -c COMMAND`) | [`child`], [`programs`] |
//! | `libcamera[:N]` | `rpicam-vid` (or `libcamera-vid`) writing MJPEG | [`child`], [`programs`] |
//! | `rtsp://`, `rtsps://` | an IP camera decoded by FFmpeg into MJPEG | [`child`], [`programs`] |
//! | `http://...`, `https://...` | an MJPEG stream or a polled JPEG snapshot | [`http`] |
//!
//! Stream sources cut their bytes into frames with [`mjpeg::MjpegScanner`].
//!
//! Contract of every source: `next_frame` waits at most about a second ([`POLL`]) and then
//! answers [`SourceError::NoFrameYet`], so the capture thread keeps beating (the systemd
//! watchdog) and can stop (V4L2 alone waits up to its 5 s time-out and then answers
//! `Unavailable`, so a wedged device is opened again); a source that failed, or gave no frame for the stale time, answers
//! [`SourceError::Unavailable`] and is dropped and opened again with back-off by the capture
//! thread (dropping a source ends whatever it started: threads, child programs, connections);
//! frames above the size cap, truncated frames and garbage between frames are skipped, and
//! reported by [`FrameSource::skipped`].

use std::time::Duration;

use thiserror::Error;

use super::frame::RawFrame;

pub mod child;
pub mod http;
pub mod mjpeg;
pub mod programs;
pub mod replay;
pub mod spec;
pub(crate) mod v4l2;

pub use replay::ReplaySource;
pub use spec::SourceSpec;

/// How long `next_frame` waits before it answers [`SourceError::NoFrameYet`].
pub const POLL: Duration = Duration::from_secs(1);

/// Why a frame source gave no frame.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    /// The stream is over (end of a replay without looping).
    #[error("the frame source ended")]
    Ended,
    /// No frame within [`POLL`]; the source is still fine (ask again).
    #[error("no frame yet")]
    NoFrameYet,
    /// The device (or folder, program, server) is not there, or failed: worth retrying later.
    /// The text is safe to show (no credentials).
    #[error("frame source unavailable: {0}")]
    Unavailable(String),
}

/// What a stream source skipped since it was last asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Frames larger than the size cap.
    pub oversize: u64,
    /// Frames cut short (a new frame started before the end of the last) or broken (no scan
    /// data, or a byte where a JPEG marker must be).
    pub truncated: u64,
    /// Bytes between frames that belonged to no frame.
    pub garbage_bytes: u64,
}

impl Skipped {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: Skipped) {
        self.oversize += other.oversize;
        self.truncated += other.truncated;
        self.garbage_bytes += other.garbage_bytes;
    }
}

/// Where frames come from: a V4L2 camera, a program, a server, or files replayed as one.
pub trait FrameSource: Send {
    /// The next frame, waiting for it as a camera would (at most about [`POLL`]).
    fn next_frame(&mut self) -> Result<RawFrame, SourceError>;
    /// A short description for logs and `/health` (device, format, size), credentials redacted.
    fn describe(&self) -> String;
    /// What was skipped since the last call (stream sources; others skip nothing).
    fn skipped(&mut self) -> Skipped {
        Skipped::default()
    }
    /// The process id of the program this source runs (`exec:`, libcamera, RTSP), for a
    /// benchmark's CPU accounting; `None` for sources that run none.
    fn child_pid(&self) -> Option<u32> {
        None
    }
}

/// How a camera's source is asked for frames (the camera settings, per box).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceOptions {
    /// Frame width asked of the camera (V4L2, libcamera); streams wider are scaled down to it
    /// by their decoder (RTSP).
    pub width: u32,
    /// Frame height asked of the camera.
    pub height: u32,
    /// Frames a second asked of the camera, and the snapshot polling rate.
    pub fps: u32,
    /// Replay rate of `frames:`.
    pub replay_fps: f64,
    /// Whether `frames:` loops.
    pub replay_loop: bool,
    /// A source that gives no frame this long is restarted (`CAMERA_STALE_SECONDS`).
    pub stale: Duration,
    /// Frames larger than this many bytes are skipped (`CAMERA_MAX_FRAME_KB`).
    pub max_frame_bytes: usize,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            width: 640,
            height: 480,
            fps: 15,
            replay_fps: 10.0,
            replay_loop: false,
            stale: Duration::from_secs(10),
            max_frame_bytes: 8 << 20,
        }
    }
}

/// What an HTTP(S) source sends and trusts: another box's `/stream.mjpg` needs its key, and
/// over HTTPS its certificate's fingerprint.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct HttpAccess {
    /// Sent as `X-API-Key` (`CAMERA_HTTP_KEY`).
    pub key: Option<String>,
    /// SHA-256 of the server's certificate (`CAMERA_TLS_FINGERPRINT`): exactly that one is
    /// accepted, whatever its names and issuer.
    pub tls_fingerprint: Option<[u8; 32]>,
}

impl std::fmt::Debug for HttpAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAccess")
            .field("key", &self.key.as_ref().map(|_| "***"))
            .field("tls_fingerprint", &self.tls_fingerprint.is_some())
            .finish()
    }
}

/// A [`child::ChildSource`] running `program` for `spec`.
fn child(
    program: &programs::Program,
    spec: &SourceSpec,
    options: &SourceOptions,
) -> Result<Box<dyn FrameSource>, SourceError> {
    Ok(Box::new(child::ChildSource::spawn(
        program,
        spec.redacted(),
        spec.secrets(),
        options,
    )?))
}

/// Opens the source `spec` names (the capture thread calls this again after a failure).
pub fn open(
    spec: &SourceSpec,
    access: &HttpAccess,
    options: &SourceOptions,
) -> Result<Box<dyn FrameSource>, SourceError> {
    let boxed = |s: Box<dyn FrameSource>| Ok(s);
    match spec {
        SourceSpec::V4l2(path) => boxed(Box::new(v4l2::V4l2Source::open(
            path,
            options.width,
            options.height,
            options.fps,
        )?)),
        SourceSpec::Frames(path) => boxed(Box::new(ReplaySource::open_capped(
            path,
            options.replay_fps,
            options.replay_loop,
            options.max_frame_bytes,
        )?)),
        SourceSpec::Exec(command) => child(&programs::exec(command), spec, options),
        SourceSpec::Libcamera(index) => {
            child(&programs::libcamera_here(*index, options)?, spec, options)
        }
        SourceSpec::Rtsp(url) => child(&programs::rtsp_here(url, options)?, spec, options),
        SourceSpec::Http(_) => boxed(Box::new(http::HttpSource::open(spec, access, options)?)),
    }
}
