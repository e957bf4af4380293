//! Changes that come from another box (through [`crate::replication`]), and the reads
//! replication compares with: each person's rows as matching holds them and a digest of their
//! encodings and their name and group ([`person_digest_of`]).
//!
//! Contract: a received change goes through the store's write path (write lock, `.npy` then
//! metadata atomically, matching, `data/.generation`, an audit line with `by`), but only when
//! the person still has the encodings replication expects (a compare-and-set on the digest,
//! under the write lock: a local change made meanwhile wins, and the call says so); and it is
//! not counted as a local change ([`Gallery::wait_local_change`]), so that a box never
//! publishes again what it received. Crops of the rows kept stay; rejections stay.

use std::collections::{BTreeMap, HashMap};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{remove_file_synced, samples, Gallery, GalleryError, Label, Rows, Sample, StudentId};
use crate::engine::Encoding;
use crate::locks;

/// A digest of a person's encodings in order (32 hex digits of their SHA-256): what tells a
/// change of theirs apart. Stable across platforms and releases (replication keeps it in
/// `data/gallery-sync.json`).
pub fn encodings_digest(rows: &[(Encoding, Sample)]) -> String {
    digest_of(rows.iter().map(|(e, _)| e))
}

/// What tells a change of a person apart, names included: [`encodings_digest`] for a person
/// without name and group (so a person of an earlier release keeps their digest, and is not
/// published again after an upgrade), else a digest of their encodings then their name and
/// group.
pub fn person_digest_of(rows: &[(Encoding, Sample)], label: &Label) -> String {
    digest_with(rows.iter().map(|(e, _)| e), label)
}

/// [`encodings_digest`] of encodings given one by one.
fn digest_of<'a>(encodings: impl IntoIterator<Item = &'a Encoding>) -> String {
    digest_with(encodings, &Label::default())
}

/// [`person_digest_of`] of encodings given one by one.
fn digest_with<'a>(encodings: impl IntoIterator<Item = &'a Encoding>, label: &Label) -> String {
    let mut hasher = Sha256::new();
    for encoding in encodings {
        for v in encoding {
            hasher.update(v.to_le_bytes());
        }
    }
    if !label.is_empty() {
        hasher.update(b"\0label\0");
        // Two optional strings: serializing cannot fail.
        hasher.update(serde_json::to_vec(label).unwrap_or_default());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Gallery {
    /// Each enrolled person's [`person_digest_of`], as matching sees them.
    pub fn person_digests(&self) -> BTreeMap<StudentId, String> {
        let m = locks::read(&self.matrix);
        let mut rows: HashMap<u32, Vec<&Encoding>> = HashMap::new();
        for (e, o) in m.encodings.iter().zip(&m.owners) {
            rows.entry(*o).or_default().push(e);
        }
        rows.into_iter()
            .filter_map(|(o, encodings)| {
                let label = &m.labels[o as usize];
                let id = StudentId::parse(label).ok()?;
                let names = m.names.get(label).cloned().unwrap_or_default();
                Some((id, digest_with(encodings, &names)))
            })
            .collect()
    }

    /// The person's [`person_digest_of`] as matching sees them; `None` when not enrolled.
    pub fn person_digest(&self, id: &StudentId) -> Option<String> {
        let (rows, label) = self.person_in_memory(id);
        (!rows.is_empty()).then(|| person_digest_of(&rows, &label))
    }

    /// The person's rows and their name and group as matching holds them, read together (no
    /// rows: not enrolled).
    pub fn person_in_memory(&self, id: &StudentId) -> (Rows, Label) {
        let m = locks::read(&self.matrix);
        let rows = m
            .rows_of(id.as_str())
            .into_iter()
            .map(|r| (m.encodings[r], m.samples[r].clone()))
            .collect();
        (rows, m.names.get(id.as_str()).cloned().unwrap_or_default())
    }

    /// The person's rows as matching holds them, in order (none: not enrolled).
    pub fn rows_in_memory(&self, id: &StudentId) -> Rows {
        let m = locks::read(&self.matrix);
        m.rows_of(id.as_str())
            .into_iter()
            .map(|r| (m.encodings[r], m.samples[r].clone()))
            .collect()
    }

    /// When the person's `.npy` was last written, in Unix milliseconds (`None`: no file, or its
    /// time is unknown): the time of a change, even one the CLI made while the service was off.
    pub fn encodings_written_ms(&self, id: &StudentId) -> Option<u64> {
        std::fs::metadata(self.npy_path(id))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
    }

    /// Whether the person's `.npy` is there, loaded or not (a damaged file, or one another
    /// process wrote and this one has not reloaded yet).
    pub fn has_encodings_file(&self, id: &StudentId) -> bool {
        self.npy_path(id).exists()
    }

    /// The person's rows and name and group become `rows` and `label` (received from another
    /// box), when the files still hold the person whose [`person_digest_of`] is `expected`
    /// (none: not enrolled); `false` when they changed meanwhile. Crops of rows kept stay;
    /// rejections stay. Audit action `sync` by `by` (with the name and group when they
    /// changed); not a local change.
    pub fn put_received(
        &self,
        id: &StudentId,
        rows: &[(Encoding, Sample)],
        label: &Label,
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
        let old_label = self.read_label(id);
        let now = old
            .as_deref()
            .map(|rows| person_digest_of(rows, &old_label));
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
        self.write_person(id, &rows, label)?;
        let dir = self.crops_dir(id);
        for crop in crops.values() {
            let _ = remove_file_synced(&dir.join(crop));
        }
        locks::write(&self.matrix).set_labelled(id.as_str(), &rows, label);
        let mut entry = Self::entry("sync", id, rows.len(), by);
        entry.label = (*label != old_label).then(|| label.clone());
        self.record_quiet(entry);
        Ok(true)
    }

    /// Removes the person (every file, as [`Gallery::remove`] does) when they are still the
    /// person whose [`person_digest_of`] is `expected`; `false` when they changed meanwhile
    /// (or their `.npy` is damaged). Audit action `delete` by `by`; not a local change.
    pub fn remove_received(
        &self,
        id: &StudentId,
        expected: Option<&str>,
        by: &str,
    ) -> Result<bool, GalleryError> {
        let _writing = self.writing()?;
        let now = match self.read_person(id) {
            Ok(rows) => rows.map(|rows| person_digest_of(&rows, &self.read_label(id))),
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
