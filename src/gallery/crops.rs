//! The face crops of the samples: `data/faces/<id>/<unix-ms>-<n>.jpg`, kept as the
//! [`CropPolicy`] says (`FACE_CROPS`, `FACE_CROPS_MAX_AGE_DAYS`): applied at open and by
//! [`Gallery::sweep_crops`] now and then, and read back by [`Gallery::sample_crop`].
//!
//! Contract: a crop is written after its row and description (a kill leaves a sample without
//! its crop, never a crop of nobody's row); a crop named by a description but missing on disk
//! counts as none ([`super::samples::reconcile`]); only names this program writes are followed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::matrix::Matrix;
use super::{io_err, now_secs, samples, Gallery, GalleryError, StudentId};
use crate::{fsutil, locks};

/// What the gallery keeps of the photos it enrolls (`FACE_CROPS`, `FACE_CROPS_MAX_AGE_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropPolicy {
    pub(super) keep: bool,
    pub(super) max_age_days: Option<u32>,
}

impl CropPolicy {
    /// Every crop, for ever (the original service's way).
    pub fn keep() -> CropPolicy {
        CropPolicy {
            keep: true,
            max_age_days: None,
        }
    }

    /// No crop written, and those on disk removed at start.
    pub fn none() -> CropPolicy {
        CropPolicy {
            keep: false,
            max_age_days: None,
        }
    }

    /// Crops removed once older than `days` (0: as [`CropPolicy::none`]).
    pub fn max_age_days(self, days: Option<u32>) -> CropPolicy {
        match days {
            Some(0) => CropPolicy::none(),
            days => CropPolicy {
                max_age_days: days,
                ..self
            },
        }
    }

    /// Whether crops are written at all.
    pub fn keeps_crops(&self) -> bool {
        self.keep
    }

    pub(super) fn max_age(&self) -> Option<Duration> {
        self.max_age_days
            .map(|d| Duration::from_secs(u64::from(d) * 86_400))
    }
}

impl Default for CropPolicy {
    fn default() -> Self {
        CropPolicy::keep()
    }
}

impl Gallery {
    /// What the gallery keeps of the photos it enrolls.
    pub fn crop_policy(&self) -> CropPolicy {
        self.crops
    }

    /// The per-person crop folders under `faces/`.
    pub(super) fn crop_dirs(&self) -> Result<Vec<PathBuf>, GalleryError> {
        Ok(fs::read_dir(&self.faces_dir)
            .map_err(io_err(&self.faces_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect())
    }

    pub(super) fn crops_dir(&self, id: &StudentId) -> PathBuf {
        self.faces_dir.join(id.as_str())
    }

    /// A free crop name in `dir` for now: `<unix-ms>-<n>.jpg`.
    pub(super) fn crop_name(dir: &Path, taken: &[String]) -> String {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        (0u64..)
            .map(|n| format!("{ms}-{n}.jpg"))
            .find(|name| !taken.contains(name) && !dir.join(name).exists())
            .unwrap_or_default()
    }

    /// Applies the crop policy: every crop removed when none are kept, those older than the
    /// maximum age otherwise. Returns how many files went.
    pub(super) fn apply_crop_policy(&self, crop_dirs: &[PathBuf]) -> usize {
        let mut removed = 0;
        if !self.crops.keep {
            for dir in crop_dirs {
                let n = samples::crop_files(dir).len();
                match fs::remove_dir_all(dir) {
                    Ok(()) => removed += n,
                    Err(e) => log::warn!("cannot remove {}: {e}", dir.display()),
                }
            }
            let _ = fsutil::sync_dir(&self.faces_dir);
            return removed;
        }
        let Some(max_age) = self.crops.max_age() else {
            return 0;
        };
        let oldest_kept = now_secs().saturating_sub(max_age.as_secs());
        for dir in crop_dirs {
            for name in samples::crop_files(dir) {
                if samples::crop_time(&name).is_some_and(|t| t < oldest_kept) {
                    match fs::remove_file(dir.join(&name)) {
                        Ok(()) => removed += 1,
                        Err(e) => log::warn!("cannot remove {}/{name}: {e}", dir.display()),
                    }
                }
            }
            let _ = fsutil::sync_dir(dir);
        }
        removed
    }

    /// Removes the crops the policy no longer keeps (`FACE_CROPS_MAX_AGE_DAYS`), on disk and in
    /// the samples' descriptions; returns how many went. The service calls it now and then.
    pub fn sweep_crops(&self) -> Result<usize, GalleryError> {
        if self.crops.keep && self.crops.max_age_days.is_none() {
            return Ok(0);
        }
        let _writing = self.writing()?;
        let removed = self.apply_crop_policy(&self.crop_dirs()?);
        if removed > 0 {
            let mut m = locks::write(&self.matrix);
            let Matrix {
                labels,
                owners,
                samples,
                ..
            } = &mut *m;
            for (sample, owner) in samples.iter_mut().zip(owners.iter()) {
                let dir = self.faces_dir.join(&labels[*owner as usize]);
                if sample.crop.as_ref().is_some_and(|c| !dir.join(c).exists()) {
                    sample.crop = None;
                }
            }
        }
        Ok(removed)
    }

    /// The face crop of sample `index` (JPEG bytes): `None` when the person, the sample or its
    /// crop does not exist.
    pub fn sample_crop(&self, id: &StudentId, index: usize) -> Option<Vec<u8>> {
        let name = {
            let m = locks::read(&self.matrix);
            let row = *m.rows_of(id.as_str()).get(index)?;
            m.samples[row].crop.clone()?
        };
        fs::read(self.crops_dir(id).join(name)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{enc, with_crop};
    use crate::gallery::Sample;

    #[test]
    fn crops_follow_the_retention_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = StudentId::parse("alip").unwrap();
        g.enroll(&id, vec![with_crop(0.1, b"new")], "k").unwrap();
        // A crop named as written 40 days ago, tied to a row like any other.
        let old_ms = (now_secs() - 40 * 86_400) * 1000;
        let old = format!("{old_ms}-0.jpg");
        fs::write(dir.path().join("faces/alip").join(&old), b"old").unwrap();
        let mut rows = g.read_person(&id).unwrap().unwrap();
        let mut sample = Sample::plain(&enc(0.2), old_ms / 1000);
        sample.crop = Some(old.clone());
        rows.push((enc(0.2), sample));
        g.write_person(&id, &rows, &g.read_label(&id)).unwrap();
        drop(g);

        let policy = CropPolicy::keep().max_age_days(Some(30));
        let (g, report) = Gallery::open_with(dir.path(), policy).unwrap();
        assert_eq!(report.crops_removed, 1);
        assert_eq!(g.sample_crop(&id, 0).unwrap(), b"new");
        assert_eq!(g.sample_crop(&id, 1), None);
        assert_eq!(g.sweep_crops().unwrap(), 0);

        let (g, report) = Gallery::open_with(dir.path(), CropPolicy::none()).unwrap();
        assert_eq!(report.crops_removed, 1);
        assert!(!dir.path().join("faces/alip").exists());
        g.enroll(&id, vec![with_crop(0.3, b"x")], "k").unwrap();
        assert!(
            !dir.path().join("faces/alip").exists(),
            "none: no crop written"
        );
        assert_eq!(g.person(&id).unwrap().samples, 3);
    }
}
