//! The people of the gallery: reading and writing a person's files (`embeddings/<id>.npy`,
//! then `people/<id>.json`), the listings and details that `GET /people` answers, and the
//! changes that concern a person whole: removal, rename, their name and group.
//!
//! Contract ([`super`]'s writer contract): a removal takes the crops, the metadata, the
//! rejections, then the `.npy` (a cut removal leaves a person still enrolled, who can be
//! removed again); a rename is written to a journal (`people/.rename.json`) before its first
//! step, and a rename cut by a crash is finished by the next open.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    io_err, modified_secs, move_if_there, npy, remove_file_synced, samples, AuditEntry, Gallery,
    GalleryError, Label, LabelChange, Rows, Sample, StudentId,
};
use crate::engine::Encoding;
use crate::{fsutil, locks};

/// One enrolled person, as `GET /people` lists them. Times are Unix seconds: `enrolled_at` the
/// oldest sample's, `updated_at` the encodings file's last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// Their id.
    pub student_id: String,
    /// How many samples (rows) they have.
    pub samples: usize,
    /// When their oldest sample was enrolled.
    pub enrolled_at: u64,
    /// When their encodings file last changed.
    pub updated_at: u64,
    /// Their display name, when they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Their group, when they have one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// A person with their samples in order (index = row of the `.npy` file).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonDetail {
    /// The person as listed.
    pub person: Person,
    /// Their samples' descriptions, in the rows' order.
    pub samples: Vec<Sample>,
    /// How many faces were rejected as not this person ([`Gallery::reject`]).
    pub rejected: usize,
}

impl PersonDetail {
    /// The answer of `GET /people/{id}` (and `people show`): their name and group (`null` when
    /// none), each sample with its index, time, crop URL (`null` when no crop is kept) and
    /// quality, how many faces were rejected as not them, then `history`.
    pub fn to_json(&self, history: &[AuditEntry]) -> Value {
        let id = &self.person.student_id;
        let samples: Vec<Value> = self
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                serde_json::json!({
                    "index": i,
                    "enrolled_at": s.enrolled_at,
                    "crop": s.crop.as_ref().map(|_| format!("/people/{id}/samples/{i}.jpg")),
                    "quality": s.quality,
                })
            })
            .collect();
        serde_json::json!({
            "ok": true,
            "student_id": id,
            "name": self.person.name,
            "group": self.person.group,
            "samples": samples,
            "rejected": self.rejected,
            "enrolled_at": self.person.enrolled_at,
            "updated_at": self.person.updated_at,
            "history": history,
        })
    }
}

/// The rename being done, written before its first step (`data/people/.rename.json`).
#[derive(Debug, Serialize, Deserialize)]
struct RenameJournal {
    from: String,
    to: String,
}

impl Gallery {
    /// [`Gallery::read_person`], [`GalleryError::NotEnrolled`] when they are not.
    pub(super) fn enrolled_rows(&self, id: &StudentId) -> Result<Rows, GalleryError> {
        self.read_person(id)?
            .ok_or_else(|| GalleryError::NotEnrolled(id.to_string()))
    }

