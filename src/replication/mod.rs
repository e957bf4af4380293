//! Gallery replication between the boxes of a site (`GALLERY_SYNC`): each person is one retained
//! message `<prefix>/gallery/<student_id>` on the broker ([`crate::mqtt`]), each deletion one
//! retained tombstone `<prefix>/gallery-deleted/<student_id>`, and every box converges on what the
//! broker holds. This module is the transport-agnostic part: what a message is, how one is checked
//! and applied, and which local changes go out. The MQTT connection hands it what arrives
//! ([`Replicator::receive`], [`Replicator::receive_deleted`]) and publishes what it gives
//! ([`Replicator::outgoing`]).
//!
//! Messages (retained, QoS 1, JSON, at most [`wire::MAX_PAYLOAD`] bytes):
//! - person, on [`topics::topic`]: `{"format":1,"student_id":"alip","version":{"updated_ms":…,
//!   "box_id":"gate-1"},"samples":[{"encoding":[128 numbers],"enrolled_at":<unix s>,
//!   "quality":{…}}],"force":true,"renamed_from":"alif","name":"Alip Nugraha","group":"7A",
//!   "signed_by":"gate-1","signature":"…"}` (`force`: enrolled despite a duplicate;
//!   `renamed_from`: a rename; `name`, `group`: the person's, inside what is signed; each only
//!   when so; a box of an earlier release ignores the names); an empty payload: the person's message gone from the broker (it deletes
//!   nobody: a deletion is a signed tombstone).
//! - tombstone, on [`topics::topic_deleted`]: `{"format":1,"student_id":"alip","version":{…},
//!   "signed_by":…,"signature":…}`, the deletion's version; an empty payload: no tombstone
//!   (cleared when the person comes back).
//!
//! A deletion is published as its tombstone, then the empty person message; a person as their
//! message, then an empty tombstone. Face crops and rejections stay on their box. A rename is
//! the new id's message naming the old id (`renamed_from`), then the old id's tombstone.
//!
//! Trust ([`envelope`], [`keys`], [`trust`], `signers.rs`, `checks.rs`):
//! - Every message with a body is signed by the box that wrote its version (Ed25519, its key in
//!   `data/box-key`, made at first start): `signed_by` must be the version's box id and a box
//!   of the trust list (`GALLERY_TRUSTED_KEYS`, read again when the file changes), and the
//!   signature must verify over every byte of the message but itself, for its kind. Otherwise
//!   the message changes nothing, is counted ([`Refused::reason`]: `/health`'s
//!   `gallery_sync.refused`, `/metrics`' `gallery_sync_refused`) and logged once a minute per
//!   publisher; a box in mode `both` answers it with its own copy of the person (at most once a
//!   minute per person), so that the broker holds a good one again.
//! - Roles: `enroll` may add new people, and samples to a person only when each new face is
//!   within the tolerance of theirs; `admin` may also replace or remove samples, delete, rename
//!   and force a duplicate. Every new face passes the checks of a local enrollment: the
//!   duplicate check against other people (unless an admin forced it) and this box's
//!   rejections. A box publishes only what its role allows (deletions: admins only); a deletion
//!   a non-admin box made holds on that box only.
//! - A box in mode `both` whose own key is not in its trust list keeps its gallery, publishes
//!   nothing and applies nothing (its messages wait) and says so in `/health`
//!   (`gallery_sync.state`: `not_trusted`); once trusted, and once after an upgrade from a
//!   release that did not sign, it publishes everything it has again, signed. A person or a
//!   deletion last written by another box is published with a new version of this box's.
//! - A clock earlier than this binary's build ([`wire::BUILD_MS`]: a board without RTC before
//!   NTP) publishes nothing and applies nothing until it is set (`clock_not_set`); versions more
//!   than [`wire::MAX_FUTURE_MS`] ahead, or after [`wire::MAX_VERSION_MS`], are refused.
//! - Bounds per publisher ([`Policy`]: people and encodings per hour): over them, messages wait
//!   and are applied as the bounds refill, in order; over the waiting cap, refused and counted.
//!
//! Contract:
//! - Versions: a person's version is `(updated_ms, box_id)`, ordered by time then box id (so
//!   two versions are never equal unless they are the same write). A local change is stamped
//!   with the time its `.npy` was written (a change the CLI made while the service was off
//!   keeps its time) by this box, and is always newer than the version it replaces; a received
//!   person keeps the sender's version. Versions, what this box last saw on the broker and
//!   tombstones live in `data/gallery-sync.json` (written atomically), not in the `.npy` or
//!   samples files the Python service and the CLI write without knowing of replication.
//! - Local changes are found by comparison, not by a list: every change of the gallery (this
//!   process's, or another's found by `reload_if_changed`) wakes replication
//!   ([`crate::gallery::Gallery::wait_local_change`]), which compares a digest of each person's
//!   encodings (and name and group, [`crate::gallery::person_digest_of`]) with the one it
//!   recorded: a change of name or group is a new version, published as a sample change is. Changes applied from the broker record their digest and do
//!   not wake it: a box never publishes again what it received.
//! - Last writer wins: a received person newer than the local version replaces the person
//!   (through the gallery's write path: `.npy`, metadata, matching, audit `by: sync:<box>`);
//!   an older one is ignored, and a box that publishes answers it with its own newer copy (the
//!   broker held a stale one: a publication of ours was lost). Equal: nothing to do.
//! - Deletion wins by version too: a person this box deletes becomes a local tombstone (the
//!   deletion's version, after the person's). A tombstone received newer than the local person
//!   removes them (and is kept locally); older, it is ignored (in mode `both` the person is
//!   published again, which clears it). A person message older than a local tombstone is not added
//!   (in `both`, answered with the deletion again); a newer one (enrolled again) wins. At most
//!   [`state::MAX_TOMBSTONES`] are kept locally, the oldest dropped first; on the broker there is
//!   one per deleted id.
//! - An empty person message (a box of an older release, or `mosquitto_pub -r -n`) removes
//!   nobody: for a person this box has it is refused as unsigned (and answered with their
//!   copy); after a tombstone it is that deletion's companion.
//! - Convergence on connect: [`Replicator::connected`] when the session starts (before the
//!   subscriptions), then [`Replicator::reconcile`] once the retained messages have arrived. A
//!   person with no retained message is removed only when a tombstone newer than them was seen
//!   (which, received, already removed them); without one the broker lost their message (a
//!   power cut before its save, a broker without persistence or reinstalled): they are kept,
//!   and published again in mode `both`. A local tombstone that the broker does not hold (at
//!   that version or newer), with no person message there, is published again (the tombstone
//!   and the empty person message) in mode `both`.
//! - Input from the broker is hostile: size, id rules ([`crate::gallery::StudentId::parse`]), the
//!   topic's id equal to the body's, format (tombstones too, and their version as below), 1 to
//!   [`wire::MAX_SAMPLES`] samples of exactly 128 finite values within ±[`wire::MAX_ABS_VALUE`], a
//!   topic-safe box id, a version at most [`wire::MAX_FUTURE_MS`] ahead of this box's clock. A
//!   bad message is a typed error, counted and logged, and changes nothing.
//! - [`ReplicationMode::Pull`]: applies, never publishes, and needs no trust for its own key
//!   (local changes keep versions; a tombstone wins over them by version);
//!   [`ReplicationMode::Off`]: does nothing.
//!
//! Files: [`wire`] (the messages and their limits), [`topics`], [`state`] (what this box knows,
//! `data/gallery-sync.json`), [`keys`], [`trust`] and [`envelope`] (keys, the trust list, the
//! signature on the wire), `signers.rs` (this box's key and list, read again when changed),
//! `checks.rs` (roles and the enrollment checks), `bounds.rs` (bounds per publisher and the
//! messages waiting), [`policy`], `rules.rs` (reconcile rules), `stats.rs` and [`Replicator`]
//! (one box's side, tying them together). Replication depends on the gallery store's public API only
//! ([`crate::gallery::received`]: each person's rows and digest as matching holds them, and
//! writes compared-and-set on that digest); the MQTT connection only carries its bytes
//! ([`crate::mqtt::GalleryLink`]).

