//! Counters of replication for `/health` (`gallery_sync`) and `/metrics`
//! (`gallery_sync_received`, `gallery_sync_messages{outcome}`, `gallery_sync_published{kind}`,
//! `gallery_sync_refused{reason}`, `gallery_sync_waiting`, `gallery_sync_trusted`,
//! `gallery_sync_clock_set`), and what this box's side is blocked on (`gallery_sync.state`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{Applied, Refused};
use crate::locks;
use crate::metrics::Family;

/// Counters for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct ReplicationStats {
    pub(super) received: AtomicU64,
    pub(super) updated: AtomicU64,
    pub(super) removed: AtomicU64,
    pub(super) unchanged: AtomicU64,
    pub(super) older: AtomicU64,
    pub(super) kept_local: AtomicU64,
    pub(super) absent: AtomicU64,
    pub(super) conflicts: AtomicU64,
    pub(super) malformed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) published_deletions: AtomicU64,
    pub(super) unpublishable: AtomicU64,
    pub(super) refused: [AtomicU64; Refused::REASONS.len()],
    pub(super) waiting: AtomicU64,
    /// This box's key is in the trust list (or it only pulls).
    pub(super) trusted: AtomicBool,
    /// The clock reads later than this binary's build.
    pub(super) clock_set: AtomicBool,
    /// `/health`'s `gallery_sync.trust` (the key, the role, the list).
    pub(super) trust: Mutex<Value>,
    pub(super) last_error: Mutex<Option<String>>,
}

impl ReplicationStats {
    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count(&self, applied: Applied) {
        let counter = match applied {
            Applied::Updated => &self.updated,
            Applied::Removed => &self.removed,
            Applied::Unchanged => &self.unchanged,
            Applied::Older => &self.older,
            Applied::KeptLocal => &self.kept_local,
            Applied::Absent => &self.absent,
            Applied::Conflict => &self.conflicts,
            Applied::Waiting | Applied::Off => return,
        };
        Self::add(counter);
    }

    pub(super) fn error(&self, counter: &AtomicU64, e: &impl std::fmt::Display) {
        Self::add(counter);
        *locks::lock(&self.last_error) = Some(e.to_string());
    }

    pub(super) fn outcomes(&self) -> [(&'static str, u64); 10] {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("updated", n(&self.updated)),
            ("removed", n(&self.removed)),
            ("unchanged", n(&self.unchanged)),
            ("older", n(&self.older)),
            ("kept_local", n(&self.kept_local)),
            ("absent", n(&self.absent)),
            ("conflict", n(&self.conflicts)),
            ("malformed", n(&self.malformed)),
            ("failed", n(&self.failed)),
            ("unpublishable", n(&self.unpublishable)),
        ]
    }

    /// Messages refused as malformed so far.
    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub(super) fn refuse(&self, reason: &Refused) {
        let i = Refused::REASONS
            .iter()
            .position(|r| *r == reason.reason())
            .unwrap_or(0);
        Self::add(&self.refused[i]);
        *locks::lock(&self.last_error) = Some(reason.to_string());
    }

    /// Messages refused so far for `reason` ([`Refused::reason`]).
    pub fn refused(&self, reason: &str) -> u64 {
        Refused::REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.refused[i].load(Ordering::Relaxed))
    }

    /// What this box's side waits for: `ok`, `clock_not_set` or `not_trusted`.
    fn state(&self) -> (&'static str, Option<&'static str>) {
        if !self.clock_set.load(Ordering::Relaxed) {
            return (
                "clock_not_set",
                Some(
                    "this box's clock reads earlier than its software's build: it publishes \
                     nothing and applies nothing until the clock is set (NTP or an RTC)",
                ),
            );
        }
        if !self.trusted.load(Ordering::Relaxed) {
            return (
                "not_trusted",
                Some(
                    "this box's key is not in the trust list (GALLERY_TRUSTED_KEYS): it keeps \
                     its gallery, publishes nothing and applies nothing; add the line of \
                     `face-attendance box key` with `face-attendance box trust add`",
                ),
            );
        }
        ("ok", None)
    }

    /// The counters as `/health` shows them (`gallery_sync`).
    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut outcomes = serde_json::Map::new();
        for (name, value) in self.outcomes() {
            outcomes.insert(name.into(), value.into());
        }
        let mut refused = serde_json::Map::new();
        for (name, counter) in Refused::REASONS.iter().zip(&self.refused) {
            refused.insert((*name).into(), n(counter).into());
        }
        let (state, problem) = self.state();
        json!({
            "state": state,
            "problem": problem,
            "received": n(&self.received),
            "outcomes": outcomes,
            "refused": refused,
            "waiting": n(&self.waiting),
            "trust": *locks::lock(&self.trust),
            "published": n(&self.published),
            "published_deletions": n(&self.published_deletions),
            "last_error": *locks::lock(&self.last_error),
        })
    }

    /// Replication's part of `/metrics`.
    pub fn families(&self) -> Vec<Family> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut refused = Family::counter(
            "gallery_sync_refused",
            "Gallery messages refused (unsigned, untrusted, not allowed...), by reason.",
        );
        for (name, counter) in Refused::REASONS.iter().zip(&self.refused) {
            refused = refused.sample(&[("reason", name)], n(counter));
        }
        let mut outcomes = Family::counter(
            "gallery_sync_messages",
            "Gallery messages from the broker, by what they did (malformed: refused).",
        );
        for (name, value) in self.outcomes() {
            outcomes = outcomes.sample(&[("outcome", name)], value as f64);
        }
        vec![
            Family::counter(
                "gallery_sync_received",
                "Gallery messages received from the broker.",
            )
            .value(n(&self.received)),
            outcomes,
            Family::counter(
                "gallery_sync_published",
                "Gallery messages handed out for publication, by kind.",
            )
            .sample(&[("kind", "person")], n(&self.published))
            .sample(&[("kind", "deletion")], n(&self.published_deletions)),
            refused,
            Family::gauge(
                "gallery_sync_waiting",
                "Gallery messages waiting (over a publisher's bounds, the clock not set, or this \
                 box not trusted yet).",
            )
            .value(n(&self.waiting)),
            Family::gauge(
                "gallery_sync_trusted",
                "1 when this box's key is in the gallery trust list.",
            )
            .value(f64::from(u8::from(self.trusted.load(Ordering::Relaxed)))),
            Family::gauge(
                "gallery_sync_clock_set",
                "1 when this box's clock reads later than its software's build.",
            )
            .value(f64::from(u8::from(self.clock_set.load(Ordering::Relaxed)))),
        ]
    }
}
