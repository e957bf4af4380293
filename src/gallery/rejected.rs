//! "Not this person": faces an operator said are *not* person P (`POST /people/{id}/reject`),
//! kept as P's negative samples so that a face closer to one of them than to P (by
//! `MATCH_MARGIN`) is not matched to P again ([`Gallery::best_match_with_margin`]).
//!
//! Storage: `data/rejected/<id>.npy`, the format and writer of `data/embeddings/<id>.npy`
//! ([`super::npy`]), deliberately outside `embeddings/` so that the original Python service,
//! which loads `embeddings/*.npy` as people, never sees them. The folder is made at the first
//! rejection. The writer contract of [`super`] holds: written under the write lock, atomically,
//! then matching, then an audit line (`reject`, `unreject`). Rejections belong to an enrolled
//! person: a person's deletion removes them before the `.npy` (a cut deletion leaves a person
//! with fewer rejections, never rejections of nobody that a new person of that id would
//! inherit); a rename moves them; rejections found without their person's `.npy` are ignored by
//! loading and removed at open.

use std::fs;
use std::path::PathBuf;

use super::{io_err, npy, remove_file_synced, Gallery, GalleryError, StudentId};
use crate::engine::{distance, Encoding};
use crate::fsutil;
use crate::locks;

/// What a rejection did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rejection {
    /// How many rejected faces the person has now.
    pub rejected: usize,
    /// The rejected face's distance to the person's closest sample (the closest of several).
    pub distance: f64,
}

impl Gallery {
    pub(super) fn rejected_path(&self, id: &StudentId) -> PathBuf {
        self.rejected_dir.join(format!("{id}.npy"))
    }

