//! Importing a checked archive ([`Gallery::import_valid`]): every person's plan is made (and
//! every read done) before the first write, then each person's files are written in the
//! store's order and matching follows; a replacing import removes the people the archive does
//! not hold last (see [`super`] for the contract).

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::io::{self, Read, Seek};
use std::path::PathBuf;

use serde::Serialize;
use thiserror::Error;

use super::format::{read_span, ArchiveError, Span, SPOOL_NAME};
use super::validate::{validate_from, ArchivedPerson, Rejected, ValidArchive};
use crate::engine::Encoding;
use crate::gallery::samples::{self, SamplesFile};
use crate::gallery::{
    io_err, npy, remove_file_synced, Gallery, GalleryError, Label, LabelChange, Rows, Sample,
    StudentId,
};
use crate::{fsutil, locks};

/// What an import can fail with: the archive (the client's fault, nothing written) or the
/// gallery (the server's: disk trouble, a damaged file in the way).
#[derive(Debug, Error)]
pub enum ImportError {
    /// The archive was refused (nothing written).
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The gallery could not be read or written.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
}

/// How an import treats what the gallery holds already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Keep everyone; add the archive's rows each person does not have yet.
    Merge,
    /// The gallery becomes exactly the archive.
    Replace,
}

/// What an import changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// People the gallery did not have.
    pub people_added: usize,
    /// People whose files changed.
    pub people_updated: usize,
    /// People whose files hold what the archive has already.
    pub people_unchanged: usize,
    /// People removed (replace: not in the archive).
    pub people_removed: usize,
    /// Rows written for the people added or updated.
    pub samples: usize,
    /// Rows of the archive already enrolled (merge), not added again.
    pub samples_skipped: usize,
    /// Crop files written.
    pub crops: usize,
}

/// A person's planned import: the rows to write, crops to write and old crops to remove.
pub(super) struct Plan {
    rows: Rows,
    /// The person's name and group after the import.
    label: Label,
    /// The person's rejections after the import; `None`: as they are.
    rejected: Option<Rejected>,
    /// Crops to write: their name in the gallery and where their bytes lie in the archive.
    write_crops: Vec<(String, Span)>,
    remove_crops: Vec<String>,
    added: bool,
    samples: usize,
    skipped: usize,
}

pub(super) enum Planned {
    Change(Plan),
    /// The person's files hold what the archive has already (`skipped`: rows already there).
    Unchanged {
        skipped: usize,
    },
}

/// A crop's bytes from the archive, checked again as a JPEG's start (the archive is read a
/// second time: a file changed meanwhile is not written blindly).
pub(super) fn read_crop<R: Read + Seek>(
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
pub(super) fn same_crop<R: Read + Seek>(
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
pub(super) fn free_crop_name(name: &str, taken: &HashSet<String>) -> String {
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
    /// A new file in the data folder for an archive to import: readable by this user only and
    /// unlinked already, so it is gone once closed, however the process ends (see
    /// [`fsutil::unlinked_temp`]; a leftover name is removed when the gallery is next opened).
    pub fn import_spool(&self) -> io::Result<fs::File> {
        fsutil::unlinked_temp(&self.data_dir, SPOOL_NAME)
    }

    /// Checks the archive in memory whole ([`super::validate`]), then merges it into the gallery or
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
        // Merge keeps a name or group the archive does not have; replace takes the archive's.
        let old_label = match added {
            true => Label::default(),
            false => self.read_label(id),
        };
        let label = match mode {
            ImportMode::Merge => LabelChange::setting(person.label.clone()).apply(&old_label),
            ImportMode::Replace => person.label.clone(),
        };
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
                ImportMode::Merge => samples == 0 && label == old_label,
                ImportMode::Replace => {
                    write_crops.is_empty()
                        && remove_crops.is_empty()
                        && self.files_hold(id, &rows, &label)
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
            label,
            rejected,
            write_crops,
            remove_crops,
            added,
            samples,
            skipped,
        }))
    }

    /// Whether the person's `.npy` and metadata files hold exactly `rows` and `label` already.
    fn files_hold(&self, id: &StudentId, rows: &[(Encoding, Sample)], label: &Label) -> bool {
        let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
        let meta = serde_json::to_vec(&SamplesFile {
            samples: rows.iter().map(|(_, s)| s.clone()).collect(),
            label: label.clone(),
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
        self.write_person(id, &plan.rows, &plan.label)?;
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
            m.set_labelled(id.as_str(), &plan.rows, &plan.label);
            if let Some(rejected) = &plan.rejected {
                m.set_rejected(id.as_str(), rejected);
            }
        }
        let mut entry = Self::entry("import", id, plan.rows.len(), by);
        entry.rejected = plan.rejected.as_ref().map(Vec::len);
        entry.label = (!plan.label.is_empty()).then_some(plan.label);
        self.record(entry);
        Ok(())
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
                let label = self.read_label(id);
                let mut m = locks::write(&self.matrix);
                m.set_labelled(id.as_str(), &rows, &label);
                m.set_rejected(id.as_str(), &rejected);
            }
            Err(e) => log::warn!("{id}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::archive::tests::*;
    use crate::gallery::archive::{validate, MARKER};
    use crate::gallery::tests::enc;
    use crate::gallery::NewSample;

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
}
