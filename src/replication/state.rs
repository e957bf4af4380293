//! What replication knows per box: each person's version, digest and what the broker was last
//! seen holding, and the tombstones of deletions, kept in `data/gallery-sync.json` (written
//! atomically), not in the `.npy` or samples files that the Python service and the CLI write
//! without knowing of replication.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::bounds::{Buckets, Waiting};
use super::signers::Signers;
use super::trust::Role;
use super::wire::Version;
use crate::gallery::StudentId;

/// Most tombstones kept.
pub const MAX_TOMBSTONES: usize = 10_000;

/// The state file's name in the data folder.
pub(super) const STATE_FILE: &str = "gallery-sync.json";

/// What replication knows of a person this box has.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct PersonState {
    pub(super) version: Version,
    /// [`crate::gallery::person_digest_of`] of the person at that version.
    pub(super) digest: String,
    /// The last version of theirs seen on the broker (none: never, or gone from it).
    #[serde(default)]
    pub(super) broker: Option<Version>,
    /// Handed out for publication since the last change.
    #[serde(default)]
    pub(super) sent: bool,
}

/// A person deleted (here, or elsewhere: a tombstone received).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Tombstone {
    pub(super) version: Version,
    #[serde(default)]
    pub(super) broker: Option<Version>,
    #[serde(default)]
    pub(super) sent: bool,
    /// The person's digest when this box deleted them (a rename publishes the new id with the
    /// old one's deletion as one change when the digests are equal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) digest: Option<String>,
}

/// `data/gallery-sync.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct State {
    #[serde(default)]
    pub(super) people: BTreeMap<StudentId, PersonState>,
    #[serde(default)]
    pub(super) tombstones: BTreeMap<StudentId, Tombstone>,
    /// Everything here was published signed since this box was last trusted (a box upgraded
    /// from a release that did not sign publishes everything again, signed, once trusted).
    #[serde(default)]
    pub(super) signed: bool,
}

pub(super) struct Inner {
    pub(super) state: State,
    /// The gallery's local change count at the last comparison (none: never compared).
    pub(super) scanned: Option<u64>,
    /// Ids with a retained message since [`Replicator::connected`] (none: not connected).
    pub(super) seen: Option<BTreeSet<StudentId>>,
    /// Tombstones on the broker since [`Replicator::connected`], with their versions.
    pub(super) seen_deleted: BTreeMap<StudentId, Version>,
    pub(super) dirty: bool,
    /// This box's key and the trust list.
    pub(super) signers: Signers,
    /// This box's role when last looked at (none: not trusted).
    pub(super) own_role: Option<Role>,
    /// The bounds per publisher.
    pub(super) buckets: Buckets,
    /// Messages waiting.
    pub(super) waiting: Waiting,
    /// When a refusal of each publisher was last logged.
    pub(super) logged: HashMap<String, Instant>,
    /// When each person was last published again to answer a refused message (at most once a
    /// minute: an old release answering with its own copy would otherwise ping-pong).
    pub(super) answered: HashMap<StudentId, Instant>,
    /// People whose answer was held back by that limit: answered once it has passed.
    pub(super) owed: BTreeSet<StudentId>,
}

/// Keeps at most [`MAX_TOMBSTONES`], dropping the oldest.
pub(super) fn prune_tombstones(tombstones: &mut BTreeMap<StudentId, Tombstone>) {
    if tombstones.len() <= MAX_TOMBSTONES {
        return;
    }
    let mut by_age: Vec<(Version, StudentId)> = tombstones
        .iter()
        .map(|(id, t)| (t.version.clone(), id.clone()))
        .collect();
    by_age.sort();
    let excess = tombstones.len() - MAX_TOMBSTONES;
    for (_, id) in by_age.into_iter().take(excess) {
        tombstones.remove(&id);
    }
}

/// The path of replication's state file in `data_dir`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}
