//! The dispatcher thread: per-person cooldown, then in or out (punches.rs), then the durable
//! outbox, then every sink (sink.rs). Durable sinks (the webhook, MQTT) each follow the outbox
//! on a thread of their own (runner.rs); live sinks (the WebSocket hub) get each event once it
//! is resolved. Callers (`/recognize/realtime`, the camera loop) never wait on a sink longer
//! than a short, fixed time: past it, or at once while a sink is failing, that sink's report
//! is `queued`. Every event it resolves, repeats within the cooldown aside, goes to the local
//! event log (log.rs) before its caller hears of it, and so do later webhook deliveries of
//! `queued` ones.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use super::log::{EventLog, EventLogReader, EventRecord, Line, StatusRecord};
use super::outbox::{Outbox, Pending, Recovered, WEBHOOK};
use super::punches::Punches;
use super::runner::{Journal, News, Runner};
use super::sink::{Outgoing, Sink};
use super::stats::{OutboxStats, SinkStats};
use super::{Event, Label, Report, Status};
use crate::gallery::UNKNOWN;
use crate::locks::lock;

/// The name and group of a person by id (`None`: neither known), asked once per recognized
/// event; it must be cheap (the gallery's: one hash lookup under a read lock).
pub type LabelLookup = Box<dyn Fn(&str) -> Option<Label> + Send>;

/// Where events go: the outbox with its durable sinks, and the live sinks; and where the
/// names of the people in them come from.
pub struct Destinations {
    outbox: Option<Outbox>,
    durable: Vec<Box<dyn Sink>>,
    live: Vec<Box<dyn Sink>>,
    labels: Option<LabelLookup>,
    /// Decides in or out (punches.rs): the system's zone, no schedule, unless given.
    punches: Option<Punches>,
}

impl Destinations {
    /// No durable sink: events are answered `disabled`, and only live sinks get them.
    pub fn live_only() -> Destinations {
        Destinations {
            outbox: None,
            durable: Vec::new(),
            live: Vec::new(),
            labels: None,
            punches: None,
        }
    }

    /// Opens the outbox journal in `dir` for these durable sinks (none: as [`live_only`]).
    ///
    /// [`live_only`]: Destinations::live_only
    pub fn open(
        dir: &Path,
        max_pending: usize,
        durable: Vec<Box<dyn Sink>>,
    ) -> std::io::Result<(Destinations, Recovered)> {
        if durable.is_empty() {
            return Ok((Destinations::live_only(), Recovered::default()));
        }
        let names: Vec<&str> = durable.iter().map(|s| s.name()).collect();
        let (outbox, recovered) = Outbox::open(dir, max_pending, &names)?;
        let destinations = Destinations {
            outbox: Some(outbox),
            durable,
            live: Vec::new(),
            labels: None,
            punches: None,
        };
        Ok((destinations, recovered))
    }

    /// Adds a live sink (each event once, as it is resolved).
    pub fn with_live(mut self, sink: Box<dyn Sink>) -> Destinations {
        self.live.push(sink);
        self
    }

    /// Names the people of recognized events ([`Event::set_label`]) by `lookup`, when each
    /// event is taken, before the cooldown: every sink, the event log and the outbox get the
    /// name and group the person has at that moment.
    pub fn with_labels(mut self, lookup: LabelLookup) -> Destinations {
        self.labels = Some(lookup);
        self
    }

    /// How attendance events get their punch (in or out): the box's zone and schedule.
    pub fn with_punches(mut self, punches: Punches) -> Destinations {
        self.punches = Some(punches);
        self
    }
}

/// A live sink made of a function (tests, benches).
pub struct FnSink<F>(pub &'static str, pub F);

impl<F: FnMut(&str) + Send> Sink for FnSink<F> {
    fn name(&self) -> &'static str {
        self.0
    }

    fn durable(&self) -> bool {
        false
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        (self.1)(event.payload);
        Report::status(Status::Sent)
    }

    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}

