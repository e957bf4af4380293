//! What a gallery archive is: its marker, the paths of its entries and the caps on their sizes
//! (the format is described in [`super`]), and the fault an archive is refused with.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use serde_json::Value;
use thiserror::Error;

use crate::engine::Encoding;
use crate::gallery::samples::{self, SamplesFile};
use crate::gallery::{now_secs, npy, StudentId};

/// The first entry of every archive.
pub const MARKER: &str = "face-attendance-gallery.json";

/// The marker's `format`.
pub const FORMAT: &str = "face-attendance-gallery";

/// The marker's `version`: the only one this program reads and writes.
pub const VERSION: u64 = 1;

/// Largest `embeddings/<id>.npy` accepted (about 16 000 rows).
pub const MAX_NPY_BYTES: u64 = 16 << 20;

/// Largest `people/<id>.json` accepted.
pub const MAX_JSON_BYTES: u64 = 4 << 20;

/// Largest face crop accepted.
pub const MAX_CROP_BYTES: u64 = 8 << 20;

/// Largest marker file accepted.
pub(super) const MAX_MARKER_BYTES: u64 = 64 << 10;

/// Largest archive accepted, and most bytes its entries may hold in all.
pub const MAX_ARCHIVE_BYTES: u64 = 1 << 30;

pub(super) const BLOCK: u64 = 512;

/// The name an uploaded archive's file has for an instant in the data folder
/// ([`crate::gallery::Gallery::import_spool`]).
pub const SPOOL_NAME: &str = "gallery-import";

/// Why an archive was refused: the entry (empty for the archive as a whole) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ArchiveError {
    /// The entry's path in the archive (empty: the archive as a whole).
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.entry.is_empty() {
            write!(f, "not a gallery archive: {}", self.reason)
        } else {
            write!(
                f,
                "not a gallery archive: entry {:?}: {}",
                self.entry, self.reason
            )
        }
    }
}

pub(super) fn refuse(entry: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// Where an entry's data lies in the archive: crops (and descriptions, parsed again when they
/// are matched to their rows) are read from the archive when needed, never all held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) offset: u64,
    pub(super) len: u64,
}

/// What a path in the archive is.
pub(super) enum Kind {
    Marker,
    Npy(StudentId),
    Json(StudentId),
    Rejected(StudentId),
    Crop(StudentId, String),
}

pub(super) const PATTERNS: &str =
    "expected face-attendance-gallery.json, embeddings/<id>.npy, people/<id>.json, rejected/<id>.npy or faces/<id>/<ms>-<n>.jpg";

pub(super) fn parse_id(raw: &str) -> Result<StudentId, String> {
    StudentId::parse_new(raw).map_err(|reason| format!("bad id {raw:?}: {reason}"))
}

/// Classifies a file's path; anything but the exact patterns is refused (`..`, absolute paths,
/// `./` prefixes, extra or empty components).
pub(super) fn classify(path: &str) -> Result<Kind, String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [MARKER] => Ok(Kind::Marker),
        ["embeddings", file] => match file.strip_suffix(".npy") {
            Some(id) => Ok(Kind::Npy(parse_id(id)?)),
            None => Err(PATTERNS.into()),
        },
        ["people", file] => match file.strip_suffix(".json") {
            Some(id) => Ok(Kind::Json(parse_id(id)?)),
            None => Err(PATTERNS.into()),
        },
        ["rejected", file] => match file.strip_suffix(".npy") {
            Some(id) => Ok(Kind::Rejected(parse_id(id)?)),
            None => Err(PATTERNS.into()),
        },
        ["faces", id, crop] => {
            let id = parse_id(id)?;
            if !samples::is_crop_name(crop) {
                return Err(format!("bad crop name {crop:?} (expected <ms>-<n>.jpg)"));
            }
            Ok(Kind::Crop(id, crop.to_string()))
        }
        _ => Err(PATTERNS.into()),
    }
}

/// Whether a directory entry's path is one the gallery has (they carry nothing and are skipped,
/// but a stray one means the archive is not ours).
pub(super) fn is_gallery_dir(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["embeddings"] | ["people"] | ["rejected"] | ["faces"] => true,
        ["faces", id] => StudentId::parse(id).is_ok(),
        _ => false,
    }
}

/// The marker's content.
#[derive(Debug, Clone, Copy)]
pub(super) struct Marker {
    pub(super) exported_at: u64,
    /// The people and samples it says the archive holds, when it says.
    pub(super) people: Option<u64>,
    pub(super) samples: Option<u64>,
}

/// Checks the marker file.
pub(super) fn check_marker(bytes: &[u8]) -> Result<Marker, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let format = value.get("format").and_then(Value::as_str);
    if format != Some(FORMAT) {
        return Err(format!("format is {format:?}, expected {FORMAT:?}"));
    }
    let version = value.get("version").and_then(Value::as_u64);
    if version != Some(VERSION) {
        return Err(format!(
            "version {}, this program reads version {VERSION}",
            value
                .get("version")
                .map_or("missing".into(), Value::to_string)
        ));
    }
    let count = |name: &str| match value.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("{name} must be a whole number")),
    };
    Ok(Marker {
        exported_at: count("exported_at")?.unwrap_or_else(now_secs),
        people: count("people")?,
        samples: count("samples")?,
    })
}

/// A description file's entries, and the person's name and group (checked as an API field
/// is: [`crate::gallery::label`]).
pub(super) fn parse_samples(data: &[u8], path: &str) -> Result<SamplesFile, ArchiveError> {
    let mut file: SamplesFile = serde_json::from_slice(data)
        .map_err(|e| refuse(path, format!("not a samples file: {e}")))?;
    file.label = file
        .label
        .rechecked()
        .map_err(|e| refuse(path, e.to_string()))?;
    Ok(file)
}

/// An `.npy` of rows: at least one.
pub(super) fn parse_rows(data: &[u8], path: &str) -> Result<Vec<Encoding>, ArchiveError> {
    let rows = npy::read_encodings(data).map_err(|r| refuse(path, r))?;
    if rows.is_empty() {
        return Err(refuse(path, "holds no rows"));
    }
    Ok(rows)
}

/// Reads into `buf` until it is full or the reader ends; how many bytes came.
pub(super) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The bytes at `span` of `archive`; an error if they are not all there.
pub(super) fn read_span<R: Read + Seek>(archive: &mut R, span: Span) -> io::Result<Vec<u8>> {
    archive.seek(SeekFrom::Start(span.offset))?;
    // Spans are of entries whose size was checked against their cap: it fits in memory.
    let mut data = vec![0; span.len as usize];
    archive.read_exact(&mut data)?;
    Ok(data)
}

pub(super) fn entry_kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char | tar::EntryType::Block => "device",
        tar::EntryType::Fifo => "FIFO",
        tar::EntryType::GNUSparse => "sparse file",
        tar::EntryType::XGlobalHeader => "pax global header",
        _ => "special",
    }
}
