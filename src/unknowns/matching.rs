//! The unknown faces near a person's samples: handed over by their export
//! ([`crate::privacy`]) and forgotten with them ([`super::Unknowns::forget_matching`]).

use std::fs;
use std::path::Path;

use serde::Serialize;

use super::{faces_on_disk, UnknownsError};
use crate::engine::Encoding;

/// An unknown face as a person's export hands it over ([`matching`]).
#[derive(Debug, Clone, Serialize)]
pub struct KeptFace {
    /// Its id in the store.
    pub id: u64,
    /// When the camera saw it, Unix ms.
    pub time_ms: u64,
    /// Its size in pixels, as the camera measured it.
    pub face_px: u32,
    /// Its sharpness, as the camera measured it.
    pub sharpness: f64,
    /// Its encoding.
    #[serde(serialize_with = "serialize_encoding")]
    pub encoding: Encoding,
    /// The closest of the given encodings' distance to it.
    pub distance: f64,
    /// Its crop (JPEG), when one is kept and could be read.
    #[serde(skip)]
    pub crop: Option<Vec<u8>>,
}

fn serialize_encoding<S: serde::Serializer>(e: &Encoding, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(e.iter())
}

/// The unknown faces kept in `data_dir` (read from disk, changing nothing: fine beside the
/// running service) within `tolerance` of one of `encodings`: the faces of a person the camera
/// kept as nobody's (before they were enrolled, or left over by an enrollment from a cluster).
/// Their crops are read too (at most [`super::MAX_MAX`] faces, each a small JPEG).
pub fn matching(
    data_dir: &Path,
    encodings: &[Encoding],
    tolerance: f64,
) -> Result<Vec<KeptFace>, UnknownsError> {
    let crops = data_dir.join("unknowns").join("crops");
    Ok(faces_on_disk(data_dir)?
        .into_iter()
        .filter_map(|f| {
            let distance = nearest(&f.encoding, encodings)?;
            (distance <= tolerance).then(|| KeptFace {
                id: f.id,
                time_ms: f.time_ms,
                face_px: f.face_px,
                sharpness: f.sharpness,
                encoding: f.encoding,
                distance,
                crop: f
                    .crop
                    .then(|| fs::read(crops.join(format!("{}.jpg", f.id))).ok())
                    .flatten(),
            })
        })
        .collect())
}

/// The distance from `face` to the closest of `encodings` (`None`: there are none).
pub(super) fn nearest(face: &Encoding, encodings: &[Encoding]) -> Option<f64> {
    encodings
        .iter()
        .map(|e| crate::engine::distance(e, face))
        .min_by(f64::total_cmp)
}
