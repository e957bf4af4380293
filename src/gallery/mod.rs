//! The gallery of enrolled faces: `data/embeddings/<id>.npy` on disk (the original service's
//! files), one matrix in memory behind a `RwLock` for matching, and the face crops in
//! `data/faces/<id>/`.

pub mod npy;
mod student_id;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use crate::engine::{distance, Encoding};
use crate::fsutil;
pub use student_id::StudentId;

/// The label of a face that matches nobody closely enough.
pub const UNKNOWN: &str = "Unknown";

#[derive(Debug, Error)]
pub enum GalleryError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is damaged ({reason}); move it away before enrolling this person again", path.display())]
    Damaged { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |source| GalleryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The best match for one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub label: String,
    /// Distance to the closest enrolled encoding; `None` when nobody is enrolled.
    pub distance: Option<f64>,
}

impl Match {
    pub fn is_known(&self) -> bool {
        self.label != UNKNOWN
    }
}

/// What loading `data/embeddings` found.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub files: usize,
    pub encodings: usize,
    /// Files that were skipped, each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Temp files of writes interrupted by a crash, removed.
    pub temps_removed: usize,
}

#[derive(Default)]
struct Matrix {
    labels: Vec<String>,
    index: HashMap<String, u32>,
    /// One row per enrolled face, with the index of its label.
    encodings: Vec<Encoding>,
    owners: Vec<u32>,
}

impl Matrix {
    fn label_index(&mut self, label: &str) -> u32 {
        if let Some(i) = self.index.get(label) {
            return *i;
        }
        let i = self.labels.len() as u32;
        self.labels.push(label.to_string());
        self.index.insert(label.to_string(), i);
        i
    }

    fn push(&mut self, label: &str, rows: &[Encoding]) {
        let i = self.label_index(label);
        self.encodings.extend_from_slice(rows);
        self.owners.extend(std::iter::repeat_n(i, rows.len()));
    }

    fn remove(&mut self, label: &str) {
        if let Some(&i) = self.index.get(label) {
            (self.encodings, self.owners) = self
                .encodings
                .drain(..)
                .zip(self.owners.drain(..))
                .filter(|(_, o)| *o != i)
                .unzip();
        }
    }
}

pub struct Gallery {
    embeddings_dir: PathBuf,
    faces_dir: PathBuf,
    matrix: RwLock<Matrix>,
    /// Serializes read-modify-write of `.npy` files so concurrent enrolls keep every sample.
    writer: Mutex<()>,
}

