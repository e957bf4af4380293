//! The library's error type. Each part has its own typed error; this gathers them so callers
//! (the CLI, the HTTP layer) map them to exit codes or statuses in one place each.

use thiserror::Error;

use crate::engine::ModelError;
use crate::gallery::GalleryError;
use crate::image_io::ImageError;
use crate::quality::{InvalidLimit, QualityRefusal};

/// Every error the library reports, gathered: the CLI turns it into an exit code, the HTTP layer
/// into a status ([`crate::http`]'s `error.rs`).
#[derive(Debug, Error)]
pub enum Error {
    /// An image that cannot be decoded or is too large.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A `student_id` that is not a valid id (the reason).
    #[error("invalid student_id: {0}")]
    InvalidId(String),
    /// The gallery could not read or write, or refused a change.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    /// A gallery archive refused by import: the client's fault, nothing was written.
    #[error(transparent)]
    Archive(#[from] crate::gallery::archive::ArchiveError),
    /// The face models could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A setting that makes no sense (the sentence names it).
    #[error("invalid setting: {0}")]
    Config(String),
    /// A photo given to say who a face is not (`/people/{id}/reject`) shows no face; nothing
    /// was written.
    #[error("no face found in the image")]
    NoFace,
    /// Enrollment refused a face below the quality limits; nothing was written.
    #[error("{refusal}")]
    PoorFace {
        /// Which limit the face failed, and its measured quality.
        refusal: QualityRefusal,
        /// Faces found in the photo.
        faces_found: usize,
    },
    /// Enrollment of faces kept earlier found none to enroll; nothing was written.
    #[error("nothing to enroll: {0}")]
    NothingToEnroll(String),
}

/// A quality limit out of range is an invalid setting, with the same sentence.
impl From<InvalidLimit> for Error {
    fn from(e: InvalidLimit) -> Error {
        Error::Config(e.0)
    }
}

/// An import's fault: the archive's (the client's) or the gallery's. Here, not in the gallery:
/// the gallery does not know of the library's error.
impl From<crate::gallery::archive::ImportError> for Error {
    fn from(e: crate::gallery::archive::ImportError) -> Error {
        use crate::gallery::archive::ImportError;
        match e {
            ImportError::Archive(a) => Error::Archive(a),
            ImportError::Gallery(g) => Error::Gallery(g),
        }
    }
}
