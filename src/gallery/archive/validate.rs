//! Checking an archive before anything is written ([`validate_from`]), in named steps: the
//! archive's size ([`archive_len`]); one pass over the entries ([`read_entries`]: each header
//! checked ([`check_header`]), each file admitted once and within its cap ([`Found::admit`]),
//! its data checked and kept or located ([`Found::add`])); the end-of-archive blocks
//! ([`check_end`]); no file without its person's `.npy` ([`Found::check_owners`]); each person's
//! rows matched with their descriptions and crops ([`Found::into_valid`]); the marker's counts
//! ([`check_counts`]). Any fault names the entry and the reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom};

use super::format::{
    check_marker, classify, entry_kind_name, is_gallery_dir, parse_rows, parse_samples, read_full,
    read_span, refuse, ArchiveError, Kind, Marker, Span, BLOCK, MARKER, MAX_ARCHIVE_BYTES,
    MAX_CROP_BYTES, MAX_JSON_BYTES, MAX_MARKER_BYTES, MAX_NPY_BYTES, PATTERNS,
};
use crate::engine::Encoding;
use crate::gallery::samples;
use crate::gallery::{Label, Rows, StudentId};

/// One person of a checked archive: rows with their descriptions (crops named only when the
/// archive holds them) and where each crop's bytes lie in the archive, by name.
#[derive(Debug)]
pub(super) struct ArchivedPerson {
    pub(super) rows: Rows,
    /// Their name and group (none: the archive has neither, or no description).
    pub(super) label: Label,
    pub(super) crops: HashMap<String, Span>,
    pub(super) rejected: Rejected,
}

/// One person of a checked archive's rejected faces (empty: none).
pub(super) type Rejected = Vec<Encoding>;

/// An archive that passed [`validate`]: what an import writes, with the crops left in the
/// archive (read from it as they are written).
#[derive(Debug)]
pub struct ValidArchive {
    pub(super) exported_at: u64,
    pub(super) people: BTreeMap<StudentId, ArchivedPerson>,
}

impl ValidArchive {
    /// How many people the archive holds.
    pub fn people(&self) -> usize {
        self.people.len()
    }

    /// How many samples (rows) it holds, all people together.
    pub fn samples(&self) -> usize {
        self.people.values().map(|p| p.rows.len()).sum()
    }

    /// Crops named by a description (those an import writes).
    pub fn crops(&self) -> usize {
        self.people.values().map(|p| p.crops.len()).sum()
    }

    /// When it was exported (Unix seconds; the import's time when the marker does not say).
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

/// Reads an entry's data whole, checking that the archive holds all of it.
pub(super) fn read_data(
    entry: &mut impl Read,
    size: u64,
    path: &str,
) -> Result<Vec<u8>, ArchiveError> {
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

/// A reader that counts the bytes taken from it and where the last non-zero one was: after
/// the archive's last entry only zero blocks may follow.
pub(super) struct Tracking<R> {
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
pub(super) struct Found {
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
pub(super) fn check_header(
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
            let (written, label) = match self.jsons.remove(&id) {
                Some(span) => {
                    let path = format!("people/{id}.json");
                    let data = read_span(archive, span)
                        .map_err(|e| refuse(&path, format!("cannot read: {e}")))?;
                    let file = parse_samples(&data, &path)?;
                    (Some(file.samples), file.label)
                }
                None => (None, Label::default()),
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
                    label,
                    crops: files,
                    rejected,
                },
            );
        }
        Ok(valid)
    }
}

/// The archive's size, refused past [`MAX_ARCHIVE_BYTES`]; the reader is left at its start.
pub(super) fn archive_len<R: Seek>(archive: &mut R) -> Result<u64, ArchiveError> {
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
pub(super) fn read_entries<R: Read>(
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
pub(super) fn check_end<R: Read>(mut rest: Tracking<R>, end: u64) -> Result<(), ArchiveError> {
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
pub(super) fn check_counts(marker: Marker, valid: &ValidArchive) -> Result<(), ArchiveError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::archive::tests::*;
    use crate::gallery::archive::{ImportError, ImportMode, FORMAT};
    use crate::gallery::tests::enc;
    use crate::gallery::{npy, Gallery, NewSample};

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
