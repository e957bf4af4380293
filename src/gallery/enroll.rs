//! Samples added and removed: enrollment (with or without the duplicate check), bulk enroll's
//! replacement, and the removal of one sample.
//!
//! Contract ([`super`]'s writer contract): an enrollment writes the `.npy`, the metadata, then
//! the crops (when the [`super::CropPolicy`] keeps them), then matching and an audit line; a
//! sample's removal takes its crop, then rewrites the `.npy` and metadata. The duplicate check
//! and the write are one step under the write lock.

use std::fs;

use serde_json::Value;

use super::{
    io_err, now_secs, remove_file_synced, Gallery, GalleryError, LabelChange, Rows, Sample,
    StudentId,
};
use crate::engine::Encoding;
use crate::{fsutil, locks};

/// A face to enroll: its encoding, and optionally its crop (JPEG) and measured quality.
#[derive(Debug, Clone)]
pub struct NewSample {
    encoding: Encoding,
    crop: Option<Vec<u8>>,
    quality: Option<Value>,
}

impl NewSample {
    /// A face by its encoding alone.
    pub fn new(encoding: Encoding) -> NewSample {
        NewSample {
            encoding,
            crop: None,
            quality: None,
        }
    }

    /// With its face crop (JPEG bytes), kept when the [`super::CropPolicy`] keeps crops.
    pub fn with_crop(mut self, jpeg: Vec<u8>) -> NewSample {
        self.crop = Some(jpeg);
        self
    }

    /// With what enrollment measured of the face (a JSON object).
    pub fn with_quality(mut self, quality: Value) -> NewSample {
        self.quality = Some(quality);
        self
    }

    /// The face's encoding.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }
}

/// What a write does to the person's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Replace,
}

impl Gallery {
    /// Adds `new` to the person (created if new): `.npy`, metadata, then the crops (when the
    /// policy keeps them), then matching. Returns how many samples the person has now.
    pub fn enroll(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(id, new, Change::Add, None, &LabelChange::default(), by)
    }

    /// [`Gallery::enroll`] (or [`Gallery::enroll_unique`] with `unique`: its largest distance)
    /// that also changes the person's name and group in the same write ([`LabelChange`]).
    pub fn enroll_labelled(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        unique: Option<f64>,
        label: &LabelChange,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(id, new, Change::Add, unique, label, by)
    }

    /// [`Gallery::enroll`], refused with [`GalleryError::Duplicate`] when a face is within
    /// `max_distance` of another person's sample. The check and the write are one step under
    /// the write lock: two enrollments of one face under two new ids cannot both pass.
    pub fn enroll_unique(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        max_distance: f64,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(
            id,
            new,
            Change::Add,
            Some(max_distance),
            &LabelChange::default(),
            by,
        )
    }

    /// Replaces everything enrolled for the person by `new` (bulk enroll `--replace`): the old
    /// crops go once the new rows are written.
    pub fn replace(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.replace_labelled(id, new, &LabelChange::default(), by)
    }

    /// [`Gallery::replace`] that also changes the person's name and group in the same write.
    pub fn replace_labelled(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        label: &LabelChange,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(id, new, Change::Replace, None, label, by)
    }

    /// Encodings only, without crops: [`Gallery::enroll`] by `by`.
    pub fn append(
        &self,
        id: &StudentId,
        rows: &[Encoding],
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.enroll(id, rows.iter().copied().map(NewSample::new).collect(), by)
    }

