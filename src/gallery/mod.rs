//! The gallery of enrolled faces, a store: `data/embeddings/<id>.npy` on disk (the original
//! service's files), one matrix in memory behind a `RwLock` for matching ([`matrix`]), the face
//! crops in `data/faces/<id>/` ([`crops`]), what is known of each sample in
//! `data/people/<id>.json` ([`samples`]), the faces that are *not* the person in
//! `data/rejected/<id>.npy` ([`rejected`]) and every change in `data/audit.jsonl` ([`audit`]).
//! The whole gallery as one file is [`archive`]. Replication between boxes
//! ([`crate::replication`]) is built on this store's public API: it reads each person's rows and
//! digest, is woken by local changes ([`Gallery::wait_local_change`]) and writes what it
//! receives through [`Gallery::put_received`] and [`Gallery::remove_received`] ([`received`]).
//!
//! Where each concern lives: this file (the type, opening and loading, the write lock, the
//! change counter and the journal of changes), [`people`] (a person's files, listings, removal,
//! rename), [`enroll`] (samples added and removed), [`crops`], [`rejected`], [`matrix`]
//! (matching), [`received`] (changes from another box).
//!
//! Contract for writers (enroll, delete, rename, import, received changes; this process or a
//! CLI beside it):
//! - one change at a time: an in-process mutex, then an exclusive lock on `data/.lock`;
//! - each file is replaced atomically (temp + rename + directory fsync), in an order chosen so
//!   that a kill at any point leaves a gallery that loads, with every change that was answered:
//!   enroll writes `.npy`, metadata, then crops; a sample's deletion removes its crop, then
//!   rewrites `.npy` and metadata; a person's deletion removes crops, metadata, rejections,
//!   then `.npy` (a half-deleted person is still enrolled and can be deleted again); a rename
//!   is written to a journal first and finished by the next open if it was cut;
//! - the in-memory matrix changes last, whole, under its write lock: a recognition sees a person
//!   before or after a change, never half of one;
//! - every change bumps `data/.generation` (another process reloads on seeing it move,
//!   [`Gallery::reload_if_changed`]) and appends one line to `data/audit.jsonl` (synced before
//!   the change is answered).

pub mod archive;
pub(crate) mod audit;
mod crops;
mod enroll;
pub mod label;
mod matrix;
pub mod npy;
mod people;
mod person_files;
pub(crate) mod received;
pub(crate) mod rejected;
mod samples;
mod student_id;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

use crate::engine::Encoding;
use crate::fsutil;
use crate::locks;
use audit::AuditLog;
pub use audit::Entry as AuditEntry;
pub use crops::CropPolicy;
pub use enroll::NewSample;
pub use label::{Label, LabelChange, LabelError};
pub use matrix::Match;
use matrix::Matrix;
pub use people::{Person, PersonDetail};
pub use person_files::PersonFiles;
pub use received::{encodings_digest, person_digest_of};
pub use rejected::Rejection;
pub use samples::Sample;
pub use student_id::StudentId;

/// The label of a face that matches nobody closely enough.
pub const UNKNOWN: &str = "Unknown";

/// What a gallery operation can fail with.
#[derive(Debug, Error)]
pub enum GalleryError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A file of the gallery cannot be read as what it should be; it is left as it is.
    #[error("{} is damaged ({reason}); move it away before enrolling this person again", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The person (this id) is not enrolled.
    #[error("{0} is not enrolled")]
    NotEnrolled(String),
    /// The person has no sample of that index.
    #[error("{student_id} has no sample {index} (samples 0 to {last})", last = samples.saturating_sub(1))]
    NoSuchSample {
        /// The person.
        student_id: String,
        /// The index asked for.
        index: usize,
        /// How many samples they have.
        samples: usize,
    },
    /// The id (a rename's target) is taken.
    #[error("{0} is already enrolled")]
    AlreadyEnrolled(String),
    /// A name or group that breaks the rules ([`label`]).
    #[error("{0}")]
    InvalidLabel(#[from] LabelError),
    /// Enrollment's duplicate check: the face is another person's.
    #[error("this face is already enrolled as {duplicate_of} (distance {distance:.3}); send force=true to enroll it anyway")]
    Duplicate {
        /// The person the face is closest to.
        duplicate_of: String,
        /// The distance to their closest sample.
        distance: f64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |source| GalleryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unix seconds now.
fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What loading `data/embeddings` found.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// `.npy` files loaded (people).
    pub files: usize,
    /// Encodings loaded (samples), all people together.
    pub encodings: usize,
    /// Files that were skipped, each with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Temp files of writes interrupted by a crash, removed.
    pub temps_removed: usize,
    /// Face crops removed by the retention settings.
    pub crops_removed: usize,
}

/// A person's rows as stored: encodings with their descriptions, in the `.npy` file's order.
pub type Rows = Vec<(Encoding, Sample)>;

/// Holds both write locks: this process's and the data folder's (other processes).
struct Writing<'a> {
    _in_process: MutexGuard<'a, ()>,
    _file: fs::File,
}

