//! The reconcile rules (see [`super`]'s contract): a local change is found by comparison and
//! stamped with a newer version ([`Replicator::scan`]); a person, a tombstone or an empty
//! person message from the broker is applied by version ([`Replicator::apply_person`],
//! [`Replicator::apply_tombstone`], [`Replicator::apply_deletion`]); and once a session's
//! retained messages are in, [`Replicator::reconcile`] converges on what the broker holds.

use std::time::Instant;

use super::replicator::{Replicator, Stop};
use super::state::{prune_tombstones, Inner, PersonState, Tombstone};
use super::stats::ReplicationStats;
use super::trust::Trusted;
use super::wire::Version;
use super::{Applied, PersonChange, Reconciled, Refused, ReplicationError, ReplicationMode};
use crate::clock;
use crate::gallery::{person_digest_of, StudentId};
use crate::locks;

impl Replicator {
    /// Once the retained messages of a new session have arrived (after
    /// [`Replicator::connected`] and the subscription): removes the people deleted elsewhere
    /// while this box was away and marks for publication what the broker lacks (see the module
    /// docs). Not connected: nothing to compare with, nothing done.
    pub fn reconcile(&self) -> Result<Reconciled, ReplicationError> {
        let mut done = Reconciled::default();
        if self.mode == ReplicationMode::Off {
            return Ok(done);
        }
        let mut inner = locks::lock(&self.inner);
        self.refresh(&mut inner);
        if self.must_wait(&inner) {
            // Nothing applied yet: the messages wait, and the next session reconciles.
            return Ok(done);
        }
        self.scan(&mut inner);
        let Some(seen) = inner.seen.clone() else {
            return Ok(done);
        };
        let both = self.mode == ReplicationMode::Both;
        if seen.is_empty() && !inner.state.people.is_empty() {
            log::warn!(
                "gallery sync: the broker holds no gallery message; taken as a broker that lost \
                 its retained messages, not as everyone deleted"
            );
        }
        let seen_deleted = inner.seen_deleted.clone();
        let absent: Vec<StudentId> = inner
            .state
            .people
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        let mut result = Ok(());
        for id in absent {
            let Some(person) = inner.state.people.get_mut(&id) else {
                continue;
            };
            // Only a tombstone newer than the person says they were deleted; without one, the
            // broker lost their message.
            let deleted_elsewhere = seen_deleted.get(&id).is_some_and(|t| *t > person.version);
            if !deleted_elsewhere {
                person.broker = None;
                if both {
                    person.sent = false;
                    done.to_publish += 1;
                }
                inner.dirty = true;
                continue;
            }
            let expected = person.digest.clone();
            let faces: Vec<_> = self
                .gallery
                .rows_in_memory(&id)
                .into_iter()
                .map(|(e, _)| e)
                .collect();
            match self
                .gallery
                .remove_received(&id, Some(&expected), "sync:reconcile")
            {
                Ok(true) => {
                    self.forget_unknowns(&faces);
                    inner.state.people.remove(&id);
                    inner.dirty = true;
                    done.removed += 1;
                    ReplicationStats::add(&self.stats.removed);
                }
                // Changed meanwhile: the next comparison stamps it, and it stays.
                Ok(false) => ReplicationStats::add(&self.stats.conflicts),
                Err(e) => {
                    self.stats.error(&self.stats.failed, &e);
                    result = Err(e);
                    break;
                }
            }
        }
        // A deletion the broker does not hold (published while this box was away from it, or
        // lost by the broker), and no newer person there (one would have replaced it): again.
        let Inner { state, dirty, .. } = &mut *inner;
        for (id, tombstone) in state.tombstones.iter_mut() {
            let on_broker = seen_deleted
                .get(id)
                .is_some_and(|t| *t >= tombstone.version);
            if !on_broker && !seen.contains(id) && both && tombstone.sent {
                tombstone.broker = None;
                tombstone.sent = false;
                *dirty = true;
                done.to_publish += 1;
            }
        }
        prune_tombstones(&mut inner.state.tombstones);
        self.persist(&mut inner)?;
        result?;
        if done != Reconciled::default() {
            log::info!(
                "gallery sync: {} removed (deleted elsewhere), {} to publish",
                done.removed,
                done.to_publish
            );
        }
        Ok(done)
    }

