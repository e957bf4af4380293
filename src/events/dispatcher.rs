//! The dispatcher thread: per-person cooldown, then the durable outbox, then the webhook, in
//! order, retried with capped exponential back-off until the main API answers 2xx. Callers
//! (`/recognize/realtime`, the camera loop) never wait on the main API longer than a short,
//! fixed time: past it, or at once while the main API is failing, the answer is `queued`.
//! Every event it resolves, repeats within the cooldown aside, goes to the local event log
//! (log.rs) before its caller hears of it, and so do later deliveries of `queued` ones.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::log::{EventLog, EventLogReader, EventRecord, Kind, Line, StatusRecord};
use super::outbox::{Outbox, Pending};
use super::{Event, Report, Status, WebhookSender};
use crate::metrics::Family;
use crate::sync::lock;

/// Where resolved events go next (the WebSocket hub); a plain function so tests and the
/// camera loop can plug in.
pub type Broadcast = Box<dyn Fn(String) + Send>;

/// The webhook side of the dispatcher: where events go and the journal that keeps them.
pub struct Delivery {
    pub sender: WebhookSender,
    pub outbox: Outbox,
    /// Longest pause between two attempts while the main API fails.
    pub retry_max: Duration,
}

/// The outbox as `/health` shows it.
#[derive(Default)]
pub struct OutboxStats {
    pending: AtomicU64,
    /// Unix ms the oldest pending event was accepted (0: none pending).
    oldest_ms: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failed_attempts: AtomicU64,
    journal_errors: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Events resolved, by kind ([`Kind`]) and outcome ([`Status`]).
    resolved: [[AtomicU64; STATUSES.len()]; KINDS.len()],
}

const KINDS: [Kind; 3] = [Kind::Attendance, Kind::Unknown, Kind::Ambiguous];
const STATUSES: [Status; 5] = [
    Status::Sent,
    Status::Queued,
    Status::Failed,
    Status::Skipped,
    Status::Disabled,
];

impl OutboxStats {
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn to_json(&self) -> Value {
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let now = super::unix_now_ms();
        json!({
            "pending": self.pending(),
            "oldest_pending_age_seconds": (oldest != 0).then(|| now.saturating_sub(oldest) as f64 / 1000.0),
            "delivered": self.delivered.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "failed_attempts": self.failed_attempts.load(Ordering::Relaxed),
            "journal_errors": self.journal_errors.load(Ordering::Relaxed),
            "last_error": *lock(&self.last_error),
        })
    }