impl Gallery {
    /// Opens (creating if needed) `data_dir/embeddings` and `data_dir/faces` and loads every
    /// `.npy` file. A bad file is reported in the [`LoadReport`] and skipped, never fatal.
    pub fn open(data_dir: &Path) -> Result<(Gallery, LoadReport), GalleryError> {
        let embeddings_dir = data_dir.join("embeddings");
        let faces_dir = data_dir.join("faces");
        let mut report = LoadReport::default();
        for dir in [&embeddings_dir, &faces_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        // Face crops are written in one folder per person.
        let crop_dirs = fs::read_dir(&faces_dir)
            .map_err(io_err(&faces_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir());
        for dir in std::iter::once(embeddings_dir.clone()).chain(crop_dirs) {
            report.temps_removed += fsutil::remove_stale_temps(&dir, fsutil::STALE_TEMP_AGE);
        }
        let mut entries: Vec<PathBuf> = fs::read_dir(&embeddings_dir)
            .map_err(io_err(&embeddings_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .collect();
        entries.sort();
        let mut matrix = Matrix::default();
        for path in entries {
            let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
            let id = match stem.as_deref().map(StudentId::parse) {
                Some(Ok(id)) => id,
                // Temp files of an interrupted write start with '.', and are not people.
                _ if stem.as_deref().is_some_and(|s| s.starts_with('.')) => continue,
                Some(Err(reason)) => {
                    report.skipped.push((path, format!("file name: {reason}")));
                    continue;
                }
                None => continue,
            };
            match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| npy::read_encodings(&b))
            {
                Ok(rows) => {
                    report.files += 1;
                    report.encodings += rows.len();
                    matrix.push(id.as_str(), &rows);
                }
                Err(reason) => report.skipped.push((path, reason)),
            }
        }
        for (path, reason) in &report.skipped {
            log::warn!("skipping {}: {reason}", path.display());
        }
        if report.temps_removed > 0 {
            log::info!(
                "removed {} temp file(s) left by interrupted writes",
                report.temps_removed
            );
        }
        Ok((
            Gallery {
                embeddings_dir,
                faces_dir,
                matrix: RwLock::new(matrix),
                writer: Mutex::new(()),
            },
            report,
        ))
    }

    fn npy_path(&self, id: &StudentId) -> PathBuf {
        self.embeddings_dir.join(format!("{id}.npy"))
    }

    /// The closest enrolled face: its label when within `tolerance`, else `Unknown`.
    pub fn best_match(&self, encoding: &Encoding, tolerance: f64) -> Match {
        let m = self.matrix.read().unwrap_or_else(|p| p.into_inner());
        let best = m
            .encodings
            .iter()
            .zip(&m.owners)
            .map(|(e, o)| (distance(e, encoding), *o))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((d, owner)) if d <= tolerance => Match {
                label: m.labels[owner as usize].clone(),
                distance: Some(d),
            },
            Some((d, _)) => Match {
                label: UNKNOWN.into(),
                distance: Some(d),
            },
            None => Match {
                label: UNKNOWN.into(),
                distance: None,
            },
        }
    }

    /// Adds `rows` to the person's file (created if new) and to the in-memory matrix.
    /// Returns how many encodings the person has now.
    pub fn append(&self, id: &StudentId, rows: &[Encoding]) -> Result<usize, GalleryError> {
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.npy_path(id);
        let mut all = match fs::read(&path) {
            Ok(bytes) => npy::read_encodings(&bytes).map_err(|reason| GalleryError::Damaged {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&path)(e)),
        };
        all.extend_from_slice(rows);
        fsutil::atomic_write(&path, &npy::write_encodings(&all)).map_err(io_err(&path))?;
        self.matrix
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.as_str(), rows);
        Ok(all.len())
    }

    /// Replaces everything enrolled for the person by `rows`.
    pub fn replace(&self, id: &StudentId, rows: &[Encoding]) -> Result<(), GalleryError> {
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.npy_path(id);
        fsutil::atomic_write(&path, &npy::write_encodings(rows)).map_err(io_err(&path))?;
        let mut m = self.matrix.write().unwrap_or_else(|p| p.into_inner());
        m.remove(id.as_str());
        m.push(id.as_str(), rows);
        Ok(())
    }

    /// Saves a face crop as `data/faces/<id>/<unix-ms>-<n>.jpg`; returns its path.
    pub fn save_crop(&self, id: &StudentId, jpeg: &[u8]) -> Result<PathBuf, GalleryError> {
        let dir = self.faces_dir.join(id.as_str());
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        for n in 0u32.. {
            let path = dir.join(format!("{ms}-{n}.jpg"));
            if !path.exists() {
                fsutil::atomic_write(&path, jpeg).map_err(io_err(&path))?;
                return Ok(path);
            }
        }
        unreachable!("u32 range of crop names exhausted")
    }

    /// (encodings, people) currently enrolled.
    pub fn counts(&self) -> (usize, usize) {
        let m = self.matrix.read().unwrap_or_else(|p| p.into_inner());
        let mut people = vec![false; m.labels.len()];
        for o in &m.owners {
            people[*o as usize] = true;
        }
        (m.encodings.len(), people.iter().filter(|p| **p).count())
    }

    /// Enrolled people and their number of encodings, sorted by id.
    pub fn people(&self) -> Vec<(String, usize)> {
        let m = self.matrix.read().unwrap_or_else(|p| p.into_inner());
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
}

/// One enrolled person, as `GET /people` lists them. Times are Unix seconds: `enrolled_at` the
/// oldest face crop kept (or the encodings file's time when none is), `updated_at` the
/// encodings file's last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub student_id: String,
    pub samples: usize,
    pub enrolled_at: u64,
    pub updated_at: u64,
}

/// Seconds since the Unix epoch of a file's last change (0 when unknown).
fn modified_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl Gallery {
    fn crops_dir(&self, id: &StudentId) -> PathBuf {
        self.faces_dir.join(id.as_str())
    }

    fn describe(&self, id: &str, samples: usize) -> Person {
        let npy = self.embeddings_dir.join(format!("{id}.npy"));
        let updated_at = modified_secs(&npy);
        // Crops are named <unix-ms>-<n>.jpg (save_crop).
        let oldest_crop = fs::read_dir(self.faces_dir.join(id))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.split_once('-')?.0.parse::<u64>().ok()
            })
            .min()
            .map(|ms| ms / 1000);
        Person {
            student_id: id.to_string(),
            samples,
            enrolled_at: oldest_crop.map_or(updated_at, |t| t.min(updated_at)),
            updated_at,
        }
    }

    /// Enrolled people whose id starts with `prefix`, sorted by id: how many match in all, and
    /// at most `limit` of them from `offset` on.
    pub fn people_page(&self, prefix: &str, offset: usize, limit: usize) -> (usize, Vec<Person>) {
        let matching: Vec<(String, usize)> = self
            .people()
            .into_iter()
            .filter(|(id, _)| id.starts_with(prefix))
            .collect();
        let page = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(id, n)| self.describe(id, *n))
            .collect();
        (matching.len(), page)
    }

    /// The person, or `None` when not enrolled.
    pub fn person(&self, id: &StudentId) -> Option<Person> {
        let samples = {
            let m = self.matrix.read().unwrap_or_else(|p| p.into_inner());
            let owner = m.labels.iter().position(|l| l == id.as_str())?;
            m.owners.iter().filter(|o| **o as usize == owner).count()
        };
        (samples > 0).then(|| self.describe(id.as_str(), samples))
    }

    /// Removes everything of the person: the face crops, then the encodings file, then the
    /// encodings from matching. Returns how many samples they had, `None` when not enrolled.
    /// Crops go first so that an interrupted removal leaves a person who is still enrolled
    /// (and can be removed again), never crops of nobody.
    pub fn remove(&self, id: &StudentId) -> Result<Option<usize>, GalleryError> {
        let _writing = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(person) = self.person(id) else {
            return Ok(None);
        };
        let crops = self.crops_dir(id);
        match fs::remove_dir_all(&crops) {
            Ok(()) => fsutil::sync_dir(&self.faces_dir).map_err(io_err(&self.faces_dir))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&crops)(e)),
        }
        let npy = self.npy_path(id);
        match fs::remove_file(&npy) {
            Ok(()) => {
                fsutil::sync_dir(&self.embeddings_dir).map_err(io_err(&self.embeddings_dir))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&npy)(e)),
        }
        self.matrix
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id.as_str());
        Ok(Some(person.samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: f64) -> Encoding {
        let mut e = [0.0; 128];
        e[0] = v;
        e
    }

    #[test]
    fn people_are_listed_shown_and_removed_with_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.append(&id("alip"), &[enc(0.1), enc(0.2)]).unwrap();
        g.append(&id("alice"), &[enc(0.5)]).unwrap();
        g.append(&id("budi"), &[enc(0.9)]).unwrap();
        g.save_crop(&id("alip"), b"jpeg").unwrap();
        let (total, page) = g.people_page("al", 0, 10);
        assert_eq!(total, 2);
        let ids: Vec<_> = page.iter().map(|p| p.student_id.as_str()).collect();
        assert_eq!(ids, ["alice", "alip"]);
        assert_eq!(g.people_page("", 1, 1).1[0].student_id, "alip");
        assert_eq!(g.people_page("", 5, 10), (3, vec![]));
        let alip = g.person(&id("alip")).unwrap();
        assert_eq!(alip.samples, 2);
        assert!(alip.enrolled_at > 0 && alip.enrolled_at <= alip.updated_at);

        assert_eq!(g.remove(&id("alip")).unwrap(), Some(2));
        assert_eq!(g.person(&id("alip")), None);
        assert_eq!(g.remove(&id("alip")).unwrap(), None);
        assert_eq!(g.best_match(&enc(0.1), 0.05).label, UNKNOWN);
        assert_eq!(g.counts(), (2, 2));
        // Nothing of theirs is left on disk, and a reload agrees.
        assert!(!dir.path().join("faces/alip").exists());
        assert!(!dir.path().join("embeddings/alip.npy").exists());
        let (reloaded, _) = Gallery::open(dir.path()).unwrap();
        assert_eq!(reloaded.people(), [("alice".into(), 1), ("budi".into(), 1)]);
    }

    #[test]
    fn append_keeps_earlier_rows_and_matches_the_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.files, 0);
        assert_eq!(g.best_match(&enc(0.0), 0.45).distance, None);
        let alip = StudentId::parse("alip").unwrap();
        let yoga = StudentId::parse("yoga").unwrap();
        assert_eq!(g.append(&alip, &[enc(0.0)]).unwrap(), 1);
        assert_eq!(g.append(&alip, &[enc(0.1)]).unwrap(), 2);
        g.append(&yoga, &[enc(1.0)]).unwrap();
        assert_eq!(g.counts(), (3, 2));

        let m = g.best_match(&enc(0.9), 0.45);
        assert_eq!(
            (m.label.as_str(), m.distance.map(|d| (d * 1e6).round())),
            ("yoga", Some(100000.0))
        );
        let m = g.best_match(&enc(0.5), 0.3);
        assert_eq!(m.label, UNKNOWN);
        // Exactly at the tolerance is a match.
        assert_eq!(g.best_match(&enc(0.55), 0.45).label, "yoga");

        // Reopening reads back both files, rows in order.
        let (g2, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!((report.files, report.encodings), (2, 3));
        assert_eq!(g2.people(), vec![("alip".into(), 2), ("yoga".into(), 1)]);
        let rows = npy::read_encodings(&fs::read(dir.path().join("embeddings/alip.npy")).unwrap())
            .unwrap();
        assert_eq!(rows, vec![enc(0.0), enc(0.1)]);
    }

    #[test]
    fn temp_files_of_a_killed_enroll_are_removed_once_stale() {
        let dir = tempfile::tempdir().unwrap();
        let emb = dir.path().join("embeddings");
        fs::create_dir_all(&emb).unwrap();
        let crops = dir.path().join("faces/alip");
        fs::create_dir_all(&crops).unwrap();
        let stale = [
            emb.join(".alip.npy.tmp-7-0"),
            crops.join(".1700000000000-0.jpg.tmp-7-1"),
        ];
        let fresh = emb.join(".alip.npy.tmp-8-0");
        let long_ago = SystemTime::now() - fsutil::STALE_TEMP_AGE * 2;
        for p in &stale {
            fs::write(p, b"half").unwrap();
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        fs::write(&fresh, b"half").unwrap();
        let (_, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.temps_removed, 2);
        assert!(stale.iter().all(|p| !p.exists()));
        // Possibly another process's write in progress.
        assert!(fresh.exists());
    }

    #[test]
    fn bad_files_are_skipped_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let emb = dir.path().join("embeddings");
        fs::create_dir_all(&emb).unwrap();
        fs::write(emb.join("broken.npy"), b"garbage").unwrap();
        fs::write(emb.join("bad name.npy"), npy::write_encodings(&[enc(1.0)])).unwrap();
        fs::write(emb.join(".alip.npy.tmp-1-2"), b"half").unwrap();
        fs::write(emb.join("ok.npy"), npy::write_encodings(&[enc(1.0)])).unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.files, 1);
        let skipped: Vec<String> = report
            .skipped
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(skipped, vec!["bad name.npy", "broken.npy"]);
        assert_eq!(g.counts(), (1, 1));

        // Enrolling onto a damaged file refuses rather than overwrite what is there.
        let broken = StudentId::parse("broken").unwrap();
        assert!(matches!(
            g.append(&broken, &[enc(0.0)]),
            Err(GalleryError::Damaged { .. })
        ));
        assert_eq!(fs::read(emb.join("broken.npy")).unwrap(), b"garbage");
    }

    #[test]
    fn replace_drops_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let a = StudentId::parse("a").unwrap();
        let b = StudentId::parse("b").unwrap();
        g.append(&a, &[enc(0.0), enc(0.1)]).unwrap();
        g.append(&b, &[enc(5.0)]).unwrap();
        g.replace(&a, &[enc(2.0)]).unwrap();
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
                        g.append(id, &[enc((t * 10 + i) as f64)]).unwrap();
                    }
                });
            }
        });
        let rows = npy::read_encodings(&fs::read(dir.path().join("embeddings/same.npy")).unwrap())
            .unwrap();
        assert_eq!(rows.len(), 40);
        assert_eq!(g.counts(), (40, 1));
    }
}