    /// The person's rejected encodings as on disk (none: no file).
    pub(super) fn read_rejected(&self, id: &StudentId) -> Result<Vec<Encoding>, GalleryError> {
        let path = self.rejected_path(id);
        match fs::read(&path) {
            Ok(bytes) => {
                npy::read_encodings(&bytes).map_err(|reason| GalleryError::Damaged { path, reason })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Writes the person's rejections (atomically), or removes the file when there are none.
    pub(super) fn write_rejected(
        &self,
        id: &StudentId,
        rejected: &[Encoding],
    ) -> Result<(), GalleryError> {
        let path = self.rejected_path(id);
        if rejected.is_empty() {
            return remove_file_synced(&path);
        }
        fs::create_dir_all(&self.rejected_dir).map_err(io_err(&self.rejected_dir))?;
        fsutil::atomic_write(&path, &npy::write_encodings(rejected)).map_err(io_err(&path))
    }

    /// Records `faces` as not being the person `id`: from now on a face closer to one of them
    /// than to the person's samples (plus the margin) is not matched to them. Refused with
    /// [`GalleryError::NotEnrolled`] when they are not enrolled, and with
    /// [`GalleryError::Damaged`] when their rejections file cannot be read (it is not
    /// overwritten; [`Gallery::forget_rejections`] removes it). `faces` must not be empty.
    pub fn reject(
        &self,
        id: &StudentId,
        faces: &[Encoding],
        by: &str,
    ) -> Result<Rejection, GalleryError> {
        let _writing = self.writing()?;
        let rows = self.enrolled_rows(id)?;
        let nearest = faces
            .iter()
            .flat_map(|f| rows.iter().map(move |(e, _)| distance(e, f)))
            .fold(f64::INFINITY, f64::min);
        let mut rejected = self.read_rejected(id)?;
        rejected.extend_from_slice(faces);
        self.write_rejected(id, &rejected)?;
        locks::write(&self.matrix).set_rejected(id.as_str(), &rejected);
        let mut entry = Self::entry("reject", id, rows.len(), by);
        entry.rejected = Some(rejected.len());
        self.record(entry);
        Ok(Rejection {
            rejected: rejected.len(),
            distance: nearest,
        })
    }

    /// Forgets every rejection of the person (an operator's mistake undone); returns how many
    /// there were. [`GalleryError::NotEnrolled`] when they are not enrolled.
    pub fn forget_rejections(&self, id: &StudentId, by: &str) -> Result<usize, GalleryError> {
        let _writing = self.writing()?;
        let rows = self.enrolled_rows(id)?;
        // A damaged file is forgotten too: that is the way out of it.
        let had = self.read_rejected(id).map_or(0, |r| r.len());
        self.write_rejected(id, &[])?;
        locks::write(&self.matrix).set_rejected(id.as_str(), &[]);
        let mut entry = Self::entry("unreject", id, rows.len(), by);
        entry.rejected = Some(0);
        self.record(entry);
        Ok(had)
    }

    /// How many rejected faces the person has (0 when not enrolled).
    pub fn rejected_count(&self, id: &StudentId) -> usize {
        locks::read(&self.matrix).rejected_count(id.as_str())
    }

    /// The ids of `data/rejected/*.npy`, with their paths (temp files and bad names left out).
    fn rejected_on_disk(&self) -> Vec<(StudentId, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.rejected_dir) else {
            return Vec::new();
        };
        let mut found: Vec<(StudentId, PathBuf)> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|path| {
                let stem = path.file_name()?.to_str()?.strip_suffix(".npy")?;
                Some((StudentId::parse(stem).ok()?, path))
            })
            .collect();
        found.sort();
        found
    }

    /// Removes the rejections whose person has no `.npy` (left by a tool that does not know
    /// them, or a copy of a data folder); at open, under the write lock. Returns how many files.
    pub(super) fn remove_orphan_rejections(&self) -> usize {
        let mut removed = 0;
        for (id, path) in self.rejected_on_disk() {
            if self.npy_path(&id).exists() {
                continue;
            }
            match remove_file_synced(&path) {
                Ok(()) => {
                    log::info!("{}: {id} is not enrolled; removed", path.display());
                    removed += 1;
                }
                Err(e) => log::warn!("{e}"),
            }
        }
        removed
    }

    /// Gives matching the rejections on disk of the people it holds (others are ignored); a
    /// damaged file is skipped and reported, as a damaged `.npy` is.
    pub(super) fn load_rejected(
        &self,
        matrix: &mut super::Matrix,
        skipped: &mut Vec<(PathBuf, String)>,
    ) {
        for (id, path) in self.rejected_on_disk() {
            if matrix.rows_of(id.as_str()).is_empty() {
                continue;
            }
            match self.read_rejected(&id) {
                Ok(rejected) => matrix.set_rejected(id.as_str(), &rejected),
                Err(GalleryError::Damaged { reason, .. }) => skipped.push((path, reason)),
                Err(e) => skipped.push((path, e.to_string())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gallery::tests::enc;
    use crate::gallery::UNKNOWN;

    fn id(s: &str) -> StudentId {
        StudentId::parse(s).unwrap()
    }

    /// alip at 0.0, budi at 0.3, cici far away at 2.0.
    fn three(dir: &std::path::Path) -> Gallery {
        let (g, _) = Gallery::open(dir).unwrap();
        g.append(&id("alip"), &[enc(0.0)], "k").unwrap();
        g.append(&id("budi"), &[enc(0.3)], "k").unwrap();
        g.append(&id("cici"), &[enc(2.0)], "k").unwrap();
        g
    }

    /// [`three`] with one face rejected as not alip, closed (files only, as after a kill).
    fn closed_with_a_rejection(dir: &std::path::Path) {
        three(dir).reject(&id("alip"), &[enc(0.15)], "k").unwrap();
    }

    fn label_and_runner_up(g: &Gallery, v: f64, margin: f64) -> (String, Option<String>) {
        let m = g.best_match_with_margin(&enc(v), 0.45, margin);
        (m.label, m.runner_up.map(|(l, _)| l))
    }

    #[test]
    fn a_face_closer_to_a_rejection_goes_to_the_next_person() {
        let dir = tempfile::tempdir().unwrap();
        let g = three(dir.path());
        let r = g.reject(&id("alip"), &[enc(0.15)], "k").unwrap();
        assert_eq!(r.rejected, 1);
        assert_eq!((r.distance * 100.0).round(), 15.0);
        // 0.1 from alip but 0.05 from the rejection: not alip, so budi (0.2), and the
        // runner-up is cici, never alip.
        assert_eq!(
            label_and_runner_up(&g, 0.1, 0.0),
            ("budi".into(), Some("cici".into()))
        );
        let m = g.best_match(&enc(0.1), 0.45);
        assert_eq!(m.distance.map(|d| (d * 100.0).round()), Some(20.0));
        // Closer to alip than to the rejection: still alip, budi the runner-up.
        assert_eq!(
            label_and_runner_up(&g, 0.0, 0.0),
            ("alip".into(), Some("budi".into()))
        );
        // Both close people excluded: only cici is left, beyond the tolerance.
        g.reject(&id("budi"), &[enc(0.2)], "k").unwrap();
        let m = g.best_match(&enc(0.14), 0.45);
        assert_eq!((m.label.as_str(), m.runner_up), (UNKNOWN, None));
        assert_eq!(m.distance.map(|d| (d * 100.0).round()), Some(186.0));
    }

    #[test]
    fn a_person_must_lead_their_rejections_by_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let g = three(dir.path());
        g.reject(&id("alip"), &[enc(0.15)], "k").unwrap();
        // 0.05 from alip, 0.10 from the rejection: a lead of 0.05.
        assert_eq!(label_and_runner_up(&g, 0.05, 0.0).0, "alip");
        assert_eq!(label_and_runner_up(&g, 0.05, 0.04).0, "alip");
        // A margin of 0.1 asks for more: alip is out, budi (0.25) leads cici by far.
        assert_eq!(
            label_and_runner_up(&g, 0.05, 0.1),
            ("budi".into(), Some("cici".into()))
        );
    }

    /// A pseudo-random encoding (xorshift), values in [0, 0.1).
    fn random(state: &mut u64) -> Encoding {
        std::array::from_fn(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            (*state % 1000) as f64 / 10_000.0
        })
    }

    #[test]
    fn rejections_that_exclude_nobody_change_no_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1d;
        for p in 0..12 {
            let rows: Vec<Encoding> = (0..3).map(|_| random(&mut state)).collect();
            g.append(&id(&format!("p{p}")), &rows, "k").unwrap();
        }
        let probes: Vec<Encoding> = (0..200).map(|_| random(&mut state)).collect();
        let answers = |g: &Gallery| -> Vec<Match> {
            let mut out = Vec::new();
            for p in &probes {
                for (tolerance, margin) in [(0.45, 0.0), (0.3, 0.0), (0.45, 0.02), (0.6, 0.1)] {
                    out.push(g.best_match_with_margin(p, tolerance, margin));
                }
            }
            out
        };
        let before = answers(&g);
        // Far from every face: matching takes the other path, with the same answers.
        g.reject(&id("p3"), &[[5.0; 128]], "k").unwrap();
        assert_eq!(answers(&g), before);
        assert_eq!(g.forget_rejections(&id("p3"), "k").unwrap(), 1);
        assert_eq!(answers(&g), before);
    }

    use crate::gallery::Match;

    #[test]
    fn rejections_are_stored_reloaded_renamed_and_deleted_with_their_person() {
        let dir = tempfile::tempdir().unwrap();
        let g = three(dir.path());
        let file = dir.path().join("rejected/alip.npy");
        assert!(matches!(
            g.reject(&id("nobody"), &[enc(0.1)], "k"),
            Err(GalleryError::NotEnrolled(_))
        ));
        assert!(!dir.path().join("rejected").exists(), "nothing written");
        g.reject(&id("alip"), &[enc(0.15)], "admin").unwrap();
        assert_eq!(
            g.reject(&id("alip"), &[enc(0.16)], "k").unwrap().rejected,
            2
        );
        let on_disk = npy::read_encodings(&fs::read(&file).unwrap()).unwrap();
        assert_eq!(on_disk, vec![enc(0.15), enc(0.16)]);
        assert_eq!(g.person_detail(&id("alip")).unwrap().rejected, 2);
        let history = g.history(&id("alip"));
        let last = history.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.by.as_str(), last.rejected),
            ("reject", "k", Some(2))
        );

        // Another process (a reopened gallery) sees them, and a change made there is reloaded.
        let (other, report) = Gallery::open(dir.path()).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(other.rejected_count(&id("alip")), 2);
        assert_eq!(other.best_match(&enc(0.1), 0.45).label, "budi");
        other.forget_rejections(&id("alip"), "k").unwrap();
        assert!(!file.exists());
        assert!(g.reload_if_changed().unwrap());
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "alip");
        assert_eq!(g.history(&id("alip")).last().unwrap().action, "unreject");