mod bounds;
mod checks;
pub mod envelope;
pub mod keys;
pub mod policy;
mod replicator;
mod rules;
mod signers;
mod state;
mod stats;
#[cfg(test)]
mod tests;
pub(crate) mod topics;
pub mod trust;
pub mod wire;

use thiserror::Error;

use crate::gallery::GalleryError;
pub use policy::Policy;
pub use replicator::Replicator;
pub use state::{state_path, MAX_TOMBSTONES};
pub use stats::ReplicationStats;
pub use topics::{Kind, Outgoing};
pub use trust::Role;
pub use wire::{Incoming, Malformed, Version};

/// How a box takes part in replication (`GALLERY_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// Neither publishes nor applies gallery messages.
    Off,
    /// Applies what other boxes publish; publishes nothing.
    Pull,
    /// Applies and publishes.
    Both,
}

/// A person's change as received, for the checks (`checks.rs`) and the rules (`rules.rs`).
pub(crate) struct PersonChange<'a> {
    pub(crate) id: &'a crate::gallery::StudentId,
    pub(crate) rows: &'a crate::gallery::Rows,
    pub(crate) force: bool,
    pub(crate) renamed_from: Option<&'a crate::gallery::StudentId>,
    pub(crate) label: &'a crate::gallery::Label,
}

