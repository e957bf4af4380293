//! The wire format of replication: what a person's message and a tombstone are, their limits,
//! how one from the broker is checked ([`parse_message`], [`parse_tombstone`]: nothing in it is
//! trusted before they return) and how this box's are written.
//!
//! - person: `{"format":1,"student_id":"alip","version":{"updated_ms":…,"box_id":"gate-1"},
//!   "samples":[{"encoding":[128 numbers],"enrolled_at":<unix s>,"quality":{…}}],
//!   "name":"Alip Nugraha","group":"7A"}` (`name` and `group` only when set; checked as an API
//!   field is, [`crate::gallery::label`]; a box of an earlier release ignores them);
//! - tombstone: `{"format":1,"student_id":"alip","version":{…}}`;
//! - an empty payload: a person deleted, or a tombstone cleared.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::engine::{Encoding, ENCODING_LEN};
use crate::gallery::{Label, Rows, Sample, StudentId};

/// The message format this box writes and reads.
pub const FORMAT: u64 = 1;

/// Largest payload accepted (and written): a person of [`MAX_SAMPLES`] samples fits.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Most samples of one person in a message.
pub const MAX_SAMPLES: usize = 256;

/// Largest magnitude of an encoding's value (dlib's are within ±0.5).
pub const MAX_ABS_VALUE: f64 = 10.0;

/// Longest box id.
pub const MAX_BOX_ID_LEN: usize = 64;
/// Most bytes of one sample's quality object.
pub const MAX_QUALITY_BYTES: usize = 1024;

/// How far ahead of this box's clock a version may be: more would pin the person for ever.
pub const MAX_FUTURE_MS: u64 = 3_600_000;

/// No version is after the year 3000 (in milliseconds): a version near `u64::MAX` would pin a
/// person or a tombstone for good.
pub const MAX_VERSION_MS: u64 = 32_503_680_000_000;

/// When this binary was built (Unix milliseconds; `SOURCE_DATE_EPOCH` when the build set it): a
/// clock that reads earlier is not set yet (a board without a real-time clock before NTP), and
/// the box neither publishes nor applies until it is.
pub const BUILD_MS: u64 = parse_build_ms(env!("FACE_BUILD_UNIX_MS"));

const fn parse_build_ms(text: &str) -> u64 {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut n: u64 = 0;
    while i < bytes.len() {
        n = n * 10 + (bytes[i] - b'0') as u64;
        i += 1;
    }
    n
}

/// Whether a clock reading `now_ms` is set (not earlier than this binary's build).
pub fn clock_is_set(now_ms: u64) -> bool {
    now_ms >= BUILD_MS
}

/// No sample is enrolled after the year 3000.
pub(super) const MAX_ENROLLED_AT: u64 = 32_503_680_000;

/// A person's version: ordered by time, then box id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    pub(super) updated_ms: u64,
    pub(super) box_id: String,
}

impl Version {
    /// The version written at `updated_ms` (Unix milliseconds) by `box_id`.
    pub fn new(updated_ms: u64, box_id: &str) -> Version {
        Version {
            updated_ms,
            box_id: box_id.to_string(),
        }
    }

    /// When it was written, Unix milliseconds.
    pub fn updated_ms(&self) -> u64 {
        self.updated_ms
    }

    /// The box that wrote it.
    pub fn box_id(&self) -> &str {
        &self.box_id
    }
}

/// Why a message from the broker was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Malformed {
    /// Larger than [`MAX_PAYLOAD`] (its size).
    #[error("{0} bytes, over the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    /// The topic's id is not a valid new student id (why).
    #[error("topic id: {0}")]
    BadId(String),
    /// Not JSON of a message (the parser's words).
    #[error("not a gallery message: {0}")]
    BadJson(String),
    /// Another format than [`FORMAT`].
    #[error("format {0} is not read by this box (it reads {FORMAT})")]
    UnsupportedFormat(u64),
    /// The body's `student_id` is not the topic's.
    #[error("the message is for {body:?}, its topic for {topic}")]
    IdMismatch {
        /// The topic's id.
        topic: String,
        /// The body's, clipped to 80 characters.
        body: String,
    },
    /// The version's box id is not one [`check_box_id`] accepts (why).
    #[error("box_id: {0}")]
    BadBoxId(String),
    /// The version is more than [`MAX_FUTURE_MS`] ahead of this box's clock, or after
    /// [`MAX_VERSION_MS`].
    #[error("version {updated_ms} is more than {MAX_FUTURE_MS} ms ahead of this box's clock")]
    FromTheFuture {
        /// The version's time.
        updated_ms: u64,
    },
    /// No samples, or more than [`MAX_SAMPLES`] (how many).
    #[error("{0} samples (1 to {MAX_SAMPLES})")]
    SampleCount(usize),
    /// A sample's encoding has not 128 values.
    #[error("sample {index}: {values} values ({ENCODING_LEN} expected)")]
    EncodingLength {
        /// The sample's index.
        index: usize,
        /// How many values it has.
        values: usize,
    },
    /// A value is not finite or beyond ±[`MAX_ABS_VALUE`].
    #[error("sample {index}: value {value} is not finite or beyond ±{MAX_ABS_VALUE}")]
    BadValue {
        /// The sample's index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A sample's `enrolled_at` is after the year 3000.
    #[error("sample {index}: enrolled_at {enrolled_at} is too far in the future")]
    BadTime {
        /// The sample's index.
        index: usize,
        /// Its `enrolled_at`.
        enrolled_at: u64,
    },
    /// The name or group breaks the rules of [`crate::gallery::label`] (which, and why).
    #[error("{0}")]
    BadLabel(String),
    /// A sample's quality is not a JSON object of at most [`MAX_QUALITY_BYTES`] bytes.
    #[error("sample {index}: quality must be a JSON object of at most {MAX_QUALITY_BYTES} bytes")]
    BadQuality {
        /// The sample's index.
        index: usize,
    },
}