/// What became of one event: the webhook's report where the original service had it (`report`),
/// and every durable sink's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivered {
    /// The webhook's report, as the original service answered it.
    pub report: Report,
    /// Every durable sink's report, by sink name.
    pub sinks: Map<String, Value>,
}

impl Delivered {
    fn all(status: Status, names: &[&'static str]) -> Delivered {
        Delivered {
            report: Report::status(status),
            sinks: names
                .iter()
                .map(|n| (n.to_string(), serde_json::json!(Report::status(status))))
                .collect(),
        }
    }
}

enum Job {
    Deliver(Event, Sender<Delivered>),
    Sink(News),
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

/// The longest a `/recognize/realtime` caller waits for the sinks.
const MAX_WAIT: Duration = Duration::from_secs(2);

impl Dispatcher {
    /// Starts the dispatcher thread and a thread per durable sink. `cooldown`: at most one
    /// event per person per period. `event_log`: where resolved events are kept (none:
    /// nowhere).
    pub fn start(
        destinations: Destinations,
        cooldown: Duration,
        event_log: Option<EventLog>,
    ) -> Dispatcher {
        let Destinations {
            outbox,
            durable,
            live,
            labels,
            punches,
        } = destinations;
        let names: Vec<&'static str> = durable.iter().map(|s| s.name()).collect();
        let webhook = names.iter().position(|n| *n == WEBHOOK);
        let wait = durable
            .iter()
            .map(|s| s.timeout().min(MAX_WAIT))
            .max()
            .unwrap_or(MAX_WAIT)
            + Duration::from_millis(500);
        let durable_stats: Vec<Arc<SinkStats>> = names
            .iter()
            .map(|n| Arc::new(SinkStats::new(n, true)))
            .collect();
        let live_stats: Vec<Arc<SinkStats>> = live
            .iter()
            .map(|s| Arc::new(SinkStats::new(s.name(), false)))
            .collect();
        let all_stats = durable_stats.iter().chain(&live_stats).cloned().collect();
        let stats = Arc::new(OutboxStats::new(all_stats));
        let (jobs, rx) = mpsc::channel();
        let journal = outbox.map(|mut outbox| {
            for (i, s) in durable_stats.iter().enumerate() {
                s.update(&mut outbox, i);
            }
            stats.update(&outbox);
            Arc::new(Journal::new(outbox))
        });
        let mut runners = Vec::new();
        if let Some(journal) = &journal {
            for (index, sink) in durable.into_iter().enumerate() {
                let to_worker = jobs.clone();
                let runner = Runner {
                    sink,
                    index,
                    journal: journal.clone(),
                    stats: durable_stats[index].clone(),
                    outbox_stats: stats.clone(),
                    news: Box::new(move |news| {
                        let _ = to_worker.send(Job::Sink(news));
                    }),
                };
                runners.extend(runner.spawn());
            }
        }
        let reader = event_log.as_ref().map(EventLog::reader);
        let mut punches =
            punches.unwrap_or_else(|| Punches::new(crate::localtime::BoxZone::system(), None));
        punches.start(reader.clone(), super::unix_now_ms());
        let worker = Worker {
            journal,
            names,
            webhook,
            live,
            live_stats,
            runners,
            labels,
            cooldown,
            wait,
            stats: stats.clone(),
            punches,
            event_log,
            settled: Vec::new(),
            statuses: Vec::new(),
            last_accepted: HashMap::new(),
            waiting: VecDeque::new(),
            failing: Vec::new(),
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
            webhook_enabled: webhook.is_some(),
            stats,
            event_log: reader,
            wait,
        }
    }

    /// The event log's reading end, when events are kept.
    pub fn event_log(&self) -> Option<&EventLogReader> {
        self.event_log.as_ref()
    }

    /// Whether a webhook (`ATTENDANCE_WEBHOOK_URL`) receives events.
    pub fn webhook_enabled(&self) -> bool {
        self.webhook_enabled
    }

