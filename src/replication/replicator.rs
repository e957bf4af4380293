//! One box's side of replication ([`Replicator`]): its state loaded and persisted, what arrives
//! from the broker checked and handed to the rules ([`super::rules`]), and what goes out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bounds::{Buckets, Parked};
use super::envelope;
use super::policy::{Policy, MAX_WAITING_BYTES};
use super::signers::Signers;
use super::state::{Inner, State, STATE_FILE};
use super::stats::ReplicationStats;
use super::topics::{Kind, Outgoing};
use super::wire::{
    check_box_id, clip, clock_is_set, encode_message, encode_tombstone, parse_message,
    parse_tombstone, Change, Incoming, Malformed, Version,
};
use super::{Applied, PersonChange, Refused, ReplicationError, ReplicationMode};
use crate::gallery::{person_digest_of, Gallery, GalleryError, StudentId};
use crate::unknowns::Unknowns;
use crate::{clock, fsutil, locks};

/// A refusal of one publisher is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// At most this many publishers' refusals are logged per [`LOG_EVERY`] (`/health` counts all).
const LOG_PUBLISHERS: usize = 20;
/// A person is published again to answer refused messages at most this often (a box of an
/// older release answers with its own copy: without a limit the two would ping-pong); a
/// refusal meanwhile is answered once this has passed.
const ANSWER_EVERY: Duration = Duration::from_secs(30);

/// Why a received change stopped before it was applied.
pub(super) enum Stop {
    /// Not allowed: counted, logged, nothing changed.
    Refused(Refused),
    /// Over its publisher's bounds: it waits.
    Wait,
    /// The gallery failed.
    Failed(ReplicationError),
}

impl From<GalleryError> for Stop {
    fn from(e: GalleryError) -> Stop {
        Stop::Failed(e.into())
    }
}

/// One box's side of gallery replication (see the module docs).
pub struct Replicator {
    pub(super) gallery: Arc<Gallery>,
    pub(super) box_id: String,
    pub(super) mode: ReplicationMode,
    pub(super) path: PathBuf,
    pub(super) policy: Policy,
    pub(super) inner: Mutex<Inner>,
    pub(super) stats: Arc<ReplicationStats>,
    /// The unknown faces this box keeps: a person deleted from another box takes theirs too.
    pub(super) unknowns: Option<Arc<Unknowns>>,
}

impl Replicator {
    /// Loads `data/gallery-sync.json` of the gallery's data folder (a damaged one is logged and
    /// started afresh), this box's key (`data/box-key`, made at first start) and the trust list
    /// of `policy`, and compares the gallery with the state: changes made while the service was
    /// off (by the CLI) are stamped as this box's.
    pub fn new(
        gallery: Arc<Gallery>,
        box_id: &str,
        mode: ReplicationMode,
        policy: Policy,
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
        let signers = Signers::open(gallery.data_dir(), box_id, policy.trust_file())?;
        let own_role = signers.own_role();
        let buckets = Buckets::new(policy.people_per_hour(), policy.encodings_per_hour());
        let replicator = Replicator {
            gallery,
            box_id: box_id.to_string(),
            mode,
            path,
            policy,
            inner: Mutex::new(Inner {
                state,
                scanned: None,
                seen: None,
                seen_deleted: BTreeMap::new(),
                dirty: false,
                signers,
                own_role,
                buckets,
                waiting: Default::default(),
                logged: HashMap::new(),
                answered: HashMap::new(),
                owed: BTreeSet::new(),
            }),
            stats: Arc::new(ReplicationStats::default()),
            unknowns: None,
        };
        {
            let mut inner = locks::lock(&replicator.inner);
            replicator.note_trust(&mut inner);
            if mode != ReplicationMode::Off {
                if mode == ReplicationMode::Both && own_role.is_none() {
                    log::warn!(
                        "gallery sync: this box's key is not in the trust list {}: it publishes \
                         and applies nothing until it is (face-attendance box key, then box \
                         trust add on every box)",
                        replicator.policy.trust_file().display()
                    );
                }
                replicator.scan(&mut inner);
                if mode == ReplicationMode::Both && own_role.is_some() && !inner.state.signed {
                    replicator.republish_all(&mut inner);
                }
                replicator.persist(&mut inner)?;
            }
        }
        Ok(replicator)
    }

