//! The gallery as one file: `GET /gallery/export` and `gallery export` write it,
//! `POST /gallery/import` and `gallery import` read it back (merging or replacing).
//!
//! Format: a POSIX (ustar) tar archive of regular files (mode 0644, owner 0, mtime the export's
//! time), in this order:
//! 1. `face-attendance-gallery.json`: `{"format":"face-attendance-gallery","version":1,
//!    "exported_at":<unix s>,"people":N,"samples":M}`;
//! 2. for each person, by id: `embeddings/<id>.npy` (numpy `float64`, shape `(n, 128)`, C order:
//!    the rows), `people/<id>.json` (their descriptions, as in `data/people/`, see
//!    [`super::samples`]), `rejected/<id>.npy` when faces were rejected as not them (same
//!    format, see [`super::rejected`]), then `faces/<id>/<ms>-<n>.jpg` for each crop a
//!    description names.
//!
//! It unpacks with `tar -xf` into a data folder, and `python -c "import tarfile"` reads it.
//!
//! Contract of import: the whole archive is checked first ([`validate_from`], one pass over a
//! file; [`validate`] for one in memory) and any fault names the entry and the reason, with
//! nothing written. Accepted: the marker file first, with this format
//! and version (and, when present, `people` and `samples` matching the content); then only
//! regular files (directories are skipped) whose path is exactly one of the four patterns, with
//! a valid id and crop name; at most [`MAX_NPY_BYTES`] (both `.npy`), [`MAX_JSON_BYTES`],
//! [`MAX_CROP_BYTES`] each and [`MAX_ARCHIVE_BYTES`] in all; no entry twice; each `.npy`
//! readable with at least one row, each `.json` a samples file, each crop starting as a JPEG
//! does; no description, rejections or crop without its person's `.npy`; and the archive's end (two zero blocks) present, so a cut file
//! is refused. A description is matched to its row by fingerprint; a crop no description names
//! is ignored.
//!
//! Then, under one write lock ([`super`]'s contract): merge adds to each person the rows not
//! already enrolled (same fingerprint), with their descriptions and crops (a crop whose name is
//! taken gets the next free `<ms>-<n>`), and the rejections they do not have yet; replace makes
//! the gallery exactly the archive (a person without `rejected/<id>.npy`, as in archives of
//! earlier versions, has none after): each person's `.npy`, metadata, rejections then crops
//! are written, then the people it does not hold are removed
//! (crops, metadata, `.npy`, as a deletion does), so a cut import leaves more people, never
//! fewer. Each person changed gets one audit entry (`import`) and changes in matching after their
//! files are written.
//!
//! Memory: an import from a file ([`Gallery::import_from`]) holds the archive's rows and
//! rejections (what the gallery holds once they are imported), each person's descriptions in
//! turn, the crops' names and places, and one entry's data at a time (crops are read back from
//! the file as they are written), never the archive itself: it does not grow with its size.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

use super::samples::{self, SamplesFile};
use super::{
    io_err, now_secs, npy, remove_file_synced, Gallery, GalleryError, Rows, Sample, StudentId,
};
use crate::engine::Encoding;
use crate::fsutil;
use crate::locks;

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
const MAX_MARKER_BYTES: u64 = 64 << 10;
/// Largest archive accepted, and most bytes its entries may hold in all.
pub const MAX_ARCHIVE_BYTES: u64 = 1 << 30;

const BLOCK: u64 = 512;

/// The name an uploaded archive's file has for an instant in the data folder
/// ([`Gallery::import_spool`]).
pub const SPOOL_NAME: &str = "gallery-import";

/// Why an archive was refused: the entry (empty for the archive as a whole) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct ArchiveError {
    pub entry: String,
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

fn refuse(entry: &str, reason: impl Into<String>) -> ArchiveError {
    ArchiveError {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// What an import can fail with: the archive (the client's fault, nothing written) or the
/// gallery (the server's: disk trouble, a damaged file in the way).
#[derive(Debug, Error)]
pub enum ImportError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

impl From<ImportError> for crate::Error {
    fn from(e: ImportError) -> crate::Error {
        match e {
            ImportError::Archive(a) => crate::Error::Archive(a),
            ImportError::Gallery(g) => crate::Error::Gallery(g),
        }
    }
}

/// How an import treats what the gallery holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Keep everyone; add the archive's rows each person does not have yet.
    Merge,
    /// The gallery becomes exactly the archive.
    Replace,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub people: usize,
    pub samples: usize,
    pub crops: usize,
    /// Size of the archive.
    pub bytes: u64,
    /// People left out because their `.npy` is damaged (an import would refuse it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    pub people_added: usize,
    pub people_updated: usize,
    pub people_unchanged: usize,
    pub people_removed: usize,
    /// Rows written for the people added or updated.
    pub samples: usize,
    /// Rows of the archive already enrolled (merge), not added again.
    pub samples_skipped: usize,
    /// Crop files written.
    pub crops: usize,
}

/// Where an entry's data lies in the archive: crops (and descriptions, parsed again when they
/// are matched to their rows) are read from the archive when needed, never all held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    offset: u64,
    len: u64,
}

/// One person of a checked archive: rows with their descriptions (crops named only when the
/// archive holds them) and where each crop's bytes lie in the archive, by name.
#[derive(Debug)]
struct ArchivedPerson {
    rows: Rows,
    crops: HashMap<String, Span>,
    rejected: Rejected,
}

/// One person of a checked archive's rejected faces (empty: none).
type Rejected = Vec<Encoding>;

/// An archive that passed [`validate`]: what an import writes, with the crops left in the
/// archive (read from it as they are written).
#[derive(Debug)]
pub struct ValidArchive {
    exported_at: u64,
    people: BTreeMap<StudentId, ArchivedPerson>,
}

impl ValidArchive {
    pub fn people(&self) -> usize {
        self.people.len()
    }

    pub fn samples(&self) -> usize {
        self.people.values().map(|p| p.rows.len()).sum()
    }

    /// Crops named by a description (those an import writes).
    pub fn crops(&self) -> usize {
        self.people.values().map(|p| p.crops.len()).sum()
    }

    pub fn exported_at(&self) -> u64 {
        self.exported_at
    }

    /// Each person's id with their encodings, by id.
    pub fn encodings(&self) -> impl Iterator<Item = (&StudentId, Vec<Encoding>)> {
        self.people
            .iter()
            .map(|(id, p)| (id, p.rows.iter().map(|(e, _)| *e).collect()))
    }
}

/// What a path in the archive is.
enum Kind {
    Marker,
    Npy(StudentId),
    Json(StudentId),
    Rejected(StudentId),
    Crop(StudentId, String),
}

const PATTERNS: &str =
    "expected face-attendance-gallery.json, embeddings/<id>.npy, people/<id>.json, rejected/<id>.npy or faces/<id>/<ms>-<n>.jpg";

fn parse_id(raw: &str) -> Result<StudentId, String> {
    StudentId::parse_new(raw).map_err(|reason| format!("bad id {raw:?}: {reason}"))
}