    /// Whether events go to any durable sink (the outbox is used).
    pub fn durable(&self) -> bool {
        self.stats.sinks().iter().any(|s| s.is_durable())
    }

    /// The outbox's and the sinks' counters.
    pub fn stats(&self) -> &OutboxStats {
        &self.stats
    }

    /// Hands the events over and returns what became of them, waiting a short, bounded time:
    /// a sink that has not taken an event by then reports `queued` and still gets it.
    pub fn dispatch(&self, events: Vec<Event>) -> Vec<Delivered> {
        let pending: Vec<Option<mpsc::Receiver<Delivered>>> = events
            .into_iter()
            .map(|event| {
                let (tx, rx) = mpsc::channel();
                self.jobs.send(Job::Deliver(event, tx)).ok().map(|_| rx)
            })
            .collect();
        // The worker answers by then; a little more for a loaded machine.
        let deadline = Instant::now() + self.wait + Duration::from_millis(500);
        pending
            .into_iter()
            .map(|rx| {
                let left = deadline.saturating_duration_since(Instant::now());
                rx.and_then(|rx| rx.recv_timeout(left).ok())
                    .unwrap_or_else(|| self.queued())
            })
            .collect()
    }

    fn queued(&self) -> Delivered {
        let names: Vec<&'static str> = self
            .stats
            .sinks()
            .iter()
            .filter(|s| s.is_durable())
            .map(|s| s.name())
            .collect();
        let mut d = Delivered::all(Status::Queued, &names);
        if !self.webhook_enabled {
            d.report = Report::status(Status::Disabled);
        }
        d
    }

    /// Hands the events over without waiting for their reports (the camera loop).
    pub fn submit(&self, events: Vec<Event>) {
        for event in events {
            let (tx, _) = mpsc::channel();
            let _ = self.jobs.send(Job::Deliver(event, tx));
        }
    }

    /// Takes what is handed over, lets the sinks deliver what is pending (briefly: what is
    /// left stays in the outbox for the next start), then stops the threads.
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
    reply: Sender<Delivered>,
    /// Per durable sink: its report, once it has one.
    reports: Vec<Option<Report>>,
    /// Past this, sinks that have not answered report `queued`.
    deadline: Instant,
    /// Why the event is not in the journal (kept in memory only), if it is not.
    volatile: Option<String>,
}

/// An event resolved, its report not yet sent on (see [`Worker::settle`]).
struct Settled {
    event: Event,
    reply: Sender<Delivered>,
    delivered: Delivered,
    /// Whether it goes to the event log (a repeat within the cooldown does not).
    logged: bool,
}

/// Past this many people (and pairs) remembered, those out of their cooldown are forgotten.
const COOLDOWN_KEYS: usize = 10_000;

struct Worker {
    journal: Option<Arc<Journal>>,
    /// The durable sinks' names, in cursor order.
    names: Vec<&'static str>,
    /// The webhook's cursor, when there is a webhook.
    webhook: Option<usize>,
    live: Vec<Box<dyn Sink>>,
    live_stats: Vec<Arc<SinkStats>>,
    runners: Vec<JoinHandle<()>>,
    labels: Option<LabelLookup>,
    cooldown: Duration,
    wait: Duration,
    stats: Arc<OutboxStats>,
    /// In or out, for each counted attendance event.
    punches: Punches,
    event_log: Option<EventLog>,
    /// Resolved since the last [`Worker::settle`].
    settled: Vec<Settled>,
    /// Later webhook statuses of logged events, for the next [`Worker::settle`].
    statuses: Vec<StatusRecord>,
    last_accepted: HashMap<String, Instant>,
    /// Accepted events whose callers wait, oldest first.
    waiting: VecDeque<Waiting>,
    /// Per durable sink: its last failed attempt's report while it fails.
    failing: Vec<Option<Report>>,
}

impl Worker {
    fn run(mut self, jobs: Receiver<Job>) {
        self.failing = vec![None; self.names.len()];
        let mut stopping = false;
        while !stopping {
            let timeout = self
                .waiting
                .iter()
                .map(|w| w.deadline)
                .min()
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
            stopping |= self.take(batch);
            self.resolve_ready(Instant::now());
            self.settle();
        }
        self.stop(jobs);
    }

