//! The event command (`EVENT_COMMAND`): a program the box runs for every event, to sound a
//! buzzer, light a lamp or open a door. A live sink ("command") in front of a thread of its own
//! (`event-command`).
//!
//! Contract:
//! - Every resolved event that is not a repeat within the cooldown (recognized; unknown and
//!   ambiguous ones when they are events) is queued, once, as it is resolved. The queue holds
//!   [`CommandConfig::queue`] events; past it an event is dropped (counted, logged at most
//!   [`LOG_BURST`] lines per [`LOG_WINDOW`]). [`Sink::deliver`] never waits: the dispatcher and
//!   the other sinks are never held up by the program.
//! - Live only: nothing is journaled, an event is never run again, after a failure or a restart
//!   (a door must not open for yesterday's events); what is queued at shutdown is dropped.
//! - The thread runs the program directly (no shell), one event at a time, in order: standard
//!   input is the event's webhook body (JSON, one line, then end of file), standard output is
//!   discarded, and the environment is the one every program gets
//!   ([`crate::subprocess::passes_to_program`]: never the service's keys) plus `FACE_EVENT_ID`,
//!   `FACE_EVENT_KIND` (the body's `event`), `FACE_STUDENT_ID` and `FACE_PUNCH` (the body's
//!   `punch`, empty when it has none).
//! - The program leads a process group of its own. When it ends, or at the timeout
//!   ([`CommandConfig::timeout`]), the whole group is killed (SIGKILL: whatever it left running
//!   in the background too) and the program reaped: nothing it started outlives its run.
//! - Each run ends `ok` (exit status 0), `failed` (another status, a signal, or it could not
//!   start) or `timed_out`; a run that is not `ok`, and one whose standard error said something,
//!   is logged with its exit status and the first [`MAX_STDERR`] bytes of its standard error
//!   (control characters made spaces), rate-limited like the drops. [`CommandStats`] counts them
//!   for `/health` (`event_command`) and `/metrics`.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::sink::{Outgoing, Sink};
use super::{Report, Status};
use crate::locks::lock;
use crate::metrics::Family;
use crate::subprocess::{kill_group, peek_exit, poll_readable, program_env};

/// The sink's name (in `/health`'s `outbox.sinks` and the metrics' `sink` label).
pub const COMMAND: &str = "command";
/// What is kept (and logged) of a run's standard error.
pub const MAX_STDERR: usize = 2048;
/// At most this many lines are logged per [`LOG_WINDOW`] (the rest counted in the next one).
pub const LOG_BURST: u32 = 20;
/// The window of [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(60);
/// How long the thread waits on the program's standard error before it looks at the clock and
/// the stop flag again.
const POLL_MS: u64 = 50;
/// How long standard error is still read once the program has ended (something it started in
/// the background may hold the pipe open: it is not waited for).
const AFTER_EXIT: Duration = Duration::from_millis(200);

/// What `EVENT_COMMAND` and its settings say.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// The program (an absolute path, checked at start).
    pub program: PathBuf,
    /// The longest one run may take before its process group is killed.
    pub timeout: Duration,
    /// Most events waiting for their run (the one running is not counted).
    pub queue: usize,
}

/// The event command's counters, for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct CommandStats {
    runs: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    dropped: AtomicU64,
    /// Events waiting for their run now.
    queued: AtomicU64,
    /// The last run that was not `ok`: how it ended.
    last_error: Mutex<Option<String>>,
}

