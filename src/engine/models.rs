//! The dlib model files: where they are, and whether they are the pinned ones.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The pinned SHA-256 sums, shared with `scripts/fetch-models` so there is one list.
const PINNED: &str = include_str!("../../scripts/models.sha256");

/// The command that puts the right files in place, named in every model error.
pub const FETCH_HINT: &str = "scripts/fetch-models";

/// File name of dlib's 5-point shape predictor.
pub const LANDMARKS_5: &str = "shape_predictor_5_face_landmarks.dat";
/// File name of dlib's ResNet face encoder.
pub const ENCODER: &str = "dlib_face_recognition_resnet_model_v1.dat";

/// Why the models cannot be loaded: each names the file and, when fetching helps, the command.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file is not there.
    #[error("model file {path} is missing: run `{FETCH_HINT} {dir}` to fetch it", path = .path.display(), dir = .dir.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// The models directory.
        dir: PathBuf,
    },
    /// The file's SHA-256 is not the pinned one.
    #[error("model file {path} is corrupt (SHA-256 {actual}, expected {expected}): delete it and run `{FETCH_HINT} {dir}`", path = .path.display(), dir = .dir.display())]
    Corrupt {
        /// The corrupt file.
        path: PathBuf,
        /// The models directory.
        dir: PathBuf,
        /// The pinned SHA-256.
        expected: String,
        /// The file's SHA-256.
        actual: String,
    },
    /// The file does not load (dlib refuses it, or it cannot be read).
    #[error("model file {path} cannot be read: {reason}", path = .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The engine's thread pool cannot start.
    #[error("cannot start the face engine's threads: {0}")]
    Threads(String),
}

/// The pinned SHA-256 of a model file, if it is one we know.
pub fn pinned_sha256(name: &str) -> Option<&'static str> {
    PINNED.lines().find_map(|line| {
        let (hash, file) = line.split_once("  ")?;
        (file.trim() == name).then_some(hash.trim())
    })
}

/// Path of `name` in `dir`, after checking the file exists and has the pinned SHA-256.
pub fn verified_path(dir: &Path, name: &str) -> Result<PathBuf, ModelError> {
    let path = dir.join(name);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ModelError::Missing {
                path,
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => {
            return Err(ModelError::Unreadable {
                path,
                reason: e.to_string(),
            })
        }
    };
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => {
                return Err(ModelError::Unreadable {
                    path,
                    reason: e.to_string(),
                })
            }
        }
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let expected = pinned_sha256(name).unwrap_or_default();
    if actual != expected {
        return Err(ModelError::Corrupt {
            path,
            dir: dir.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loaded_model_is_pinned() {
        for name in [LANDMARKS_5, ENCODER] {
            assert_eq!(pinned_sha256(name).map(str::len), Some(64), "{name}");
        }
    }

    #[test]
    fn missing_and_corrupt_files_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = verified_path(dir.path(), ENCODER).unwrap_err();
        assert!(matches!(err, ModelError::Missing { .. }));
        let line = err.to_string();
        assert!(
            line.contains(ENCODER) && line.contains(FETCH_HINT),
            "{line}"
        );

        std::fs::write(dir.path().join(ENCODER), b"not a model").unwrap();
        let err = verified_path(dir.path(), ENCODER).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }));
        assert!(err.to_string().contains(FETCH_HINT));
    }
}
