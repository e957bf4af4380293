//! Gallery sync between the boxes of a site: each person is one retained message
//! `<prefix>/gallery/<student_id>` on the broker ([`crate::mqtt`]), each deletion one retained
//! tombstone `<prefix>/gallery-deleted/<student_id>`, and every box converges on what the broker
//! holds. This module is the transport-agnostic part: what a message is, how one is checked and
//! applied, and which local changes go out. The MQTT connection hands it what arrives
//! ([`GallerySync::receive`], [`GallerySync::receive_deleted`]) and publishes what it gives
//! ([`GallerySync::outgoing`]).
//!
//! Messages (retained, QoS 1, JSON, at most [`MAX_PAYLOAD`] bytes):
//! - person, on [`topic`]: `{"format":1,"student_id":"alip","version":{"updated_ms":…,
//!   "box_id":"gate-1"},"samples":[{"encoding":[128 numbers],"enrolled_at":<unix s>,
//!   "quality":{…}}]}`; an empty payload: the person is deleted (their message gone from the
//!   broker).
//! - tombstone, on [`topic_deleted`]: `{"format":1,"student_id":"alip","version":{…}}`, the
//!   deletion's version; an empty payload: no tombstone (cleared when the person comes back).
//!
//! A deletion is published as its tombstone, then the empty person message; a person as their
//! message, then an empty tombstone. Face crops and rejections stay on their box. A rename is a
//! deletion of the old id and a person under the new one, with a new version.
//!
//! Contract:
//! - Versions: a person's version is `(updated_ms, box_id)`, ordered by time then box id (so
//!   two versions are never equal unless they are the same write). A local change is stamped
//!   with the time its `.npy` was written (a change the CLI made while the service was off
//!   keeps its time) by this box, and is always newer than the version it replaces; a received
//!   person keeps the sender's version. Versions, what this box last saw on the broker and
//!   tombstones live in `data/gallery-sync.json` (written atomically), not in the `.npy` or
//!   samples files the Python service and the CLI write without knowing of the sync.
//! - Local changes are found by comparison, not by a list: every change of the gallery (this
//!   process's, or another's found by `reload_if_changed`) wakes the sync
//!   ([`Gallery::wait_local_change`]), which compares a digest of each person's encodings with
//!   the one it recorded. Changes applied from the broker record their digest and do not wake
//!   it: a box never publishes again what it received.
//! - Last writer wins: a received person newer than the local version replaces the person
//!   (through the gallery's write path: `.npy`, metadata, matching, audit `by: sync:<box>`);
//!   an older one is ignored, and a box that publishes answers it with its own newer copy (the
//!   broker held a stale one: a publication of ours was lost). Equal: nothing to do.
//! - Deletion wins by version too: a person this box deletes becomes a local tombstone (the
//!   deletion's version, after the person's). A tombstone received newer than the local person
//!   removes them (and is kept locally); older, it is ignored (in mode `both` the person is
//!   published again, which clears it). A person message older than a local tombstone is not
//!   added (in `both`, answered with the deletion again); a newer one (enrolled again) wins.
//!   At most [`MAX_TOMBSTONES`] are kept locally, the oldest dropped first; on the broker there
//!   is one per deleted id.
//! - An empty person message (no version: a box of an older release, or `mosquitto_pub -r -n`)
//!   removes the person as before: unless this box changed them since it last saw them on the
//!   broker (mode `both`: that change is newer, and is published again). A box that removes
//!   someone so records the deletion as its own tombstone, at its time, and (in `both`)
//!   publishes it, so that a box away converges on it. A person who came back after a deletion
//!   this box knew is not removed by an empty message alone (it is taken as that older
//!   deletion's, arriving late: the person is published again); a newer tombstone removes them.
//! - Convergence on connect: [`GallerySync::connected`] when the session starts (before the
//!   subscriptions), then [`GallerySync::reconcile`] once the retained messages have arrived. A
//!   person with no retained message is removed only when a tombstone newer than them was seen
//!   (which, received, already removed them); without one the broker lost their message (a
//!   power cut before its save, a broker without persistence or reinstalled): they are kept,
//!   and published again in mode `both`. A local tombstone that the broker does not hold (at
//!   that version or newer), with no person message there, is published again (the tombstone
//!   and the empty person message) in mode `both`.
//! - Input from the broker is hostile: size, id rules ([`StudentId::parse`]), the topic's id
//!   equal to the body's, format (tombstones too, and their version as below), 1 to
//!   [`MAX_SAMPLES`] samples of exactly 128 finite values
//!   within ±[`MAX_ABS_VALUE`], a topic-safe box id, a version at most [`MAX_FUTURE_MS`] ahead
//!   of this box's clock (unchecked while the clock is unset, before 2024). A bad message is
//!   a typed error, counted and logged, and changes nothing.
//! - [`SyncMode::Pull`]: applies, never publishes (local changes keep versions; a tombstone wins
//!   over them by version; an empty person message removes them whatever their version, unless
//!   they came back after a deletion); [`SyncMode::Off`]: does nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{io_err, samples, Gallery, GalleryError, Rows, Sample, StudentId};
use crate::engine::{Encoding, ENCODING_LEN};
use crate::metrics::Family;
use crate::mqtt::SyncMode;
use crate::{clock, fsutil, locks};

/// The message format this box writes and reads.
pub const FORMAT: u64 = 1;
/// Largest payload accepted (and written): a person of [`MAX_SAMPLES`] samples fits.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Most samples of one person in a message.
pub const MAX_SAMPLES: usize = 256;
/// Largest magnitude of an encoding's value (dlib's are within ±0.5).
pub const MAX_ABS_VALUE: f64 = 10.0;
/// Longest box id, and most bytes of one sample's quality object.
pub const MAX_BOX_ID_LEN: usize = 64;
pub const MAX_QUALITY_BYTES: usize = 1024;
/// How far ahead of this box's clock a version may be: more would pin the person for ever.
pub const MAX_FUTURE_MS: u64 = 3_600_000;
/// Most tombstones kept.
pub const MAX_TOMBSTONES: usize = 10_000;
/// Before this (2024-01-01), the clock is taken as unset (a board without RTC before NTP).
const CLOCK_SET_MS: u64 = 1_704_067_200_000;
/// No sample is enrolled after the year 3000.
const MAX_ENROLLED_AT: u64 = 32_503_680_000;
const STATE_FILE: &str = "gallery-sync.json";

/// The topic of a person's message.
pub fn topic(prefix: &str, id: &StudentId) -> String {
    format!("{prefix}/gallery/{id}")
}

/// The topic filter that gets every person's message.
pub fn topic_filter(prefix: &str) -> String {
    format!("{prefix}/gallery/+")
}

/// The id part of a gallery topic (unchecked: [`GallerySync::receive`] checks it), `None` when
/// the topic is not one.
pub fn topic_id<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic.strip_prefix(prefix)?.strip_prefix("/gallery/")
}

/// The topic of a person's tombstone (their deletion's version).
pub fn topic_deleted(prefix: &str, id: &StudentId) -> String {
    format!("{prefix}/gallery-deleted/{id}")
}

/// The topic filter that gets every tombstone.
pub fn topic_deleted_filter(prefix: &str) -> String {
    format!("{prefix}/gallery-deleted/+")
}

/// The id part of a tombstone's topic (unchecked: [`GallerySync::receive_deleted`] checks it),
/// `None` when the topic is not one.
pub fn topic_deleted_id<'a>(prefix: &str, topic: &'a str) -> Option<&'a str> {
    topic
        .strip_prefix(prefix)?
        .strip_prefix("/gallery-deleted/")
}

/// Which of the two topics of a person a message is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<prefix>/gallery/<id>`: the person (empty: deleted).
    Person,
    /// `<prefix>/gallery-deleted/<id>`: the tombstone (empty: none).
    Deleted,
}

/// A message to publish, retained, QoS 1.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub kind: Kind,
    pub id: StudentId,
    pub payload: Vec<u8>,
}

impl Outgoing {
    pub fn topic(&self, prefix: &str) -> String {
        match self.kind {
            Kind::Person => topic(prefix, &self.id),
            Kind::Deleted => topic_deleted(prefix, &self.id),
        }
    }
}

/// A person's version: ordered by time, then box id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    updated_ms: u64,
    box_id: String,
}