impl CommandStats {
    fn count(&self, outcome: &Outcome) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        let counter = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Failed(_) => &self.failed,
            Outcome::TimedOut => &self.timed_out,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// `/health`'s `event_command`.
    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "runs": n(&self.runs),
            "ok": n(&self.ok),
            "failed": n(&self.failed),
            "timed_out": n(&self.timed_out),
            "dropped": n(&self.dropped),
            "queued": n(&self.queued),
            "last_error": *lock(&self.last_error),
        })
    }

    /// The event command's part of `/metrics`, from the counters `/health` shows.
    pub fn families(&self) -> Vec<Family> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut runs = Family::counter(
            "event_command_runs",
            "Runs of EVENT_COMMAND, by outcome: ok (exit status 0), failed (another status, a \
             signal, or it could not start), timed_out (killed at EVENT_COMMAND_TIMEOUT_SECONDS).",
        );
        for (outcome, counter) in [
            ("ok", &self.ok),
            ("failed", &self.failed),
            ("timed_out", &self.timed_out),
        ] {
            runs = runs.sample(&[("outcome", outcome)], n(counter));
        }
        vec![
            runs,
            Family::counter(
                "event_command_dropped",
                "Events not run: EVENT_COMMAND_QUEUE was full (or the service stopped).",
            )
            .value(n(&self.dropped)),
            Family::gauge(
                "event_command_queued",
                "Events waiting for their run of EVENT_COMMAND.",
            )
            .value(n(&self.queued)),
        ]
    }
}

/// How one run ended.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Ok,
    /// How it failed (its exit status, the signal, or why it did not start).
    Failed(String),
    TimedOut,
}

/// One event's run: its standard input and its own variables.
struct Job {
    event_id: String,
    stdin: String,
    env: [(&'static str, String); 4],
}

impl Job {
    /// The job of an event's webhook body (`FACE_*` from its fields; empty when absent).
    fn of(event_id: &str, webhook: &str) -> Job {
        let body: Value = serde_json::from_str(webhook).unwrap_or(Value::Null);
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .replace('\0', "")
        };
        Job {
            event_id: event_id.to_string(),
            stdin: format!("{webhook}\n"),
            env: [
                ("FACE_EVENT_ID", event_id.replace('\0', "")),
                ("FACE_EVENT_KIND", field("event")),
                ("FACE_STUDENT_ID", field("student_id")),
                ("FACE_PUNCH", field("punch")),
            ],
        }
    }
}

/// A log that says at most [`LOG_BURST`] lines per [`LOG_WINDOW`], and how many it held back.
struct Burst {
    window_start: Option<Instant>,
    in_window: u32,
    held_back: u64,
}

impl Burst {
    fn new() -> Burst {
        Burst {
            window_start: None,
            in_window: 0,
            held_back: 0,
        }
    }

    /// Logs `line` at `level` when the budget allows it; whether it did.
    fn log(&mut self, level: log::Level, line: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LOG_WINDOW)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window >= LOG_BURST {
            self.held_back += 1;
            return false;
        }
        self.in_window += 1;
        let held = std::mem::take(&mut self.held_back);
        if held > 0 {
            log::log!(level, "event command: {} ({held} more not logged)", line());
        } else {
            log::log!(level, "event command: {}", line());
        }
        true
    }
}

/// The live sink that queues each event for the `event-command` thread (see the module doc).
pub struct CommandSink {
    jobs: Option<SyncSender<Job>>,
    stats: Arc<CommandStats>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    queue: usize,
    drops: Burst,
}

impl CommandSink {
    /// Starts the `event-command` thread for `config`.
    pub fn start(config: CommandConfig) -> std::io::Result<CommandSink> {
        let stats = Arc::new(CommandStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (jobs, rx) = mpsc::sync_channel(config.queue);
        let queue = config.queue;
        let worker = Worker {
            config,
            stats: stats.clone(),
            stop: stop.clone(),
            log: Burst::new(),
        };
        let thread = std::thread::Builder::new()
            .name("event-command".into())
            .spawn(move || worker.run(rx))?;
        Ok(CommandSink {
            jobs: Some(jobs),
            stats,
            stop,
            thread: Some(thread),
            queue,
            drops: Burst::new(),
        })
    }

    /// Its counters (`/health`, `/metrics`).
    pub fn stats(&self) -> Arc<CommandStats> {
        self.stats.clone()
    }
}

impl Sink for CommandSink {
    fn name(&self) -> &'static str {
        COMMAND
    }