    /// Handles a batch of jobs; returns whether one was to stop.
    fn take(&mut self, batch: Vec<Job>) -> bool {
        let mut stop = false;
        let mut events = Vec::new();
        for job in batch {
            match job {
                Job::Deliver(event, reply) => events.push((event, reply)),
                Job::Sink(news) => self.news(news),
                Job::Stop => stop = true,
            }
        }
        self.accept(events);
        stop
    }

    /// At shutdown: the runners deliver for a bounded time and stop; callers still waiting
    /// get what is known.
    fn stop(&mut self, jobs: Receiver<Job>) {
        if let Some(journal) = &self.journal {
            journal.stop();
        }
        for runner in std::mem::take(&mut self.runners) {
            let _ = runner.join();
        }
        // The runners' last news, and what was handed over meanwhile (kept for the next start).
        let batch: Vec<Job> = jobs.try_iter().collect();
        self.take(batch);
        self.resolve_ready(Instant::now() + self.wait * 10);
        self.settle();
        if let Some(journal) = &self.journal {
            let left = journal.change(|o| o.len());
            if left > 0 {
                log::info!("outbox: {left} events kept for the next start");
            }
        }
    }

    /// A runner's news: fills in its report for the event's caller, or records a later
    /// delivery in the event log.
    fn news(&mut self, news: News) {
        match news {
            News::Taken {
                sink,
                event_id,
                report,
            } => {
                if let Some(f) = self.failing.get_mut(sink) {
                    *f = None;
                }
                match self
                    .waiting
                    .iter_mut()
                    .find(|w| w.event.event_id == event_id)
                {
                    Some(w) => w.reports[sink] = Some(report),
                    // Its caller heard `queued` (or it is from before a restart).
                    None if Some(sink) == self.webhook => self.status_changed(event_id, report),
                    None => {}
                }
            }
            News::Failing { sink, report } => {
                // Nothing behind the sink's head can go before it: callers need not wait.
                for w in &mut self.waiting {
                    if w.reports[sink].is_none() {
                        w.reports[sink] = Some(report.clone());
                    }
                }
                if let Some(f) = self.failing.get_mut(sink) {
                    *f = Some(report);
                }
            }
        }
    }

    /// Resolves the waiting events every sink answered for, and those past their deadline
    /// (`now`), whose missing reports are `queued`.
    fn resolve_ready(&mut self, now: Instant) {
        let mut still = VecDeque::new();
        for w in std::mem::take(&mut self.waiting) {
            if w.deadline > now && w.reports.iter().any(Option::is_none) {
                still.push_back(w);
                continue;
            }
            let delivered = self.delivered_of(&w);
            self.settled.push(Settled {
                event: w.event,
                reply: w.reply,
                delivered,
                logged: true,
            });
        }
        self.waiting = still;
    }

    fn delivered_of(&self, w: &Waiting) -> Delivered {
        let reports: Vec<Report> = w
            .reports
            .iter()
            .map(|r| {
                let mut r = r.clone().unwrap_or_else(|| Report::status(Status::Queued));
                if let (Some(why), true) = (&w.volatile, r.status != Status::Sent) {
                    r.message = Some(format!(
                        "kept in memory only, lost if the box stops first (outbox: {why}); {}",
                        r.message.unwrap_or_default()
                    ));
                }
                r
            })
            .collect();
        let report = match self.webhook {
            Some(i) => reports[i].clone(),
            None => Report::status(Status::Disabled),
        };
        Delivered {
            report,
            sinks: self
                .names
                .iter()
                .zip(reports)
                .map(|(n, r)| (n.to_string(), serde_json::json!(r)))
                .collect(),
        }
    }