impl Version {
    pub fn new(updated_ms: u64, box_id: &str) -> Version {
        Version {
            updated_ms,
            box_id: box_id.to_string(),
        }
    }

    pub fn updated_ms(&self) -> u64 {
        self.updated_ms
    }

    pub fn box_id(&self) -> &str {
        &self.box_id
    }
}

/// Why a message from the broker was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Malformed {
    #[error("{0} bytes, over the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    #[error("topic id: {0}")]
    BadId(String),
    #[error("not a gallery message: {0}")]
    BadJson(String),
    #[error("format {0} is not read by this box (it reads {FORMAT})")]
    UnsupportedFormat(u64),
    #[error("the message is for {body:?}, its topic for {topic}")]
    IdMismatch { topic: String, body: String },
    #[error("box_id: {0}")]
    BadBoxId(String),
    #[error("version {updated_ms} is more than {MAX_FUTURE_MS} ms ahead of this box's clock")]
    FromTheFuture { updated_ms: u64 },
    #[error("{0} samples (1 to {MAX_SAMPLES})")]
    SampleCount(usize),
    #[error("sample {index}: {values} values ({ENCODING_LEN} expected)")]
    EncodingLength { index: usize, values: usize },
    #[error("sample {index}: value {value} is not finite or beyond ±{MAX_ABS_VALUE}")]
    BadValue { index: usize, value: f64 },
    #[error("sample {index}: enrolled_at {enrolled_at} is too far in the future")]
    BadTime { index: usize, enrolled_at: u64 },
    #[error("sample {index}: quality must be a JSON object of at most {MAX_QUALITY_BYTES} bytes")]
    BadQuality { index: usize },
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("gallery message for {topic_id:?} refused: {reason}")]
    Malformed { topic_id: String, reason: Malformed },
    #[error("box id {0:?}: {1}")]
    BoxId(String, String),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
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
    /// Sync is off.
    Off,
}

/// A message as checked: a person, a deletion (an empty person message), a tombstone or a
/// tombstone cleared.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Deleted(StudentId),
    Tombstone {
        id: StudentId,
        version: Version,
    },
    TombstoneCleared(StudentId),
    Person {
        id: StudentId,
        version: Version,
        rows: Rows,
    },
}

#[derive(Serialize, Deserialize)]
struct Message {
    format: u64,
    student_id: String,
    version: Version,
    samples: Vec<WireSample>,
}

#[derive(Serialize, Deserialize)]
struct TombstoneMessage {
    format: u64,
    student_id: String,
    version: Version,
}

#[derive(Serialize, Deserialize)]
struct WireSample {
    encoding: Vec<f64>,
    enrolled_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quality: Option<Value>,
}

/// Checks a box id: 1 to [`MAX_BOX_ID_LEN`] of `A-Z a-z 0-9 _ - .` (safe in a topic and a
/// log line).
pub fn check_box_id(raw: &str) -> Result<(), String> {
    if raw.is_empty() || raw.len() > MAX_BOX_ID_LEN {
        return Err(format!("must be 1 to {MAX_BOX_ID_LEN} characters"));
    }
    match raw
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(bad) => Err(format!(
            "may only contain letters, digits, '_', '-' and '.', not {bad:?}"
        )),
        None => Ok(()),
    }
}

/// At most 80 characters of untrusted text, for errors and logs.
fn clip(raw: &str) -> String {
    raw.chars().take(80).collect()
}

/// What every message is checked for first: its size, the topic's id and, unless the payload
/// is empty (then `false`), its format (first, so that a newer format is told apart from
/// garbage).
fn check_envelope(topic_id: &str, payload: &[u8]) -> Result<(StudentId, bool), Malformed> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Malformed::TooLarge(payload.len()));
    }
    let id = StudentId::parse_new(topic_id).map_err(Malformed::BadId)?;
    if payload.is_empty() {
        return Ok((id, false));
    }
    #[derive(Deserialize)]
    struct Head {
        format: u64,
    }
    let head: Head =
        serde_json::from_slice(payload).map_err(|e| Malformed::BadJson(e.to_string()))?;
    if head.format != FORMAT {
        return Err(Malformed::UnsupportedFormat(head.format));
    }
    Ok((id, true))
}

/// Checks a message whose topic names `topic_id` ([`topic_id`]), with `now_ms` this box's
/// clock. Nothing in it is trusted before this returns.
pub fn parse_message(topic_id: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Malformed> {
    let (id, body) = check_envelope(topic_id, payload)?;
    if !body {
        return Ok(Incoming::Deleted(id));
    }
    let message: Message =
        serde_json::from_slice(payload).map_err(|e| Malformed::BadJson(e.to_string()))?;
    let version = check_head(&id, &message.student_id, message.version, now_ms)?;
    if message.samples.is_empty() || message.samples.len() > MAX_SAMPLES {
        return Err(Malformed::SampleCount(message.samples.len()));
    }
    let mut rows = Vec::with_capacity(message.samples.len());
    for (index, sample) in message.samples.into_iter().enumerate() {
        let encoding: Encoding =
            sample
                .encoding
                .as_slice()
                .try_into()
                .map_err(|_| Malformed::EncodingLength {
                    index,
                    values: sample.encoding.len(),
                })?;
        if let Some(&value) = encoding
            .iter()
            .find(|v| !(v.is_finite() && v.abs() <= MAX_ABS_VALUE))
        {
            return Err(Malformed::BadValue { index, value });
        }
        if sample.enrolled_at > MAX_ENROLLED_AT {
            return Err(Malformed::BadTime {
                index,
                enrolled_at: sample.enrolled_at,
            });
        }
        if let Some(quality) = &sample.quality {
            let small = serde_json::to_vec(quality).is_ok_and(|b| b.len() <= MAX_QUALITY_BYTES);
            if !(quality.is_object() && small) {
                return Err(Malformed::BadQuality { index });
            }
        }
        let mut described = Sample::plain(&encoding, sample.enrolled_at);
        described.quality = sample.quality;
        rows.push((encoding, described));
    }
    Ok(Incoming::Person { id, version, rows })
}

/// The body's id and version of a message for `id`, checked.
fn check_head(
    id: &StudentId,
    student_id: &str,
    version: Version,
    now_ms: u64,
) -> Result<Version, Malformed> {
    if student_id != id.as_str() {
        return Err(Malformed::IdMismatch {
            topic: id.to_string(),
            body: clip(student_id),
        });
    }
    check_box_id(&version.box_id).map_err(Malformed::BadBoxId)?;
    if now_ms >= CLOCK_SET_MS && version.updated_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(Malformed::FromTheFuture {
            updated_ms: version.updated_ms,
        });
    }
    Ok(version)
}

