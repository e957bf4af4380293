//! Changes that come from another box (through [`crate::replication`]), and the reads
//! replication compares with: each person's rows as matching holds them and a digest of their
//! encodings ([`encodings_digest`]).
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

use super::{remove_file_synced, samples, Gallery, GalleryError, Rows, Sample, StudentId};
use crate::engine::Encoding;
use crate::locks;

/// A digest of a person's encodings in order (32 hex digits of their SHA-256): what tells a
/// change of theirs apart. Stable across platforms and releases (replication keeps it in
/// `data/gallery-sync.json`).
pub fn encodings_digest(rows: &[(Encoding, Sample)]) -> String {
    digest_of(rows.iter().map(|(e, _)| e))
}

/// [`encodings_digest`] of encodings given one by one.
fn digest_of<'a>(encodings: impl IntoIterator<Item = &'a Encoding>) -> String {
    let mut hasher = Sha256::new();
    for encoding in encodings {
        for v in encoding {
            hasher.update(v.to_le_bytes());
        }
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Gallery {
    /// Each enrolled person's [`encodings_digest`], as matching sees them.
    pub fn person_digests(&self) -> BTreeMap<StudentId, String> {
        let m = locks::read(&self.matrix);
        let mut rows: HashMap<u32, Vec<&Encoding>> = HashMap::new();
        for (e, o) in m.encodings.iter().zip(&m.owners) {
            rows.entry(*o).or_default().push(e);
        }
        rows.into_iter()
            .filter_map(|(o, encodings)| {
                let id = StudentId::parse(&m.labels[o as usize]).ok()?;
                Some((id, digest_of(encodings)))
            })
            .collect()
    }

    /// The person's [`encodings_digest`] as matching sees them; `None` when not enrolled.
    pub fn person_digest(&self, id: &StudentId) -> Option<String> {
        let rows = self.rows_in_memory(id);
        (!rows.is_empty()).then(|| encodings_digest(&rows))
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

    /// The person's rows become `rows` (received from another box), when the files still hold
    /// the encodings whose [`encodings_digest`] is `expected` (none: not enrolled); `false` when
    /// they changed meanwhile. Crops of rows kept stay; rejections stay. Audit action `sync` by
    /// `by`; not a local change.
    pub fn put_received(
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
        let now = old.as_deref().map(encodings_digest);
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
            let _ = remove_file_synced(&dir.join(crop));
        }
        locks::write(&self.matrix).set_person(id.as_str(), &rows);
        self.record_quiet(Self::entry("sync", id, rows.len(), by));
        Ok(true)
    }

    /// Removes the person (every file, as [`Gallery::remove`] does) when they still have the
    /// encodings whose [`encodings_digest`] is `expected`; `false` when they changed meanwhile
    /// (or their `.npy` is damaged). Audit action `delete` by `by`; not a local change.
    pub fn remove_received(
        &self,
        id: &StudentId,
        expected: Option<&str>,
        by: &str,
    ) -> Result<bool, GalleryError> {
        let _writing = self.writing()?;
        let now = match self.read_person(id) {
            Ok(rows) => rows.map(|rows| encodings_digest(&rows)),
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