    /// A version for a local change of `id` replacing `previous`: when its `.npy` was written
    /// (now for a deletion), by this box, after `previous`.
    pub(super) fn stamp(
        &self,
        id: &StudentId,
        previous: Option<&Version>,
        deleted: bool,
    ) -> Version {
        let written = (!deleted)
            .then(|| self.gallery.encodings_written_ms(id))
            .flatten()
            .unwrap_or_else(clock::unix_ms);
        let after = previous.map_or(0, |v| v.updated_ms.saturating_add(1));
        Version::new(written.max(after), &self.box_id)
    }

    /// Compares the person `id` (their digest now, none: not enrolled) with the state, and
    /// records a local change.
    pub(super) fn observe(&self, inner: &mut Inner, id: &StudentId, now: Option<String>) {
        let state = &mut inner.state;
        match (state.people.get_mut(id), now) {
            (Some(person), Some(d)) if person.digest == d => return,
            (Some(person), Some(d)) => {
                person.version = self.stamp(id, Some(&person.version), false);
                person.digest = d;
                person.sent = false;
            }
            (Some(_), None) => {
                // A `.npy` that is there but not loaded (damaged, or not reloaded yet) is not
                // a deletion to tell every box about.
                if self.gallery.has_encodings_file(id) {
                    return;
                }
                let Some(person) = state.people.remove(id) else {
                    return;
                };
                let version = self.stamp(id, Some(&person.version), true);
                state.tombstones.insert(
                    id.clone(),
                    Tombstone {
                        version,
                        broker: person.broker,
                        sent: false,
                        digest: Some(person.digest),
                    },
                );
                prune_tombstones(&mut state.tombstones);
            }
            (None, Some(d)) => {
                let tombstone = state.tombstones.remove(id);
                let version = self.stamp(id, tombstone.as_ref().map(|t| &t.version), false);
                state.people.insert(
                    id.clone(),
                    PersonState {
                        version,
                        digest: d,
                        broker: tombstone.and_then(|t| t.broker),
                        sent: false,
                    },
                );
            }
            (None, None) => return,
        }
        inner.dirty = true;
    }

    /// Compares the whole gallery with the state when it changed locally since last time.
    pub(super) fn scan(&self, inner: &mut Inner) {
        // Read before the gallery: a change after this is seen by the next scan.
        let count = self.gallery.local_change_count();
        if inner.scanned == Some(count) {
            return;
        }
        let now = self.gallery.person_digests();
        for (id, d) in &now {
            self.observe(inner, id, Some(d.clone()));
        }
        let gone: Vec<StudentId> = inner
            .state
            .people
            .keys()
            .filter(|id| !now.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.observe(inner, &id, None);
        }
        inner.scanned = Some(count);
    }

    /// A person signed by `signer`: applied when newer than this box's version (or
    /// deletion), the signer's role allows it and its faces pass the enrollment checks
    /// ([`Replicator::check_person`]), within the signer's bounds (else it waits). A rename
    /// removes the old id in the same step.
    pub(super) fn apply_person(
        &self,
        inner: &mut Inner,
        signer: &Trusted,
        change: &PersonChange<'_>,
        version: Version,
    ) -> Result<Applied, Stop> {
        let id = change.id;
        // A local change not compared yet is stamped first, so that it competes by its time.
        let current = self.gallery.person_digest(id);
        self.observe(inner, id, current);
        let both = self.mode == ReplicationMode::Both;
        // A deletion of this box's that it may not publish (it is not an admin) holds here
        // only: the site's person wins over it.
        let local_only = !Self::may_publish_deletion(inner.own_role);
        let state = &mut inner.state;
        let local = match (state.people.get_mut(id), state.tombstones.get_mut(id)) {
            (Some(person), _) => Some((&person.version, &mut person.broker, &mut person.sent)),
            (None, Some(t)) if local_only && t.version.box_id() == self.box_id => None,
            (None, Some(t)) => Some((&t.version, &mut t.broker, &mut t.sent)),
            (None, None) => None,
        };
        if let Some((local, broker, sent)) = local {
            if version <= *local {
                let equal = version == *local;
                if broker.as_ref() != Some(&version) || (!equal && both && *sent) {
                    *broker = Some(version);
                    // The broker holds a stale copy: ours (or our deletion) goes again.
                    *sent = equal || !both;
                    inner.dirty = true;
                }
                return Ok(if equal {
                    Applied::Unchanged
                } else {
                    Applied::Older
                });
            }
        }
        let new_digest = person_digest_of(change.rows, change.label);
        let expected = state.people.get(id).map(|p| p.digest.clone());
        let old = change
            .renamed_from
            .filter(|old| state.people.contains_key(*old));
        if expected.as_deref() != Some(new_digest.as_str()) || old.is_some() {
            self.check_person(signer, change).map_err(Stop::Refused)?;
            if !inner
                .buckets
                .take(&signer.box_id, change.rows.len(), Instant::now())
            {
                return Err(Stop::Wait);
            }
        }
        let by = format!("sync:{}", version.box_id());
        if expected.as_deref() != Some(new_digest.as_str())
            && !self.gallery.put_received(
                id,
                change.rows,
                change.label,
                expected.as_deref(),
                &by,
            )?
        {
            return Ok(Applied::Conflict);
        }
        let state = &mut inner.state;
        if let Some(old) = old {
            // The rename's other half: the old id goes with it (its tombstone follows).
            let expected_old = state.people.get(old).map(|p| p.digest.clone());
            if self
                .gallery
                .remove_received(old, expected_old.as_deref(), &by)?
            {
                state.people.remove(old);
                ReplicationStats::add(&self.stats.removed);
            }
        }
        state.tombstones.remove(id);
        state.people.insert(
            id.clone(),
            PersonState {
                version: version.clone(),
                digest: new_digest,
                broker: Some(version),
                sent: true,
            },
        );
        inner.dirty = true;
        Ok(Applied::Updated)
    }