    fn durable(&self) -> bool {
        false
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        if event.repeat {
            return Report::status(Status::Skipped);
        }
        let job = Job::of(event.event_id, event.webhook.unwrap_or(event.payload));
        let Some(jobs) = &self.jobs else {
            return failed("the event command has stopped");
        };
        // Counted before it is handed over: the thread may take it at once.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match jobs.try_send(job) {
            Ok(()) => Report::status(Status::Sent),
            Err(e) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                let why = match e {
                    TrySendError::Full(_) => format!(
                        "the queue is full ({} events, EVENT_COMMAND_QUEUE): event dropped",
                        self.queue
                    ),
                    TrySendError::Disconnected(_) => "the event command has stopped".into(),
                };
                let id = event.event_id;
                self.drops.log(log::Level::Warn, || format!("{id}: {why}"));
                failed(&why)
            }
        }
    }

    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}

fn failed(why: &str) -> Report {
    let mut report = Report::status(Status::Failed);
    report.message = Some(why.to_string());
    report
}

/// At shutdown: what is queued is dropped, a run in progress is killed, the thread joined.
impl Drop for CommandSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `event-command` thread.
struct Worker {
    config: CommandConfig,
    stats: Arc<CommandStats>,
    stop: Arc<AtomicBool>,
    log: Burst,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        let mut left_at_stop = 0u64;
        while let Ok(job) = jobs.recv() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            if self.stop.load(Ordering::SeqCst) {
                left_at_stop += 1;
                continue;
            }
            let (outcome, stderr) = self.run_one(&job);
            self.stats.count(&outcome);
            self.report(&job, &outcome, &stderr);
        }
        if left_at_stop > 0 {
            self.stats
                .dropped
                .fetch_add(left_at_stop, Ordering::Relaxed);
            log::info!("event command: {left_at_stop} queued events dropped at shutdown");
        }
    }

    /// Logs how a run ended (not `ok`, or with something on standard error) and keeps the
    /// last failure for `/health`.
    fn report(&mut self, job: &Job, outcome: &Outcome, stderr: &str) {
        let how = match outcome {
            Outcome::Ok => "exited with status 0".to_string(),
            Outcome::Failed(how) => how.clone(),
            Outcome::TimedOut => format!(
                "killed after {} s (EVENT_COMMAND_TIMEOUT_SECONDS)",
                self.config.timeout.as_secs_f64()
            ),
        };
        let said = match stderr.is_empty() {
            true => String::new(),
            false => format!("; standard error: {stderr}"),
        };
        if *outcome != Outcome::Ok {
            *lock(&self.stats.last_error) = Some(format!("{}: {how}{said}", job.event_id));
        }
        let level = match outcome {
            Outcome::Ok if stderr.is_empty() => return,
            Outcome::Ok => log::Level::Info,
            _ => log::Level::Warn,
        };
        let program = self.config.program.display();
        self.log.log(level, || {
            format!("{program} for {}: {how}{said}", job.event_id)
        });
    }

    /// Runs the program for one event: how it ended, and what it said on standard error
    /// (at most [`MAX_STDERR`] bytes, control characters made spaces).
    fn run_one(&self, job: &Job) -> (Outcome, String) {
        let started = Instant::now();
        let spawned = Command::new(&self.config.program)
            .env_clear()
            .envs(program_env())
            .envs(job.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                return (
                    Outcome::Failed(format!("could not start: {e}")),
                    String::new(),
                )
            }
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A few hundred bytes, within any pipe's buffer: the write does not wait on the
            // program. One that exits without reading it (EPIPE) is not an error.
            let _ = stdin.write_all(job.stdin.as_bytes());
        }
        let deadline = started + self.config.timeout;
        let mut stderr = Vec::new();
        let ended = self.watch(&mut child, deadline, &mut stderr);
        // The program (if it still runs) and whatever it left behind; then it is reaped.
        kill_group(child.id());
        let status = child.wait();
        let said = clean(&stderr);
        let outcome = match (ended, status) {
            (Watch::Stopped, _) => Outcome::Failed("killed: the service is stopping".into()),
            (Watch::TimedOut, _) => Outcome::TimedOut,
            (Watch::Exited, Ok(status)) if status.success() => Outcome::Ok,
            (Watch::Exited, Ok(status)) => Outcome::Failed(describe(status)),
            (Watch::Exited, Err(e)) => Outcome::Failed(format!("could not be reaped: {e}")),
        };
        (outcome, said)
    }

    /// Reads the program's standard error (the first [`MAX_STDERR`] bytes kept) until it has
    /// exited, the deadline passed, or the service stops.
    fn watch(&self, child: &mut Child, deadline: Instant, kept: &mut Vec<u8>) -> Watch {
        let mut err = child.stderr.take();
        let mut exited_at: Option<Instant> = None;
        let mut buf = [0u8; 4096];
        loop {
            let now = Instant::now();
            if exited_at.is_none() && peek_exit(child.id()).is_some() {
                exited_at = Some(now);
            }
            match exited_at {
                Some(at) if err.is_none() || now >= at + AFTER_EXIT => return Watch::Exited,
                None if now >= deadline => return Watch::TimedOut,
                _ => {}
            }
            if self.stop.load(Ordering::SeqCst) {
                return Watch::Stopped;
            }
            let slice = Duration::from_millis(POLL_MS).min(deadline.saturating_duration_since(now));
            let Some(pipe) = &mut err else {
                std::thread::sleep(slice.max(Duration::from_millis(1)));
                continue;
            };
            let ms = libc::c_int::try_from(slice.as_millis()).unwrap_or(libc::c_int::MAX);
            if poll_readable(pipe.as_raw_fd(), ms.max(1)) <= 0 {
                continue;
            }
            match pipe.read(&mut buf) {
                Ok(0) => err = None,
                Ok(n) => {
                    let room = MAX_STDERR.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => err = None,
            }
        }
    }
}