    /// The person's rows as on disk, described ([`samples::reconcile`]); `None` when not
    /// enrolled.
    pub(super) fn read_person(&self, id: &StudentId) -> Result<Option<Rows>, GalleryError> {
        let path = self.npy_path(id);
        let rows = match fs::read(&path) {
            Ok(bytes) => npy::read_encodings(&bytes).map_err(|reason| GalleryError::Damaged {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let meta = self.meta_path(id);
        let written = match fs::read(&meta) {
            Ok(bytes) => match serde_json::from_slice::<samples::SamplesFile>(&bytes) {
                Ok(file) => Some(file.samples),
                Err(e) => {
                    // Descriptions only: the rows stay enrolled, described plainly.
                    log::warn!("{}: {e}; its samples' details are lost", meta.display());
                    Some(Vec::new())
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&meta)(e)),
        };
        let crops = samples::crop_files(&self.crops_dir(id));
        let described = samples::reconcile(&rows, written, modified_secs(&path), &crops);
        Ok(Some(rows.into_iter().zip(described).collect()))
    }

    /// The person's name and group as `people/<id>.json` has them (none when there is no
    /// such file). A value that breaks the rules (a file edited by hand) is dropped, logged.
    pub(super) fn read_label(&self, id: &StudentId) -> Label {
        let meta = self.meta_path(id);
        let Ok(bytes) = fs::read(&meta) else {
            return Label::default();
        };
        let Ok(file) = serde_json::from_slice::<samples::SamplesFile>(&bytes) else {
            return Label::default();
        };
        file.label.rechecked().unwrap_or_else(|e| {
            log::warn!("{}: {e}; its name and group are ignored", meta.display());
            Label::default()
        })
    }

    /// Writes the person's `.npy` then metadata (both atomically) with their name and group;
    /// `rows` must not be empty.
    pub(super) fn write_person(
        &self,
        id: &StudentId,
        rows: &[(Encoding, Sample)],
        label: &Label,
    ) -> Result<(), GalleryError> {
        let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
        let path = self.npy_path(id);
        fsutil::atomic_write(&path, &npy::write_encodings(&encodings)).map_err(io_err(&path))?;
        let meta = self.meta_path(id);
        let file = samples::SamplesFile {
            samples: rows.iter().map(|(_, s)| s.clone()).collect(),
            label: label.clone(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| GalleryError::Io {
            path: meta.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::atomic_write(&meta, &bytes).map_err(io_err(&meta))
    }

    /// Removes everything of the person: the face crops, the metadata, then the encodings file,
    /// then the encodings from matching. Returns how many samples they had, `None` when not
    /// enrolled. The `.npy` goes last so that an interrupted removal leaves a person who is
    /// still enrolled (and can be removed again), never files of nobody.
    pub fn remove(&self, id: &StudentId, by: &str) -> Result<Option<usize>, GalleryError> {
        let _writing = self.writing()?;
        self.remove_locked(id, by)
    }

    /// [`Gallery::remove`], the write lock held by the caller.
    pub(super) fn remove_locked(
        &self,
        id: &StudentId,
        by: &str,
    ) -> Result<Option<usize>, GalleryError> {
        let Some(rows) = self.read_person(id)? else {
            // Matching may still hold them if another process removed the files.
            locks::write(&self.matrix).set_person(id.as_str(), &[]);
            return Ok(None);
        };
        let crops = self.crops_dir(id);
        match fs::remove_dir_all(&crops) {
            Ok(()) => fsutil::sync_dir(&self.faces_dir).map_err(io_err(&self.faces_dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&crops)(e)),
        }
        remove_file_synced(&self.meta_path(id))?;
        remove_file_synced(&self.rejected_path(id))?;
        remove_file_synced(&self.npy_path(id))?;
        locks::write(&self.matrix).set_person(id.as_str(), &[]);
        self.record(Self::entry("delete", id, 0, by));
        Ok(Some(rows.len()))
    }

    /// Gives the person `from` the id `to`: crops, metadata, rejections and encodings move
    /// together, and a
    /// rename cut by a crash is finished by the next open. Returns their samples.
    pub fn rename(
        &self,
        from: &StudentId,
        to: &StudentId,
        by: &str,
    ) -> Result<usize, GalleryError> {
        let _writing = self.writing()?;
        let rows = self
            .read_person(from)?
            .ok_or_else(|| GalleryError::NotEnrolled(from.to_string()))?;
        if from == to {
            return Ok(rows.len());
        }
        if [self.npy_path(to), self.meta_path(to), self.crops_dir(to)]
            .iter()
            .any(|p| p.exists())
        {
            return Err(GalleryError::AlreadyEnrolled(to.to_string()));
        }
        // Rejections of nobody (`to` is not enrolled) would stand in the way of `from`'s.
        remove_file_synced(&self.rejected_path(to))?;
        let rejected = self.read_rejected(from).unwrap_or_default();
        let journal = self.people_dir.join(".rename.json");
        let bytes = serde_json::to_vec(&RenameJournal {
            from: from.to_string(),
            to: to.to_string(),
        })
        .map_err(|e| GalleryError::Io {
            path: journal.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::atomic_write(&journal, &bytes).map_err(io_err(&journal))?;
        self.finish_rename()?;
        {
            let mut m = locks::write(&self.matrix);
            let names = m.names.get(from.as_str()).cloned().unwrap_or_default();
            m.set_person(from.as_str(), &[]);
            m.set_labelled(to.as_str(), &rows, &names);
            m.set_rejected(to.as_str(), &rejected);
        }
        let mut entry = Self::entry("rename", to, rows.len(), by);
        entry.from = Some(from.to_string());
        self.record(entry);
        Ok(rows.len())
    }

    /// Does the steps of the journaled rename, if any (each can be done again), then removes
    /// the journal. The `.npy` moves last: until it does, the person is enrolled under the old id.
    pub(super) fn finish_rename(&self) -> Result<(), GalleryError> {
        let journal = self.people_dir.join(".rename.json");
        let bytes = match fs::read(&journal) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&journal)(e)),
        };
        let ids = serde_json::from_slice::<RenameJournal>(&bytes)
            .ok()
            .and_then(|j| {
                Some((
                    StudentId::parse(&j.from).ok()?,
                    StudentId::parse(&j.to).ok()?,
                ))
            });
        match ids {
            Some((from, to)) => {
                move_if_there(&self.crops_dir(&from), &self.crops_dir(&to))?;
                move_if_there(&self.meta_path(&from), &self.meta_path(&to))?;
                move_if_there(&self.rejected_path(&from), &self.rejected_path(&to))?;
                move_if_there(&self.npy_path(&from), &self.npy_path(&to))?;
                log::info!("rename of {from} to {to} done");
            }
            // atomic_write never leaves a partial journal: this one was not written by us.
            None => log::warn!("{}: not a rename journal; ignored", journal.display()),
        }
        remove_file_synced(&journal)
    }

    /// Enrolled people and their number of encodings, sorted by id.
    pub fn people(&self) -> Vec<(String, usize)> {
        let m = locks::read(&self.matrix);
        let mut counts = vec![0usize; m.labels.len()];
        for o in &m.owners {
            counts[*o as usize] += 1;
        }
        let mut out: Vec<(String, usize)> = m
            .labels
            .iter()
            .cloned()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .collect();
        out.sort();
        out
    }

    pub(super) fn describe(&self, id: &str, samples: &[&Sample], label: Option<&Label>) -> Person {
        let updated_at = modified_secs(&self.embeddings_dir.join(format!("{id}.npy")));
        let enrolled_at = samples
            .iter()
            .map(|s| s.enrolled_at)
            .min()
            .unwrap_or(updated_at);
        Person {
            student_id: id.to_string(),
            samples: samples.len(),
            enrolled_at,
            updated_at: updated_at.max(enrolled_at),
            name: label.and_then(|l| l.name.clone()),
            group: label.and_then(|l| l.group.clone()),
        }
    }

    /// Enrolled people whose id starts with `prefix` (and whose group is `group`, when given),
    /// sorted by id: how many match in all, and at most `limit` of them from `offset` on.
    pub fn people_page(
        &self,
        prefix: &str,
        group: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> (usize, Vec<Person>) {
        let people = self.people();
        let m = locks::read(&self.matrix);
        let matching: Vec<String> = people
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| id.starts_with(prefix))
            .filter(|id| {
                group.is_none_or(|g| m.names.get(id).and_then(|l| l.group.as_deref()) == Some(g))
            })
            .collect();
        let page = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|id| {
                let rows: Vec<&Sample> = m.rows_of(id).iter().map(|r| &m.samples[*r]).collect();
                self.describe(id, &rows, m.names.get(id))
            })
            .collect();
        (matching.len(), page)
    }

    /// The person's name and group (`None`: neither, or not enrolled): one hash lookup under
    /// the matrix's read lock, what each event costs ([`crate::events`]' label lookup).
    pub fn label(&self, id: &str) -> Option<Label> {
        locks::read(&self.matrix).names.get(id).cloned()
    }

    /// Changes the person's name and/or group ([`LabelChange`]: each kept, cleared or set);
    /// returns them after. The metadata and `.npy` are written again (the `.npy` unchanged: its
    /// time is the change's, which replication stamps), then matching, then an audit line
    /// `label` with the name and group after. A change that changes nothing writes nothing.
    pub fn set_label(
        &self,
        id: &StudentId,
        change: &LabelChange,
        by: &str,
    ) -> Result<Label, GalleryError> {
        let _writing = self.writing()?;
        let rows = self.enrolled_rows(id)?;
        let old = self.read_label(id);
        let new = change.apply(&old);
        if new == old {
            return Ok(new);
        }
        self.write_person(id, &rows, &new)?;
        locks::write(&self.matrix).set_label(id.as_str(), &new);
        let mut entry = Self::entry("label", id, rows.len(), by);
        entry.label = Some(new.clone());
        self.record(entry);
        Ok(new)
    }

    /// The person with their samples, or `None` when not enrolled.
    pub fn person_detail(&self, id: &StudentId) -> Option<PersonDetail> {
        let m = locks::read(&self.matrix);
        let rows: Vec<&Sample> = m
            .rows_of(id.as_str())
            .iter()
            .map(|r| &m.samples[*r])
            .collect();
        (!rows.is_empty()).then(|| PersonDetail {
            person: self.describe(id.as_str(), &rows, m.names.get(id.as_str())),
            samples: rows.into_iter().cloned().collect(),
            rejected: m.rejected_count(id.as_str()),
        })
    }

    /// The person, or `None` when not enrolled.
    pub fn person(&self, id: &StudentId) -> Option<Person> {
        self.person_detail(id).map(|d| d.person)
    }

    /// The newest changes to the person, oldest first ([`super::audit::HISTORY_MAX`] at most).
    pub fn history(&self, id: &StudentId) -> Vec<AuditEntry> {
        self.audit.history(id.as_str())
    }

    /// Removes every file of `id` as [`Gallery::remove`] does (crops, metadata, rejections,
    /// `.npy`), and
    /// them from matching; whether they were enrolled.
    pub(super) fn remove_files(&self, id: &StudentId) -> Result<bool, GalleryError> {
        let npy_path = self.npy_path(id);
        let enrolled =
            npy_path.exists() || !locks::read(&self.matrix).rows_of(id.as_str()).is_empty();
        let crops = self.crops_dir(id);
        match fs::remove_dir_all(&crops) {
            Ok(()) => fsutil::sync_dir(&self.faces_dir).map_err(io_err(&self.faces_dir))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&crops)(e)),
        }
        remove_file_synced(&self.meta_path(id))?;
        remove_file_synced(&self.rejected_path(id))?;
        remove_file_synced(&npy_path)?;
        locks::write(&self.matrix).set_person(id.as_str(), &[]);
        Ok(enrolled)
    }

    /// The ids with a `.npy` file, sorted; unless `npy_only`, also those with only metadata or
    /// crops (what a replacing import removes).
    pub(super) fn ids_on_disk(&self, npy_only: bool) -> Result<Vec<StudentId>, GalleryError> {
        let mut ids: BTreeSet<StudentId> = BTreeSet::new();
        let mut scan = |dir: &PathBuf, suffix: Option<&str>| -> Result<(), GalleryError> {
            for entry in fs::read_dir(dir).map_err(io_err(dir))? {
                let Ok(entry) = entry else { continue };
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let stem = match suffix {
                    Some(suffix) => name.strip_suffix(suffix),
                    None => entry.path().is_dir().then_some(name.as_str()),
                };
                if let Some(id) = stem.and_then(|s| StudentId::parse(s).ok()) {
                    ids.insert(id);
                }
            }
            Ok(())
        };
        scan(&self.embeddings_dir, Some(".npy"))?;
        if !npy_only {
            scan(&self.people_dir, Some(".json"))?;
            scan(&self.faces_dir, None)?;
        }
        Ok(ids.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::{enc, with_crop};
    use crate::gallery::{NewSample, UNKNOWN};

    #[test]
    fn people_are_listed_shown_and_removed_with_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.append(&id("alip"), &[enc(0.1), enc(0.2)], "test")
            .unwrap();
        g.append(&id("alice"), &[enc(0.5)], "test").unwrap();
        g.append(&id("budi"), &[enc(0.9)], "test").unwrap();
        g.enroll(
            &id("alip"),
            vec![NewSample::new(enc(0.3)).with_crop(b"jpeg".to_vec())],
            "test",
        )
        .unwrap();
        let (total, page) = g.people_page("al", None, 0, 10);
        assert_eq!(total, 2);
        let ids: Vec<_> = page.iter().map(|p| p.student_id.as_str()).collect();
        assert_eq!(ids, ["alice", "alip"]);
        assert_eq!(g.people_page("", None, 1, 1).1[0].student_id, "alip");
        assert_eq!(g.people_page("", None, 5, 10), (3, vec![]));
        let alip = g.person(&id("alip")).unwrap();
        assert_eq!(alip.samples, 3);
        assert!(alip.enrolled_at > 0 && alip.enrolled_at <= alip.updated_at);
        assert_eq!(g.sample_crop(&id("alip"), 2).unwrap(), b"jpeg");
        assert_eq!(g.sample_crop(&id("alip"), 0), None);

        assert_eq!(g.remove(&id("alip"), "test").unwrap(), Some(3));
        assert_eq!(g.person(&id("alip")), None);
        assert_eq!(g.remove(&id("alip"), "test").unwrap(), None);
        assert_eq!(g.best_match(&enc(0.1), 0.05).label, UNKNOWN);
        assert_eq!(g.counts(), (2, 2));
        // Nothing of theirs is left on disk, and a reload agrees.
        assert!(!dir.path().join("faces/alip").exists());
        assert!(!dir.path().join("embeddings/alip.npy").exists());
        assert!(!dir.path().join("people/alip.json").exists());
        let (reloaded, _) = Gallery::open(dir.path()).unwrap();
        assert_eq!(reloaded.people(), [("alice".into(), 1), ("budi".into(), 1)]);
    }

    #[test]
    fn a_row_written_without_its_description_is_still_enrolled() {
        // Killed between the .npy and the metadata: the new row has a plain description.
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = StudentId::parse("alip").unwrap();
        g.enroll(&id, vec![with_crop(0.1, b"a")], "k").unwrap();
        let npy_path = dir.path().join("embeddings/alip.npy");
        fs::write(&npy_path, npy::write_encodings(&[enc(0.1), enc(0.2)])).unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.encodings, 2);
        let detail = g.person_detail(&id).unwrap();
        assert_eq!(g.sample_crop(&id, 0).unwrap(), b"a");
        assert_eq!(
            (
                detail.samples[1].crop.as_ref(),
                detail.samples[1].quality.as_ref()
            ),
            (None, None)
        );
        assert_eq!(g.best_match(&enc(0.2), 0.01).label, "alip");
    }

    #[test]
    fn renames_move_everything_and_refuse_a_taken_id() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.enroll(&id("alip"), vec![with_crop(0.1, b"a")], "k")
            .unwrap();
        g.append(&id("budi"), &[enc(0.9)], "k").unwrap();
        assert!(matches!(
            g.rename(&id("alip"), &id("budi"), "k"),
            Err(GalleryError::AlreadyEnrolled(_))
        ));
        assert!(matches!(
            g.rename(&id("nobody"), &id("x"), "k"),
            Err(GalleryError::NotEnrolled(_))
        ));
        assert_eq!(g.rename(&id("alip"), &id("alif"), "k").unwrap(), 1);
        assert_eq!(g.best_match(&enc(0.1), 0.01).label, "alif");
        assert_eq!(g.person(&id("alip")), None);
        assert_eq!(g.sample_crop(&id("alif"), 0).unwrap(), b"a");
        let left: Vec<_> = ["faces/alip", "people/alip.json", "embeddings/alip.npy"]
            .iter()
            .filter(|p| dir.path().join(p).exists())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let (g, _) = Gallery::open(dir.path()).unwrap();
        assert_eq!(g.people(), [("alif".into(), 1), ("budi".into(), 1)]);
        assert_eq!(
            g.history(&id("alif")).last().unwrap().from.as_deref(),
            Some("alip")
        );
    }

    #[test]
    fn a_rename_cut_by_a_crash_is_finished_by_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.enroll(&id("alip"), vec![with_crop(0.1, b"a")], "k")
            .unwrap();
        drop(g);
        // Killed after the journal and the first step (the crops moved), before the rest.
        fs::write(
            dir.path().join("people/.rename.json"),
            br#"{"from":"alip","to":"alif"}"#,
        )
        .unwrap();
        fs::rename(dir.path().join("faces/alip"), dir.path().join("faces/alif")).unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        assert_eq!(g.people(), [("alif".into(), 1)]);
        assert_eq!(g.sample_crop(&id("alif"), 0).unwrap(), b"a");
        assert!(!dir.path().join("people/.rename.json").exists());
    }
}
