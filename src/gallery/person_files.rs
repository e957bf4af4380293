//! One person's files as the gallery holds them, handed out whole for a person's export
//! ([`crate::privacy`]): their rows (`embeddings/<id>.npy`), their samples' descriptions with
//! quality (`people/<id>.json`), their rejections (`rejected/<id>.npy`) and their crops
//! (`faces/<id>/`).
//!
//! Contract: [`Gallery::with_person_files`] holds the write locks while its closure runs, so the
//! files it describes are one consistent state and none of them changes or goes (a crop named
//! here can be read) until it returns; callers write to a fast sink (a file), never a socket.

use std::fs;
use std::path::PathBuf;

use super::samples::SamplesFile;
use super::{npy, Gallery, GalleryError, StudentId};
use crate::engine::Encoding;

/// A person's files, as [`Gallery::with_person_files`] gives them.
#[derive(Debug, Clone)]
pub struct PersonFiles {
    /// Their encodings, in the `.npy` file's order.
    pub encodings: Vec<Encoding>,
    /// `embeddings/<id>.npy` as the gallery writes it.
    pub encodings_npy: Vec<u8>,
    /// `people/<id>.json`: each sample's fingerprint, enrollment time, crop name and quality,
    /// and the person's name and group.
    pub samples_json: Vec<u8>,
    /// `rejected/<id>.npy`, when faces were rejected as not them.
    pub rejected_npy: Option<Vec<u8>>,
    /// How many faces were rejected as not them.
    pub rejected: usize,
    /// Their crops: the file's name (`<ms>-<n>.jpg`), its path and its size.
    pub crops: Vec<(String, PathBuf, u64)>,
}

impl Gallery {
    /// Runs `f` with the person's files (`None`: not enrolled), holding the write locks (see
    /// the module docs). A damaged `.npy` is [`GalleryError::Damaged`]; a damaged rejections
    /// file is left out (logged), as the gallery's export does.
    pub fn with_person_files<T>(
        &self,
        id: &StudentId,
        f: impl FnOnce(Option<&PersonFiles>) -> T,
    ) -> Result<T, GalleryError> {
        let _writing = self.writing()?;
        let Some(rows) = self.read_person(id)? else {
            return Ok(f(None));
        };
        let dir = self.crops_dir(id);
        let mut crops = Vec::new();
        for (_, sample) in &rows {
            let Some(name) = &sample.crop else {
                continue;
            };
            let path = dir.join(name);
            match fs::metadata(&path) {
                Ok(m) if m.is_file() => crops.push((name.clone(), path, m.len())),
                Ok(_) => {}
                Err(e) => log::warn!("export of {id}: {} left out: {e}", path.display()),
            }
        }
        let rejected = self.read_rejected(id).unwrap_or_else(|e| {
            log::warn!("export of {id}: rejections left out: {e}");
            Vec::new()
        });
        let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
        let meta = SamplesFile {
            samples: rows.into_iter().map(|(_, s)| s).collect(),
            label: self.read_label(id),
        };
        let samples_json = serde_json::to_vec_pretty(&meta).map_err(|e| GalleryError::Io {
            path: self.meta_path(id),
            source: std::io::Error::other(e),
        })?;
        let files = PersonFiles {
            encodings_npy: npy::write_encodings(&encodings),
            encodings,
            samples_json,
            rejected_npy: (!rejected.is_empty()).then(|| npy::write_encodings(&rejected)),
            rejected: rejected.len(),
            crops,
        };
        Ok(f(Some(&files)))
    }
}
