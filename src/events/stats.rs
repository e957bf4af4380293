//! The outbox and its sinks as `/health` and `/metrics` show them: one table of counters per
//! sink, read at request time by both (nothing counted twice).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::log::Kind;
use super::outbox::{Outbox, WEBHOOK};
use super::{Event, Status};
use crate::locks::lock;
use crate::metrics::Family;

/// One sink's counters.
pub struct SinkStats {
    name: &'static str,
    durable: bool,
    /// Events it has not taken (durable sinks).
    waiting: AtomicU64,
    /// Unix ms the oldest event it has not taken was accepted (0: none).
    oldest_ms: AtomicU64,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    /// The last failed attempt's reason while the sink fails.
    last_error: Mutex<Option<String>>,
}

impl SinkStats {
    pub(super) fn new(name: &'static str, durable: bool) -> SinkStats {
        SinkStats {
            name,
            durable,
            waiting: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The sink's name (see [`crate::events::Sink::name`]).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Durable (a cursor over the outbox) or live.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Events the sink has not taken yet.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Events the sink took since the start.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Whether its last attempt failed.
    pub fn failing(&self) -> bool {
        lock(&self.last_error).is_some()
    }

    pub(super) fn count_delivered(&self) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn failed(&self, why: String) {
        self.failed_attempts.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_error) = Some(why);
    }

    /// Returns whether the sink was failing.
    pub(super) fn recovered(&self) -> bool {
        lock(&self.last_error).take().is_some()
    }

    /// Its cursor's place in the outbox (`index`: its place in [`Outbox::sinks`]).
    pub(super) fn update(&self, outbox: &mut Outbox, index: usize) {
        self.waiting
            .store(outbox.waiting(index) as u64, Ordering::Relaxed);
        let oldest = outbox.head(index).map(|p| p.accepted_ms).unwrap_or(0);
        self.oldest_ms.store(oldest, Ordering::Relaxed);
    }

    fn oldest_age_seconds(&self) -> Option<f64> {
        match self.oldest_ms.load(Ordering::Relaxed) {
            0 => None,
            t => Some(super::unix_now_ms().saturating_sub(t) as f64 / 1000.0),
        }
    }

    /// The counters as `/health`'s `outbox` object.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "durable": self.durable,
            "delivered": self.delivered(),
            "failed_attempts": self.failed_attempts.load(Ordering::Relaxed),
            "last_error": *lock(&self.last_error),
        });
        if self.durable {
            v["waiting"] = json!(self.waiting());
            v["oldest_waiting_age_seconds"] = json!(self.oldest_age_seconds());
        }
        v
    }
}

/// The outbox (the journal every durable sink reads) and each sink, as `/health` shows them.
#[derive(Default)]
pub struct OutboxStats {
    /// Events not yet taken by every durable sink.
    pending: AtomicU64,
    /// Unix ms the oldest of those was accepted (0: none pending).
    oldest_ms: AtomicU64,
    dropped: AtomicU64,
    journal_errors: AtomicU64,
    sinks: Vec<Arc<SinkStats>>,
    /// Events resolved, by kind ([`Kind`]) and outcome ([`Status`], the webhook's).
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
    pub(super) fn new(sinks: Vec<Arc<SinkStats>>) -> OutboxStats {
        OutboxStats {
            sinks,
            ..OutboxStats::default()
        }
    }

    /// Events not yet taken by every durable sink.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// Every sink's counters.
    pub fn sinks(&self) -> &[Arc<SinkStats>] {
        &self.sinks
    }

    /// The counters of the sink named `name`.
    pub fn sink(&self, name: &str) -> Option<&SinkStats> {
        self.sinks.iter().find(|s| s.name == name).map(|s| &**s)
    }