/// What replication can fail with.
#[derive(Debug, Error)]
pub enum ReplicationError {
    /// A message from the broker that was refused (it changed nothing).
    #[error("gallery message for {topic_id:?} refused: {reason}")]
    Malformed {
        /// The topic's id, clipped to 80 characters.
        topic_id: String,
        /// Why it was refused.
        reason: Malformed,
    },
    /// This box's id (`BOX_ID`) cannot be used in topics and versions: the id, and why.
    #[error("box id {0:?}: {1}")]
    BoxId(String, String),
    /// A message from the broker that was well formed but not allowed (it changed nothing).
    #[error("gallery message for {topic_id:?} refused: {reason}")]
    Refused {
        /// The topic's id, clipped to 80 characters.
        topic_id: String,
        /// Why.
        reason: Refused,
    },
    /// This box's key could not be read or made.
    #[error(transparent)]
    Key(keys::KeyError),
    /// The trust list could not be read.
    #[error(transparent)]
    Trust(trust::TrustError),
    /// The gallery could not be read or written.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

/// Why a well-formed message was not applied (see the module docs: signatures, roles, the
/// enrollment checks, the bounds).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Refused {
    /// Not signed (a box of an older release, or anyone with the broker's password); an empty
    /// person message for someone this box has without their tombstone is one too.
    #[error("not signed")]
    Unsigned,
    /// Signed by a box the trust list does not hold (its id, clipped).
    #[error("signed by {0:?}, which the trust list does not hold")]
    Untrusted(String),
    /// The signature does not verify with the listed key of that box.
    #[error("the signature of {0:?} does not verify")]
    BadSignature(String),
    /// The version names another box than the signer.
    #[error("signed by {signer:?} but its version names {claimed:?}")]
    ForgedBoxId {
        /// The signer.
        signer: String,
        /// The version's box id.
        claimed: String,
    },
    /// The signer's role does not allow this change.
    #[error("{signer:?} (role {role}) may not {change}")]
    NotAllowed {
        /// The signer.
        signer: String,
        /// Its role.
        role: Role,
        /// What it tried.
        change: &'static str,
    },
    /// A face within the duplicate distance of another person's, not forced by an admin.
    #[error("a face {distance:.3} from {of:?}'s (a duplicate)")]
    Duplicate {
        /// The other person.
        of: String,
        /// The distance.
        distance: f64,
    },
    /// A face this box was told is not this person (`POST /people/{id}/reject`).
    #[error("a face within {distance:.3} of one this box was told is not this person")]
    RejectedFace {
        /// The distance to the rejected face.
        distance: f64,
    },
    /// A box of role `enroll` added a face that does not match the person's samples.
    #[error("a new face {distance:.3} from the person's samples, beyond the tolerance")]
    NotThisPerson {
        /// The distance to their closest sample.
        distance: f64,
    },
    /// Too many messages wait already.
    #[error("too many gallery messages waiting")]
    OverCap,
}

impl Refused {
    /// The reason's name in `/health` and `/metrics`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refused::Unsigned => "unsigned",
            Refused::Untrusted(_) => "untrusted",
            Refused::BadSignature(_) => "bad_signature",
            Refused::ForgedBoxId { .. } => "forged_box_id",
            Refused::NotAllowed { .. } => "not_allowed",
            Refused::Duplicate { .. } => "duplicate",
            Refused::RejectedFace { .. } => "rejected_face",
            Refused::NotThisPerson { .. } => "not_this_person",
            Refused::OverCap => "over_cap",
        }
    }

    /// Every reason's name, in `/health`'s order.
    pub const REASONS: [&'static str; 9] = [
        "unsigned",
        "untrusted",
        "bad_signature",
        "forged_box_id",
        "not_allowed",
        "duplicate",
        "rejected_face",
        "not_this_person",
        "over_cap",
    ];
}

/// What receiving a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The person was added or replaced by a newer version.
    Updated,
    /// The person was removed (an empty message).
    Removed,
    /// This box already has that version (its own publication coming back, or a repeat).
    Unchanged,
    /// Older than this box's version: ignored (and answered with ours in mode `both`).
    Older,
    /// A deletion of a person this box changed since it last saw them on the broker: kept.
    KeptLocal,
    /// A deletion of a person this box does not have.
    Absent,
    /// The person changed locally while the message was applied: left to the local change,
    /// which is newer.
    Conflict,
    /// Waiting: over its publisher's bounds, or this box's clock is not set or its key not
    /// trusted yet; applied later.
    Waiting,
    /// Replication is off.
    Off,
}

/// What [`Replicator::reconcile`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// People removed: deleted elsewhere while this box was away.
    pub removed: usize,
    /// People (and deletions) to publish again, given by the next [`Replicator::outgoing`].
    pub to_publish: usize,
}