    /// The outbox's part of `/metrics`, from the counters `/health` shows.
    pub fn families(&self) -> Vec<Family> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let age = match oldest {
            0 => 0.0,
            t => super::unix_now_ms().saturating_sub(t) as f64 / 1000.0,
        };
        let failing = lock(&self.last_error).is_some();
        vec![
            Family::gauge("outbox_pending", "Events in the outbox, not delivered yet.")
                .value(n(&self.pending)),
            Family::gauge(
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest undelivered event (0: none).",
            )
            .value(age),
            Family::counter("webhook_deliveries", "Events the main API took (2xx).")
                .value(n(&self.delivered)),
            Family::counter(
                "webhook_failed_attempts",
                "Delivery attempts that failed (no answer, or not 2xx).",
            )
            .value(n(&self.failed_attempts)),
            Family::gauge(
                "webhook_failing",
                "1 while the last delivery attempt failed.",
            )
            .value(f64::from(u8::from(failing))),
            Family::counter(
                "outbox_dropped",
                "Oldest events dropped to keep within OUTBOX_MAX_EVENTS.",
            )
            .value(n(&self.dropped)),
            Family::counter(
                "outbox_journal_errors",
                "Failed writes to the outbox journal.",
            )
            .value(n(&self.journal_errors)),
            self.resolved_family(),
        ]
    }

    fn count_resolved(&self, event: &Event, status: Status) {
        let kind = KINDS.iter().position(|k| *k == Kind::of(event));
        let outcome = STATUSES.iter().position(|s| *s == status);
        if let (Some(k), Some(o)) = (kind, outcome) {
            self.resolved[k][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn resolved_family(&self) -> Family {
        let mut family = Family::counter(
            "events",
            "Events resolved, by kind (attendance, unknown, ambiguous) and outcome: sent, \
             queued (kept for retries), failed, skipped (cooldown), disabled (no webhook).",
        );
        for (k, kind) in KINDS.iter().enumerate() {
            for (o, status) in STATUSES.iter().enumerate() {
                let outcome = status.as_str();
                let value = self.resolved[k][o].load(Ordering::Relaxed) as f64;
                family = family.sample(&[("kind", kind.as_str()), ("outcome", outcome)], value);
            }
        }
        family
    }

    fn update(&self, outbox: &Outbox) {
        self.pending.store(outbox.len() as u64, Ordering::Relaxed);
        self.oldest_ms.store(
            outbox.head().map(|p| p.accepted_ms).unwrap_or(0),
            Ordering::Relaxed,
        );
        self.dropped.store(outbox.dropped(), Ordering::Relaxed);
    }

    fn set_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }
}

enum Job {
    Deliver(Event, Sender<Report>),
    Stop,
}

/// Handle to the dispatcher thread.
pub struct Dispatcher {
    jobs: Sender<Job>,
    thread: Mutex<Option<JoinHandle<()>>>,
    webhook_enabled: bool,
    stats: Arc<OutboxStats>,
    event_log: Option<EventLogReader>,
    /// How long a caller waits for the reports of its events before answering `queued`.
    wait: Duration,
}

/// The longest a `/recognize/realtime` caller waits for the main API.
const MAX_WAIT: Duration = Duration::from_secs(2);
/// First pause after a failed attempt; doubled after each failure up to `retry_max`.
const FIRST_RETRY: Duration = Duration::from_millis(500);

impl Dispatcher {
    /// Starts the dispatcher thread. `cooldown`: at most one event per person per period.
    /// `event_log`: where resolved events are kept (none: nowhere).
    pub fn start(
        delivery: Option<Delivery>,
        cooldown: Duration,
        broadcast: Broadcast,
        event_log: Option<EventLog>,
    ) -> Dispatcher {
        let webhook_enabled = delivery.is_some();
        let wait = delivery
            .as_ref()
            .map(|d| d.sender.timeout().min(MAX_WAIT))
            .unwrap_or(MAX_WAIT)
            + Duration::from_millis(500);
        let stats = Arc::new(OutboxStats::default());
        if let Some(d) = &delivery {
            stats.update(&d.outbox);
        }
        let (jobs, rx) = mpsc::channel();
        let reader = event_log.as_ref().map(EventLog::reader);
        let worker = Worker {
            delivery,
            cooldown,
            broadcast,
            stats: stats.clone(),
            event_log,
            settled: Vec::new(),
            statuses: Vec::new(),
            last_accepted: HashMap::new(),
            waiting: VecDeque::new(),
            next_attempt: Instant::now(),
            backoff: FIRST_RETRY,
            failing: None,
        };
        let thread = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || worker.run(rx))
            .ok();
        if thread.is_none() {
            log::error!("could not start the event dispatcher thread");
        }
        Dispatcher {
            jobs,
            thread: Mutex::new(thread),
            webhook_enabled,
            stats,
            event_log: reader,
            wait,
        }
    }

    /// The event log's reading end, when events are kept.
    pub fn event_log(&self) -> Option<&EventLogReader> {
        self.event_log.as_ref()
    }

    pub fn webhook_enabled(&self) -> bool {
        self.webhook_enabled
    }

    pub fn stats(&self) -> &OutboxStats {
        &self.stats
    }

    /// Hands the events over and returns their reports, waiting a short, bounded time: an
    /// event not delivered by then reports `queued` and is still delivered.
    pub fn dispatch(&self, events: Vec<Event>) -> Vec<Report> {
        let pending: Vec<Option<mpsc::Receiver<Report>>> = events
            .into_iter()
            .map(|event| {
                let (tx, rx) = mpsc::channel();
                self.jobs.send(Job::Deliver(event, tx)).ok().map(|_| rx)
            })
            .collect();
        let deadline = Instant::now() + self.wait;
        pending
            .into_iter()
            .map(|rx| {
                let left = deadline.saturating_duration_since(Instant::now());
                rx.and_then(|rx| rx.recv_timeout(left).ok())
                    .unwrap_or_else(|| Report::status(Status::Queued))
            })
            .collect()
    }

    /// Hands the events over without waiting for their reports (the camera loop).
    pub fn submit(&self, events: Vec<Event>) {
        for event in events {
            let (tx, _) = mpsc::channel();
            let _ = self.jobs.send(Job::Deliver(event, tx));
        }
    }

    /// Takes what is handed over, tries to deliver what is pending (briefly: what is left stays
    /// in the outbox for the next start), then stops the thread.
    pub fn shutdown(&self) {
        let _ = self.jobs.send(Job::Stop);
        let thread = lock(&self.thread).take();
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

/// An accepted event whose caller has not had its report yet.
struct Waiting {
    event: Event,
    reply: Sender<Report>,
}

/// An event resolved, its report not yet sent on (see [`Worker::settle`]).
struct Settled {
    waiting: Waiting,
    report: Report,
    /// Whether it goes to the event log (a repeat within the cooldown does not).
    logged: bool,
}

/// Past this many people (and pairs) remembered, those out of their cooldown are forgotten.
const COOLDOWN_KEYS: usize = 10_000;

struct Worker {
    delivery: Option<Delivery>,
    cooldown: Duration,
    broadcast: Broadcast,
    stats: Arc<OutboxStats>,
    event_log: Option<EventLog>,
    /// Resolved since the last [`Worker::settle`].
    settled: Vec<Settled>,
    /// Later delivery statuses of logged events, for the next [`Worker::settle`].
    statuses: Vec<StatusRecord>,
    last_accepted: HashMap<String, Instant>,
    /// Accepted events in outbox order (a suffix of the outbox: those accepted in this run).
    waiting: VecDeque<Waiting>,
    next_attempt: Instant,
    backoff: Duration,
    /// The last failed attempt's report while the main API is failing.
    failing: Option<Report>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        let mut stopping = false;
        while !stopping {
            let due = self.has_pending().then_some(self.next_attempt);
            let timeout = due
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            let mut batch = Vec::new();
            match jobs.recv_timeout(timeout) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stopping = true,
            }
            // Everything already handed over goes into the journal with one fsync.
            while let Ok(job) = jobs.try_recv() {
                batch.push(job);
            }
            let mut events = Vec::new();
            for job in batch {
                match job {
                    Job::Deliver(event, reply) => events.push((event, reply)),
                    Job::Stop => stopping = true,
                }
            }
            self.accept(events);
            if self.has_pending() && Instant::now() >= self.next_attempt {
                self.attempt();
            }
        }
        self.drain();
    }

    fn has_pending(&self) -> bool {
        self.delivery.as_ref().is_some_and(|d| !d.outbox.is_empty())
    }

    /// The event's report is decided; it goes out at the next [`Worker::settle`].
    fn resolve(&mut self, waiting: Waiting, report: Report) {
        self.settled.push(Settled {
            waiting,
            report,
            logged: true,
        });
    }

    /// A repeat within the cooldown: answered, not logged.
    fn resolve_repeat(&mut self, waiting: Waiting, report: Report) {
        self.settled.push(Settled {
            waiting,
            report,
            logged: false,
        });
    }

    /// Writes what was resolved to the event log (one write, one fsync), then broadcasts it
    /// and answers the callers: a client that reads `/events` after its answer finds its
    /// events there.
    fn settle(&mut self) {
        let settled = std::mem::take(&mut self.settled);
        let statuses = std::mem::take(&mut self.statuses);
        if let Some(log) = &mut self.event_log {
            let now = super::unix_now_ms();
            let lines: Vec<Line> = settled
                .iter()
                .filter(|s| s.logged)
                .map(|s| Line::Event(EventRecord::new(&s.waiting.event, &s.report, now)))
                .chain(statuses.into_iter().map(Line::Status))
                .collect();
            if !lines.is_empty() {
                log.append(&lines);
            }
        }
        for s in settled {
            self.stats.count_resolved(&s.waiting.event, s.report.status);
            (self.broadcast)(s.waiting.event.ws_message(&s.report));
            let _ = s.waiting.reply.send(s.report);
        }
    }

    /// A logged event's delivery changed after its caller heard `queued`.
    fn status_changed(&mut self, event_id: String, delivery: Report) {
        if self.event_log.is_some() {
            self.statuses.push(StatusRecord {
                at_ms: super::unix_now_ms(),
                event_id,
                delivery,
            });
        }
    }

    /// Whether an event of this key came less than the cooldown ago; if not, it starts one.
    fn cooling_down(&mut self, key: String) -> bool {
        if self
            .last_accepted
            .get(&key)
            .is_some_and(|t| t.elapsed() < self.cooldown)
        {
            return true;
        }
        if self.last_accepted.len() >= COOLDOWN_KEYS {
            let cooldown = self.cooldown;
            self.last_accepted.retain(|_, t| t.elapsed() < cooldown);
        }
        self.last_accepted.insert(key, Instant::now());
        false
    }

    /// Cooldown, then the journal; events that cannot be journaled get one direct attempt.
    fn accept(&mut self, events: Vec<(Event, Sender<Report>)>) {
        self.accept_batch(events);
        self.settle();
    }

    fn accept_batch(&mut self, events: Vec<(Event, Sender<Report>)>) {
        let mut accepted = Vec::new();
        for (event, reply) in events {
            let waiting = Waiting { event, reply };
            let repeat = self.cooling_down(waiting.event.cooldown_key());
            if self.delivery.is_none() {
                // Without a webhook every event is answered `disabled`, as it always was; the
                // cooldown only keeps repeats out of the event log.
                let report = Report::status(Status::Disabled);
                match repeat {
                    true => self.resolve_repeat(waiting, report),
                    false => self.resolve(waiting, report),
                }
                continue;
            }
            if repeat {
                self.resolve_repeat(waiting, Report::status(Status::Skipped));
                continue;
            }
            accepted.push(waiting);
        }
        let Some(delivery) = self.delivery.as_mut() else {
            return;
        };
        if accepted.is_empty() {
            return;
        }
        let pending = accepted
            .iter()
            .map(|w| Pending {
                event_id: w.event.event_id.clone(),
                payload: w.event.webhook_payload().to_string(),
                accepted_ms: super::unix_now_ms(),
            })
            .collect();
        match delivery.outbox.accept(pending) {
            Ok(dropped) => {
                let mut gone = Vec::new();
                for d in dropped {
                    log::warn!(
                        "outbox: full ({} events); dropped the oldest, {}: {}",
                        delivery.outbox.len(),
                        d.event_id,
                        d.payload
                    );
                    gone.push(d.event_id);
                }
                self.stats.update(&delivery.outbox);
                for event_id in gone {
                    let mut report = Report::status(Status::Failed);
                    report.message =
                        Some("dropped from the full outbox (OUTBOX_MAX_EVENTS)".into());
                    self.status_changed(event_id, report);
                }
                match self.failing.clone() {
                    // The main API is failing: nothing will happen within the caller's wait.
                    Some(report) => {
                        for w in accepted {
                            self.resolve(w, report.clone());
                        }
                    }
                    None => self.waiting.extend(accepted),
                }
            }
            Err(e) => {
                log::error!("outbox: cannot write the journal: {e}; sending without it");
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                let sender = &delivery.sender;
                let reports: Vec<Report> = accepted
                    .iter()
                    .map(|w| {
                        let body = w.event.webhook_payload().to_string();
                        let mut report = sender.send(&body, &w.event.event_id);
                        if report.status != Status::Sent {
                            report.status = Status::Failed;
                            report.message = Some(format!(
                                "not kept for retries (outbox: {e}); {}",
                                report.message.unwrap_or_default()
                            ));
                        }
                        report
                    })
                    .collect();
                for (w, report) in accepted.into_iter().zip(reports) {
                    self.resolve(w, report);
                }
            }
        }
    }

    /// One delivery attempt of the oldest pending event.
    fn attempt(&mut self) {
        self.attempt_head();
        self.settle();
    }

    fn attempt_head(&mut self) {
        let Some(delivery) = self.delivery.as_mut() else {
            return;
        };
        let Some(head) = delivery.outbox.head() else {
            return;
        };
        let mut report = delivery.sender.send(&head.payload, &head.event_id);
        let event_id = head.event_id.clone();
        if report.status == Status::Sent {
            if let Err(e) = delivery.outbox.delivered() {
                // The event may be sent again after a restart; the main API drops it by id.
                log::warn!("outbox: cannot record a delivery: {e}");
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            self.stats.update(&delivery.outbox);
            if self.failing.take().is_some() {
                log::info!("webhook: the main API answers again; delivering the backlog");
                self.stats.set_error(None);
            }
            self.backoff = FIRST_RETRY;
            self.next_attempt = Instant::now();
            if self
                .waiting
                .front()
                .is_some_and(|w| w.event.event_id == event_id)
            {
                if let Some(w) = self.waiting.pop_front() {
                    self.resolve(w, report);
                }
            } else {
                // Its caller heard `queued` (or it is from before a restart).
                self.status_changed(event_id, report);
            }
            return;
        }
        report.status = Status::Queued;
        let why = match (report.http_status, &report.message) {
            (Some(code), _) => format!("HTTP {code}"),
            (None, Some(m)) => m.clone(),
            (None, None) => "no answer".into(),
        };
        if self.failing.is_none() {
            log::warn!(
                "webhook: {why}; {} events kept in the outbox, retrying (up to every {} s)",
                delivery.outbox.len(),
                delivery.retry_max.as_secs_f64()
            );
        }
        self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        self.stats.set_error(Some(why));
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(delivery.retry_max.max(FIRST_RETRY));
        self.failing = Some(report.clone());
        // Nothing behind the head can go before it: their callers need not wait.
        while let Some(w) = self.waiting.pop_front() {
            self.resolve(w, report.clone());
        }
    }

    /// At shutdown: deliver while the main API answers, for a bounded time; the rest waits in
    /// the journal for the next start.
    fn drain(&mut self) {
        let limit = self
            .delivery
            .as_ref()
            .map(|d| d.sender.timeout() * 2)
            .unwrap_or_default();
        let deadline = Instant::now() + limit;
        while self.has_pending() && self.failing.is_none() && Instant::now() < deadline {
            self.attempt();
        }
        let failing = self.failing.clone();
        while let Some(w) = self.waiting.pop_front() {
            let report = failing
                .clone()
                .unwrap_or_else(|| Report::status(Status::Queued));
            self.resolve(w, report);
        }
        self.settle();
        if let Some(d) = &self.delivery {
            if !d.outbox.is_empty() {
                log::info!("outbox: {} events kept for the next start", d.outbox.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::test_event as event;

    #[test]
    fn without_webhook_events_are_broadcast_as_disabled() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let d = Dispatcher::start(
            None,
            Duration::from_secs(5),
            Box::new(move |m| sink.lock().unwrap().push(m)),
            None,
        );
        let reports = d.dispatch(vec![event("a"), event("a")]);
        assert_eq!(
            reports.iter().map(|r| r.status).collect::<Vec<_>>(),
            [Status::Disabled, Status::Disabled]
        );
        d.shutdown();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(d.stats().pending(), 0);
    }

    #[test]
    fn without_webhook_repeats_are_answered_as_before_but_logged_once() {
        use crate::events::log::{Kind, Query};
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::start(
            None,
            Duration::from_secs(5),
            Box::new(|_| {}),
            Some(EventLog::open(dir.path(), 90)),
        );
        let mut unknown = event("x");
        unknown.student_id = crate::gallery::UNKNOWN.into();
        let reports = d.dispatch(vec![event("a"), event("a"), unknown, event("b")]);
        assert!(reports.iter().all(|r| r.status == Status::Disabled));
        // Written before the answers: readable at once.
        let log = d.event_log().unwrap();
        let found = log.query(&Query::all(10));
        let seen: Vec<(&str, Kind, Status)> = found
            .events
            .iter()
            .map(|e| (e.student_id.as_str(), e.kind, e.delivery.status))
            .collect();
        assert_eq!(
            seen,
            [
                ("a", Kind::Attendance, Status::Disabled),
                ("Unknown", Kind::Unknown, Status::Disabled),
                ("b", Kind::Attendance, Status::Disabled)
            ]
        );
        assert_eq!(log.stats().records_written(), 3);
    }
}