        // A rename carries them; a deletion removes them.
        g.reject(&id("alip"), &[enc(0.15)], "k").unwrap();
        g.rename(&id("alip"), &id("alif"), "k").unwrap();
        assert!(!file.exists());
        assert!(dir.path().join("rejected/alif.npy").exists());
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "budi");
        assert_eq!(g.rejected_count(&id("alif")), 1);
        let (reopened, _) = Gallery::open(dir.path()).unwrap();
        assert_eq!(reopened.rejected_count(&id("alif")), 1);
        g.remove(&id("alif"), "k").unwrap();
        assert!(!dir.path().join("rejected/alif.npy").exists());
        // Enrolled again under that id, they start with no rejection.
        g.append(&id("alif"), &[enc(0.0)], "k").unwrap();
        assert_eq!(g.rejected_count(&id("alif")), 0);
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "alif");
    }

    #[test]
    fn a_rename_cut_by_a_crash_moves_the_rejections_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        closed_with_a_rejection(dir.path());
        // Killed after the journal and the metadata's move, before the rejections and `.npy`.
        fs::write(
            dir.path().join("people/.rename.json"),
            br#"{"from":"alip","to":"alif"}"#,
        )
        .unwrap();
        fs::rename(
            dir.path().join("people/alip.json"),
            dir.path().join("people/alif.json"),
        )
        .unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert!(report.skipped.is_empty());
        assert_eq!(g.rejected_count(&id("alif")), 1);
        assert!(!dir.path().join("rejected/alip.npy").exists());
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "budi");
    }

    #[test]
    fn rejections_of_nobody_are_ignored_and_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        closed_with_a_rejection(dir.path());
        // Rejections of nobody (their person removed by a tool that does not know them), and a
        // damaged file of an enrolled person.
        let rejected = dir.path().join("rejected");
        fs::write(
            rejected.join("ghost.npy"),
            npy::write_encodings(&[enc(0.0)]),
        )
        .unwrap();
        fs::write(rejected.join("budi.npy"), b"garbage").unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert!(!rejected.join("ghost.npy").exists());
        let skipped: Vec<_> = report.skipped.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(skipped, [rejected.join("budi.npy")]);
        assert_eq!(g.rejected_count(&id("alip")), 1);
        assert_eq!(g.rejected_count(&id("budi")), 0);
        // A damaged file is not overwritten by a new rejection, and forgetting clears it.
        assert!(matches!(
            g.reject(&id("budi"), &[enc(0.3)], "k"),
            Err(GalleryError::Damaged { .. })
        ));
        assert_eq!(g.forget_rejections(&id("budi"), "k").unwrap(), 0);
        assert_eq!(g.reject(&id("budi"), &[enc(0.3)], "k").unwrap().rejected, 1);
    }
}