/// How [`Worker::watch`] ended.
enum Watch {
    Exited,
    TimedOut,
    Stopped,
}

/// "exited with status N" or "was killed by signal N".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Standard error as it is logged: lossy UTF-8, control characters (newlines, terminal escapes)
/// made spaces, trimmed.
fn clean(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_come_from_the_body_and_are_empty_when_it_has_none() {
        let job = Job::of(
            "e-1",
            r#"{"event":"attendance.recognized","student_id":"alip","punch":"in"}"#,
        );
        assert_eq!(
            job.env[1],
            ("FACE_EVENT_KIND", "attendance.recognized".into())
        );
        assert_eq!(job.env[2], ("FACE_STUDENT_ID", "alip".into()));
        assert_eq!(job.env[3], ("FACE_PUNCH", "in".into()));
        let job = Job::of(
            "e-2",
            r#"{"event":"attendance.ambiguous","student_id":"Unknown"}"#,
        );
        assert_eq!(job.env[3], ("FACE_PUNCH", String::new()));
        assert!(job.stdin.ends_with("}\n"));
        let job = Job::of("e-\u{0}3", "not json");
        assert_eq!(job.env[0], ("FACE_EVENT_ID", "e-3".into()));
        assert_eq!(job.env[2], ("FACE_STUDENT_ID", String::new()));
    }

    #[test]
    fn standard_error_is_logged_without_control_characters() {
        assert_eq!(
            clean(b"relay \x1b[31mstuck\x1b[0m\nline 2\n"),
            "relay  [31mstuck [0m line 2"
        );
        assert_eq!(clean(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn the_burst_holds_back_past_its_budget() {
        let mut burst = Burst::new();
        let said = (0..LOG_BURST + 5)
            .filter(|_| burst.log(log::Level::Debug, String::new))
            .count();
        assert_eq!(said, LOG_BURST as usize);
        assert_eq!(burst.held_back, 5);
    }
}
