//! Counters of replication for `/health` (`gallery_sync`) and `/metrics`
//! (`gallery_sync_received`, `gallery_sync_messages{outcome}`, `gallery_sync_published{kind}`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::Applied;
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
            Applied::Off => return,
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

    /// The counters as `/health` shows them (`gallery_sync`).
    pub fn to_json(&self) -> Value {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut outcomes = serde_json::Map::new();
        for (name, value) in self.outcomes() {
            outcomes.insert(name.into(), value.into());
        }
        json!({
            "received": n(&self.received),
            "outcomes": outcomes,
            "published": n(&self.published),
            "published_deletions": n(&self.published_deletions),
            "last_error": *locks::lock(&self.last_error),
        })
    }

    /// Replication's part of `/metrics`.
    pub fn families(&self) -> Vec<Family> {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
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
        ]
    }
}