/// The gallery: the store of enrolled faces in one data folder (see the module docs for what
/// it guarantees). Shared between threads (`Arc<Gallery>`): reads take the matrix's read lock,
/// changes the write locks.
pub struct Gallery {
    data_dir: PathBuf,
    embeddings_dir: PathBuf,
    faces_dir: PathBuf,
    people_dir: PathBuf,
    rejected_dir: PathBuf,
    crops: CropPolicy,
    audit: AuditLog,
    matrix: RwLock<Matrix>,
    writer: Mutex<()>,
    /// The `data/.generation` the matrix reflects.
    seen_generation: AtomicU64,
    /// Local changes seen by this process (its own, and another process's found by a reload),
    /// counted for [`crate::replication`]: a wake-up, not a list. Changes received from another
    /// box are not counted ([`Gallery::record_quiet`]).
    local_changes: Mutex<u64>,
    local_changed: Condvar,
}

/// Seconds since the Unix epoch of a file's last change (0 when unknown).
fn modified_secs(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// Whether an error says this user may not write there (permissions, a read-only mount).
fn is_read_only(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem
    )
}

/// Removes `path` (a file) and syncs its folder; gone already is fine.
fn remove_file_synced(path: &Path) -> Result<(), GalleryError> {
    match fs::remove_file(path) {
        Ok(()) => sync_parent(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn sync_parent(path: &Path) -> Result<(), GalleryError> {
    match path.parent() {
        Some(dir) => fsutil::sync_dir(dir).map_err(io_err(dir)),
        None => Ok(()),
    }
}

/// Renames `from` to `to` when `from` exists and `to` does not (a step of a rename, which may
/// be done again after a crash).
fn move_if_there(from: &Path, to: &Path) -> Result<(), GalleryError> {
    if from.exists() && !to.exists() {
        fs::rename(from, to).map_err(io_err(from))?;
        sync_parent(to)?;
    } else if from.exists() {
        log::warn!(
            "{} and {} both exist; left as they are",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

impl Gallery {
    /// [`Gallery::open_with`] keeping every crop.
    pub fn open(data_dir: &Path) -> Result<(Gallery, LoadReport), GalleryError> {
        Gallery::open_with(data_dir, CropPolicy::default())
    }

    /// Opens (creating if needed) the gallery's folders under `data_dir`, finishes a rename cut
    /// by a crash, applies the crop policy and loads every `.npy` file. A bad file is reported in
    /// the [`LoadReport`] and skipped, never fatal.
    pub fn open_with(
        data_dir: &Path,
        crops: CropPolicy,
    ) -> Result<(Gallery, LoadReport), GalleryError> {
        let gallery = Gallery {
            data_dir: data_dir.to_path_buf(),
            embeddings_dir: data_dir.join("embeddings"),
            faces_dir: data_dir.join("faces"),
            people_dir: data_dir.join("people"),
            rejected_dir: data_dir.join("rejected"),
            crops,
            audit: AuditLog::new(data_dir),
            matrix: RwLock::new(Matrix::default()),
            writer: Mutex::new(()),
            seen_generation: AtomicU64::new(0),
            local_changes: Mutex::new(0),
            local_changed: Condvar::new(),
        };
        for dir in [&gallery.embeddings_dir, &gallery.faces_dir] {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut report = LoadReport::default();
        // A data folder this user may only read (`recognize` run by someone else than the
        // service's user) still loads, without the start-up maintenance.
        let writing = match gallery.writing() {
            Ok(writing) => Some(writing),
            Err(GalleryError::Io { path, source }) if is_read_only(&source) => {
                log::warn!(
                    "{}: {source}; the gallery is loaded read-only (no clean-up of interrupted \
                     writes, no crop retention)",
                    path.display()
                );
                None
            }
            Err(e) => return Err(e),
        };
        if writing.is_some() {
            gallery.finish_rename()?;
            let crop_dirs = gallery.crop_dirs()?;
            let dirs = [
                gallery.embeddings_dir.clone(),
                gallery.people_dir.clone(),
                gallery.rejected_dir.clone(),
            ];
            for dir in dirs.iter().chain(&crop_dirs) {
                report.temps_removed += fsutil::remove_stale_temps(dir, fsutil::STALE_TEMP_AGE);
            }
            // Uploaded archives being imported are unlinked files; a name is left only by a
            // kill in the instant after their creation.
            report.temps_removed +=
                fsutil::remove_unlinked_leftovers(&gallery.data_dir, archive::SPOOL_NAME);
            gallery.remove_orphan_rejections();
            report.crops_removed = gallery.apply_crop_policy(&crop_dirs);
        }
        let (matrix, loaded) = gallery.load_all()?;
        report.files = loaded.files;
        report.encodings = loaded.encodings;
        report.skipped = loaded.skipped;
        *locks::write(&gallery.matrix) = matrix;
        gallery
            .seen_generation
            .store(gallery.generation(), Ordering::Relaxed);
        drop(writing);
        if report.temps_removed > 0 {
            log::info!(
                "removed {} temp file(s) left by interrupted writes",
                report.temps_removed
            );
        }
        if report.crops_removed > 0 {
            log::info!(
                "removed {} face crop(s) (FACE_CROPS / FACE_CROPS_MAX_AGE_DAYS)",
                report.crops_removed
            );
        }
        Ok((gallery, report))
    }

    /// Every person's rows as on disk: the matrix and what was found (a skipped file is logged
    /// here). Callers hold the write lock, so no change is half seen.
    fn load_all(&self) -> Result<(Matrix, LoadReport), GalleryError> {
        let mut loaded = LoadReport::default();
        let mut entries: Vec<PathBuf> = fs::read_dir(&self.embeddings_dir)
            .map_err(io_err(&self.embeddings_dir))?
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
                    loaded.skipped.push((path, format!("file name: {reason}")));
                    continue;
                }
                None => continue,
            };
            match self.read_person(&id) {
                Ok(Some(rows)) => {
                    loaded.files += 1;
                    loaded.encodings += rows.len();
                    matrix.set_labelled(id.as_str(), &rows, &self.read_label(&id));
                }
                Ok(None) => {}
                Err(GalleryError::Damaged { reason, .. }) => loaded.skipped.push((path, reason)),
                Err(e) => loaded.skipped.push((path, e.to_string())),
            }
        }
        self.load_rejected(&mut matrix, &mut loaded.skipped);
        for (path, reason) in &loaded.skipped {
            log::warn!("skipping {}: {reason}", path.display());
        }
        Ok((matrix, loaded))
    }

    /// The change counter in `data/.generation`, bumped by every change of any process.
    fn generation(&self) -> u64 {
        fs::read_to_string(self.data_dir.join(".generation"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Counts a change made under the write lock. When the counter had moved since this
    /// gallery last looked, another process changed the gallery too, and the next
    /// [`Gallery::reload_if_changed`] reloads.
    fn bump_generation(&self) {
        let current = self.generation();
        let path = self.data_dir.join(".generation");
        if let Err(e) = fsutil::atomic_write(&path, format!("{}\n", current + 1).as_bytes()) {
            log::warn!("{}: {e}", path.display());
            return;
        }
        let _ = self.seen_generation.compare_exchange(
            current,
            current + 1,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Reloads every person from disk when another process (a CLI command beside the service)
    /// changed the gallery since this one last looked; returns whether it did. Cheap when
    /// nothing changed: one small file read.
    pub fn reload_if_changed(&self) -> Result<bool, GalleryError> {
        if self.generation() == self.seen_generation.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let _writing = self.writing()?;
        let generation = self.generation();
        let (matrix, _) = self.load_all()?;
        *locks::write(&self.matrix) = matrix;
        self.seen_generation.store(generation, Ordering::Relaxed);
        // Another process's change is a local change for replication, which compares.
        self.notify_local_change();
        Ok(true)
    }

    /// How many local changes this process has seen (see [`Gallery::wait_local_change`]).
    pub fn local_change_count(&self) -> u64 {
        *locks::lock(&self.local_changes)
    }

    /// Waits until the count of local changes is no longer `seen`, or `timeout`; returns the
    /// count. Counted: every change made through this gallery (enroll, append, replace, remove,
    /// remove_sample, rename, import, reject, crop sweeps excepted) and every reload that found
    /// another process's changes; not counted: changes received from another box
    /// ([`received`]).
    pub fn wait_local_change(&self, seen: u64, timeout: Duration) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        let mut count = locks::lock(&self.local_changes);
        while *count == seen {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            count = locks::wait_timeout(&self.local_changed, count, deadline - now);
        }
        *count
    }

    fn notify_local_change(&self) {
        *locks::lock(&self.local_changes) += 1;
        self.local_changed.notify_all();
    }

    /// The data folder this gallery lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn writing(&self) -> Result<Writing<'_>, GalleryError> {
        let in_process = locks::lock(&self.writer);
        // Descriptions and the rename journal live here (new in this release's data folders).
        fs::create_dir_all(&self.people_dir).map_err(io_err(&self.people_dir))?;
        let path = self.data_dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        // Released when the file is closed (the guard dropped, or the process killed).
        file.lock().map_err(io_err(&path))?;
        Ok(Writing {
            _in_process: in_process,
            _file: file,
        })
    }

    fn npy_path(&self, id: &StudentId) -> PathBuf {
        self.embeddings_dir.join(format!("{id}.npy"))
    }

    fn meta_path(&self, id: &StudentId) -> PathBuf {
        self.people_dir.join(format!("{id}.json"))
    }

    /// Ends a change (callers hold the write lock): counted for other processes
    /// ([`Gallery::reload_if_changed`]), then appended to the audit log. The change is made by
    /// then, so a log that cannot be written (a full disk) is an error in the service's log, not
    /// a failure of the change.
    fn record(&self, entry: audit::Entry) {
        self.record_quiet(entry);
        self.notify_local_change();
    }

    /// [`Gallery::record`] without counting a local change: a change received from another box,
    /// which replication must not publish again.
    fn record_quiet(&self, entry: audit::Entry) {
        self.bump_generation();
        if let Err(e) = self.audit.append(&entry) {
            log::error!(
                "{}: {e}; not logged: {} of {} by {}",
                self.audit.path().display(),
                entry.action,
                entry.student_id,
                entry.by
            );
        }
    }

    fn entry(action: &str, id: &StudentId, samples: usize, by: &str) -> audit::Entry {
        audit::Entry {
            time: now_secs(),
            action: action.into(),
            student_id: id.to_string(),
            samples,
            by: by.into(),
            from: None,
            index: None,
            rejected: None,
            label: None,
        }
    }
}
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An encoding that differs from another by `v` (in its first value): distances are known.
    pub(crate) fn enc(v: f64) -> Encoding {
        let mut e = [0.0; 128];
        e[0] = v;
        e
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
            g.append(&broken, &[enc(0.0)], "test"),
            Err(GalleryError::Damaged { .. })
        ));
        assert_eq!(fs::read(emb.join("broken.npy")).unwrap(), b"garbage");
    }

    /// A sample with a crop (`jpeg`) and a quality, its encoding [`enc`]`(v)`.
    pub(crate) fn with_crop(v: f64, jpeg: &[u8]) -> NewSample {
        NewSample::new(enc(v))
            .with_crop(jpeg.to_vec())
            .with_quality(serde_json::json!({"face_px": 100}))
    }
}