/// A message as checked: a person, a deletion (an empty person message), a tombstone or a
/// tombstone cleared.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// An empty person message: the person is deleted.
    Deleted(StudentId),
    /// A tombstone: the person's deletion, at `version`.
    Tombstone {
        /// The person.
        id: StudentId,
        /// The deletion's version.
        version: Version,
    },
    /// An empty tombstone: the deletion no longer holds.
    TombstoneCleared(StudentId),
    /// A person at `version`, with their rows (crops never travel).
    Person {
        /// The person.
        id: StudentId,
        /// Their version.
        version: Version,
        /// Their samples, in order, described plainly (time and quality).
        rows: Rows,
        /// Enrolled although a face is within the duplicate distance of another person's (twins;
        /// honoured only when an admin signed it).
        force: bool,
        /// A rename: the person's previous id, removed with this change.
        renamed_from: Option<StudentId>,
        /// Their name and group (none: the message has neither, or is of an earlier release).
        label: Label,
    },
}

#[derive(Serialize, Deserialize)]
pub(super) struct Message {
    format: u64,
    student_id: String,
    version: Version,
    samples: Vec<WireSample>,
    #[serde(default, skip_serializing_if = "is_false")]
    force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renamed_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize)]
pub(super) struct TombstoneMessage {
    format: u64,
    student_id: String,
    version: Version,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireSample {
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
pub(super) fn clip(raw: &str) -> String {
    raw.chars().take(80).collect()
}

/// What every message is checked for first: its size, the topic's id and, unless the payload
/// is empty (then `false`), its format (first, so that a newer format is told apart from
/// garbage).
pub(super) fn check_envelope(
    topic_id: &str,
    payload: &[u8],
) -> Result<(StudentId, bool), Malformed> {
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

/// Checks a message whose topic names `topic_id` ([`super::topics::topic_id`]), with `now_ms` this
/// box's clock. Nothing in it is trusted before this returns.
pub fn parse_message(topic_id: &str, payload: &[u8], now_ms: u64) -> Result<Incoming, Malformed> {
    let (id, body) = check_envelope(topic_id, payload)?;
    if !body {
        return Ok(Incoming::Deleted(id));
    }
    let message: Message =
        serde_json::from_slice(payload).map_err(|e| Malformed::BadJson(e.to_string()))?;
    let version = check_head(&id, &message.student_id, message.version, now_ms)?;
    let renamed_from = match &message.renamed_from {
        Some(old) => {
            let old = StudentId::parse_new(old).map_err(Malformed::BadId)?;
            (old != id).then_some(old)
        }
        None => None,
    };
    let label = Label::checked(message.name.as_deref(), message.group.as_deref())
        .map_err(|e| Malformed::BadLabel(clip(&e.to_string())))?;
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
    Ok(Incoming::Person {
        id,
        version,
        rows,
        force: message.force,
        renamed_from,
        label,
    })
}

/// The body's id and version of a message for `id`, checked.
pub(super) fn check_head(
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
    if version.updated_ms > now_ms.saturating_add(MAX_FUTURE_MS)
        || version.updated_ms > MAX_VERSION_MS
    {
        return Err(Malformed::FromTheFuture {
            updated_ms: version.updated_ms,
        });
    }
    Ok(version)
}

/// Checks a tombstone whose topic names `topic_id` ([`super::topics::topic_deleted_id`]): the same
/// rules as [`parse_message`] (size, id, format, the topic's id the body's, box id, version); an
/// empty payload is a tombstone cleared.
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
pub(super) fn encode_tombstone(id: &StudentId, version: &Version) -> Vec<u8> {
    let message = TombstoneMessage {
        format: FORMAT,
        student_id: id.to_string(),
        version: version.clone(),
    };
    serde_json::to_vec(&message).unwrap_or_default()
}

/// How a person's message says what kind of change it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Change {
    /// Enrolled despite a duplicate (see [`Incoming::Person`]).
    pub(super) force: bool,
    /// A rename from this id.
    pub(super) renamed_from: Option<StudentId>,
    /// The person's name and group.
    pub(super) label: Label,
}

/// The payload of a person (their rows, in order), unsigned and unchecked.
pub(super) fn encode_message(
    id: &StudentId,
    version: &Version,
    rows: &[(Encoding, Sample)],
    change: &Change,
) -> Vec<u8> {
    let message = Message {
        force: change.force,
        renamed_from: change.renamed_from.as_ref().map(|id| id.to_string()),
        name: change.label.name.clone(),
        group: change.label.group.clone(),
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
    encode_message(id, version, rows, &Change::default())
}