    /// Writes what was resolved to the event log (one write, one fsync), then hands it to the
    /// live sinks and answers the callers: a client that reads `/events` after its answer
    /// finds its events there.
    fn settle(&mut self) {
        let settled = std::mem::take(&mut self.settled);
        let statuses = std::mem::take(&mut self.statuses);
        if let Some(log) = &mut self.event_log {
            let now = super::unix_now_ms();
            let lines: Vec<Line> = settled
                .iter()
                .filter(|s| s.logged)
                .map(|s| Line::Event(EventRecord::new(&s.event, &s.delivered.report, now)))
                .chain(statuses.into_iter().map(Line::Status))
                .collect();
            if !lines.is_empty() {
                log.append(&lines);
            }
        }
        for s in settled {
            self.stats
                .count_resolved(&s.event, s.delivered.report.status);
            if !self.live.is_empty() {
                let message = s.event.live_message(&s.delivered);
                let webhook = s.event.webhook_payload().to_string();
                for (sink, stats) in self.live.iter_mut().zip(&self.live_stats) {
                    let report = sink.deliver(&Outgoing {
                        event_id: &s.event.event_id,
                        payload: &message,
                        webhook: Some(&webhook),
                        repeat: !s.logged,
                    });
                    match report.status {
                        Status::Sent => {
                            stats.count_delivered();
                            stats.recovered();
                        }
                        // Not for this sink (a stranger for the last person's topic).
                        Status::Skipped | Status::Disabled => {}
                        _ => stats.failed(report.message.unwrap_or_default()),
                    }
                }
            }
            let _ = s.reply.send(s.delivered);
        }
    }

    /// A logged event's webhook delivery changed after its caller heard `queued`.
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

