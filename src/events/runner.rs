//! One thread per durable sink: it follows its own cursor over the outbox, one event at a
//! time, in order, and retries with its own capped exponential back-off. A sink that hangs or
//! fails only holds up itself; what it does is reported to the dispatcher thread as news.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::outbox::{Outbox, Pending};
use super::sink::{Outgoing, Sink};
use super::stats::{OutboxStats, SinkStats};
use super::{Report, Status};
use crate::locks::{lock, wait_timeout};

/// First pause after a failed attempt; doubled after each failure up to the sink's retry_max.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(500);
/// How long an idle runner sleeps before it looks again (it is woken on every new event).
const IDLE: Duration = Duration::from_secs(3600);

/// The outbox as the dispatcher and the runners share it.
pub(super) struct Journal {
    outbox: Mutex<Outbox>,
    wake: Condvar,
    stopping: AtomicBool,
}

impl Journal {
    pub(super) fn new(outbox: Outbox) -> Journal {
        Journal {
            outbox: Mutex::new(outbox),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Works on the outbox, then wakes the runners (new events, or a stop).
    pub(super) fn change<R>(&self, f: impl FnOnce(&mut Outbox) -> R) -> R {
        let r = f(&mut lock(&self.outbox));
        self.wake.notify_all();
        r
    }

    /// Runners deliver what they can for a bounded time, then stop.
    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.change(|_| ());
    }
}

/// What a runner tells the dispatcher.
pub(super) enum News {
    /// The sink took the event.
    Taken {
        sink: usize,
        event_id: String,
        report: Report,
    },
    /// An attempt failed: the sink is failing until it takes an event again.
    Failing { sink: usize, report: Report },
}

pub(super) struct Runner {
    pub(super) sink: Box<dyn Sink>,
    /// Its cursor's index in the outbox.
    pub(super) index: usize,
    pub(super) journal: Arc<Journal>,
    pub(super) stats: Arc<SinkStats>,
    pub(super) outbox_stats: Arc<OutboxStats>,
    /// Where its news goes (the dispatcher's queue).
    pub(super) news: Box<dyn Fn(News) + Send>,
}

impl Runner {
    pub(super) fn spawn(self) -> Option<JoinHandle<()>> {
        let name = format!("sink-{}", self.sink.name());
        match std::thread::Builder::new()
            .name(name)
            .spawn(move || self.run())
        {
            Ok(t) => Some(t),
            Err(e) => {
                log::error!("could not start a sink's thread: {e}");
                None
            }
        }
    }

    fn run(mut self) {
        let mut backoff = FIRST_RETRY;
        let mut next_attempt = Instant::now();
        let mut failing = false;
        let mut drain_until: Option<Instant> = None;
        while let Some(event) = self.next(next_attempt, failing, &mut drain_until) {
            let report = self.sink.deliver(&Outgoing {
                event_id: &event.event_id,
                payload: &event.payload,
                webhook: None,
                repeat: false,
            });
            if report.status == Status::Sent {
                self.taken(&event.event_id);
                if self.stats.recovered() {
                    log::info!(
                        "{}: taking events again; delivering the backlog",
                        self.sink.name()
                    );
                }
                failing = false;
                backoff = FIRST_RETRY;
                next_attempt = Instant::now();
                (self.news)(News::Taken {
                    sink: self.index,
                    event_id: event.event_id,
                    report,
                });
                continue;
            }
            let report = self.failed(report);
            failing = true;
            next_attempt = Instant::now() + backoff;
            backoff = (backoff * 2).min(self.sink.retry_max().max(FIRST_RETRY));
            (self.news)(News::Failing {
                sink: self.index,
                report,
            });
        }
    }

    /// Waits for the next event to try (its head, once the back-off has passed); `None` once
    /// stopping and nothing more can be done in time.
    fn next(
        &self,
        next_attempt: Instant,
        failing: bool,
        drain_until: &mut Option<Instant>,
    ) -> Option<Pending> {
        let mut outbox = lock(&self.journal.outbox);
        loop {
            let now = Instant::now();
            if self.journal.stopping.load(Ordering::SeqCst) {
                // At shutdown: deliver while the sink takes events, for a bounded time; the
                // rest waits in the journal for the next start.
                let until = *drain_until.get_or_insert(now + self.sink.timeout() * 2);
                if failing || now >= until {
                    return None;
                }
                return outbox.head(self.index).cloned();
            }
            let wait = match outbox.head(self.index) {
                Some(head) if now >= next_attempt => return Some(head.clone()),
                Some(_) => next_attempt - now,
                None => IDLE,
            };
            outbox = wait_timeout(&self.journal.wake, outbox, wait);
        }
    }

    fn taken(&self, event_id: &str) {
        let mut outbox = lock(&self.journal.outbox);
        if let Err(e) = outbox.delivered(self.index, event_id) {
            // The event may be delivered again after a restart; the receiver drops it by id.
            log::warn!("outbox: cannot record a delivery: {e}");
            self.outbox_stats.journal_error();
        }
        self.stats.count_delivered();
        self.stats.update(&mut outbox, self.index);
        self.outbox_stats.update(&outbox);
    }

    /// A failed attempt: counted, logged when the sink starts failing; the report says
    /// `queued` with the reason.
    fn failed(&self, mut report: Report) -> Report {
        report.status = Status::Queued;
        let why = match (report.http_status, &report.message) {
            (Some(code), _) => format!("HTTP {code}"),
            (None, Some(m)) => m.clone(),
            (None, None) => "no answer".into(),
        };
        if !self.stats.failing() {
            let waiting = self.stats.waiting();
            log::warn!(
                "{}: {why}; {waiting} events kept in the outbox, retrying (up to every {} s)",
                self.sink.name(),
                self.sink.retry_max().as_secs_f64()
            );
        }
        self.stats.failed(why);
        report
    }
}