    fn change(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        how: Change,
        unique: Option<f64>,
        label: &LabelChange,
        by: &str,
    ) -> Result<usize, GalleryError> {
        let (replace, action) = match how {
            Change::Add => (false, "enroll"),
            Change::Replace => (true, "replace"),
        };
        let _writing = self.writing()?;
        if let Some(max_distance) = unique {
            for sample in &new {
                if let Some((other, d)) = self.nearest_other(&sample.encoding, id) {
                    if d <= max_distance {
                        return Err(GalleryError::Duplicate {
                            duplicate_of: other,
                            distance: d,
                        });
                    }
                }
            }
        }
        let old = self.read_person(id)?.unwrap_or_default();
        if new.is_empty() && replace {
            return self.remove_locked(id, by).map(|_| 0);
        }
        let dir = self.crops_dir(id);
        let mut rows: Rows = if replace { Vec::new() } else { old.clone() };
        let mut crops: Vec<(String, Vec<u8>)> = Vec::new();
        let now = now_secs();
        for sample in new {
            let mut described = Sample::plain(&sample.encoding, now);
            described.quality = sample.quality;
            if let (true, Some(jpeg)) = (self.crops.keep, sample.crop) {
                let taken: Vec<String> = crops.iter().map(|(n, _)| n.clone()).collect();
                let name = Self::crop_name(&dir, &taken);
                described.crop = Some(name.clone());
                crops.push((name, jpeg));
            }
            rows.push((sample.encoding, described));
        }
        let old_label = self.read_label(id);
        let names = label.apply(&old_label);
        self.write_person(id, &rows, &names)?;
        if !crops.is_empty() {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        for (name, jpeg) in &crops {
            let path = dir.join(name);
            if let Err(e) = fsutil::atomic_write(&path, jpeg) {
                // The sample stands without its crop (the metadata's name is ignored).
                log::warn!("{id}: face crop not saved: {e}");
                for (_, s) in rows.iter_mut() {
                    if s.crop.as_deref() == Some(name.as_str()) {
                        s.crop = None;
                    }
                }
            }
        }
        if replace {
            for (_, s) in &old {
                if let Some(crop) = &s.crop {
                    let _ = remove_file_synced(&dir.join(crop));
                }
            }
        }
        locks::write(&self.matrix).set_labelled(id.as_str(), &rows, &names);
        let mut entry = Self::entry(action, id, rows.len(), by);
        entry.label = (names != old_label).then_some(names);
        self.record(entry);
        Ok(rows.len())
    }

    /// Removes sample `index` (a row of the `.npy`): its crop, then the row and its
    /// description. The last sample removes the person. Returns how many samples are left.
    pub fn remove_sample(
        &self,
        id: &StudentId,
        index: usize,
        by: &str,
    ) -> Result<usize, GalleryError> {
        let _writing = self.writing()?;
        let mut rows = self
            .read_person(id)?
            .ok_or_else(|| GalleryError::NotEnrolled(id.to_string()))?;
        if index >= rows.len() {
            return Err(GalleryError::NoSuchSample {
                student_id: id.to_string(),
                index,
                samples: rows.len(),
            });
        }
        if rows.len() == 1 {
            return self.remove_locked(id, by).map(|_| 0);
        }
        let (_, gone) = rows.remove(index);
        if let Some(crop) = &gone.crop {
            remove_file_synced(&self.crops_dir(id).join(crop))?;
        }
        let label = self.read_label(id);
        self.write_person(id, &rows, &label)?;
        locks::write(&self.matrix).set_labelled(id.as_str(), &rows, &label);
        let mut entry = Self::entry("delete_sample", id, rows.len(), by);
        entry.index = Some(index);
        self.record(entry);
        Ok(rows.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{enc, with_crop};
    use crate::gallery::{npy, samples};

    #[test]
    fn replace_drops_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let a = StudentId::parse("a").unwrap();
        let b = StudentId::parse("b").unwrap();
        g.append(&a, &[enc(0.0), enc(0.1)], "test").unwrap();
        g.append(&b, &[enc(5.0)], "test").unwrap();
        g.replace(&a, vec![NewSample::new(enc(2.0))], "test")
            .unwrap();
        assert_eq!(g.people(), vec![("a".into(), 1), ("b".into(), 1)]);
        assert_eq!(g.best_match(&enc(2.0), 0.1).label, "a");
        assert_eq!(g.best_match(&enc(5.0), 0.1).label, "b");
    }

    #[test]
    fn concurrent_appends_keep_every_sample() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = StudentId::parse("same").unwrap();
        std::thread::scope(|s| {
            for t in 0..8 {
                let (g, id) = (&g, &id);
                s.spawn(move || {
                    for i in 0..5 {
                        g.append(id, &[enc((t * 10 + i) as f64)], "test").unwrap();
                    }
                });
            }
        });
        let rows = npy::read_encodings(&fs::read(dir.path().join("embeddings/same.npy")).unwrap())
            .unwrap();
        assert_eq!(rows.len(), 40);
        assert_eq!(g.counts(), (40, 1));
    }

    #[test]
    fn samples_keep_their_crops_and_descriptions_across_a_restart_and_a_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = StudentId::parse("alip").unwrap();
        let samples = vec![
            with_crop(0.1, b"a"),
            with_crop(0.2, b"b"),
            with_crop(0.3, b"c"),
        ];
        assert_eq!(g.enroll(&id, samples, "k1").unwrap(), 3);
        assert_eq!(g.remove_sample(&id, 1, "k2").unwrap(), 2);
        assert!(matches!(
            g.remove_sample(&id, 2, "k2"),
            Err(GalleryError::NoSuchSample {
                index: 2,
                samples: 2,
                ..
            })
        ));
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let detail = g.person_detail(&id).unwrap();
        assert_eq!(detail.samples.len(), 2);
        assert_eq!(g.sample_crop(&id, 0).unwrap(), b"a");
        assert_eq!(g.sample_crop(&id, 1).unwrap(), b"c");
        assert_eq!(
            detail.samples[1].quality,
            Some(serde_json::json!({"face_px": 100}))
        );
        assert_eq!(samples::crop_files(&dir.path().join("faces/alip")).len(), 2);
        let history: Vec<_> = g
            .history(&id)
            .into_iter()
            .map(|e| (e.action, e.samples, e.by, e.index))
            .collect();
        assert_eq!(
            history,
            [
                ("enroll".into(), 3, "k1".into(), None),
                ("delete_sample".into(), 2, "k2".into(), Some(1))
            ]
        );
        // The last sample takes the person and every file of theirs.
        g.remove_sample(&id, 0, "k").unwrap();
        assert_eq!(g.remove_sample(&id, 0, "k").unwrap(), 0);
        assert_eq!(g.person(&id), None);
        assert!(!dir.path().join("faces/alip").exists());
        assert!(!dir.path().join("people/alip.json").exists());
        assert!(!dir.path().join("embeddings/alip.npy").exists());
    }

    #[test]
    fn the_duplicate_check_is_against_other_people_only() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.append(&id("budi"), &[enc(0.0)], "k").unwrap();
        let close = || vec![NewSample::new(enc(0.3))];
        assert_eq!(g.enroll_unique(&id("budi"), close(), 0.45, "k").unwrap(), 2);
        match g.enroll_unique(&id("joko"), close(), 0.45, "k") {
            Err(GalleryError::Duplicate {
                duplicate_of,
                distance,
            }) => assert_eq!(
                (duplicate_of.as_str(), (distance * 10.0).round()),
                ("budi", 0.0)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(g.person(&id("joko")), None);
        let far = vec![NewSample::new(enc(1.0))];
        assert_eq!(g.enroll_unique(&id("joko"), far, 0.45, "k").unwrap(), 1);
    }
}