    /// A tombstone signed by `signer` (an admin: only they may delete): the deletion wins over
    /// an older person, loses to a newer one.
    pub(super) fn apply_tombstone(
        &self,
        inner: &mut Inner,
        signer: &Trusted,
        id: &StudentId,
        version: Version,
    ) -> Result<Applied, Stop> {
        self.check_deletion(signer).map_err(Stop::Refused)?;
        let current = self.gallery.person_digest(id);
        self.observe(inner, id, current);
        let both = self.mode == ReplicationMode::Both;
        if let Some(person) = inner.state.people.get_mut(id) {
            if version <= person.version {
                // A stale tombstone: the person came back after it; in `both`, published again
                // (with the tombstone cleared).
                if both && person.sent {
                    person.sent = false;
                    inner.dirty = true;
                }
                return Ok(Applied::Older);
            }
            let expected = person.digest.clone();
            if !inner.buckets.take(&signer.box_id, 0, Instant::now()) {
                return Err(Stop::Wait);
            }
            let by = format!("sync:{}", version.box_id());
            let faces: Vec<_> = self
                .gallery
                .rows_in_memory(id)
                .into_iter()
                .map(|(e, _)| e)
                .collect();
            if !self.gallery.remove_received(id, Some(&expected), &by)? {
                return Ok(Applied::Conflict);
            }
            self.forget_unknowns(&faces);
            let person = inner.state.people.remove(id);
            inner.state.tombstones.insert(
                id.clone(),
                Tombstone {
                    version,
                    broker: person.and_then(|p| p.broker),
                    sent: true,
                    digest: None,
                },
            );
            prune_tombstones(&mut inner.state.tombstones);
            inner.dirty = true;
            return Ok(Applied::Removed);
        }
        match inner.state.tombstones.get_mut(id) {
            Some(t) if version == t.version => Ok(Applied::Unchanged),
            Some(t) if version < t.version => {
                // The broker holds an older deletion: ours goes again.
                if both && t.sent {
                    t.sent = false;
                    inner.dirty = true;
                }
                Ok(Applied::Older)
            }
            Some(t) => {
                t.version = version;
                t.sent = true;
                inner.dirty = true;
                Ok(Applied::Unchanged)
            }
            None => {
                // Not here: remembered, so that an older copy of theirs is not added.
                inner.state.tombstones.insert(
                    id.clone(),
                    Tombstone {
                        version,
                        broker: None,
                        sent: true,
                        digest: None,
                    },
                );
                prune_tombstones(&mut inner.state.tombstones);
                inner.dirty = true;
                Ok(Applied::Absent)
            }
        }
    }

    /// An empty person message: it carries no signature, so it removes nobody. It is the
    /// companion of a tombstone (which says all), or it is refused ([`Refused::Unsigned`]) when
    /// this box has the person, who is then published again (mode `both`).
    pub(super) fn apply_deletion(
        &self,
        inner: &mut Inner,
        id: &StudentId,
    ) -> Result<Applied, Stop> {
        let current = self.gallery.person_digest(id);
        self.observe(inner, id, current);
        if inner.state.people.contains_key(id) {
            return Err(Stop::Refused(Refused::Unsigned));
        }
        if inner.state.tombstones.contains_key(id) {
            // The deletion's companion: its tombstone says all.
            return Ok(Applied::Unchanged);
        }
        Ok(Applied::Absent)
    }
}
