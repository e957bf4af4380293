//! The gallery as one file: `GET /gallery/export` and `gallery export` write it,
//! `POST /gallery/import` and `gallery import` read it back (merging or replacing).
//!
//! Format: a POSIX (ustar) tar archive of regular files (mode 0644, owner 0, mtime the export's
//! time), in this order:
//! 1. `face-attendance-gallery.json`: `{"format":"face-attendance-gallery","version":1,
//!    "exported_at":<unix s>,"people":N,"samples":M}`;
//! 2. for each person, by id: `embeddings/<id>.npy` (numpy `float64`, shape `(n, 128)`, C order:
//!    the rows), `people/<id>.json` (their descriptions, as in `data/people/`, see
//!    [`crate::gallery::samples`]), `rejected/<id>.npy` when faces were rejected as not them (same
//!    format, see [`crate::gallery::rejected`]), then `faces/<id>/<ms>-<n>.jpg` for each crop a
//!    description names.
//!
//! It unpacks with `tar -xf` into a data folder, and `python -c "import tarfile"` reads it.
//!
//! Contract of import: the whole archive is checked first ([`validate_from`], one pass over a file;
//! [`validate`] for one in memory) and any fault names the entry and the reason, with nothing
//! written. Accepted: the marker file first, with this format and version (and, when present,
//! `people` and `samples` matching the content); then only regular files (directories are skipped)
//! whose path is exactly one of the four patterns, with a valid id and crop name; at most
//! [`MAX_NPY_BYTES`] (both `.npy`), [`MAX_JSON_BYTES`], [`MAX_CROP_BYTES`] each and
//! [`MAX_ARCHIVE_BYTES`] in all; no entry twice; each `.npy` readable with at least one row, each
//! `.json` a samples file, each crop starting as a JPEG does; no description, rejections or crop
//! without its person's `.npy`; and the archive's end (two zero blocks) present, so a cut file is
//! refused. A description is matched to its row by fingerprint; a crop no description names is
//! ignored.
//!
//! Then, under one write lock ([`crate::gallery`]'s contract): merge adds to each person the rows
//! not already enrolled (same fingerprint), with their descriptions and crops (a crop whose name is
//! taken gets the next free `<ms>-<n>`), and the rejections they do not have yet; replace makes the
//! gallery exactly the archive (a person without `rejected/<id>.npy`, as in archives of earlier
//! versions, has none after): each person's `.npy`, metadata, rejections then crops are written,
//! then the people it does not hold are removed (crops, metadata, `.npy`, as a deletion does), so a
//! cut import leaves more people, never fewer. Each person changed gets one audit entry (`import`)
//! and changes in matching after their files are written.
//!
//! Memory: an import from a file ([`crate::gallery::Gallery::import_from`]) holds the archive's
//! rows and rejections (what the gallery holds once they are imported), each person's descriptions
//! in turn, the crops' names and places, and one entry's data at a time (crops are read back from
//! the file as they are written), never the archive itself: it does not grow with its size.
//!
//! Files: `format.rs` (marker, paths, caps, the refusal), `validate.rs` (the checks, in steps),
//! `export.rs`, `import.rs`.

mod export;
mod format;
mod import;
mod validate;

pub use export::ExportSummary;
pub use format::{
    ArchiveError, FORMAT, MARKER, MAX_ARCHIVE_BYTES, MAX_CROP_BYTES, MAX_JSON_BYTES, MAX_NPY_BYTES,
    SPOOL_NAME, VERSION,
};
pub use import::{ImportError, ImportMode, ImportSummary};
pub use validate::{validate, validate_from, ValidArchive};

/// What the tests of export, import and validation share: a sample gallery, its archive and
/// snapshots of a data folder.
#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::path::Path;

    use crate::engine::Encoding;
    use crate::gallery::tests::enc;
    use crate::gallery::{Gallery, NewSample, Sample, StudentId};

    pub(crate) fn id(s: &str) -> StudentId {
        StudentId::parse(s).unwrap()
    }

    pub(crate) fn jpeg(tag: u8) -> Vec<u8> {
        vec![0xFF, 0xD8, 0xFF, 0xE0, tag, tag, 0xFF, 0xD9]
    }

    /// alip: two samples with crops and quality; budi: one without a crop.
    pub(crate) fn sample_gallery(dir: &Path) -> Gallery {
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

    pub(crate) fn export(g: &Gallery) -> Vec<u8> {
        let mut out = Vec::new();
        let summary = g.export(&mut out).unwrap();
        assert_eq!(summary.bytes, out.len() as u64);
        out
    }

    /// Every file under `dir` with its bytes: for "nothing changed" checks.
    pub(crate) fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
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
    pub(crate) type Content = Vec<(String, Vec<Encoding>, Vec<Sample>, Vec<Option<Vec<u8>>>)>;

    pub(crate) fn content(g: &Gallery) -> Content {
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
}
