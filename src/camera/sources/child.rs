//! A [`FrameSource`] over a child program's standard output (MJPEG): `exec:`, `libcamera`
//! (`rpicam-vid`) and RTSP (FFmpeg), whose argument lists [`super::programs`] makes.
//!
//! Contract:
//! - the program runs in a process group of its own (with whatever it starts), standard input
//!   closed, with only the environment a program needs to run
//!   ([`crate::subprocess::passes_to_program`]: never the service's keys and passwords);
//!   dropping the source kills the whole group (SIGKILL), reaps the program and joins the
//!   two reader threads, which close the pipes: no process, zombie, thread or descriptor outlives
//!   the source (the threads poll their pipe with a short timeout, so a grandchild that keeps a
//!   pipe open cannot hold them);
//! - standard output is read by a thread through an [`MjpegScanner`] into a newest-wins
//!   hand-over (a frame not yet taken is replaced by a newer one); what the scanner skipped is
//!   reported by [`FrameSource::skipped`]; memory stays within the frame cap and a read buffer;
//! - standard error is logged at warn, line by line (lines cut at [`MAX_LINE`] bytes), each
//!   [`scrub`]bed of the source's secrets and of control characters, at most [`LOG_BURST`] lines
//!   per [`LOG_WINDOW`] (the rest counted in one line);
//! - the program ending (or closing its output) makes `next_frame` answer `Unavailable` naming
//!   the exit status and its last standard error line; no frame for the stale time since the
//!   last frame (from the start: the stale time plus [`STARTUP_GRACE`]) answers `Unavailable("... no frame for N s")`. Either way
//!   the capture thread drops the source and opens it again with back-off.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::mjpeg::MjpegScanner;
use super::programs::Program;
use super::spec::scrub;
use super::{FrameSource, Skipped, SourceError, SourceOptions, POLL};
use crate::camera::frame::RawFrame;
use crate::subprocess::{kill_group, peek_exit, poll_readable, program_env};

/// Standard error lines longer than this are cut.
pub const MAX_LINE: usize = 400;
/// At most this many standard error lines are logged per [`LOG_WINDOW`].
pub const LOG_BURST: u32 = 20;
/// The window of [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(10);
/// How long a reader thread waits on its pipe before looking at the stop flag.
const READ_POLL_MS: i32 = 100;
/// Bytes read from standard output at a time.
const READ_BUFFER: usize = 64 * 1024;
/// How long, once the output closed, the program is given to exit and finish its last words.
const EXIT_GRACE: Duration = Duration::from_millis(1000);

/// How much longer than the stale time a program may take to its first frame: FFmpeg probes an
/// RTSP stream for about 25 frames before it writes one (5 s for a 5 frames/s camera, 12 s at
/// 2 frames/s), and rpicam-vid sets the sensor up first.
pub const STARTUP_GRACE: Duration = Duration::from_secs(15);

/// What the reader threads hand over to `next_frame`.
#[derive(Default)]
struct Hand {
    frame: Option<Vec<u8>>,
    skipped: Skipped,
    /// Standard output ended (why, when it was an error).
    output_closed: Option<String>,
    stderr_closed: bool,
    last_stderr: Option<String>,
}

#[derive(Default)]
struct Shared {
    hand: Mutex<Hand>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Hand> {
        self.hand.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut Hand)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

/// Frames from a child program's standard output (see the module doc).
pub struct ChildSource {
    child: Child,
    pid: u32,
    what: String,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stale: Duration,
    last_frame: Instant,
    /// Whether a frame came yet: the first may take [`STARTUP_GRACE`] more than the stale time.
    delivered: bool,
    failed: Option<String>,
}

impl ChildSource {
    /// Starts `program`; `what` is how the source is shown (redacted), `secrets` what its
    /// standard error is scrubbed of.
    pub fn spawn(
        program: &Program,
        what: String,
        secrets: Vec<String>,
        options: &SourceOptions,
    ) -> Result<ChildSource, SourceError> {
        let mut command = Command::new(&program.program);
        command
            .env_clear()
            .envs(program_env())
            .args(&program.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command.spawn().map_err(|e| {
            SourceError::Unavailable(format!(
                "{what}: cannot start {}: {e}",
                program.program.to_string_lossy()
            ))
        })?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            kill_group(pid);
            let _ = child.wait();
            return Err(SourceError::Unavailable(format!("{what}: no pipes")));
        };
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut source = ChildSource {
            child,
            pid,
            what: what.clone(),
            shared: shared.clone(),
            stop: stop.clone(),
            threads: Vec::new(),
            stale: options.stale,
            last_frame: Instant::now(),
            delivered: false,
            failed: None,
        };
        let max_frame_bytes = options.max_frame_bytes;
        let (out_shared, out_stop) = (shared.clone(), stop.clone());
        let out = std::thread::Builder::new()
            .name(format!("cam-out-{pid}"))
            .spawn(move || read_frames(stdout, max_frame_bytes, &out_shared, &out_stop));
        // On a failed spawn the source's drop kills the program and joins what started.
        source
            .threads
            .push(out.map_err(|e| thread_error(&what, e))?);
        let err = std::thread::Builder::new()
            .name(format!("cam-err-{pid}"))
            .spawn(move || read_stderr(stderr, &what, &secrets, &shared, &stop));
        source
            .threads
            .push(err.map_err(|e| thread_error(&source.what, e))?);
        Ok(source)
    }