    pub(super) fn journal_error(&self) {
        self.journal_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `/health`'s `outbox`: the journal, the webhook's counters where they always were (0
    /// without a webhook), and every sink under `sinks`.
    pub fn to_json(&self) -> Value {
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let now = super::unix_now_ms();
        let webhook = self.sink(WEBHOOK);
        let sinks: Map<String, Value> = self
            .sinks
            .iter()
            .map(|s| (s.name.to_string(), s.to_json()))
            .collect();
        json!({
            "pending": self.pending(),
            "oldest_pending_age_seconds": (oldest != 0).then(|| now.saturating_sub(oldest) as f64 / 1000.0),
            "delivered": webhook.map(SinkStats::delivered).unwrap_or(0),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "failed_attempts": webhook.map(|w| w.failed_attempts.load(Ordering::Relaxed)).unwrap_or(0),
            "journal_errors": self.journal_errors.load(Ordering::Relaxed),
            "last_error": webhook.and_then(|w| lock(&w.last_error).clone()),
            "sinks": sinks,
        })
    }

    /// The outbox's and the sinks' part of `/metrics`, from the counters `/health` shows.
    pub fn families(&self) -> Vec<Family> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        let age = match oldest {
            0 => 0.0,
            t => super::unix_now_ms().saturating_sub(t) as f64 / 1000.0,
        };
        let webhook = self.sink(WEBHOOK);
        let of = |f: fn(&SinkStats) -> f64| webhook.map(f).unwrap_or(0.0);
        let mut families = vec![
            Family::gauge(
                "outbox_pending",
                "Events in the outbox, not yet taken by every durable sink.",
            )
            .value(n(&self.pending)),
            Family::gauge(
                "outbox_oldest_pending_age_seconds",
                "Age of the oldest event not yet taken by every durable sink (0: none).",
            )
            .value(age),
            Family::counter("webhook_deliveries", "Events the main API took (2xx).")
                .value(of(|w| w.delivered() as f64)),
            Family::counter(
                "webhook_failed_attempts",
                "Delivery attempts that failed (no answer, or not 2xx).",
            )
            .value(of(|w| w.failed_attempts.load(Ordering::Relaxed) as f64)),
            Family::gauge(
                "webhook_failing",
                "1 while the last delivery attempt failed.",
            )
            .value(of(|w| f64::from(u8::from(w.failing())))),
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
        ];
        families.extend(self.sink_families());
        families
    }

    fn sink_families(&self) -> Vec<Family> {
        let mut delivered = Family::counter(
            "sink_delivered",
            "Events each sink took (webhook: 2xx; mqtt: PUBACK; websocket: broadcast).",
        );
        let mut failed = Family::counter(
            "sink_failed_attempts",
            "Delivery attempts that failed, by sink.",
        );
        let mut failing = Family::gauge("sink_failing", "1 while the sink's last attempt failed.");
        let mut waiting = Family::gauge(
            "sink_waiting",
            "Events a durable sink has not taken yet (its cursor's lag).",
        );
        let mut age = Family::gauge(
            "sink_oldest_waiting_age_seconds",
            "Age of the oldest event a durable sink has not taken (0: none).",
        );
        for s in &self.sinks {
            let label = [("sink", s.name)];
            delivered = delivered.sample(&label, s.delivered() as f64);
            failed = failed.sample(&label, s.failed_attempts.load(Ordering::Relaxed) as f64);
            failing = failing.sample(&label, f64::from(u8::from(s.failing())));
            if s.durable {
                waiting = waiting.sample(&label, s.waiting() as f64);
                age = age.sample(&label, s.oldest_age_seconds().unwrap_or(0.0));
            }
        }
        vec![delivered, failed, failing, waiting, age]
    }

    pub(super) fn count_resolved(&self, event: &Event, status: Status) {
        let kind = KINDS.iter().position(|k| *k == Kind::of(event));
        let outcome = STATUSES.iter().position(|s| *s == status);
        if let (Some(k), Some(o)) = (kind, outcome) {
            self.resolved[k][o].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn resolved_family(&self) -> Family {
        let mut family = Family::counter(
            "events",
            "Events resolved, by kind (attendance, unknown, ambiguous) and the webhook's \
             outcome: sent, queued (kept for retries), failed, skipped (cooldown), disabled \
             (no webhook).",
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

    /// The journal's state, after a change.
    pub(super) fn update(&self, outbox: &Outbox) {
        self.pending.store(outbox.len() as u64, Ordering::Relaxed);
        let oldest = outbox.oldest_accepted_ms().unwrap_or(0);
        self.oldest_ms.store(oldest, Ordering::Relaxed);
        self.dropped.store(outbox.dropped(), Ordering::Relaxed);
    }
}