/// Checks a tombstone whose topic names `topic_id` ([`topic_deleted_id`]): the same rules as
/// [`parse_message`] (size, id, format, the topic's id the body's, box id, version); an empty
/// payload is a tombstone cleared.
pub fn parse_tombstone(topic_id: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Malformed> {
    let (id, body) = check_envelope(topic_id, payload)?;
    if !body {
        return Ok(Incoming::TombstoneCleared(id));
    }
    let message: TombstoneMessage =
        serde_json::from_slice(payload).map_err(|e| Malformed::BadJson(e.to_string()))?;
    let version = check_head(&id, &message.student_id, message.version, now_ms)?;
    Ok(Incoming::Tombstone { id, version })
}

/// The payload of a tombstone.
fn encode_tombstone(id: &StudentId, version: &Version) -> Vec<u8> {
    let message = TombstoneMessage {
        format: FORMAT,
        student_id: id.to_string(),
        version: version.clone(),
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

/// The payload of a person (their rows, in order), unchecked.
fn encode_message(id: &StudentId, version: &Version, rows: &[(Encoding, Sample)]) -> Vec<u8> {
    let message = Message {
        format: FORMAT,
        student_id: id.to_string(),
        version: version.clone(),
        samples: rows
            .iter()
            .map(|(e, s)| WireSample {
                encoding: e.to_vec(),
                enrolled_at: s.enrolled_at,
                quality: s.quality.clone(),
            })
            .collect(),
    };
    // Plain data (numbers, strings, JSON values): serializing cannot fail.
    serde_json::to_vec(&message).unwrap_or_default()
}

/// [`encode_message`], for the fuzz target's round trip.
#[doc(hidden)]
pub fn fuzz_encode(id: &StudentId, version: &Version, rows: &[(Encoding, Sample)]) -> Vec<u8> {
    encode_message(id, version, rows)
}

/// A digest of a person's encodings in order: what tells a change apart.
fn digest(rows: &[(Encoding, Sample)]) -> String {
    let mut hasher = Sha256::new();
    for (encoding, _) in rows {
        for v in encoding {
            hasher.update(v.to_le_bytes());
        }
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the sync knows of a person this box has.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersonState {
    version: Version,
    /// [`digest`] of the encodings at that version.
    digest: String,
    /// The last version of theirs seen on the broker (none: never, or gone from it).
    #[serde(default)]
    broker: Option<Version>,
    /// Handed out for publication since the last change.
    #[serde(default)]
    sent: bool,
    /// The newest deletion of theirs this box knew of when they came back (enrolled again):
    /// an empty person message alone is then taken as that older deletion's, not obeyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted: Option<Version>,
}

/// A person deleted (here, or elsewhere: a tombstone received).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tombstone {
    version: Version,
    #[serde(default)]
    broker: Option<Version>,
    #[serde(default)]
    sent: bool,
}

/// `data/gallery-sync.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    people: BTreeMap<StudentId, PersonState>,
    #[serde(default)]
    tombstones: BTreeMap<StudentId, Tombstone>,
}

impl Serialize for StudentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StudentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StudentId, D::Error> {
        let raw = String::deserialize(d)?;
        StudentId::parse(&raw).map_err(serde::de::Error::custom)
    }
}

struct Inner {
    state: State,
    /// The gallery's local change count at the last comparison (none: never compared).
    scanned: Option<u64>,
    /// Ids with a retained message since [`GallerySync::connected`] (none: not connected).
    seen: Option<BTreeSet<StudentId>>,
    /// Tombstones on the broker since [`GallerySync::connected`], with their versions.
    seen_deleted: BTreeMap<StudentId, Version>,
    dirty: bool,
}

/// What [`GallerySync::reconcile`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// People removed: deleted elsewhere while this box was away.
    pub removed: usize,
    /// People (and deletions) to publish again, given by the next [`GallerySync::outgoing`].
    pub to_publish: usize,
}

/// Counters for `/health` and `/metrics`.
#[derive(Debug, Default)]
pub struct SyncStats {
    received: AtomicU64,
    updated: AtomicU64,
    removed: AtomicU64,
    unchanged: AtomicU64,
    older: AtomicU64,
    kept_local: AtomicU64,
    absent: AtomicU64,
    conflicts: AtomicU64,
    malformed: AtomicU64,
    failed: AtomicU64,
    published: AtomicU64,
    published_deletions: AtomicU64,
    unpublishable: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SyncStats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self, applied: Applied) {
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

    fn error(&self, counter: &AtomicU64, e: &impl std::fmt::Display) {
        Self::add(counter);
        *locks::lock(&self.last_error) = Some(e.to_string());
    }

    fn outcomes(&self) -> [(&'static str, u64); 10] {
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

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

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

    /// The sync's part of `/metrics`.
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

/// One box's side of gallery sync (see the module docs).
pub struct GallerySync {
    gallery: Arc<Gallery>,
    box_id: String,
    mode: SyncMode,
    path: PathBuf,
    inner: Mutex<Inner>,
    stats: Arc<SyncStats>,
}

impl GallerySync {
    /// Loads `data/gallery-sync.json` of the gallery's data folder (a damaged one is logged and
    /// started afresh) and compares the gallery with it: changes made while the service was
    /// off (by the CLI) are stamped as this box's.
    pub fn new(
        gallery: Arc<Gallery>,
        box_id: &str,
        mode: SyncMode,
    ) -> Result<GallerySync, SyncError> {
        check_box_id(box_id).map_err(|e| SyncError::BoxId(clip(box_id), e))?;
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
            Err(e) => return Err(io_err(&path)(e).into()),
        };
        let sync = GallerySync {
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
            stats: Arc::new(SyncStats::default()),
        };
        if mode != SyncMode::Off {
            let mut inner = locks::lock(&sync.inner);
            sync.scan(&mut inner);
            sync.persist(&mut inner)?;
        }
        Ok(sync)
    }

    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    pub fn box_id(&self) -> &str {
        &self.box_id
    }

    pub fn stats(&self) -> Arc<SyncStats> {
        self.stats.clone()
    }

    /// Waits until the gallery changed locally since the last [`GallerySync::outgoing`], or
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
    /// the next reconnection ([`GallerySync::reconcile`], or when the stale copy comes back).
    pub fn outgoing(&self) -> Vec<Outgoing> {
        if self.mode == SyncMode::Off {
            return Vec::new();
        }
        let mut inner = locks::lock(&self.inner);
        self.scan(&mut inner);
        let mut out = Vec::new();
        if self.mode == SyncMode::Both {
            let Inner { state, dirty, .. } = &mut *inner;
            for (id, person) in state.people.iter_mut().filter(|(_, p)| !p.sent) {
                let rows = self.gallery.rows_in_memory(id);
                if digest(&rows) != person.digest {
                    // Changed since the comparison: the next one stamps it and sends that.
                    continue;
                }
                let payload = encode_message(id, &person.version, &rows);
                person.sent = true;
                *dirty = true;
                match parse_message(id.as_str(), &payload, clock::unix_ms()) {
                    Ok(_) => {
                        SyncStats::add(&self.stats.published);
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
                SyncStats::add(&self.stats.published_deletions);
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
    /// then on is what [`GallerySync::reconcile`] compares with.
    pub fn connected(&self) {
        let mut inner = locks::lock(&self.inner);
        inner.seen = Some(BTreeSet::new());
        inner.seen_deleted.clear();
    }

    /// Applies a message from the broker: `topic_id` is the topic's last level ([`topic_id`]),
    /// `payload` as received (empty: a deletion). A malformed message changes nothing and is
    /// [`SyncError::Malformed`].
    pub fn receive(&self, topic_id: &str, payload: &[u8]) -> Result<Applied, SyncError> {
        if self.mode == SyncMode::Off {
            return Ok(Applied::Off);
        }
        SyncStats::add(&self.stats.received);
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
    /// topic's last level ([`topic_deleted_id`]), `payload` as received (empty: cleared). A
    /// malformed one changes nothing and is [`SyncError::Malformed`].
    pub fn receive_deleted(&self, topic_id: &str, payload: &[u8]) -> Result<Applied, SyncError> {
        if self.mode == SyncMode::Off {
            return Ok(Applied::Off);
        }
        SyncStats::add(&self.stats.received);
        let parsed = parse_tombstone(topic_id, payload, clock::unix_ms());
        let mut inner = locks::lock(&self.inner);
        self.apply(&mut inner, topic_id, parsed)
    }

    fn apply(
        &self,
        inner: &mut Inner,
        topic_id: &str,
        parsed: Result<Incoming, Malformed>,
    ) -> Result<Applied, SyncError> {
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
                return Err(SyncError::Malformed {
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

    /// Once the retained messages of a new session have arrived (after
    /// [`GallerySync::connected`] and the subscription): removes the people deleted elsewhere
    /// while this box was away and marks for publication what the broker lacks (see the module
    /// docs). Not connected: nothing to compare with, nothing done.
    pub fn reconcile(&self) -> Result<Reconciled, SyncError> {
        let mut done = Reconciled::default();
        if self.mode == SyncMode::Off {
            return Ok(done);
        }
        let mut inner = locks::lock(&self.inner);
        self.scan(&mut inner);
        let Some(seen) = inner.seen.clone() else {
            return Ok(done);
        };
        let both = self.mode == SyncMode::Both;
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
            match self
                .gallery
                .remove_synced(&id, Some(&expected), "sync:reconcile")
            {
                Ok(true) => {
                    inner.state.people.remove(&id);
                    inner.dirty = true;
                    done.removed += 1;
                    SyncStats::add(&self.stats.removed);
                }
                // Changed meanwhile: the next comparison stamps it, and it stays.
                Ok(false) => SyncStats::add(&self.stats.conflicts),
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
    fn stamp(&self, id: &StudentId, previous: Option<&Version>, deleted: bool) -> Version {
        let written = (!deleted)
            .then(|| {
                std::fs::metadata(self.gallery.npy_path(id))
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
            })
            .flatten()
            .unwrap_or_else(clock::unix_ms);
        let after = previous.map_or(0, |v| v.updated_ms.saturating_add(1));
        Version::new(written.max(after), &self.box_id)
    }

    /// Compares the person `id` (their digest now, none: not enrolled) with the state, and
    /// records a local change.
    fn observe(&self, inner: &mut Inner, id: &StudentId, now: Option<String>) {
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
                if self.gallery.npy_path(id).exists() {
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
                    },
                );
                prune_tombstones(&mut state.tombstones);
            }
            (None, Some(d)) => {
                let tombstone = state.tombstones.remove(id);
                let version = self.stamp(id, tombstone.as_ref().map(|t| &t.version), false);
                let deleted = tombstone.as_ref().map(|t| t.version.clone());
                state.people.insert(
                    id.clone(),
                    PersonState {
                        version,
                        digest: d,
                        broker: tombstone.and_then(|t| t.broker),
                        sent: false,
                        deleted,
                    },
                );
            }
            (None, None) => return,
        }
        inner.dirty = true;
    }

    /// Compares the whole gallery with the state when it changed locally since last time.
    fn scan(&self, inner: &mut Inner) {
        // Read before the gallery: a change after this is seen by the next scan.
        let count = self.gallery.local_change_count();
        if inner.scanned == Some(count) {
            return;
        }
        let now = self.gallery.digests_in_memory();
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

    fn apply_person(
        &self,
        inner: &mut Inner,
        id: &StudentId,
        version: Version,
        rows: Rows,
    ) -> Result<Applied, SyncError> {
        // A local change not compared yet is stamped first, so that it competes by its time.
        let current = self.gallery.digest_in_memory(id);
        self.observe(inner, id, current);
        let both = self.mode == SyncMode::Both;
        let state = &mut inner.state;
        let local = match (state.people.get_mut(id), state.tombstones.get_mut(id)) {
            (Some(person), _) => Some((&person.version, &mut person.broker, &mut person.sent)),
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
        let new_digest = digest(&rows);
        let expected = state.people.get(id).map(|p| p.digest.clone());
        if expected.as_deref() != Some(new_digest.as_str()) {
            let by = format!("sync:{}", version.box_id);
            if !self
                .gallery
                .put_synced(id, &rows, expected.as_deref(), &by)?
            {
                return Ok(Applied::Conflict);
            }
        }
        let deleted = match state.tombstones.remove(id) {
            Some(t) => Some(t.version),
            None => state.people.get(id).and_then(|p| p.deleted.clone()),
        };
        state.people.insert(
            id.clone(),
            PersonState {
                version: version.clone(),
                digest: new_digest,
                broker: Some(version),
                sent: true,
                deleted,
            },
        );
        inner.dirty = true;
        Ok(Applied::Updated)
    }

    /// A tombstone: the deletion wins over an older person, loses to a newer one.
    fn apply_tombstone(
        &self,
        inner: &mut Inner,
        id: &StudentId,
        version: Version,
    ) -> Result<Applied, SyncError> {
        let current = self.gallery.digest_in_memory(id);
        self.observe(inner, id, current);
        let both = self.mode == SyncMode::Both;
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
            let by = format!("sync:{}", version.box_id);
            if !self.gallery.remove_synced(id, Some(&expected), &by)? {
                return Ok(Applied::Conflict);
            }
            let person = inner.state.people.remove(id);
            inner.state.tombstones.insert(
                id.clone(),
                Tombstone {
                    version,
                    broker: person.and_then(|p| p.broker),
                    sent: true,
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
                    },
                );
                prune_tombstones(&mut inner.state.tombstones);
                inner.dirty = true;
                Ok(Applied::Absent)
            }
        }
    }

    fn apply_deletion(&self, inner: &mut Inner, id: &StudentId) -> Result<Applied, SyncError> {
        let current = self.gallery.digest_in_memory(id);
        self.observe(inner, id, current);
        let both = self.mode == SyncMode::Both;
        if let Some(person) = inner.state.people.get_mut(id) {
            // Came back after a deletion: an empty message without a newer tombstone is that
            // older deletion's (its tombstone goes first), not a new one.
            if person.deleted.is_some() {
                if both {
                    person.broker = None;
                    person.sent = false;
                    inner.dirty = true;
                }
                return Ok(Applied::Older);
            }
            let changed_here = person.broker.as_ref().is_none_or(|b| person.version > *b);
            if both && changed_here {
                person.broker = None;
                person.sent = false;
                inner.dirty = true;
                return Ok(Applied::KeptLocal);
            }
            let expected = person.digest.clone();
            if !self.gallery.remove_synced(id, Some(&expected), "sync")? {
                return Ok(Applied::Conflict);
            }
            // A deletion without a version (an older release, or by hand): this box records it
            // as its own, now, and publishes its tombstone, so that a box away converges.
            let person = inner.state.people.remove(id);
            let version = self.stamp(id, person.as_ref().map(|p| &p.version), true);
            inner.state.tombstones.insert(
                id.clone(),
                Tombstone {
                    version,
                    broker: None,
                    sent: !both,
                },
            );
            prune_tombstones(&mut inner.state.tombstones);
            inner.dirty = true;
            return Ok(Applied::Removed);
        }
        if inner.state.tombstones.contains_key(id) {
            // The deletion's companion: its tombstone says all.
            return Ok(Applied::Unchanged);
        }
        Ok(Applied::Absent)
    }

    fn persist(&self, inner: &mut Inner) -> Result<(), SyncError> {
        if !inner.dirty {
            return Ok(());
        }
        // Plain maps of strings and numbers: serializing cannot fail.
        let bytes = serde_json::to_vec(&inner.state).unwrap_or_default();
        fsutil::atomic_write(&self.path, &bytes).map_err(io_err(&self.path))?;
        inner.dirty = false;
        Ok(())
    }

    fn persist_logged(&self, inner: &mut Inner) {
        if let Err(e) = self.persist(inner) {
            log::error!("gallery sync: {e}");
            self.stats.error(&self.stats.failed, &e);
        }
    }
}

/// Keeps at most [`MAX_TOMBSTONES`], dropping the oldest.
fn prune_tombstones(tombstones: &mut BTreeMap<StudentId, Tombstone>) {
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

/// The gallery's side: reads of the matrix, and writes that are not local changes.
impl Gallery {
    /// Each enrolled person's [`digest`], as matching sees them.
    fn digests_in_memory(&self) -> BTreeMap<StudentId, String> {
        let m = locks::read(&self.matrix);
        let mut rows: HashMap<u32, Vec<&Encoding>> = HashMap::new();
        for (e, o) in m.encodings.iter().zip(&m.owners) {
            rows.entry(*o).or_default().push(e);
        }
        rows.into_iter()
            .filter_map(|(o, encodings)| {
                let id = StudentId::parse(&m.labels[o as usize]).ok()?;
                let mut hasher = Sha256::new();
                for e in encodings {
                    for v in e {
                        hasher.update(v.to_le_bytes());
                    }
                }
                let d = hasher.finalize()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Some((id, d))
            })
            .collect()
    }

    fn digest_in_memory(&self, id: &StudentId) -> Option<String> {
        let rows = self.rows_in_memory(id);
        (!rows.is_empty()).then(|| digest(&rows))
    }

    fn rows_in_memory(&self, id: &StudentId) -> Rows {
        let m = locks::read(&self.matrix);
        m.rows_of(id.as_str())
            .into_iter()
            .map(|r| (m.encodings[r], m.samples[r].clone()))
            .collect()
    }

    /// The person's rows become `rows` (received), when the files still hold the encodings
    /// whose digest is `expected` (none: not enrolled); `false` when they changed meanwhile.
    /// Crops of rows kept stay; rejections stay. Not a local change.
    fn put_synced(
        &self,
        id: &StudentId,
        rows: &[(Encoding, Sample)],
        expected: Option<&str>,
        by: &str,
    ) -> Result<bool, GalleryError> {
        let _writing = self.writing()?;
        let old = match self.read_person(id) {
            Ok(old) => old,
            // A newer version than any this box knew repairs a file it cannot read.
            Err(GalleryError::Damaged { .. }) => None,
            Err(e) => return Err(e),
        };
        let now = old.as_deref().map(digest);
        let changed = match (now.as_deref(), expected) {
            (Some(now), expected) => Some(now) != expected,
            // Unreadable (damaged) is overwritten; gone meanwhile is a local deletion.
            (None, Some(_)) => !self.npy_path(id).exists(),
            (None, None) => false,
        };
        if changed {
            return Ok(false);
        }
        let old = old.unwrap_or_default();
        let mut crops: HashMap<String, String> = old
            .iter()
            .filter_map(|(e, s)| Some((samples::fingerprint(e), s.crop.clone()?)))
            .collect();
        let rows: Rows = rows
            .iter()
            .map(|(e, s)| {
                let mut s = s.clone();
                s.crop = crops.remove(&s.row);
                (*e, s)
            })
            .collect();
        self.write_person(id, &rows)?;
        let dir = self.crops_dir(id);
        for crop in crops.values() {
            let _ = super::remove_file_synced(&dir.join(crop));
        }
        locks::write(&self.matrix).set_person(id.as_str(), &rows);
        self.record_quiet(Self::entry("sync", id, rows.len(), by));
        Ok(true)
    }

    /// Removes the person (every file, as [`Gallery::remove`]) when they still have the
    /// encodings whose digest is `expected`; `false` when they changed meanwhile. Not a local
    /// change.
    fn remove_synced(
        &self,
        id: &StudentId,
        expected: Option<&str>,
        by: &str,
    ) -> Result<bool, GalleryError> {
        let _writing = self.writing()?;
        let now = match self.read_person(id) {
            Ok(rows) => rows.map(|rows| digest(&rows)),
            Err(GalleryError::Damaged { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if now.as_deref() != expected {
            return Ok(false);
        }
        self.remove_files(id)?;
        self.record_quiet(Self::entry("delete", id, 0, by));
        Ok(true)
    }
}

/// The path of the sync's state file in `data_dir`.
pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::enc;
    use crate::gallery::{NewSample, UNKNOWN};
    use std::collections::BTreeMap;

    fn id(s: &str) -> StudentId {
        StudentId::parse(s).unwrap()
    }

    /// One box: its data folder, gallery and sync.
    struct TestBox {
        dir: tempfile::TempDir,
        gallery: Arc<Gallery>,
        sync: GallerySync,
        online: bool,
    }

    impl TestBox {
        fn new(box_id: &str, mode: SyncMode) -> TestBox {
            let dir = tempfile::tempdir().unwrap();
            let gallery = Arc::new(Gallery::open(dir.path()).unwrap().0);
            let sync = GallerySync::new(gallery.clone(), box_id, mode).unwrap();
            TestBox {
                dir,
                gallery,
                sync,
                online: true,
            }
        }

        /// The service restarted: a new gallery and sync on the same folder.
        fn restart(&mut self, box_id: &str, mode: SyncMode) {
            self.gallery = Arc::new(Gallery::open(self.dir.path()).unwrap().0);
            self.sync = GallerySync::new(self.gallery.clone(), box_id, mode).unwrap();
        }

        fn label(&self, v: f64) -> String {
            self.gallery.best_match(&enc(v), 0.01).label
        }
    }

    /// The broker's side: retained messages, delivered in order to every box online
    /// (the sender too, as MQTT does).
    #[derive(Default)]
    struct Broker {
        /// `gallery/<id>`.
        retained: BTreeMap<StudentId, Vec<u8>>,
        /// `gallery-deleted/<id>`.
        deleted: BTreeMap<StudentId, Vec<u8>>,
    }

    impl Broker {
        /// Publishes what each online box has to publish, and delivers it, until quiet.
        fn pump(&mut self, boxes: &[&TestBox]) {
            for _ in 0..10 {
                let mut any = false;
                for b in boxes.iter().filter(|b| b.online) {
                    for Outgoing { kind, id, payload } in b.sync.outgoing() {
                        any = true;
                        let store = match kind {
                            Kind::Person => &mut self.retained,
                            Kind::Deleted => &mut self.deleted,
                        };
                        match payload.is_empty() {
                            true => store.remove(&id),
                            false => store.insert(id.clone(), payload.clone()),
                        };
                        for to in boxes.iter().filter(|b| b.online) {
                            match kind {
                                Kind::Person => to.sync.receive(id.as_str(), &payload),
                                Kind::Deleted => to.sync.receive_deleted(id.as_str(), &payload),
                            }
                            .unwrap();
                        }
                    }
                }
                if !any {
                    return;
                }
            }
            panic!("the boxes never stop publishing");
        }

        /// A box (re)connects: session, retained messages, reconcile.
        fn connect(&mut self, b: &mut TestBox) -> Reconciled {
            b.online = true;
            b.sync.connected();
            for (id, payload) in &self.retained {
                b.sync.receive(id.as_str(), payload).unwrap();
            }
            for (id, payload) in &self.deleted {
                b.sync.receive_deleted(id.as_str(), payload).unwrap();
            }
            b.sync.reconcile().unwrap()
        }
    }

    /// The person messages of [`GallerySync::outgoing`] (empty: deleted).
    fn persons(out: Vec<Outgoing>) -> Vec<(StudentId, Vec<u8>)> {
        out.into_iter()
            .filter(|o| o.kind == Kind::Person)
            .map(|o| (o.id, o.payload))
            .collect()
    }

    fn published(b: &TestBox) -> u64 {
        b.sync.stats().published.load(Ordering::Relaxed)
    }

    #[test]
    fn enroll_rename_and_delete_reach_every_box_and_nothing_is_published_twice() {
        let (a, b, c) = (
            TestBox::new("a", SyncMode::Both),
            TestBox::new("b", SyncMode::Both),
            TestBox::new("c", SyncMode::Both),
        );
        let mut broker = Broker::default();
        a.gallery
            .enroll(
                &id("alip"),
                vec![NewSample::new(enc(0.5))
                    .with_crop(b"jpeg".to_vec())
                    .with_quality(json!({"face_px": 120}))],
                "k",
            )
            .unwrap();
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            assert_eq!(x.label(0.5), "alip");
        }
        let on_b = b.gallery.person_detail(&id("alip")).unwrap();
        assert_eq!(on_b.samples[0].quality, Some(json!({"face_px": 120})));
        assert_eq!(on_b.samples[0].crop, None, "crops stay on their box");
        assert_eq!(b.gallery.history(&id("alip"))[0].by, "sync:a");
        // Received, never published again.
        assert_eq!((published(&a), published(&b), published(&c)), (1, 0, 0));
        assert!(persons(b.sync.outgoing()).is_empty() && persons(c.sync.outgoing()).is_empty());

        b.gallery.rename(&id("alip"), &id("alif"), "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            assert_eq!(x.label(0.5), "alif");
            assert_eq!(x.gallery.person(&id("alip")), None);
        }
        // A rename is a deletion and a new person: elsewhere than on b, the crop went with
        // the old id (crops are local, and never cross the broker).
        assert_eq!(a.gallery.sample_crop(&id("alif"), 0), None);

        c.gallery.remove(&id("alif"), "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            assert_eq!(x.label(0.5), UNKNOWN);
        }
        assert!(broker.retained.is_empty());
        // Samples appended and removed travel as the whole person.
        a.gallery
            .append(&id("yoga"), &[enc(1.0), enc(1.5)], "k")
            .unwrap();
        broker.pump(&[&a, &b, &c]);
        c.gallery.remove_sample(&id("yoga"), 0, "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            assert_eq!(x.gallery.people(), [("yoga".into(), 1)]);
            assert_eq!(x.label(1.5), "yoga");
        }
    }

    fn message(student_id: &str, ms: u64, box_id: &str, v: f64) -> Vec<u8> {
        let rows = vec![(enc(v), Sample::plain(&enc(v), 1_700_000_000))];
        encode_message(&id(student_id), &Version::new(ms, box_id), &rows)
    }

    #[test]
    fn the_last_writer_wins_with_ties_broken_by_box_id() {
        let b = TestBox::new("b", SyncMode::Both);
        let t = clock::unix_ms() - 60_000;
        let got = |ms, box_id, v| b.sync.receive("p", &message("p", ms, box_id, v)).unwrap();
        assert_eq!(got(t, "m", 1.0), Applied::Updated);
        assert_eq!(b.label(1.0), "p");
        assert_eq!(got(t - 1, "z", 2.0), Applied::Older);
        assert_eq!(got(t, "m", 1.0), Applied::Unchanged);
        // Same time: the greater box id wins, either way round.
        assert_eq!(got(t, "n", 3.0), Applied::Updated);
        assert_eq!(b.label(3.0), "p");
        assert_eq!(got(t, "m", 4.0), Applied::Older);
        assert_eq!(b.label(3.0), "p");
        // The broker held a stale copy: b answers with the newest it has, as it was written.
        let out = persons(b.sync.outgoing());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, message("p", t, "n", 3.0));
        assert!(persons(b.sync.outgoing()).is_empty());

        // A local change is newer than what it changed, and beats an older message.
        b.gallery.append(&id("p"), &[enc(5.0)], "k").unwrap();
        assert_eq!(got(t + 1, "z", 6.0), Applied::Older);
        assert_eq!(b.gallery.people(), [("p".into(), 2)]);
        let out = persons(b.sync.outgoing());
        let Ok(Incoming::Person { version, rows, .. }) =
            parse_message("p", &out[0].1, clock::unix_ms())
        else {
            panic!("{out:?}");
        };
        assert_eq!((version.box_id(), rows.len()), ("b", 2));
        assert!(version.updated_ms() > t + 1);
        // A newer message replaces the local change.
        assert_eq!(got(version.updated_ms() + 1, "a", 7.0), Applied::Updated);
        assert_eq!(b.gallery.people(), [("p".into(), 1)]);
        assert!(persons(b.sync.outgoing()).is_empty());
    }

    #[test]
    fn versions_survive_a_restart_and_nothing_is_published_again() {
        let mut a = TestBox::new("a", SyncMode::Both);
        a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        let first = persons(a.sync.outgoing());
        assert_eq!(first.len(), 1);
        a.sync.receive("p", &first[0].1).unwrap();
        a.restart("a", SyncMode::Both);
        assert!(persons(a.sync.outgoing()).is_empty());
        assert_eq!(
            a.sync.receive("p", &first[0].1).unwrap(),
            Applied::Unchanged
        );
        assert!(state_path(a.dir.path()).exists());
        // The npy file is untouched by the sync: the Python service's format only.
        let npy = std::fs::read(a.dir.path().join("embeddings/p.npy")).unwrap();
        assert_eq!(
            crate::gallery::npy::read_encodings(&npy).unwrap(),
            [enc(1.0)]
        );
    }

    #[test]
    fn changes_made_by_the_cli_are_published_running_or_not() {
        let mut a = TestBox::new("a", SyncMode::Both);
        assert!(persons(a.sync.outgoing()).is_empty());
        // The CLI beside the running service: noticed by reload_if_changed.
        let (cli, _) = Gallery::open(a.dir.path()).unwrap();
        cli.append(&id("p"), &[enc(1.0)], "cli").unwrap();
        assert!(!a.sync.wait_local_change(Duration::from_millis(10)));
        assert!(a.gallery.reload_if_changed().unwrap());
        assert!(a.sync.wait_local_change(Duration::from_millis(10)));
        let out = persons(a.sync.outgoing());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, id("p"));
        // While the service is off: noticed when it starts.
        drop(cli);
        let (cli, _) = Gallery::open(a.dir.path()).unwrap();
        cli.rename(&id("p"), &id("q"), "cli").unwrap();
        a.restart("a", SyncMode::Both);
        let out: Vec<(String, bool)> = a
            .sync
            .outgoing()
            .into_iter()
            .filter(|o| o.kind == Kind::Person)
            .map(|o| (o.id, o.payload))
            .map(|(i, p)| (i.to_string(), p.is_empty()))
            .collect();
        assert_eq!(out, [("q".into(), false), ("p".into(), true)]);
        // Imports are changes like any other.
        let mut archive = Vec::new();
        a.gallery.export(&mut archive).unwrap();
        let b = TestBox::new("b", SyncMode::Both);
        b.gallery
            .import(&archive, crate::gallery::archive::ImportMode::Merge, "k")
            .unwrap();
        assert_eq!(persons(b.sync.outgoing()).len(), 1);
    }

    #[test]
    fn a_box_that_was_away_converges_when_it_comes_back() {
        let (a, b) = (
            TestBox::new("a", SyncMode::Both),
            TestBox::new("b", SyncMode::Both),
        );
        let mut c = TestBox::new("c", SyncMode::Both);
        let mut broker = Broker::default();
        for (p, v) in [("x", 1.0), ("y", 2.0), ("z", 3.0)] {
            a.gallery.append(&id(p), &[enc(v)], "k").unwrap();
        }
        broker.pump(&[&a, &b, &c]);
        assert_eq!(c.gallery.counts(), (3, 3));

        c.online = false;
        a.gallery.append(&id("new"), &[enc(4.0)], "k").unwrap();
        b.gallery.remove(&id("x"), "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        // Meanwhile on c, offline: an enrollment and a deletion, nowhere published.
        c.gallery.append(&id("local"), &[enc(5.0)], "k").unwrap();
        c.gallery.remove(&id("y"), "k").unwrap();
        // c restarts, and reconnects.
        c.restart("c", SyncMode::Both);
        let done = broker.connect(&mut c);
        // x went with its tombstone as it arrived, before reconcile; `local` is published.
        assert_eq!(
            done,
            Reconciled {
                removed: 0,
                to_publish: 1
            }
        );
        assert_eq!(c.gallery.person(&id("x")), None);
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            let ids: Vec<String> = x.gallery.people().into_iter().map(|(i, _)| i).collect();
            assert_eq!(ids, ["local", "new", "z"], "{}", x.sync.box_id());
        }
        let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
        assert_eq!(on_broker, ["local", "new", "z"]);
        // Enrolled again elsewhere after c deleted them: the newer enrollment wins on c.
        a.gallery.append(&id("y"), &[enc(2.0)], "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        assert_eq!(c.label(2.0), "y");
    }

    #[test]
    fn a_broker_without_retained_messages_is_refilled_not_obeyed() {
        let mut a = TestBox::new("a", SyncMode::Both);
        let mut broker = Broker::default();
        a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        broker.pump(&[&a]);
        broker.retained.clear();
        let done = broker.connect(&mut a);
        assert_eq!(
            done,
            Reconciled {
                removed: 0,
                to_publish: 1
            }
        );
        broker.pump(&[&a]);
        assert_eq!(broker.retained.len(), 1);
        assert_eq!(a.label(1.0), "p");
    }

    fn tombstone(student_id: &str, ms: u64, box_id: &str) -> Vec<u8> {
        encode_tombstone(&id(student_id), &Version::new(ms, box_id))
    }

    fn ids(b: &TestBox) -> Vec<String> {
        b.gallery.people().into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn a_broker_that_lost_some_messages_is_refilled_and_nobody_is_removed() {
        let (a, b) = (
            TestBox::new("a", SyncMode::Both),
            TestBox::new("b", SyncMode::Both),
        );
        let mut pull = TestBox::new("p", SyncMode::Pull);
        let mut broker = Broker::default();
        for (p, v) in [("x", 1.0), ("y", 2.0), ("z", 3.0)] {
            a.gallery.append(&id(p), &[enc(v)], "k").unwrap();
        }
        broker.pump(&[&a, &b, &pull]);
        // A power cut before the broker's save: it comes back without y and z.
        broker.retained.remove(&id("y"));
        broker.retained.remove(&id("z"));
        let mut a = a;
        let mut b = b;
        let done = broker.connect(&mut pull);
        assert_eq!(done, Reconciled::default());
        assert_eq!(ids(&pull), ["x", "y", "z"]);
        for x in [&mut a, &mut b] {
            let done = broker.connect(x);
            assert_eq!(
                done,
                Reconciled {
                    removed: 0,
                    to_publish: 2
                }
            );
        }
        broker.pump(&[&a, &b, &pull]);
        for x in [&a, &b, &pull] {
            assert_eq!(ids(x), ["x", "y", "z"], "{}", x.sync.box_id());
        }
        let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
        assert_eq!(on_broker, ["x", "y", "z"]);
        assert!(broker.deleted.is_empty());
        // Everything lost, tombstones too: the same.
        b.gallery.remove(&id("x"), "k").unwrap();
        broker.pump(&[&a, &b, &pull]);
        assert!(broker.deleted.contains_key(&id("x")));
        let mut broker = Broker::default();
        for x in [&mut a, &mut b] {
            broker.connect(x);
        }
        broker.pump(&[&a, &b]);
        let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
        assert_eq!(on_broker, ["y", "z"]);
        assert_eq!(broker.deleted.keys().collect::<Vec<_>>(), [&id("x")]);
        // The pull box, away meanwhile: the tombstone, not the absence, removes x.
        broker.connect(&mut pull);
        assert_eq!(ids(&pull), ["y", "z"]);
    }

    #[test]
    fn a_tombstone_wins_over_an_older_person_and_loses_to_a_newer_one() {
        let b = TestBox::new("b", SyncMode::Both);
        let t = clock::unix_ms() - 60_000;
        let person = |ms, v| b.sync.receive("p", &message("p", ms, "a", v)).unwrap();
        let deleted = |ms| {
            b.sync
                .receive_deleted("p", &tombstone("p", ms, "c"))
                .unwrap()
        };
        assert_eq!(person(t, 1.0), Applied::Updated);
        // Older than the person: ignored, and the person goes again (with the tombstone
        // cleared).
        assert_eq!(deleted(t - 1), Applied::Older);
        assert_eq!(b.label(1.0), "p");
        let out = b.sync.outgoing();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].kind, &out[0].payload),
            (Kind::Person, &message("p", t, "a", 1.0))
        );
        assert_eq!(
            (out[1].kind, out[1].payload.is_empty()),
            (Kind::Deleted, true)
        );
        assert_eq!(out[1].topic("fa"), "fa/gallery-deleted/p");
        // Newer: removed, and remembered (an older copy is not added again but answered).
        assert_eq!(deleted(t + 10), Applied::Removed);
        assert_eq!(b.label(1.0), UNKNOWN);
        let history = b.gallery.history(&id("p"));
        assert!(history.iter().any(|e| e.by == "sync:c"), "{history:?}");
        assert_eq!(deleted(t + 10), Applied::Unchanged);
        assert!(b.sync.outgoing().is_empty());
        assert_eq!(person(t + 5, 2.0), Applied::Older);
        assert_eq!(b.label(2.0), UNKNOWN);
        let out = b.sync.outgoing();
        assert_eq!(out[0].kind, Kind::Deleted);
        assert_eq!(out[0].payload, tombstone("p", t + 10, "c"));
        assert!(out[1].payload.is_empty());
        // The empty person message that goes with it changes nothing more.
        assert_eq!(b.sync.receive("p", b"").unwrap(), Applied::Unchanged);
        // Enrolled again elsewhere after the deletion: the newer person wins.
        assert_eq!(person(t + 20, 3.0), Applied::Updated);
        assert_eq!(b.label(3.0), "p");
        // An empty person message alone now (the deletion's, arriving late): the person stays
        // and goes again.
        assert_eq!(b.sync.receive("p", b"").unwrap(), Applied::Older);
        assert_eq!(b.label(3.0), "p");
        assert_eq!(persons(b.sync.outgoing()).len(), 1);
        // A tombstone for someone this box never had: remembered.
        assert_eq!(
            b.sync
                .receive_deleted("q", &tombstone("q", t, "c"))
                .unwrap(),
            Applied::Absent
        );
        assert_eq!(
            b.sync.receive("q", &message("q", t - 1, "a", 4.0)).unwrap(),
            Applied::Older
        );
        assert_eq!(b.label(4.0), UNKNOWN);
    }

    #[test]
    fn a_deletion_without_a_tombstone_still_removes_and_gets_one() {
        let (a, b) = (
            TestBox::new("a", SyncMode::Both),
            TestBox::new("b", SyncMode::Both),
        );
        let mut c = TestBox::new("c", SyncMode::Both);
        let mut broker = Broker::default();
        a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        broker.pump(&[&a, &b, &c]);
        c.online = false;
        // `mosquitto_pub -r -n -t fa/gallery/p`, or a box of an older release.
        broker.retained.remove(&id("p"));
        for x in [&a, &b] {
            assert_eq!(x.sync.receive("p", b"").unwrap(), Applied::Removed);
        }
        broker.pump(&[&a, &b]);
        assert!(broker.retained.is_empty());
        assert!(broker.deleted.contains_key(&id("p")));
        // c, away meanwhile, goes by the tombstone.
        broker.connect(&mut c);
        broker.pump(&[&a, &b, &c]);
        for x in [&a, &b, &c] {
            assert!(ids(x).is_empty(), "{}", x.sync.box_id());
        }
        assert!(broker.retained.is_empty());
    }

    #[test]
    fn a_deletion_the_broker_lost_is_published_again() {
        // c deletes p while d is away; then the broker loses everything. Whichever of them
        // reconnects first, p ends deleted on both: c publishes its tombstone again, and
        // answers d's copy (d cannot tell the broker lost p) with it.
        for c_first in [true, false] {
            let (mut c, mut d) = (
                TestBox::new("c", SyncMode::Both),
                TestBox::new("d", SyncMode::Both),
            );
            let mut broker = Broker::default();
            c.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
            broker.pump(&[&c, &d]);
            d.online = false;
            c.gallery.remove(&id("p"), "k").unwrap();
            broker.pump(&[&c, &d]);
            let mut broker = Broker::default();
            c.online = false;
            if c_first {
                let done = broker.connect(&mut c);
                assert_eq!(
                    done,
                    Reconciled {
                        removed: 0,
                        to_publish: 1
                    }
                );
                broker.pump(&[&c]);
                assert!(broker.deleted.contains_key(&id("p")));
                broker.connect(&mut d);
            } else {
                let done = broker.connect(&mut d);
                assert_eq!(done.to_publish, 1);
                broker.pump(&[&d]);
                assert!(broker.retained.contains_key(&id("p")));
                broker.connect(&mut c);
            }
            broker.pump(&[&c, &d]);
            for x in [&c, &d] {
                assert!(ids(x).is_empty(), "{c_first}: {}", x.sync.box_id());
            }
            assert!(broker.retained.is_empty(), "{c_first}");
            assert!(broker.deleted.contains_key(&id("p")), "{c_first}");
        }
    }

    #[test]
    fn hostile_tombstones_are_refused_counted_and_change_nothing() {
        let b = TestBox::new("b", SyncMode::Both);
        b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        b.sync.outgoing();
        let before = snapshot(b.dir.path());
        let t = clock::unix_ms();
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            ("p", b"{not json".to_vec(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            ("p", br#"{"format":1,"student_id":"p"}"#.to_vec(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            ("p", tombstone("q", t, "a"), |e| {
                matches!(e, Malformed::IdMismatch { .. })
            }),
            ("../x", tombstone("p", t, "a"), |e| {
                matches!(e, Malformed::BadId(_))
            }),
            ("p", tombstone("p", t + 2 * MAX_FUTURE_MS, "a"), |e| {
                matches!(e, Malformed::FromTheFuture { .. })
            }),
            ("p", tombstone("p", t, "a/#"), |e| {
                matches!(e, Malformed::BadBoxId(_))
            }),
            (
                "p",
                br#"{"format":2,"student_id":"p","version":{"updated_ms":1,"box_id":"a"}}"#
                    .to_vec(),
                |e| matches!(e, Malformed::UnsupportedFormat(2)),
            ),
            ("p", vec![b' '; 2 << 20], |e| {
                matches!(e, Malformed::TooLarge(_))
            }),
        ];
        let n = cases.len() as u64;
        for (topic_id, payload, expected) in cases {
            match b.sync.receive_deleted(topic_id, &payload) {
                Err(SyncError::Malformed { reason, .. }) => {
                    assert!(expected(&reason), "{topic_id}: {reason}")
                }
                other => panic!("{topic_id}: {other:?}"),
            }
        }
        assert!(b.sync.receive_deleted("../x", b"").is_err());
        assert_eq!(b.sync.stats().malformed(), n + 1);
        assert_eq!(snapshot(b.dir.path()), before);
        assert_eq!(b.label(1.0), "p");
        assert!(b.sync.outgoing().is_empty());
        // The good one passes.
        assert_eq!(
            b.sync
                .receive_deleted("p", &tombstone("p", t + 1000, "a"))
                .unwrap(),
            Applied::Removed
        );
    }

    #[test]
    fn a_deletion_loses_to_a_change_made_after_the_box_last_heard() {
        let (a, b) = (
            TestBox::new("a", SyncMode::Both),
            TestBox::new("b", SyncMode::Both),
        );
        let mut broker = Broker::default();
        a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        broker.pump(&[&a, &b]);
        // b adds a sample; before it is published, a's deletion arrives.
        b.gallery.append(&id("p"), &[enc(1.5)], "k").unwrap();
        assert_eq!(b.sync.receive("p", b"").unwrap(), Applied::KeptLocal);
        assert_eq!(b.gallery.people(), [("p".into(), 2)]);
        assert_eq!(persons(b.sync.outgoing()).len(), 1);
        // Unchanged since: the deletion wins.
        let c = TestBox::new("c", SyncMode::Both);
        c.sync.receive("p", &broker.retained[&id("p")]).unwrap();
        assert_eq!(c.sync.receive("p", b"").unwrap(), Applied::Removed);
        assert_eq!(c.gallery.counts(), (0, 0));
        assert_eq!(c.sync.receive("p", b"").unwrap(), Applied::Unchanged);
    }

    #[test]
    fn pull_applies_and_never_publishes_and_off_does_nothing() {
        let a = TestBox::new("a", SyncMode::Both);
        let pull = TestBox::new("p", SyncMode::Pull);
        let off = TestBox::new("o", SyncMode::Off);
        let mut broker = Broker::default();
        a.gallery.append(&id("x"), &[enc(1.0)], "k").unwrap();
        broker.pump(&[&a, &pull, &off]);
        assert_eq!(pull.label(1.0), "x");
        assert_eq!(off.label(1.0), UNKNOWN);
        pull.gallery.append(&id("x"), &[enc(1.5)], "k").unwrap();
        pull.gallery.append(&id("mine"), &[enc(2.0)], "k").unwrap();
        off.gallery.append(&id("theirs"), &[enc(3.0)], "k").unwrap();
        assert!(
            persons(pull.sync.outgoing()).is_empty() && persons(off.sync.outgoing()).is_empty()
        );
        // A deletion from the broker wins over a pull box's local change.
        assert_eq!(pull.sync.receive("x", b"").unwrap(), Applied::Removed);
        assert_eq!(off.sync.receive("x", b"").unwrap(), Applied::Off);
        assert_eq!(pull.gallery.people(), [("mine".into(), 1)]);
        assert!(!state_path(off.dir.path()).exists());
    }

    /// Every file of the data folder with its bytes.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.file_name().is_some_and(|n| n != ".lock") {
                    out.push((path.clone(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// Whether a refusal is the one a case expects.
    type Check = fn(&Malformed) -> bool;

    #[test]
    fn hostile_messages_are_refused_counted_and_change_nothing() {
        let b = TestBox::new("b", SyncMode::Both);
        b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        persons(b.sync.outgoing());
        let before = snapshot(b.dir.path());
        let t = clock::unix_ms();
        let good: Value = serde_json::from_slice(&message("p", t, "a", 2.0)).unwrap();
        let with = |f: &dyn Fn(&mut Value)| {
            let mut m = good.clone();
            f(&mut m);
            serde_json::to_vec(&m).unwrap()
        };
        let nan = String::from_utf8(with(&|_| {}))
            .unwrap()
            .replacen("0.0", "NaN", 1);
        // JSON has no infinity: a number beyond f64 is as close as a message can get.
        let inf = String::from_utf8(with(&|_| {}))
            .unwrap()
            .replacen("0.0", "1e400", 1);
        let cases: Vec<(&str, Vec<u8>, Check)> = vec![
            ("p", nan.into_bytes(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            ("p", inf.into_bytes(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            (
                "p",
                with(&|m| m["samples"][0]["encoding"][3] = json!(11.0)),
                |e| matches!(e, Malformed::BadValue { index: 0, .. }),
            ),
            (
                "p",
                with(&|m| {
                    m["samples"][0]["encoding"].as_array_mut().unwrap().pop();
                }),
                |e| matches!(e, Malformed::EncodingLength { values: 127, .. }),
            ),
            ("p", vec![b' '; 10 << 20], |e| {
                matches!(e, Malformed::TooLarge(_))
            }),
            ("../x", message("p", t, "a", 2.0), |e| {
                matches!(e, Malformed::BadId(_))
            }),
            ("q", message("p", t, "a", 2.0), |e| {
                matches!(e, Malformed::IdMismatch { .. })
            }),
            ("p", b"{not json".to_vec(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            ("p", b"[1,2]".to_vec(), |e| {
                matches!(e, Malformed::BadJson(_))
            }),
            ("p", message("p", t + 2 * MAX_FUTURE_MS, "a", 2.0), |e| {
                matches!(e, Malformed::FromTheFuture { .. })
            }),
            ("p", with(&|m| m["format"] = json!(2)), |e| {
                matches!(e, Malformed::UnsupportedFormat(2))
            }),
            ("p", with(&|m| m["samples"] = json!([])), |e| {
                matches!(e, Malformed::SampleCount(0))
            }),
            ("p", with(&|m| m["version"]["box_id"] = json!("a/#")), |e| {
                matches!(e, Malformed::BadBoxId(_))
            }),
            (
                "p",
                with(&|m| m["samples"][0]["quality"] = json!("x".repeat(2000))),
                |e| matches!(e, Malformed::BadQuality { index: 0 }),
            ),
            (
                "p",
                with(&|m| m["samples"][0]["enrolled_at"] = json!(u64::MAX)),
                |e| matches!(e, Malformed::BadTime { .. }),
            ),
        ];
        let n = cases.len() as u64;
        for (topic_id, payload, expected) in cases {
            match b.sync.receive(topic_id, &payload) {
                Err(SyncError::Malformed { reason, .. }) => {
                    assert!(expected(&reason), "{topic_id}: {reason}")
                }
                other => panic!("{topic_id}: {other:?}"),
            }
        }
        // A deletion under a bad id is refused too.
        assert!(b.sync.receive("../x", b"").is_err());
        assert_eq!(b.sync.stats().malformed(), n + 1);
        assert_eq!(snapshot(b.dir.path()), before);
        assert_eq!(b.label(1.0), "p");
        assert!(persons(b.sync.outgoing()).is_empty());
        // The good one passes, so the cases above each failed for their own reason.
        assert_eq!(
            b.sync
                .receive("p", &serde_json::to_vec(&good).unwrap())
                .unwrap(),
            Applied::Updated
        );
        let json = b.sync.stats().to_json();
        assert_eq!(json["outcomes"]["malformed"], n + 1);
        assert_eq!(b.sync.stats().families().len(), 3);
    }

    #[test]
    fn the_fuzz_target_survives_cut_and_flipped_messages() {
        let good = message("p", clock::unix_ms(), "a", 0.25);
        let mut input = b"p\n".to_vec();
        input.extend_from_slice(&good);
        crate::fuzzing::gallery_sync(&input);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..2000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut data = input.clone();
            let at = (state as usize) % data.len();
            match i % 3 {
                0 => data.truncate(at),
                1 => data[at] ^= 1 << ((state >> 40) % 8),
                _ => data.insert(at, b"0-e.,9"[(state >> 32) as usize % 6]),
            }
            crate::fuzzing::gallery_sync(&data);
        }
    }

    #[test]
    fn box_ids_are_checked() {
        for bad in ["", "a/b", "a+b", "#", &"x".repeat(65)] {
            let dir = tempfile::tempdir().unwrap();
            let g = Arc::new(Gallery::open(dir.path()).unwrap().0);
            assert!(matches!(
                GallerySync::new(g, bad, SyncMode::Both),
                Err(SyncError::BoxId(..))
            ));
        }
        assert_eq!(topic_id("fa", &topic("fa", &id("p"))), Some("p"));
        assert_eq!(topic_id("fa", "fa/box/events"), None);
        assert_eq!(topic_filter("fa"), "fa/gallery/+");
        assert_eq!(topic_deleted_filter("fa"), "fa/gallery-deleted/+");
        assert_eq!(
            topic_deleted_id("fa", &topic_deleted("fa", &id("p"))),
            Some("p")
        );
        assert_eq!(topic_deleted_id("fa", &topic("fa", &id("p"))), None);
        assert_eq!(topic_id("fa", &topic_deleted("fa", &id("p"))), None);
    }
}