    /// With the unknown faces store of this box: a person deleted through replication takes
    /// the unknown faces like theirs (within the tolerance) with them, as a local deletion does.
    pub fn with_unknowns(mut self, unknowns: Arc<Unknowns>) -> Replicator {
        self.unknowns = Some(unknowns);
        self
    }

    /// Forgets the unknown faces like `encodings` (a person just deleted through replication).
    pub(super) fn forget_unknowns(&self, encodings: &[crate::engine::Encoding]) {
        let Some(unknowns) = &self.unknowns else {
            return;
        };
        match unknowns.forget_matching(encodings, self.policy.tolerance()) {
            Ok(0) => {}
            Ok(n) => log::info!("gallery sync: {n} unknown faces like a deleted person forgotten"),
            Err(e) => log::warn!("gallery sync: unknown faces like a deleted person: {e}"),
        }
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

    /// The messages to publish (retained, QoS 1, on [`Outgoing::topic`]), each signed by this
    /// box: people changed locally first (each followed by an empty tombstone: a deletion
    /// before it no longer holds; a person whose digest is that of a person deleted in the
    /// same change is published as their rename), then deletions (the tombstone, then an empty
    /// person message), each handed out once. A person or deletion last written by another box
    /// (published again because the broker lost it, or answering a refused copy) gets a new
    /// version of this box. Empty unless the mode is `both`, this box's key is trusted and its
    /// clock is set; deletions only from a box of role `admin`. A message lost on the way is
    /// published again after the next reconnection ([`Replicator::reconcile`], or when the
    /// stale copy comes back).
    pub fn outgoing(&self) -> Vec<Outgoing> {
        if self.mode == ReplicationMode::Off {
            return Vec::new();
        }
        let mut inner = locks::lock(&self.inner);
        self.refresh(&mut inner);
        self.scan(&mut inner);
        let mut out = Vec::new();
        if self.mode == ReplicationMode::Both && !self.must_wait(&inner) {
            let own_role = inner.own_role;
            let deletions = Self::may_publish_deletion(own_role);
            let renames: HashMap<String, StudentId> = inner
                .state
                .tombstones
                .iter()
                .filter(|(_, t)| !t.sent && deletions)
                .filter_map(|(id, t)| Some((t.digest.clone()?, id.clone())))
                .collect();
            let people: Vec<StudentId> = inner
                .state
                .people
                .iter()
                .filter(|(_, p)| !p.sent)
                .map(|(id, _)| id.clone())
                .collect();
            for id in people {
                let (rows, label) = self.gallery.person_in_memory(&id);
                let Some(person) = inner.state.people.get(&id) else {
                    continue;
                };
                if person_digest_of(&rows, &label) != person.digest {
                    // Changed since the comparison: the next one stamps it and sends that.
                    continue;
                }
                let version = self.own_version(&id, &person.version, false);
                let change = Change {
                    force: self.has_duplicate(&id, &rows),
                    renamed_from: renames.get(&person.digest).cloned(),
                    label,
                };
                let unsigned = encode_message(&id, &version, &rows, &change);
                let payload = inner.signers.seal(Kind::Person, &unsigned);
                if let Some(person) = inner.state.people.get_mut(&id) {
                    person.version = version;
                    person.sent = true;
                }
                inner.dirty = true;
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
            if deletions {
                let ids: Vec<StudentId> = inner
                    .state
                    .tombstones
                    .iter()
                    .filter(|(_, t)| !t.sent)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in ids {
                    let Some(tombstone) = inner.state.tombstones.get(&id) else {
                        continue;
                    };
                    let version = self.own_version(&id, &tombstone.version, true);
                    let payload = inner
                        .signers
                        .seal(Kind::Deleted, &encode_tombstone(&id, &version));
                    if let Some(tombstone) = inner.state.tombstones.get_mut(&id) {
                        tombstone.version = version;
                        tombstone.sent = true;
                    }
                    inner.dirty = true;
                    ReplicationStats::add(&self.stats.published_deletions);
                    // The tombstone first: a box that sees the person gone sees why.
                    out.push(Outgoing {
                        kind: Kind::Deleted,
                        id: id.clone(),
                        payload,
                    });
                    out.push(Outgoing {
                        kind: Kind::Person,
                        id: id.clone(),
                        payload: Vec::new(),
                    });
                }
            }
        }
        self.persist_logged(&mut inner);
        out
    }

    /// `version` when this box wrote it, else a newer one of this box's (a box signs only its
    /// own versions).
    fn own_version(&self, id: &StudentId, version: &Version, deleted: bool) -> Version {
        if version.box_id() == self.box_id {
            version.clone()
        } else {
            self.stamp(id, Some(version), deleted)
        }
    }

    /// Whether one of the person's faces is within the duplicate distance of another person's
    /// (enrolled with force: twins).
    fn has_duplicate(&self, id: &StudentId, rows: &crate::gallery::Rows) -> bool {
        let Some(limit) = self.policy.duplicate_limit() else {
            return false;
        };
        rows.iter().any(|(e, _)| {
            self.gallery
                .nearest_other(e, id)
                .is_some_and(|(_, d)| d <= limit)
        })
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
    /// message changes nothing and is [`ReplicationError::Malformed`]; one not allowed (not
    /// signed by a trusted key with the role it needs, or failing the enrollment checks)
    /// changes nothing and is [`ReplicationError::Refused`]; one that must wait is
    /// [`Applied::Waiting`].
    pub fn receive(&self, topic_id: &str, payload: &[u8]) -> Result<Applied, ReplicationError> {
        self.take(Kind::Person, topic_id, payload)
    }

    /// Applies a tombstone from the broker (`<prefix>/gallery-deleted/<id>`): `topic_id` is the
    /// topic's last level ([`super::topics::topic_deleted_id`]), `payload` as received (empty:
    /// cleared). As [`Replicator::receive`].
    pub fn receive_deleted(
        &self,
        topic_id: &str,
        payload: &[u8],
    ) -> Result<Applied, ReplicationError> {
        self.take(Kind::Deleted, topic_id, payload)
    }

    /// Applies the messages waiting that may go now (the clock set, this box trusted, their
    /// publishers' bounds refilled), and reads the trust list again if it changed. For the
    /// applying thread, about once a second.
    pub fn tick(&self) {
        if self.mode == ReplicationMode::Off {
            return;
        }
        let mut inner = locks::lock(&self.inner);
        self.refresh(&mut inner);
        let now = Instant::now();
        let due: Vec<StudentId> = inner
            .owed
            .iter()
            .filter(|id| {
                inner
                    .answered
                    .get(*id)
                    .is_none_or(|t| now.saturating_duration_since(*t) >= ANSWER_EVERY)
            })
            .cloned()
            .collect();
        for id in due {
            inner.owed.remove(&id);
            self.answer(&mut inner, id, now);
        }
        if self.must_wait(&inner) || inner.waiting.len() == 0 {
            return;
        }
        for parked in inner.waiting.drain() {
            let Parked {
                kind,
                topic_id,
                payload,
            } = parked;
            // Errors are counted and logged on the way.
            let _ = self.admit(&mut inner, kind, &topic_id, &payload);
        }
        self.note_waiting(&inner);
    }

    fn take(
        &self,
        kind: Kind,
        topic_id: &str,
        payload: &[u8],
    ) -> Result<Applied, ReplicationError> {
        if self.mode == ReplicationMode::Off {
            return Ok(Applied::Off);
        }
        ReplicationStats::add(&self.stats.received);
        let mut inner = locks::lock(&self.inner);
        // Any message under a valid id is something on the broker: even one this box cannot
        // read keeps reconcile from taking the person as deleted.
        if kind == Kind::Person {
            if let (Ok(id), Some(seen)) = (StudentId::parse(topic_id), inner.seen.as_mut()) {
                match payload.is_empty() {
                    true => seen.remove(&id),
                    false => seen.insert(id),
                };
            }
        }
        self.refresh(&mut inner);
        if self.must_wait(&inner) || inner.waiting.has_person(topic_id) {
            // Only what a trusted box signed may take a place (an empty message has no
            // signature, and is that of a deletion the box waits for, or refused later).
            if !payload.is_empty() {
                if let Err(reason) = inner.signers.verify(kind, payload) {
                    return self.refused(&mut inner, kind, topic_id, payload, reason);
                }
            }
            return self.park(&mut inner, kind, topic_id, payload);
        }
        self.admit(&mut inner, kind, topic_id, payload)
    }

    /// Checks a message (its form, then its signature) and hands it to the rules.
    fn admit(
        &self,
        inner: &mut Inner,
        kind: Kind,
        topic_id: &str,
        payload: &[u8],
    ) -> Result<Applied, ReplicationError> {
        let now = clock::unix_ms();
        let parsed = match kind {
            Kind::Person => parse_message(topic_id, payload, now),
            Kind::Deleted => parse_tombstone(topic_id, payload, now),
        };
        let incoming = match parsed {
            Ok(incoming) => incoming,
            Err(reason) => return Err(self.malformed(topic_id, reason)),
        };
        let signer = match &incoming {
            Incoming::Person { version, .. } | Incoming::Tombstone { version, .. } => {
                match inner.signers.verify(kind, payload) {
                    Ok(signer) if signer.box_id != version.box_id() => {
                        let reason = Refused::ForgedBoxId {
                            signer: signer.box_id,
                            claimed: version.box_id().to_string(),
                        };
                        return self.refused(inner, kind, topic_id, payload, reason);
                    }
                    Ok(signer) => Some(signer),
                    Err(reason) => return self.refused(inner, kind, topic_id, payload, reason),
                }
            }
            Incoming::Deleted(_) | Incoming::TombstoneCleared(_) => None,
        };
        let result = match (incoming, signer) {
            (Incoming::Deleted(id), _) => self.apply_deletion(inner, &id),
            (
                Incoming::Person {
                    id,
                    version,
                    rows,
                    force,
                    renamed_from,
                    label,
                },
                Some(signer),
            ) => {
                let change = PersonChange {
                    id: &id,
                    rows: &rows,
                    force,
                    renamed_from: renamed_from.as_ref(),
                    label: &label,
                };
                self.apply_person(inner, &signer, &change, version)
            }
            (Incoming::Tombstone { id, version }, Some(signer)) => {
                inner.seen_deleted.insert(id.clone(), version.clone());
                self.apply_tombstone(inner, &signer, &id, version)
            }
            (Incoming::TombstoneCleared(id), _) => {
                inner.seen_deleted.remove(&id);
                Ok(Applied::Unchanged)
            }
            // Signed kinds always have a signer (above).
            (_, None) => Ok(Applied::Unchanged),
        };
        let result = match result {
            Ok(applied) => Ok(applied),
            Err(Stop::Wait) => return self.park(inner, kind, topic_id, payload),
            Err(Stop::Refused(reason)) => {
                return self.refused(inner, kind, topic_id, payload, reason)
            }
            Err(Stop::Failed(e)) => Err(e),
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

    fn malformed(&self, topic_id: &str, reason: Malformed) -> ReplicationError {
        self.stats.error(&self.stats.malformed, &reason);
        log::warn!(
            "gallery sync: message for {:?} refused: {reason}",
            clip(topic_id)
        );
        ReplicationError::Malformed {
            topic_id: clip(topic_id),
            reason,
        }
    }

    /// A message not allowed: counted, logged at most once a minute per publisher, and, for a
    /// person this box has (in mode `both`, trusted), answered with this box's copy so that the
    /// broker holds a good one again.
    fn refused(
        &self,
        inner: &mut Inner,
        kind: Kind,
        topic_id: &str,
        payload: &[u8],
        reason: Refused,
    ) -> Result<Applied, ReplicationError> {
        self.stats.refuse(&reason);
        let publisher = match envelope::open(payload) {
            Ok(seal) => clip(seal.signed_by),
            Err(_) => "(unsigned)".to_string(),
        };
        let now = Instant::now();
        let due = inner
            .logged
            .get(&publisher)
            .is_none_or(|t| now.saturating_duration_since(*t) >= LOG_EVERY);
        // Publishers are names anyone may claim: at most LOG_PUBLISHERS of them a minute.
        let recent = inner
            .logged
            .values()
            .filter(|t| now.saturating_duration_since(**t) < LOG_EVERY)
            .count();
        if due && recent < LOG_PUBLISHERS {
            if inner.logged.len() >= 1_000 {
                inner
                    .logged
                    .retain(|_, t| now.saturating_duration_since(*t) < LOG_EVERY);
            }
            inner.logged.insert(publisher.clone(), now);
            log::warn!(
                "gallery sync: {} message for {:?} from {publisher} refused: {reason} (refusals \
                 of this publisher are logged once a minute; /health counts them all)",
                match kind {
                    Kind::Person => "person",
                    Kind::Deleted => "deletion",
                },
                clip(topic_id)
            );
        }
        if let Ok(id) = StudentId::parse(topic_id) {
            self.answer(inner, id, now);
        }
        Err(ReplicationError::Refused {
            topic_id: clip(topic_id),
            reason,
        })
    }

    /// Publishes this box's copy of `id` again (mode `both`, trusted, a person it has), at most
    /// once per [`ANSWER_EVERY`]; held back, it is owed and answered by [`Replicator::tick`].
    fn answer(&self, inner: &mut Inner, id: StudentId, now: Instant) {
        if self.mode != ReplicationMode::Both
            || inner.own_role.is_none()
            || !inner.state.people.contains_key(&id)
        {
            return;
        }
        let recently = inner
            .answered
            .get(&id)
            .is_some_and(|t| now.saturating_duration_since(*t) < ANSWER_EVERY);
        if recently {
            if inner.owed.len() < 10_000 {
                inner.owed.insert(id);
            }
            return;
        }
        if let Some(person) = inner.state.people.get_mut(&id) {
            person.broker = None;
            person.sent = false;
            inner.dirty = true;
        }
        if inner.answered.len() >= 10_000 {
            inner
                .answered
                .retain(|_, t| now.saturating_duration_since(*t) < ANSWER_EVERY);
        }
        inner.answered.insert(id, now);
        self.persist_logged(inner);
    }

    /// Parks a message until it may be applied; refused ([`Refused::OverCap`]) when too many
    /// wait.
    fn park(
        &self,
        inner: &mut Inner,
        kind: Kind,
        topic_id: &str,
        payload: &[u8],
    ) -> Result<Applied, ReplicationError> {
        let parked = Parked {
            kind,
            topic_id: topic_id.to_string(),
            payload: payload.to_vec(),
        };
        let parked = inner
            .waiting
            .park(parked, self.policy.max_waiting(), MAX_WAITING_BYTES);
        self.note_waiting(inner);
        match parked {
            Ok(()) => Ok(Applied::Waiting),
            Err(_) => self.refused(inner, kind, topic_id, payload, Refused::OverCap),
        }
    }

    /// Whether messages must wait: the clock is not set, or (in mode `both`) this box's key is
    /// not trusted.
    pub(super) fn must_wait(&self, inner: &Inner) -> bool {
        !clock_is_set(clock::unix_ms())
            || (self.mode == ReplicationMode::Both && inner.own_role.is_none())
    }

    /// Reads the trust list again if it changed; a box that becomes trusted publishes what it
    /// has again, signed.
    pub(super) fn refresh(&self, inner: &mut Inner) {
        if inner.signers.refresh(Instant::now()) {
            let role = inner.signers.own_role();
            if role.is_some() && inner.own_role.is_none() && self.mode == ReplicationMode::Both {
                self.republish_all(inner);
            }
            if role.is_none() {
                // Trusted again later: everything goes again.
                inner.state.signed = false;
                inner.dirty = true;
            }
            inner.own_role = role;
        }
        self.note_trust(inner);
    }

    /// Marks everything this box has for publication, signed (it became trusted).
    fn republish_all(&self, inner: &mut Inner) {
        log::info!(
            "gallery sync: this box's key is trusted: everything it has is published again, \
             signed"
        );
        for person in inner.state.people.values_mut() {
            person.sent = false;
        }
        for tombstone in inner.state.tombstones.values_mut() {
            tombstone.sent = false;
        }
        inner.state.signed = true;
        inner.dirty = true;
    }

    fn note_trust(&self, inner: &mut Inner) {
        use std::sync::atomic::Ordering;
        let trusted = self.mode != ReplicationMode::Both || inner.own_role.is_some();
        let was = self.stats.trusted.swap(trusted, Ordering::Relaxed);
        self.stats
            .clock_set
            .store(clock_is_set(clock::unix_ms()), Ordering::Relaxed);
        let mut shown = locks::lock(&self.stats.trust);
        if was != trusted || shown.is_null() || inner.signers.changed_since_shown() {
            *shown = inner.signers.show();
        }
    }

    fn note_waiting(&self, inner: &Inner) {
        use std::sync::atomic::Ordering;
        self.stats
            .waiting
            .store(inner.waiting.len() as u64, Ordering::Relaxed);
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