/// Classifies a file's path; anything but the exact patterns is refused (`..`, absolute paths,
/// `./` prefixes, extra or empty components).
fn classify(path: &str) -> Result<Kind, String> {
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
fn is_gallery_dir(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    match path.split('/').collect::<Vec<_>>().as_slice() {
        ["embeddings"] | ["people"] | ["rejected"] | ["faces"] => true,
        ["faces", id] => StudentId::parse(id).is_ok(),
        _ => false,
    }
}

/// The marker's content.
#[derive(Debug, Clone, Copy)]
struct Marker {
    exported_at: u64,
    /// The people and samples it says the archive holds, when it says.
    people: Option<u64>,
    samples: Option<u64>,
}

/// Checks the marker file.
fn check_marker(bytes: &[u8]) -> Result<Marker, String> {
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

/// Reads an entry's data whole, checking that the archive holds all of it.
fn read_data(entry: &mut impl Read, size: u64, path: &str) -> Result<Vec<u8>, ArchiveError> {
    // The cap was checked before: `size` fits in memory.
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| refuse(path, format!("cannot read: {e}")))?;
    if data.len() as u64 != size {
        return Err(refuse(
            path,
            format!(
                "truncated: {} of {size} bytes (the archive is cut)",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// A description file's entries.
fn parse_samples(data: &[u8], path: &str) -> Result<SamplesFile, ArchiveError> {
    serde_json::from_slice(data).map_err(|e| refuse(path, format!("not a samples file: {e}")))
}

/// An `.npy` of rows: at least one.
fn parse_rows(data: &[u8], path: &str) -> Result<Vec<Encoding>, ArchiveError> {
    let rows = npy::read_encodings(data).map_err(|r| refuse(path, r))?;
    if rows.is_empty() {
        return Err(refuse(path, "holds no rows"));
    }
    Ok(rows)
}

/// A reader that counts the bytes taken from it and where the last non-zero one was: after
/// the archive's last entry only zero blocks may follow.
struct Tracking<R> {
    inner: R,
    read: u64,
    nonzero_end: u64,
}

impl<R: Read> Read for Tracking<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(last) = buf[..n].iter().rposition(|b| *b != 0) {
            self.nonzero_end = self.read + last as u64 + 1;
        }
        self.read += n as u64;
        Ok(n)
    }
}

/// What the entries held, gathered as they are read (one pass over the archive): rows and
/// rejections parsed, descriptions and crops checked and located.
#[derive(Default)]
struct Found {
    marker: Option<Marker>,
    seen: HashSet<String>,
    /// Bytes of all entries so far.
    total: u64,
    npys: BTreeMap<StudentId, Vec<Encoding>>,
    jsons: BTreeMap<StudentId, Span>,
    rejecteds: BTreeMap<StudentId, Rejected>,
    crops: BTreeMap<StudentId, HashMap<String, Span>>,
}

/// An entry's header, checked: a directory of ours (skipped) or a file of one of the patterns.
fn check_header(
    n: usize,
    path: &str,
    kind: tar::EntryType,
    marker_seen: bool,
) -> Result<Option<Kind>, ArchiveError> {
    if kind.is_dir() {
        if !is_gallery_dir(path) {
            return Err(refuse(path, format!("unexpected directory ({PATTERNS})")));
        }
        return Ok(None);
    }
    if !kind.is_file() {
        return Err(refuse(
            path,
            format!(
                "is a {} entry; only regular files are allowed",
                entry_kind_name(kind)
            ),
        ));
    }
    if (n == 0 && path != MARKER) || (n > 0 && !marker_seen) {
        return Err(refuse(
            path,
            format!("the archive must start with {MARKER}"),
        ));
    }
    classify(path)
        .map(Some)
        .map_err(|reason| refuse(path, reason))
}

impl Found {
    /// Counts a file in: seen once, within its kind's cap and the archive's.
    fn admit(&mut self, path: &str, kind: &Kind, size: u64) -> Result<(), ArchiveError> {
        if !self.seen.insert(path.to_string()) {
            return Err(refuse(path, "appears twice"));
        }
        let cap = match kind {
            Kind::Marker => MAX_MARKER_BYTES,
            Kind::Npy(_) | Kind::Rejected(_) => MAX_NPY_BYTES,
            Kind::Json(_) => MAX_JSON_BYTES,
            Kind::Crop(..) => MAX_CROP_BYTES,
        };
        if size > cap {
            return Err(refuse(
                path,
                format!("{size} bytes, more than the {cap} allowed"),
            ));
        }
        self.total = self.total.saturating_add(size);
        if self.total > MAX_ARCHIVE_BYTES {
            return Err(refuse(
                path,
                format!("the entries hold more than {} MiB", MAX_ARCHIVE_BYTES >> 20),
            ));
        }
        Ok(())
    }

    /// Checks a file's data (at `span` of an archive of `archive_len` bytes) and keeps what the
    /// import needs of it.
    fn add(
        &mut self,
        kind: Kind,
        path: &str,
        entry: &mut impl Read,
        span: Span,
        archive_len: u64,
    ) -> Result<(), ArchiveError> {
        if let Kind::Crop(id, name) = kind {
            // A crop is only checked as a JPEG's start: its bytes stay in the archive.
            if span.offset.saturating_add(span.len) > archive_len {
                return Err(refuse(path, "truncated (the archive is cut)"));
            }
            let mut start = [0u8; 3];
            let mut head = entry.take(3);
            let got = read_full(&mut head, &mut start)
                .map_err(|e| refuse(path, format!("cannot read: {e}")))?;
            if start[..got] != [0xFF, 0xD8, 0xFF] {
                return Err(refuse(path, "not a JPEG file"));
            }
            self.crops.entry(id).or_default().insert(name, span);
            return Ok(());
        }
        let data = read_data(entry, span.len, path)?;
        match kind {
            Kind::Marker => self.marker = Some(check_marker(&data).map_err(|r| refuse(path, r))?),
            Kind::Npy(id) => {
                self.npys.insert(id, parse_rows(&data, path)?);
            }
            Kind::Json(id) => {
                // Checked now, parsed again when matched to the rows: the descriptions of
                // everyone are never held at once.
                parse_samples(&data, path)?;
                self.jsons.insert(id, span);
            }
            Kind::Rejected(id) => {
                self.rejecteds.insert(id, parse_rows(&data, path)?);
            }
            Kind::Crop(..) => {}
        }
        Ok(())
    }

    /// No description, rejections or crop without its person's `.npy`.
    fn check_owners(&self) -> Result<(), ArchiveError> {
        for id in self.jsons.keys() {
            if !self.npys.contains_key(id) {
                return Err(refuse(
                    &format!("people/{id}.json"),
                    format!("no embeddings/{id}.npy for it"),
                ));
            }
        }
        for id in self.rejecteds.keys() {
            if !self.npys.contains_key(id) {
                return Err(refuse(
                    &format!("rejected/{id}.npy"),
                    format!("no embeddings/{id}.npy for it"),
                ));
            }
        }
        for (id, files) in &self.crops {
            if !self.npys.contains_key(id) {
                let name = files.keys().min().map_or("", String::as_str);
                return Err(refuse(
                    &format!("faces/{id}/{name}"),
                    format!("no embeddings/{id}.npy for it"),
                ));
            }
        }
        Ok(())
    }

    /// Each person's rows with their descriptions (read again from `archive`), matched as the
    /// gallery's own are, and the crops a description names.
    fn into_valid<R: Read + Seek>(
        mut self,
        marker: Marker,
        archive: &mut R,
    ) -> Result<ValidArchive, ArchiveError> {
        let mut valid = ValidArchive {
            exported_at: marker.exported_at,
            people: BTreeMap::new(),
        };
        for (id, rows) in std::mem::take(&mut self.npys) {
            let mut files = self.crops.remove(&id).unwrap_or_default();
            let rejected = self.rejecteds.remove(&id).unwrap_or_default();
            let names: Vec<String> = files.keys().cloned().collect();
            let written = match self.jsons.remove(&id) {
                Some(span) => {
                    let path = format!("people/{id}.json");
                    let data = read_span(archive, span)
                        .map_err(|e| refuse(&path, format!("cannot read: {e}")))?;
                    Some(parse_samples(&data, &path)?.samples)
                }
                None => None,
            };
            // Without a description, a row is described plainly (its crops are then not
            // paired by time: `Some`).
            let described = samples::reconcile(
                &rows,
                Some(written.unwrap_or_default()),
                marker.exported_at,
                &names,
            );
            let named: HashSet<&str> = described.iter().filter_map(|s| s.crop.as_deref()).collect();
            files.retain(|name, _| named.contains(name.as_str()));
            valid.people.insert(
                id,
                ArchivedPerson {
                    rows: rows.into_iter().zip(described).collect(),
                    crops: files,
                    rejected,
                },
            );
        }
        Ok(valid)
    }
}

/// Reads into `buf` until it is full or the reader ends; how many bytes came.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
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
fn read_span<R: Read + Seek>(archive: &mut R, span: Span) -> io::Result<Vec<u8>> {
    archive.seek(SeekFrom::Start(span.offset))?;
    // Spans are of entries whose size was checked against their cap: it fits in memory.
    let mut data = vec![0; span.len as usize];
    archive.read_exact(&mut data)?;
    Ok(data)
}

/// The archive's size, refused past [`MAX_ARCHIVE_BYTES`]; the reader is left at its start.
fn archive_len<R: Seek>(archive: &mut R) -> Result<u64, ArchiveError> {
    let cannot = |e: io::Error| refuse("", format!("cannot read: {e}"));
    let len = archive.seek(SeekFrom::End(0)).map_err(cannot)?;
    archive.seek(SeekFrom::Start(0)).map_err(cannot)?;
    if len > MAX_ARCHIVE_BYTES {
        return Err(refuse(
            "",
            format!("larger than {} MiB", MAX_ARCHIVE_BYTES >> 20),
        ));
    }
    Ok(len)
}

/// Reads every entry once (headers checked, data checked and kept or located in `found`);
/// returns where the last entry's data ends (rounded up to a block).
fn read_entries<R: Read>(
    tar: &mut tar::Archive<R>,
    archive_len: u64,
    found: &mut Found,
) -> Result<u64, ArchiveError> {
    let entries = tar
        .entries()
        .map_err(|e| refuse("", format!("not a tar file: {e}")))?;
    let mut end: u64 = 0;
    for (n, entry) in entries.enumerate() {
        let mut entry = entry.map_err(|e| {
            refuse(
                "",
                format!("damaged tar after {n} entries: {e} (a cut or corrupt file)"),
            )
        })?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| refuse("", format!("entry {n}: its path is not UTF-8")))?;
        let span = Span {
            offset: entry.raw_file_position(),
            len: entry.size(),
        };
        end = span
            .offset
            .checked_add(span.len.div_ceil(BLOCK) * BLOCK)
            .ok_or_else(|| refuse(&path, "size overflows"))?;
        let entry_type = entry.header().entry_type();
        let Some(kind) = check_header(n, &path, entry_type, found.marker.is_some())? else {
            continue;
        };
        found.admit(&path, &kind, span.len)?;
        found.add(kind, &path, &mut entry, span, archive_len)?;
    }
    Ok(end)
}

/// The end-of-archive marker after the last entry (ending at `end`): at least two zero blocks
/// and nothing but zeros to the end of the file. Without it the file was cut at an entry's
/// boundary.
fn check_end<R: Read>(mut rest: Tracking<R>, end: u64) -> Result<(), ArchiveError> {
    let cut = || {
        refuse(
            "",
            "no end-of-archive blocks after the last entry (a cut or corrupt file)",
        )
    };
    io::copy(&mut rest, &mut io::sink()).map_err(|_| cut())?;
    if rest.read < end.saturating_add(2 * BLOCK) || rest.nonzero_end > end {
        return Err(cut());
    }
    Ok(())
}

/// The marker's counts, when it has them, agree with the content.
fn check_counts(marker: Marker, valid: &ValidArchive) -> Result<(), ArchiveError> {
    for (name, declared, found) in [
        ("people", marker.people, valid.people() as u64),
        ("samples", marker.samples, valid.samples() as u64),
    ] {
        if declared.is_some_and(|d| d != found) {
            return Err(refuse(
                MARKER,
                format!(
                    "says {} {name}, the archive holds {found} (a cut or altered file)",
                    declared.unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a whole archive read from `archive` (see the module docs) without writing anything;
/// the result is what an import writes. Any fault names the entry and the reason. Memory: the
/// rows and rejections (what the gallery holds once imported), the crops' names and places,
/// and one entry's data at a time, whatever the archive's size.
pub fn validate_from<R: Read + Seek>(archive: &mut R) -> Result<ValidArchive, ArchiveError> {
    let len = archive_len(archive)?;
    let mut found = Found::default();
    let mut tar = tar::Archive::new(Tracking {
        inner: io::BufReader::with_capacity(64 << 10, &mut *archive),
        read: 0,
        nonzero_end: 0,
    });
    let end = read_entries(&mut tar, len, &mut found)?;
    let Some(marker) = found.marker else {
        return Err(refuse("", format!("empty, or no {MARKER}")));
    };
    check_end(tar.into_inner(), end)?;
    found.check_owners()?;
    let valid = found.into_valid(marker, archive)?;
    check_counts(marker, &valid)?;
    Ok(valid)
}

/// [`validate_from`] of an archive in memory.
pub fn validate(archive: &[u8]) -> Result<ValidArchive, ArchiveError> {
    validate_from(&mut io::Cursor::new(archive))
}
fn entry_kind_name(kind: tar::EntryType) -> &'static str {
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

/// Counts what goes through to the export's sink.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    bytes: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A regular file of the archive: mode 0644, owner 0, mtime `now`.
fn append(
    tar: &mut tar::Builder<Counting<'_>>,
    path: &str,
    data: &[u8],
    now: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(now);
    tar.append_data(&mut header, path, data)
}

/// A person's planned import: the rows to write, crops to write and old crops to remove.
struct Plan {
    rows: Rows,
    /// The person's rejections after the import; `None`: as they are.
    rejected: Option<Rejected>,
    /// Crops to write: their name in the gallery and where their bytes lie in the archive.
    write_crops: Vec<(String, Span)>,
    remove_crops: Vec<String>,
    added: bool,
    samples: usize,
    skipped: usize,
}

enum Planned {
    Change(Plan),
    /// The person's files hold what the archive has already (`skipped`: rows already there).
    Unchanged {
        skipped: usize,
    },
}

/// A crop's bytes from the archive, checked again as a JPEG's start (the archive is read a
/// second time: a file changed meanwhile is not written blindly).
fn read_crop<R: Read + Seek>(
    archive: &mut R,
    id: &StudentId,
    name: &str,
    span: Span,
) -> Result<Vec<u8>, GalleryError> {
    let path = PathBuf::from(format!("(import archive) faces/{id}/{name}"));
    let data = read_span(archive, span).map_err(io_err(&path))?;
    if !data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let changed = io::Error::other("the archive changed while it was imported");
        return Err(io_err(&path)(changed));
    }
    Ok(data)
}

/// Whether the crop file at `path` holds the archive's crop `name` already.
fn same_crop<R: Read + Seek>(
    path: &std::path::Path,
    archive: &mut R,
    id: &StudentId,
    name: &str,
    span: Span,
) -> Result<bool, GalleryError> {
    if !fs::metadata(path).is_ok_and(|m| m.len() == span.len) {
        return Ok(false);
    }
    let archived = read_crop(archive, id, name, span)?;
    Ok(fs::read(path).is_ok_and(|b| b == archived))
}

/// `name` if free, else the first free `<ms>-<n>.jpg` with the same time (the time in a crop's
/// name is what the retention setting reads).
fn free_crop_name(name: &str, taken: &HashSet<String>) -> String {
    if !taken.contains(name) {
        return name.to_string();
    }
    let ms = name.split_once('-').map_or("0", |(ms, _)| ms);
    (0u64..)
        .map(|n| format!("{ms}-{n}.jpg"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_default()
}

impl Gallery {
    /// Writes the whole gallery to `out` as one archive (format in the module docs). The write
    /// lock is held throughout, so the archive is one consistent state: give a fast sink (a
    /// file, memory), not a slow client's socket.
    pub fn export(&self, out: &mut dyn Write) -> Result<ExportSummary, GalleryError> {
        let _writing = self.writing()?;
        let stream_err = |e: io::Error| GalleryError::Io {
            path: PathBuf::from("(export archive)"),
            source: e,
        };
        let mut summary = ExportSummary::default();
        let mut people: Vec<(StudentId, Rows)> = Vec::new();
        for id in self.ids_on_disk(true)? {
            match self.read_person(&id) {
                Ok(Some(rows)) => people.push((id, rows)),
                Ok(None) => {}
                Err(GalleryError::Damaged { path, reason }) => {
                    log::warn!("export: {} left out: {reason}", path.display());
                    summary.skipped.push(id.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        summary.people = people.len();
        summary.samples = people.iter().map(|(_, rows)| rows.len()).sum();
        let now = now_secs();
        let mut tar = tar::Builder::new(Counting {
            inner: out,
            bytes: 0,
        });
        let marker = serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "exported_at": now,
            "people": summary.people,
            "samples": summary.samples,
        });
        append(&mut tar, MARKER, marker.to_string().as_bytes(), now).map_err(stream_err)?;
        for (id, mut rows) in people {
            // Crops read first: a description names only a crop that is in the archive.
            let dir = self.crops_dir(&id);
            let mut crops: Vec<(String, Vec<u8>)> = Vec::new();
            for (_, sample) in rows.iter_mut() {
                let Some(name) = sample.crop.clone() else {
                    continue;
                };
                match fs::read(dir.join(&name)) {
                    Ok(bytes) => crops.push((name, bytes)),
                    Err(e) => {
                        log::warn!("export: {id}/{name} left out: {e}");
                        sample.crop = None;
                    }
                }
            }
            let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
            let meta = serde_json::to_vec(&SamplesFile {
                samples: rows.into_iter().map(|(_, s)| s).collect(),
            })
            .map_err(|e| stream_err(io::Error::other(e)))?;
            append(
                &mut tar,
                &format!("embeddings/{id}.npy"),
                &npy::write_encodings(&encodings),
                now,
            )
            .map_err(stream_err)?;
            append(&mut tar, &format!("people/{id}.json"), &meta, now).map_err(stream_err)?;
            let rejected = self.read_rejected(&id).unwrap_or_else(|e| {
                log::warn!("export: rejections of {id} left out: {e}");
                Vec::new()
            });
            if !rejected.is_empty() {
                let bytes = npy::write_encodings(&rejected);
                append(&mut tar, &format!("rejected/{id}.npy"), &bytes, now).map_err(stream_err)?;
            }
            for (name, bytes) in &crops {
                append(&mut tar, &format!("faces/{id}/{name}"), bytes, now).map_err(stream_err)?;
            }
            summary.crops += crops.len();
        }
        let mut counting = tar.into_inner().map_err(stream_err)?;
        counting.flush().map_err(stream_err)?;
        summary.bytes = counting.bytes;
        Ok(summary)
    }

    /// A new file in the data folder for an archive to import: readable by this user only and
    /// unlinked already, so it is gone once closed, however the process ends (see
    /// [`fsutil::unlinked_temp`]; a leftover name is removed when the gallery is next opened).
    pub fn import_spool(&self) -> io::Result<fs::File> {
        fsutil::unlinked_temp(&self.data_dir, SPOOL_NAME)
    }

    /// Checks the archive in memory whole ([`validate`]), then merges it into the gallery or
    /// replaces the gallery by it (see the module docs). A bad archive changes nothing.
    pub fn import(
        &self,
        archive: &[u8],
        mode: ImportMode,
        by: &str,
    ) -> Result<ImportSummary, ImportError> {
        self.import_from(&mut io::Cursor::new(archive), mode, by)
    }

    /// [`Gallery::import`] of an archive read from `archive` (a file): checked in one pass
    /// ([`validate_from`]), then its crops read again one at a time as they are written, so
    /// memory does not grow with the archive's size beyond the rows it holds.
    pub fn import_from<R: Read + Seek>(
        &self,
        archive: &mut R,
        mode: ImportMode,
        by: &str,
    ) -> Result<ImportSummary, ImportError> {
        let valid = validate_from(archive)?;
        Ok(self.import_valid(valid, archive, mode, by)?)
    }

    /// [`Gallery::import_from`] of an archive already checked (`valid`, from `archive`).
    pub fn import_valid<R: Read + Seek>(
        &self,
        valid: ValidArchive,
        archive: &mut R,
        mode: ImportMode,
        by: &str,
    ) -> Result<ImportSummary, GalleryError> {
        let _writing = self.writing()?;
        for dir in [&self.embeddings_dir, &self.people_dir, &self.faces_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let in_archive: BTreeSet<StudentId> = valid.people.keys().cloned().collect();
        // Every plan is made (and every read done) before the first write: a damaged file in
        // the way fails the import with nothing changed.
        let mut plans: Vec<(StudentId, Plan)> = Vec::new();
        let mut summary = ImportSummary::default();
        for (id, person) in valid.people {
            let old = match self.read_person(&id) {
                Ok(old) => old,
                // Replace overwrites what it cannot read; merge would lose it, so it refuses.
                Err(GalleryError::Damaged { .. }) if mode == ImportMode::Replace => None,
                Err(e) => return Err(e),
            };
            // Rejections of nobody (no `.npy`) are not kept for a new person of that id.
            let old_rejected = match (&old, self.read_rejected(&id)) {
                (None, _) => Vec::new(),
                (Some(_), Ok(rejected)) => rejected,
                (Some(_), Err(GalleryError::Damaged { .. })) if mode == ImportMode::Replace => {
                    Vec::new()
                }
                (Some(_), Err(e)) => return Err(e),
            };
            match self.plan(&id, old, &old_rejected, person, archive, mode)? {
                Planned::Change(plan) => plans.push((id, plan)),
                Planned::Unchanged { skipped } => {
                    summary.people_unchanged += 1;
                    summary.samples_skipped += skipped;
                }
            }
        }
        for (id, plan) in plans {
            summary.samples += plan.samples;
            summary.samples_skipped += plan.skipped;
            summary.crops += plan.write_crops.len();
            if plan.added {
                summary.people_added += 1;
            } else {
                summary.people_updated += 1;
            }
            self.apply(&id, plan, archive, by)
                .inspect_err(|_| self.resync(&id))?;
        }
        if mode == ImportMode::Replace {
            let mut others: BTreeSet<StudentId> = self.ids_on_disk(false)?.into_iter().collect();
            for (label, _) in self.people() {
                if let Ok(id) = StudentId::parse(&label) {
                    others.insert(id);
                }
            }
            for id in others.iter().filter(|id| !in_archive.contains(*id)) {
                if self.remove_files(id).inspect_err(|_| self.resync(id))? {
                    summary.people_removed += 1;
                    self.record(Self::entry("import", id, 0, by));
                }
            }
        }
        Ok(summary)
    }

    /// What importing `person` (of `archive`) under `mode` writes for `id`, who has `old` now.
    fn plan<R: Read + Seek>(
        &self,
        id: &StudentId,
        old: Option<Rows>,
        old_rejected: &[Encoding],
        person: ArchivedPerson,
        archive: &mut R,
        mode: ImportMode,
    ) -> Result<Planned, GalleryError> {
        let dir = self.crops_dir(id);
        let on_disk: Vec<String> = samples::crop_files(&dir);
        let added = old.is_none();
        let old = old.unwrap_or_default();
        let mut taken: HashSet<String> = on_disk.iter().cloned().collect();
        let (mut rows, present): (Rows, HashSet<String>) = match mode {
            ImportMode::Merge => {
                let present = old.iter().map(|(e, _)| samples::fingerprint(e)).collect();
                taken.extend(old.iter().filter_map(|(_, s)| s.crop.clone()));
                (old, present)
            }
            ImportMode::Replace => (Vec::new(), HashSet::new()),
        };
        let mut write_crops: Vec<(String, Span)> = Vec::new();
        let mut kept: HashSet<String> = HashSet::new();
        let (mut samples, mut skipped) = (0, 0);
        for (encoding, mut sample) in person.rows {
            if present.contains(&samples::fingerprint(&encoding)) {
                skipped += 1;
                continue;
            }
            let span = sample.crop.as_ref().and_then(|name| person.crops.get(name));
            match (self.crops.keep, span.copied(), sample.crop.clone()) {
                (true, Some(span), Some(name)) => {
                    // On replace, a crop already there with the same bytes is kept as it is.
                    let same = mode == ImportMode::Replace
                        && !kept.contains(&name)
                        && same_crop(&dir.join(&name), archive, id, &name, span)?;
                    if same {
                        kept.insert(name);
                    } else {
                        let free = free_crop_name(&name, &taken);
                        taken.insert(free.clone());
                        kept.insert(free.clone());
                        write_crops.push((free.clone(), span));
                        sample.crop = Some(free);
                    }
                }
                _ => sample.crop = None,
            }
            samples += 1;
            rows.push((encoding, sample));
        }
        let remove_crops: Vec<String> = match mode {
            ImportMode::Merge => Vec::new(),
            ImportMode::Replace => on_disk.into_iter().filter(|n| !kept.contains(n)).collect(),
        };
        let rejected = match mode {
            ImportMode::Merge => {
                let known: HashSet<String> =
                    old_rejected.iter().map(samples::fingerprint).collect();
                let mut all = old_rejected.to_vec();
                all.extend(
                    person
                        .rejected
                        .into_iter()
                        .filter(|e| !known.contains(&samples::fingerprint(e))),
                );
                (all.len() != old_rejected.len()).then_some(all)
            }
            ImportMode::Replace => {
                let on_disk = fs::read(self.rejected_path(id)).ok();
                let wanted =
                    (!person.rejected.is_empty()).then(|| npy::write_encodings(&person.rejected));
                (on_disk != wanted).then_some(person.rejected)
            }
        };
        let unchanged = rejected.is_none()
            && match mode {
                ImportMode::Merge => samples == 0,
                ImportMode::Replace => {
                    write_crops.is_empty() && remove_crops.is_empty() && self.files_hold(id, &rows)
                }
            };
        if unchanged {
            return Ok(Planned::Unchanged { skipped });
        }
        if mode == ImportMode::Replace {
            samples = rows.len();
        }
        Ok(Planned::Change(Plan {
            rows,
            rejected,
            write_crops,
            remove_crops,
            added,
            samples,
            skipped,
        }))
    }

    /// Whether the person's `.npy` and metadata files hold exactly `rows` already.
    fn files_hold(&self, id: &StudentId, rows: &[(Encoding, Sample)]) -> bool {
        let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
        let meta = serde_json::to_vec(&SamplesFile {
            samples: rows.iter().map(|(_, s)| s.clone()).collect(),
        });
        fs::read(self.npy_path(id)).is_ok_and(|b| b == npy::write_encodings(&encodings))
            && meta.is_ok_and(|m| fs::read(self.meta_path(id)).is_ok_and(|b| b == m))
    }

    /// Writes one person's plan: `.npy` and metadata, rejections, the new crops, then the old
    /// crops go; then matching and the audit log.
    fn apply<R: Read + Seek>(
        &self,
        id: &StudentId,
        plan: Plan,
        archive: &mut R,
        by: &str,
    ) -> Result<(), GalleryError> {
        self.write_person(id, &plan.rows)?;
        if let Some(rejected) = &plan.rejected {
            self.write_rejected(id, rejected)?;
        }
        let dir = self.crops_dir(id);
        if !plan.write_crops.is_empty() {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        for (name, span) in &plan.write_crops {
            let bytes = read_crop(archive, id, name, *span)?;
            let path = dir.join(name);
            fsutil::atomic_write(&path, &bytes).map_err(io_err(&path))?;
        }
        for name in &plan.remove_crops {
            remove_file_synced(&dir.join(name))?;
        }
        {
            let mut m = locks::write(&self.matrix);
            m.set_person(id.as_str(), &plan.rows);
            if let Some(rejected) = &plan.rejected {
                m.set_rejected(id.as_str(), rejected);
            }
        }
        let mut entry = Self::entry("import", id, plan.rows.len(), by);
        entry.rejected = plan.rejected.as_ref().map(Vec::len);
        self.record(entry);
        Ok(())
    }

    /// Removes every file of `id` as [`Gallery::remove`] does (crops, metadata, rejections,
    /// `.npy`), and
    /// them from matching; whether they were enrolled.
    pub(super) fn remove_files(&self, id: &StudentId) -> Result<bool, GalleryError> {
        let npy_path = self.npy_path(id);
        let enrolled =
            npy_path.exists() || !locks::read(&self.matrix).rows_of(id.as_str()).is_empty();
        let crops = self.crops_dir(id);
        match fs::remove_dir_all(&crops) {
            Ok(()) => fsutil::sync_dir(&self.faces_dir).map_err(io_err(&self.faces_dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&crops)(e)),
        }
        remove_file_synced(&self.meta_path(id))?;
        remove_file_synced(&self.rejected_path(id))?;
        remove_file_synced(&npy_path)?;
        locks::write(&self.matrix).set_person(id.as_str(), &[]);
        Ok(enrolled)
    }

    /// After a failed write: matching takes the person as the disk has them now.
    fn resync(&self, id: &StudentId) {
        match self.read_person(id) {
            Ok(rows) => {
                let rows = rows.unwrap_or_default();
                let rejected = match rows.is_empty() {
                    true => Vec::new(),
                    false => self.read_rejected(id).unwrap_or_default(),
                };
                let mut m = locks::write(&self.matrix);
                m.set_person(id.as_str(), &rows);
                m.set_rejected(id.as_str(), &rejected);
            }
            Err(e) => log::warn!("{id}: {e}"),
        }
    }

    /// The ids with a `.npy` file, sorted; unless `npy_only`, also those with only metadata or
    /// crops (what a replacing import removes).
    fn ids_on_disk(&self, npy_only: bool) -> Result<Vec<StudentId>, GalleryError> {
        let mut ids: BTreeSet<StudentId> = BTreeSet::new();
        let mut scan = |dir: &PathBuf, suffix: Option<&str>| -> Result<(), GalleryError> {
            for entry in fs::read_dir(dir).map_err(io_err(dir))? {
                let Ok(entry) = entry else { continue };
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let stem = match suffix {
                    Some(suffix) => name.strip_suffix(suffix),
                    None => entry.path().is_dir().then_some(name.as_str()),
                };
                if let Some(id) = stem.and_then(|s| StudentId::parse(s).ok()) {
                    ids.insert(id);
                }
            }
            Ok(())
        };
        scan(&self.embeddings_dir, Some(".npy"))?;
        if !npy_only {
            scan(&self.people_dir, Some(".json"))?;
            scan(&self.faces_dir, None)?;
        }
        Ok(ids.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::enc;
    use crate::gallery::NewSample;
    use std::path::Path;

    fn id(s: &str) -> StudentId {
        StudentId::parse(s).unwrap()
    }

    fn jpeg(tag: u8) -> Vec<u8> {
        vec![0xFF, 0xD8, 0xFF, 0xE0, tag, tag, 0xFF, 0xD9]
    }

    /// alip: two samples with crops and quality; budi: one without a crop.
    fn sample_gallery(dir: &Path) -> Gallery {
        let (g, _) = Gallery::open(dir).unwrap();
        g.enroll(
            &id("alip"),
            vec![
                NewSample::new(enc(0.1))
                    .with_crop(jpeg(1))
                    .with_quality(serde_json::json!({"face_px": 120})),
                NewSample::new(enc(0.2)).with_crop(jpeg(2)),
            ],
            "test",
        )
        .unwrap();
        g.enroll(&id("budi"), vec![NewSample::new(enc(0.9))], "test")
            .unwrap();
        g
    }

    fn export(g: &Gallery) -> Vec<u8> {
        let mut out = Vec::new();
        let summary = g.export(&mut out).unwrap();
        assert_eq!(summary.bytes, out.len() as u64);
        out
    }

    /// Every file under `dir` with its bytes: for "nothing changed" checks.
    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                if p.is_dir() {
                    out.push((rel + "/", Vec::new()));
                    stack.push(p);
                } else {
                    out.push((rel, fs::read(&p).unwrap()));
                }
            }
        }
        out.sort();
        out
    }

    /// (rows, descriptions, crop bytes) of everyone, by id.
    type Content = Vec<(String, Vec<Encoding>, Vec<Sample>, Vec<Option<Vec<u8>>>)>;

    fn content(g: &Gallery) -> Content {
        g.people()
            .into_iter()
            .map(|(name, _)| {
                let who = id(&name);
                let rows = g.read_person(&who).unwrap().unwrap();
                let crops = (0..rows.len()).map(|i| g.sample_crop(&who, i)).collect();
                let (encodings, samples) = rows.into_iter().unzip();
                (name, encodings, samples, crops)
            })
            .collect()
    }

    #[test]
    fn export_then_import_into_an_empty_folder_gives_the_same_gallery() {
        let a = tempfile::tempdir().unwrap();
        let g = sample_gallery(a.path());
        let archive = export(&g);

        // The documented layout: the marker, then each person's npy, json and crops.
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut paths = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            paths.push(entry.path().unwrap().display().to_string());
        }
        let alip_crops: Vec<String> = g
            .read_person(&id("alip"))
            .unwrap()
            .unwrap()
            .iter()
            .map(|(_, s)| format!("faces/alip/{}", s.crop.clone().unwrap()))
            .collect();
        let mut expected = vec![
            MARKER.to_string(),
            "embeddings/alip.npy".into(),
            "people/alip.json".into(),
        ];
        expected.extend(alip_crops);
        expected.extend(["embeddings/budi.npy".into(), "people/budi.json".into()]);
        assert_eq!(paths, expected);

        let valid = validate(&archive).unwrap();
        assert_eq!((valid.people(), valid.samples(), valid.crops()), (2, 3, 2));

        let b = tempfile::tempdir().unwrap();
        let (g2, _) = Gallery::open(b.path()).unwrap();
        let summary = g2.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(
            (summary.people_added, summary.samples, summary.crops),
            (2, 3, 2)
        );
        assert_eq!(content(&g2), content(&g));
        assert_eq!(g2.best_match(&enc(0.2), 0.01).label, "alip");
        // The files agree with matching: a reload sees the same.
        let (reloaded, report) = Gallery::open(b.path()).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(content(&reloaded), content(&g));
        let history = g2.history(&id("budi"));
        assert_eq!(
            (history[0].action.as_str(), history[0].by.as_str()),
            ("import", "admin")
        );
    }

    #[test]
    fn rejections_go_through_an_archive_and_old_archives_still_import() {
        let a = tempfile::tempdir().unwrap();
        let g = sample_gallery(a.path());
        let old_archive = export(&g);
        g.reject(&id("alip"), &[enc(0.5)], "test").unwrap();
        let archive = export(&g);
        let mut tar = tar::Archive::new(archive.as_slice());
        let paths: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let at = |p: &str| paths.iter().position(|x| x == p).unwrap();
        assert_eq!(at("rejected/alip.npy"), at("people/alip.json") + 1);
        assert!(!paths.contains(&"rejected/budi.npy".to_string()));
        // Closer to alip's rejection than to alip: budi's.
        let near = enc(0.45);
        assert_eq!(g.best_match(&near, 0.6).label, "budi");

        let b = tempfile::tempdir().unwrap();
        let (g2, _) = Gallery::open(b.path()).unwrap();
        g2.import(&old_archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(g2.rejected_count(&id("alip")), 0);
        assert_eq!(g2.best_match(&near, 0.6).label, "alip");
        let summary = g2.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!((summary.people_updated, summary.samples), (1, 0));
        assert_eq!(g2.rejected_count(&id("alip")), 1);
        assert_eq!(g2.best_match(&near, 0.6).label, "budi");
        let again = g2.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(again.people_unchanged, 2);
        let (reloaded, _) = Gallery::open(b.path()).unwrap();
        assert_eq!(reloaded.rejected_count(&id("alip")), 1);
        // Replacing by an archive without them: the gallery is exactly that archive.
        let summary = g2
            .import(&old_archive, ImportMode::Replace, "admin")
            .unwrap();
        assert_eq!(summary.people_updated, 1);
        assert_eq!(g2.rejected_count(&id("alip")), 0);
        assert!(!b.path().join("rejected/alip.npy").exists());
        let summary = g2.import(&archive, ImportMode::Replace, "admin").unwrap();
        assert_eq!(summary.people_updated, 1);
        assert_eq!(g2.best_match(&near, 0.6).label, "budi");
        let again = g2.import(&archive, ImportMode::Replace, "admin").unwrap();
        assert_eq!(again.people_unchanged, 2);
    }

    #[test]
    fn merging_twice_adds_nothing_the_second_time() {
        let a = tempfile::tempdir().unwrap();
        let archive = export(&sample_gallery(a.path()));
        let b = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(b.path()).unwrap();
        // alip has one of the archive's rows already, and a crop named as an archived one.
        let taken = g.enroll(&id("alip"), vec![NewSample::new(enc(0.1))], "test");
        assert_eq!(taken.unwrap(), 1);
        let first = g.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(
            (
                first.people_added,
                first.people_updated,
                first.samples,
                first.samples_skipped
            ),
            (1, 1, 2, 1)
        );
        assert_eq!(g.people(), [("alip".into(), 2), ("budi".into(), 1)]);
        let before = snapshot(b.path());
        let second = g.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(
            (
                second.people_unchanged,
                second.samples,
                second.samples_skipped,
                second.crops
            ),
            (2, 0, 3, 0)
        );
        assert_eq!(
            snapshot(b.path()),
            before,
            "nothing rewritten, not even the audit log"
        );
    }

    #[test]
    fn merged_crops_whose_names_are_taken_get_free_names() {
        let a = tempfile::tempdir().unwrap();
        let archive = export(&sample_gallery(a.path()));
        let names: Vec<String> = validate(&archive).unwrap().people[&id("alip")]
            .crops
            .keys()
            .cloned()
            .collect();
        let b = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(b.path()).unwrap();
        g.enroll(&id("alip"), vec![NewSample::new(enc(5.0))], "test")
            .unwrap();
        // Another crop file already under an archived name (a file no row names).
        let dir = b.path().join("faces/alip");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(&names[0]), jpeg(9)).unwrap();
        g.import(&archive, ImportMode::Merge, "admin").unwrap();
        assert_eq!(fs::read(dir.join(&names[0])).unwrap(), jpeg(9));
        let crops: Vec<Vec<u8>> = (1..3)
            .map(|i| g.sample_crop(&id("alip"), i).unwrap())
            .collect();
        let mut expected = vec![jpeg(1), jpeg(2)];
        expected.sort();
        let mut crops_sorted = crops.clone();
        crops_sorted.sort();
        assert_eq!(crops_sorted, expected);
        assert_eq!(samples::crop_files(&dir).len(), 3);
    }

    #[test]
    fn replace_makes_the_gallery_exactly_the_archive() {
        let a = tempfile::tempdir().unwrap();
        let g = sample_gallery(a.path());
        let archive = export(&g);
        let b = tempfile::tempdir().unwrap();
        let (g2, _) = Gallery::open(b.path()).unwrap();
        g2.enroll(
            &id("carl"),
            vec![NewSample::new(enc(3.0)).with_crop(jpeg(3))],
            "test",
        )
        .unwrap();
        g2.enroll(
            &id("alip"),
            vec![NewSample::new(enc(4.0)).with_crop(jpeg(4))],
            "test",
        )
        .unwrap();
        // Files of nobody (metadata left by a cut deletion) go too.
        fs::write(b.path().join("people/dora.json"), b"{\"samples\":[]}").unwrap();
        let summary = g2.import(&archive, ImportMode::Replace, "admin").unwrap();
        assert_eq!(
            (
                summary.people_added,
                summary.people_updated,
                summary.people_removed
            ),
            (1, 1, 1)
        );
        assert_eq!(content(&g2), content(&g));
        assert_eq!(
            g2.best_match(&enc(3.0), 0.01).label,
            crate::gallery::UNKNOWN
        );
        assert_eq!(
            g2.best_match(&enc(4.0), 0.01).label,
            crate::gallery::UNKNOWN
        );
        let files: Vec<String> = snapshot(b.path()).into_iter().map(|(p, _)| p).collect();
        assert!(
            files
                .iter()
                .all(|p| !p.contains("carl") && !p.contains("dora")),
            "{files:?}"
        );
        // alip's old crop went with her old row.
        assert_eq!(samples::crop_files(&b.path().join("faces/alip")).len(), 2);
        assert_eq!(content(&Gallery::open(b.path()).unwrap().0), content(&g));
        let carl = g2.history(&id("carl"));
        assert_eq!(
            (
                carl.last().unwrap().action.as_str(),
                carl.last().unwrap().samples
            ),
            ("import", 0)
        );
        // Replacing by the same archive again changes nothing.
        let before = snapshot(b.path());
        let again = g2.import(&archive, ImportMode::Replace, "admin").unwrap();
        assert_eq!((again.people_unchanged, again.crops), (2, 0));
        assert_eq!(snapshot(b.path()), before);
    }

    /// A raw tar entry, written without the checks of `tar::Builder` (which refuses `..`).
    fn raw_entry(path: &str, kind: tar::EntryType, data: &[u8], declared: Option<u64>) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_size(declared.unwrap_or(data.len() as u64));
        if kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn marker() -> Vec<u8> {
        let json = serde_json::json!({"format": FORMAT, "version": 1});
        raw_entry(
            MARKER,
            tar::EntryType::Regular,
            json.to_string().as_bytes(),
            None,
        )
    }

    fn file(path: &str, data: &[u8]) -> Vec<u8> {
        raw_entry(path, tar::EntryType::Regular, data, None)
    }

    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0; 1024]);
        out
    }

    #[test]
    fn hostile_archives_change_nothing_and_name_the_entry() {
        let a = tempfile::tempdir().unwrap();
        let good = export(&sample_gallery(a.path()));
        let npy = npy::write_encodings(&[enc(7.0)]);
        let meta = br#"{"samples":[]}"#;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "parent path",
                tar_of(&[marker(), file("../x", b"x")]),
                "../x",
            ),
            (
                "parent in an id",
                tar_of(&[marker(), file("embeddings/../../x.npy", &npy)]),
                "embeddings/../../x.npy",
            ),
            (
                "absolute path",
                tar_of(&[marker(), file("/embeddings/zed.npy", &npy)]),
                "/embeddings/zed.npy",
            ),
            (
                "extra component",
                tar_of(&[marker(), file("faces/zed/sub/1-0.jpg", &jpeg(1))]),
                "faces/zed/sub/1-0.jpg",
            ),
            (
                "symlink",
                tar_of(&[
                    marker(),
                    raw_entry("embeddings/zed.npy", tar::EntryType::Symlink, b"", None),
                ]),
                "symbolic link",
            ),
            (
                "hard link",
                tar_of(&[
                    marker(),
                    raw_entry("embeddings/zed.npy", tar::EntryType::Link, b"", None),
                ]),
                "hard link",
            ),
            (
                "npy garbage",
                tar_of(&[marker(), file("embeddings/zed.npy", b"garbage")]),
                "embeddings/zed.npy",
            ),
            (
                "npy without rows",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy::write_encodings(&[])),
                ]),
                "no rows",
            ),
            (
                "rejections without their person",
                tar_of(&[marker(), file("rejected/zed.npy", &npy)]),
                "no embeddings/zed.npy",
            ),
            (
                "rejections without rows",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("rejected/zed.npy", &npy::write_encodings(&[])),
                ]),
                "no rows",
            ),
            (
                "crop not a JPEG",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("faces/zed/1-0.jpg", b"\x89PNG\r\n"),
                ]),
                "not a JPEG",
            ),
            (
                "bad crop name",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("faces/zed/x.jpg", &jpeg(1)),
                ]),
                "bad crop name",
            ),
            (
                "json not a samples file",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("people/zed.json", b"[1]"),
                ]),
                "people/zed.json",
            ),
            (
                "metadata of nobody",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("people/yan.json", meta),
                ]),
                "no embeddings/yan.npy",
            ),
            (
                "crop of nobody",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("faces/yan/1-0.jpg", &jpeg(1)),
                ]),
                "no embeddings/yan.npy",
            ),
            (
                "missing marker",
                tar_of(&[file("embeddings/zed.npy", &npy)]),
                "must start with",
            ),
            (
                "marker not first",
                tar_of(&[file("embeddings/zed.npy", &npy), marker()]),
                "must start with",
            ),
            (
                "wrong version",
                tar_of(&[file(
                    MARKER,
                    br#"{"format":"face-attendance-gallery","version":2}"#,
                )]),
                "version 2",
            ),
            (
                "duplicate entry",
                tar_of(&[
                    marker(),
                    file("embeddings/zed.npy", &npy),
                    file("embeddings/zed.npy", &npy),
                ]),
                "appears twice",
            ),
            (
                "oversized entry header",
                tar_of(&[
                    marker(),
                    raw_entry(
                        "embeddings/zed.npy",
                        tar::EntryType::Regular,
                        &npy,
                        Some(MAX_NPY_BYTES + 1),
                    ),
                ]),
                "more than the",
            ),
            (
                "huge size field",
                tar_of(&[
                    marker(),
                    raw_entry(
                        "faces/zed/1-0.jpg",
                        tar::EntryType::Regular,
                        b"",
                        Some(0o77_777_777_777),
                    ),
                ]),
                "more than the",
            ),
            (
                "truncated in the middle",
                good[..good.len() / 2].to_vec(),
                "",
            ),
            (
                "end blocks cut",
                good[..good.len() - 1024].to_vec(),
                "end-of-archive",
            ),
            (
                "last block cut",
                good[..good.len() - 512].to_vec(),
                "end-of-archive",
            ),
            ("a text file", b"name,id\nalip,1\n".to_vec(), ""),
            ("empty", Vec::new(), ""),
        ];
        let b = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(b.path()).unwrap();
        g.enroll(
            &id("keep"),
            vec![NewSample::new(enc(2.0)).with_crop(jpeg(5))],
            "test",
        )
        .unwrap();
        let before = snapshot(b.path());
        for (what, archive, says) in cases {
            let err = validate(&archive).expect_err(what);
            assert!(err.to_string().contains(says), "{what}: {err}");
            for mode in [ImportMode::Merge, ImportMode::Replace] {
                match g.import(&archive, mode, "admin") {
                    Err(ImportError::Archive(e)) => assert_eq!(e, err, "{what}"),
                    other => panic!("{what}: {other:?}"),
                }
            }
            assert_eq!(snapshot(b.path()), before, "{what} changed the data folder");
            assert_eq!(g.people(), [("keep".into(), 1)], "{what}");
        }
        // Those archives' faults map to a 400 for the HTTP API.
        let e = crate::Error::from(ImportError::Archive(refuse("people/x.json", "y")));
        assert!(matches!(e, crate::Error::Archive(_)));
        let api = crate::http::ApiError::from(e);
        assert_eq!(api.status(), 400);
        assert!(api.body().contains("people/x.json"), "{}", api.body());
    }

    #[test]
    fn a_cut_archive_is_refused_wherever_it_is_cut() {
        let a = tempfile::tempdir().unwrap();
        let good = export(&sample_gallery(a.path()));
        for cut in (0..good.len()).step_by(97).chain([good.len() - 1]) {
            assert!(
                validate(&good[..cut]).is_err(),
                "cut at {cut} of {}",
                good.len()
            );
        }
        assert!(validate(&good).is_ok());
    }
}