    /// Cooldown, then the journal (one write, one fsync), then the runners are woken.
    fn accept(&mut self, events: Vec<(Event, Sender<Delivered>)>) {
        let mut accepted = Vec::new();
        for (mut event, reply) in events {
            if let Some(lookup) = &self.labels {
                if event.student_id != UNKNOWN {
                    if let Some(label) = lookup(&event.student_id) {
                        event.set_label(label);
                    }
                }
            }
            let repeat = self.cooling_down(event.cooldown_key());
            if !repeat {
                self.punches.decide(&mut event);
            }
            if self.journal.is_none() || repeat {
                // Without a durable sink every event is answered `disabled`, as it always was;
                // the cooldown only keeps repeats out of the event log. With one, a repeat is
                // `skipped` by every sink.
                let status = match self.journal {
                    Some(_) => Status::Skipped,
                    None => Status::Disabled,
                };
                let mut delivered = Delivered::all(status, &self.names);
                if self.webhook.is_none() {
                    delivered.report = Report::status(Status::Disabled);
                }
                self.settled.push(Settled {
                    event,
                    reply,
                    delivered,
                    logged: !repeat,
                });
                continue;
            }
            accepted.push((event, reply));
        }
        let Some(journal) = self.journal.clone() else {
            return;
        };
        if accepted.is_empty() {
            return;
        }
        let pending: Vec<Pending> = accepted
            .iter()
            .map(|(event, _)| Pending {
                event_id: event.event_id.clone(),
                payload: event.webhook_payload().to_string(),
                accepted_ms: super::unix_now_ms(),
            })
            .collect();
        let durable = self.names.len();
        let stats = self.stats.clone();
        let result = journal.change(|outbox| {
            let result = outbox.accept(pending);
            for (i, s) in stats.sinks().iter().take(durable).enumerate() {
                s.update(outbox, i);
            }
            stats.update(outbox);
            (result, outbox.len())
        });
        let volatile = match result {
            (Ok(dropped), len) => {
                for d in dropped {
                    log::warn!(
                        "outbox: full ({len} events); dropped the oldest, {}: {}",
                        d.event_id,
                        d.payload
                    );
                    let mut report = Report::status(Status::Failed);
                    report.message =
                        Some("dropped from the full outbox (OUTBOX_MAX_EVENTS)".into());
                    self.status_changed(d.event_id, report);
                }
                None
            }
            (Err(e), _) => {
                log::error!("outbox: cannot write the journal: {e}; events kept in memory");
                self.stats.journal_error();
                Some(e.to_string())
            }
        };
        let deadline = Instant::now() + self.wait;
        for (event, reply) in accepted {
            self.waiting.push_back(Waiting {
                event,
                reply,
                // A failing sink will not take it within the caller's wait.
                reports: self.failing.clone(),
                deadline,
                volatile: volatile.clone(),
            });
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::test_event as event;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A durable sink that takes events while `up` (in this process: the real dispatcher
    /// threads run it), counting what it took.
    struct Switch {
        name: &'static str,
        up: Arc<AtomicBool>,
        took: Arc<Mutex<Vec<String>>>,
        delay: Duration,
    }

    impl Sink for Switch {
        fn name(&self) -> &'static str {
            self.name
        }

        fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
            std::thread::sleep(self.delay);
            if !self.up.load(Ordering::SeqCst) {
                let mut r = Report::status(Status::Failed);
                r.message = Some(format!("{} is down", self.name));
                return r;
            }
            lock(&self.took).push(event.event_id.to_string());
            Report::status(Status::Sent)
        }

        fn timeout(&self) -> Duration {
            Duration::from_millis(300)
        }

        fn retry_max(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    struct Probe {
        up: Arc<AtomicBool>,
        took: Arc<Mutex<Vec<String>>>,
    }

    fn switch(name: &'static str, up: bool, delay: Duration) -> (Box<dyn Sink>, Probe) {
        let up = Arc::new(AtomicBool::new(up));
        let took = Arc::new(Mutex::new(Vec::new()));
        let sink = Switch {
            name,
            up: up.clone(),
            took: took.clone(),
            delay,
        };
        (Box::new(sink), Probe { up, took })
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn without_durable_sinks_events_go_live_as_disabled() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let live = FnSink("test", move |m: &str| lock(&sink).push(m.to_string()));
        let d = Dispatcher::start(
            Destinations::live_only().with_live(Box::new(live)),
            Duration::from_secs(5),
            None,
        );
        let reports = d.dispatch(vec![event("a"), event("a")]);
        assert_eq!(
            reports.iter().map(|r| r.report.status).collect::<Vec<_>>(),
            [Status::Disabled, Status::Disabled]
        );
        assert!(reports.iter().all(|r| r.sinks.is_empty()));
        d.shutdown();
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(d.stats().pending(), 0);
        assert_eq!(d.stats().sink("test").unwrap().delivered(), 2);
    }

    #[test]
    fn without_durable_sinks_repeats_are_answered_as_before_but_logged_once() {
        use crate::events::log::{Kind, Query};
        let dir = tempfile::tempdir().unwrap();
        let d = Dispatcher::start(
            Destinations::live_only(),
            Duration::from_secs(5),
            Some(EventLog::open(dir.path(), 90)),
        );
        let mut unknown = event("x");
        unknown.student_id = crate::gallery::UNKNOWN.into();
        let reports = d.dispatch(vec![event("a"), event("a"), unknown, event("b")]);
        assert!(reports.iter().all(|r| r.report.status == Status::Disabled));
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

    #[test]
    fn a_failing_sink_never_delays_another_and_catches_up_in_order_after() {
        let dir = tempfile::tempdir().unwrap();
        let (webhook, hook) = switch(WEBHOOK, true, Duration::ZERO);
        // The broker is down, and each attempt hangs for a while before failing.
        let (mqtt, broker) = switch("mqtt", false, Duration::from_millis(200));
        let (destinations, _) = Destinations::open(dir.path(), 100, vec![webhook, mqtt]).unwrap();
        let live_count = Arc::new(AtomicUsize::new(0));
        let counter = live_count.clone();
        let live = FnSink("live", move |_: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let d = Dispatcher::start(destinations.with_live(Box::new(live)), Duration::ZERO, None);
        let first = d.dispatch(vec![event("a")]);
        assert_eq!(first[0].report.status, Status::Sent);
        assert_eq!(first[0].sinks["webhook"]["status"], "sent");
        assert_eq!(first[0].sinks["mqtt"]["status"], "queued");
        assert_eq!(first[0].sinks["mqtt"]["message"], "mqtt is down");
        let ids: Vec<String> = (0..20)
            .map(|i| {
                let e = event(&format!("p{i}"));
                let id = e.event_id.clone();
                d.submit(vec![e]);
                id
            })
            .collect();
        // The webhook took them all while the broker stayed down.
        wait_until("the webhook to take 21 events", || {
            lock(&hook.took).len() == 21
        });
        assert!(lock(&broker.took).is_empty());
        assert_eq!(d.stats().sink("mqtt").unwrap().waiting(), 21);
        assert_eq!(d.stats().sink("webhook").unwrap().waiting(), 0);
        assert!(d.stats().sink("mqtt").unwrap().failing());
        assert_eq!(d.stats().pending(), 21);
        // The broker is back: it gets every event, in order.
        broker.up.store(true, Ordering::SeqCst);
        wait_until("the broker to catch up", || lock(&broker.took).len() == 21);
        assert_eq!(lock(&broker.took)[1..], ids[..]);
        assert_eq!(lock(&hook.took)[1..], ids[..]);
        wait_until("the outbox to empty", || d.stats().pending() == 0);
        assert!(!d.stats().sink("mqtt").unwrap().failing());
        let health = d.stats().to_json();
        assert_eq!(health["delivered"], 21);
        assert_eq!(health["sinks"]["mqtt"]["delivered"], 21);
        d.shutdown();
        assert_eq!(live_count.load(Ordering::SeqCst), 21);
    }

    #[test]
    fn a_restart_resumes_each_sink_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (webhook, hook) = switch(WEBHOOK, true, Duration::ZERO);
        let (mqtt, broker) = switch("mqtt", false, Duration::ZERO);
        let (destinations, _) = Destinations::open(dir.path(), 100, vec![webhook, mqtt]).unwrap();
        let d = Dispatcher::start(destinations, Duration::ZERO, None);
        let sent: Vec<String> = (0..5)
            .map(|i| {
                let e = event(&format!("p{i}"));
                let id = e.event_id.clone();
                d.dispatch(vec![e]);
                id
            })
            .collect();
        wait_until("the webhook", || lock(&hook.took).len() == 5);
        d.shutdown();
        drop(d);
        // Next start: the broker is up; the webhook gets nothing again.
        let (webhook, hook2) = switch(WEBHOOK, true, Duration::ZERO);
        let (mqtt, broker2) = switch("mqtt", true, Duration::ZERO);
        let (destinations, recovered) =
            Destinations::open(dir.path(), 100, vec![webhook, mqtt]).unwrap();
        assert_eq!(recovered.pending, 5);
        let d = Dispatcher::start(destinations, Duration::ZERO, None);
        wait_until("the broker", || lock(&broker2.took).len() == 5);
        assert_eq!(*lock(&broker2.took), sent);
        assert!(lock(&hook2.took).is_empty());
        assert!(lock(&broker.took).is_empty());
        d.shutdown();
    }

    #[test]
    fn a_hanging_sink_costs_the_caller_a_bounded_wait_and_its_report_says_queued() {
        let dir = tempfile::tempdir().unwrap();
        // Each attempt hangs well past the caller's wait.
        let (slow, probe) = switch(WEBHOOK, true, Duration::from_secs(4));
        let (destinations, _) = Destinations::open(dir.path(), 100, vec![slow]).unwrap();
        let d = Dispatcher::start(destinations, Duration::ZERO, None);
        let reports = d.dispatch(vec![event("a")]);
        assert_eq!(reports[0].report.status, Status::Queued);
        wait_until("the slow sink", || lock(&probe.took).len() == 1);
        d.shutdown();
    }
}