    /// The program's process id (its process group's too): for a benchmark's CPU accounting.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Why the program stopped giving frames, once its output closed: its exit status (waiting
    /// a little for it) and its last standard error line. The program is not reaped here, so
    /// its process group id stays its own until the drop has killed the group.
    fn ended(&mut self, closed: &str) -> String {
        let deadline = Instant::now() + EXIT_GRACE;
        let mut status = peek_exit(self.pid);
        while status.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            status = peek_exit(self.pid);
        }
        // Its last words: standard error closes once the program (and its group) is gone.
        let mut hand = self.shared.lock();
        while status.is_some() && !hand.stderr_closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            hand = self
                .shared
                .changed
                .wait_timeout(hand, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let how = status.unwrap_or_else(|| closed.to_string());
        match &hand.last_stderr {
            Some(line) => format!("{}: {how}: {line}", self.what),
            None => format!("{}: {how}", self.what),
        }
    }
}

fn thread_error(what: &str, e: io::Error) -> SourceError {
    SourceError::Unavailable(format!("{what}: cannot start a reader thread: {e}"))
}

/// Waits until `fd` is readable (or hung up, or failed: the read says which); false once
/// `stop` is set.
fn wait_readable(fd: RawFd, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let ready = poll_readable(fd, READ_POLL_MS);
        if ready > 0
            || (ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted)
        {
            return true;
        }
    }
}

/// The standard output thread: MJPEG through the scanner into the hand-over.
fn read_frames(
    mut out: impl Read + AsRawFd,
    max_frame_bytes: usize,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let mut scanner = MjpegScanner::new(max_frame_bytes);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut frames = Vec::new();
    let fd = out.as_raw_fd();
    while wait_readable(fd, stop) {
        let closed = match out.read(&mut buf) {
            Ok(0) => Some("closed its output".to_string()),
            Ok(n) => {
                scanner.push(&buf[..n], &mut frames);
                None
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Some(format!("reading its output: {e}")),
        };
        let skipped = scanner.take_skipped();
        let newest = frames.pop();
        frames.clear();
        if newest.is_some() || skipped != Skipped::default() || closed.is_some() {
            let done = closed.is_some();
            shared.update(|hand| {
                if newest.is_some() {
                    hand.frame = newest;
                }
                hand.skipped.add(skipped);
                if closed.is_some() {
                    hand.output_closed = closed;
                }
            });
            if done {
                return;
            }
        }
    }
}

/// Standard error lines, rate-limited, to the log.
struct StderrLog<'a> {
    what: &'a str,
    secrets: &'a [String],
    window_start: Instant,
    in_window: u32,
    held_back: u64,
}

impl StderrLog<'_> {
    fn line(&mut self, raw: &[u8], shared: &Shared) {
        let text: String = String::from_utf8_lossy(raw)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let clean = scrub(text, self.secrets);
        if self.window_start.elapsed() >= LOG_WINDOW {
            self.flush();
            self.window_start = Instant::now();
            self.in_window = 0;
        }
        if self.in_window < LOG_BURST {
            self.in_window += 1;
            log::warn!("camera {}: {clean}", self.what);
        } else {
            self.held_back += 1;
        }
        shared.update(|hand| hand.last_stderr = Some(clean));
    }

    fn flush(&mut self) {
        if self.held_back > 0 {
            log::warn!(
                "camera {}: {} more lines of its standard error not logged",
                self.what,
                self.held_back
            );
            self.held_back = 0;
        }
    }
}

/// The standard error thread: lines (cut at [`MAX_LINE`]; `\r` ends one too, as progress
/// lines use it) to the log.
fn read_stderr(
    mut err: impl Read + AsRawFd,
    what: &str,
    secrets: &[String],
    shared: &Shared,
    stop: &AtomicBool,
) {
    let mut log = StderrLog {
        what,
        secrets,
        window_start: Instant::now(),
        in_window: 0,
        held_back: 0,
    };
    let mut buf = [0u8; 4096];
    let mut line = Vec::with_capacity(MAX_LINE);
    let fd = err.as_raw_fd();
    while wait_readable(fd, stop) {
        let n = match err.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                log.line(&line, shared);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    log.line(&line, shared);
    log.flush();
    shared.update(|hand| hand.stderr_closed = true);
}

impl FrameSource for ChildSource {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        if let Some(why) = &self.failed {
            return Err(SourceError::Unavailable(why.clone()));
        }
        let deadline = Instant::now() + POLL;
        let shared = self.shared.clone();
        let mut hand = shared.lock();
        loop {
            if let Some(frame) = hand.frame.take() {
                self.last_frame = Instant::now();
                self.delivered = true;
                return Ok(RawFrame::Mjpeg(frame));
            }
            if let Some(closed) = hand.output_closed.clone() {
                drop(hand);
                let why = self.ended(&closed);
                self.failed = Some(why.clone());
                return Err(SourceError::Unavailable(why));
            }
            let now = Instant::now();
            let allowed = if self.delivered {
                self.stale
            } else {
                self.stale + STARTUP_GRACE
            };
            let stale_at = self.last_frame + allowed;
            if now >= stale_at {
                let why = format!(
                    "{}: no frame for {} s",
                    self.what,
                    allowed.as_secs_f64().round()
                );
                self.failed = Some(why.clone());
                return Err(SourceError::Unavailable(why));
            }
            if now >= deadline {
                return Err(SourceError::NoFrameYet);
            }
            let wait = deadline.min(stale_at) - now;
            hand = shared
                .changed
                .wait_timeout(hand, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn describe(&self) -> String {
        self.what.clone()
    }

    fn skipped(&mut self) -> Skipped {
        std::mem::take(&mut self.shared.lock().skipped)
    }

    fn child_pid(&self) -> Option<u32> {
        Some(self.pid)
    }
}

impl Drop for ChildSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        kill_group(self.pid);
        let _ = self.child.wait();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
