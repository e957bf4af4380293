//! What the box holds about one person, handed over as one archive: `GET /people/{id}/export`
//! (admin) and `face-attendance people export ID` ([`export_person`]).
//!
//! Format: a POSIX (ustar) tar archive of regular files (mode 0644, owner 0, mtime the export's
//! time), in this order:
//! 1. `manifest.json`: `{"format":"face-attendance-person","version":1,"student_id":…,
//!    "exported_at":<unix s>,"enrolled":bool,"samples":N,"crops":N,"rejected":N,
//!    "unknown_faces":N,"events":N,"audit_lines":N,"files":[{"path":…,"bytes":…,"what":…}],
//!    "not_included":[…]}`: every other entry, what it holds, and what the archive leaves out;
//! 2. when enrolled: `embeddings/<id>.npy` (their samples' encodings, numpy `float64`
//!    `(n, 128)`, as in the data folder), `people/<id>.json` (each sample's time, crop name and
//!    quality), `rejected/<id>.npy` (faces rejected as not them, when any), `faces/<id>/<crop>`
//!    (their face crops) — the gallery's own layout, so these files also import as a gallery
//!    archive's would;
//! 3. `unknowns/faces.json` and `unknowns/crops/<n>.jpg`: the unknown faces the camera kept
//!    that are within `FACE_TOLERANCE` of one of their samples (seen before they were enrolled,
//!    or left over from an enrollment of a cluster);
//! 4. `events/<YYYY-MM-DD>.jsonl`: the lines of the event log (`data/events/`) naming them (as
//!    the person of an event, or a candidate of an ambiguous one) and the later delivery status
//!    lines of those events, as written;
//! 5. `audit.jsonl`: the lines of `data/audit.jsonl` naming them (as the person changed, or the
//!    id a rename came from).
//!
//! Contract: an id that is not enrolled and named by no event nor audit line is
//! [`PrivacyError::NotFound`]; one that is not enrolled any more but still named in the logs
//! gets an archive of those lines (`"enrolled":false`). The gallery's write lock is held
//! throughout (one consistent state of the person's files); the sink should be fast (a file).
//! Memory: the person's encodings and descriptions, their matching unknown faces (at most
//! `UNKNOWN_MAX`) and one crop at a time; the log lines go through unlinked temp files in the
//! data folder, each line read at most [`MAX_LINE`] bytes (longer ones are skipped), so the
//! archive's size follows the person's data, never the memory.

mod export;
mod lines;

pub use export::{export_person, ExportedPerson};
pub use lines::MAX_LINE;

use std::path::PathBuf;

use thiserror::Error;

use crate::gallery::GalleryError;
use crate::unknowns::UnknownsError;

/// The manifest's `format`.
pub const FORMAT: &str = "face-attendance-person";
/// The manifest's `version`.
pub const VERSION: u64 = 1;

/// Why a person's export failed.
#[derive(Debug, Error)]
pub enum PrivacyError {
    /// The box holds nothing about this id.
    #[error("nothing is held about {0}: not enrolled, and named by no event or audit line")]
    NotFound(String),
    /// The gallery could not be read.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// The unknown faces could not be read.
    #[error(transparent)]
    Unknowns(#[from] UnknownsError),
    /// A file could not be read or written (the logs, a crop, a temp file, the sink).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
