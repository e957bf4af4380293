//! One box's side of replication ([`Replicator`]): its state loaded and persisted, what arrives
//! from the broker checked and handed to the rules ([`super::rules`]), and what goes out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state::{Inner, State, STATE_FILE};
use super::stats::ReplicationStats;
use super::topics::{Kind, Outgoing};
use super::wire::{
    check_box_id, clip, encode_message, encode_tombstone, parse_message, parse_tombstone, Incoming,
    Malformed,
};
use super::{Applied, ReplicationError, ReplicationMode};
use crate::gallery::{encodings_digest, Gallery, GalleryError, StudentId};
use crate::{clock, fsutil, locks};

/// One box's side of gallery replication (see the module docs).
pub struct Replicator {
    pub(super) gallery: Arc<Gallery>,
    pub(super) box_id: String,
    pub(super) mode: ReplicationMode,
    pub(super) path: PathBuf,
    pub(super) inner: Mutex<Inner>,
    pub(super) stats: Arc<ReplicationStats>,
}

impl Replicator {
    /// Loads `data/gallery-sync.json` of the gallery's data folder (a damaged one is logged and
    /// started afresh) and compares the gallery with it: changes made while the service was
    /// off (by the CLI) are stamped as this box's.
    pub fn new(
        gallery: Arc<Gallery>,
        box_id: &str,
        mode: ReplicationMode,
    ) -> Result<Replicator, ReplicationError> {
        check_box_id(box_id).map_err(|e| ReplicationError::BoxId(clip(box_id), e))?;
        let path = gallery.data_dir().join(STATE_FILE);
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<State>(&bytes).unwrap_or_else(|e| {
                log::warn!(
                    "{}: {e}; gallery sync starts afresh (every person is published again)",
                    path.display()
                );
                State::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(ReplicationError::Gallery(io_err(&path, e))),
        };
        let replicator = Replicator {
            gallery,
            box_id: box_id.to_string(),
            mode,
            path,
            inner: Mutex::new(Inner {
                state,
                scanned: None,
                seen: None,
                seen_deleted: BTreeMap::new(),
                dirty: false,
            }),
            stats: Arc::new(ReplicationStats::default()),
        };
        if mode != ReplicationMode::Off {
            let mut inner = locks::lock(&replicator.inner);
            replicator.scan(&mut inner);
            replicator.persist(&mut inner)?;
        }
        Ok(replicator)
    }

    /// How this box takes part.
    pub fn mode(&self) -> ReplicationMode {
        self.mode
    }

    /// This box's id, in the versions of its changes.
    pub fn box_id(&self) -> &str {
        &self.box_id
    }

    /// The counters, shared with `/health` and `/metrics`.
    pub fn stats(&self) -> Arc<ReplicationStats> {
        self.stats.clone()
    }

    /// Waits until the gallery changed locally since the last [`Replicator::outgoing`], or
    /// `timeout`; returns whether it did. For a publishing thread: wait, then `outgoing`.
    pub fn wait_local_change(&self, timeout: Duration) -> bool {
        let scanned = locks::lock(&self.inner).scanned;
        let seen = scanned.unwrap_or(u64::MAX);
        let now = self.gallery.wait_local_change(seen, timeout);
        Some(now) != scanned
    }

    /// The messages to publish (retained, QoS 1, on [`Outgoing::topic`]): people changed
    /// locally first (each followed by an empty tombstone: a deletion before it no longer
    /// holds), then deletions (the tombstone, then an empty person message), each handed out
    /// once. Empty unless the mode is `both`. A message lost on the way is published again after
    /// the next reconnection ([`Replicator::reconcile`], or when the stale copy comes back).
    pub fn outgoing(&self) -> Vec<Outgoing> {
        if self.mode == ReplicationMode::Off {
            return Vec::new();
        }
        let mut inner = locks::lock(&self.inner);
        self.scan(&mut inner);
        let mut out = Vec::new();
        if self.mode == ReplicationMode::Both {
            let Inner { state, dirty, .. } = &mut *inner;
            for (id, person) in state.people.iter_mut().filter(|(_, p)| !p.sent) {
                let rows = self.gallery.rows_in_memory(id);
                if encodings_digest(&rows) != person.digest {
                    // Changed since the comparison: the next one stamps it and sends that.
                    continue;
                }
                let payload = encode_message(id, &person.version, &rows);
                person.sent = true;
                *dirty = true;
                match parse_message(id.as_str(), &payload, clock::unix_ms()) {
                    Ok(_) => {
                        ReplicationStats::add(&self.stats.published);
                        out.push(Outgoing {
                            kind: Kind::Person,
                            id: id.clone(),
                            payload,
                        });
                        out.push(Outgoing {
                            kind: Kind::Deleted,
                            id: id.clone(),
                            payload: Vec::new(),
                        });
                    }
                    Err(reason) => {
                        // Other boxes would refuse it (too many samples, odd values): kept here.
                        log::error!("gallery sync: {id} is not published: {reason}");
                        self.stats.error(&self.stats.unpublishable, &reason);
                    }
                }
            }
            for (id, tombstone) in state.tombstones.iter_mut().filter(|(_, t)| !t.sent) {
                tombstone.sent = true;
                *dirty = true;
                ReplicationStats::add(&self.stats.published_deletions);
                // The tombstone first: a box that sees the person gone sees why.
                out.push(Outgoing {
                    kind: Kind::Deleted,
                    id: id.clone(),
                    payload: encode_tombstone(id, &tombstone.version),
                });
                out.push(Outgoing {
                    kind: Kind::Person,
                    id: id.clone(),
                    payload: Vec::new(),
                });
            }
        }
        self.persist_logged(&mut inner);
        out
    }

    /// A session with the broker starts: call it before subscribing, so that what arrives from
    /// then on is what [`Replicator::reconcile`] compares with.
    pub fn connected(&self) {
        let mut inner = locks::lock(&self.inner);
        inner.seen = Some(BTreeSet::new());
        inner.seen_deleted.clear();
    }

    /// Applies a message from the broker: `topic_id` is the topic's last level
    /// ([`super::topics::topic_id`]), `payload` as received (empty: a deletion). A malformed
    /// message changes nothing and is [`ReplicationError::Malformed`].
    pub fn receive(&self, topic_id: &str, payload: &[u8]) -> Result<Applied, ReplicationError> {
        if self.mode == ReplicationMode::Off {
            return Ok(Applied::Off);
        }
        ReplicationStats::add(&self.stats.received);
        let parsed = parse_message(topic_id, payload, clock::unix_ms());
        let mut inner = locks::lock(&self.inner);
        // Any message under a valid id is something on the broker: even one this box cannot
        // read keeps reconcile from taking the person as deleted.
        if let (Ok(id), Some(seen)) = (StudentId::parse(topic_id), inner.seen.as_mut()) {
            match payload.is_empty() {
                true => seen.remove(&id),
                false => seen.insert(id),
            };
        }
        self.apply(&mut inner, topic_id, parsed)
    }

    /// Applies a tombstone from the broker (`<prefix>/gallery-deleted/<id>`): `topic_id` is the
    /// topic's last level ([`super::topics::topic_deleted_id`]), `payload` as received (empty:
    /// cleared). A malformed one changes nothing and is [`ReplicationError::Malformed`].
    pub fn receive_deleted(
        &self,
        topic_id: &str,
        payload: &[u8],
    ) -> Result<Applied, ReplicationError> {
        if self.mode == ReplicationMode::Off {
            return Ok(Applied::Off);
        }
        ReplicationStats::add(&self.stats.received);
        let parsed = parse_tombstone(topic_id, payload, clock::unix_ms());
        let mut inner = locks::lock(&self.inner);
        self.apply(&mut inner, topic_id, parsed)
    }

    pub(super) fn apply(
        &self,
        inner: &mut Inner,
        topic_id: &str,
        parsed: Result<Incoming, Malformed>,
    ) -> Result<Applied, ReplicationError> {
        let result = match parsed {
            Ok(Incoming::Deleted(id)) => self.apply_deletion(inner, &id),
            Ok(Incoming::Person { id, version, rows }) => {
                self.apply_person(inner, &id, version, rows)
            }
            Ok(Incoming::Tombstone { id, version }) => {
                inner.seen_deleted.insert(id.clone(), version.clone());
                self.apply_tombstone(inner, &id, version)
            }
            Ok(Incoming::TombstoneCleared(id)) => {
                inner.seen_deleted.remove(&id);
                Ok(Applied::Unchanged)
            }
            Err(reason) => {
                self.stats.error(&self.stats.malformed, &reason);
                log::warn!(
                    "gallery sync: message for {:?} refused: {reason}",
                    clip(topic_id)
                );
                return Err(ReplicationError::Malformed {
                    topic_id: clip(topic_id),
                    reason,
                });
            }
        };
        self.persist_logged(inner);
        match &result {
            Ok(applied) => self.stats.count(*applied),
            Err(e) => {
                log::error!("gallery sync: {topic_id}: {e}");
                self.stats.error(&self.stats.failed, e);
            }
        }
        result
    }

    pub(super) fn persist(&self, inner: &mut Inner) -> Result<(), ReplicationError> {
        if !inner.dirty {
            return Ok(());
        }
        // Plain maps of strings and numbers: serializing cannot fail.
        let bytes = serde_json::to_vec(&inner.state).unwrap_or_default();
        fsutil::atomic_write(&self.path, &bytes).map_err(|e| io_err(&self.path, e))?;
        inner.dirty = false;
        Ok(())
    }

    pub(super) fn persist_logged(&self, inner: &mut Inner) {
        if let Err(e) = self.persist(inner) {
            log::error!("gallery sync: {e}");
            self.stats.error(&self.stats.failed, &e);
        }
    }
}

/// The state file's I/O error, as the gallery's are reported.
fn io_err(path: &std::path::Path, source: std::io::Error) -> GalleryError {
    GalleryError::Io {
        path: path.to_path_buf(),
        source,
    }
}
