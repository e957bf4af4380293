//! The gallery of enrolled faces: `data/embeddings/<id>.npy` on disk (the original service's
//! files), one matrix in memory behind a `RwLock` for matching, the face crops in
//! `data/faces/<id>/`, what is known of each sample in `data/people/<id>.json`
//! ([`samples`]), the faces that are *not* the person in `data/rejected/<id>.npy` ([`rejected`])
//! and every change in `data/audit.jsonl` ([`audit`]). What gallery sync between boxes knows
//! (versions, tombstones) is in `data/gallery-sync.json` ([`sync`]).
//!
//! Contract for writers (enroll, delete, rename, import; this process or a CLI beside it):
//! - one change at a time: an in-process mutex, then an exclusive lock on `data/.lock`;
//! - each file is replaced atomically (temp + rename + directory fsync), in an order chosen so
//!   that a kill at any point leaves a gallery that loads, with every change that was answered:
//!   enroll writes `.npy`, metadata, then crops; a sample's deletion removes its crop, then
//!   rewrites `.npy` and metadata; a person's deletion removes crops, metadata, rejections,
//!   then `.npy` (a half-deleted person is still enrolled and can be deleted again); a rename
//!   is written to a journal first and finished by the next open if it was cut;
//! - the in-memory matrix changes last, whole, under its write lock: a recognition sees a person
//!   before or after a change, never half of one.

pub mod archive;
pub mod audit;
pub mod npy;
pub mod rejected;
pub mod samples;
mod student_id;
pub mod sync;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::engine::{distance, Encoding};
use crate::fsutil;
use crate::locks;
use audit::AuditLog;
pub use audit::Entry as AuditEntry;
pub use rejected::Rejection;
pub use samples::Sample;
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
    #[error("{0} is not enrolled")]
    NotEnrolled(String),
    #[error("{student_id} has no sample {index} (samples 0 to {last})", last = samples.saturating_sub(1))]
    NoSuchSample {
        student_id: String,
        index: usize,
        samples: usize,
    },
    #[error("{0} is already enrolled")]
    AlreadyEnrolled(String),
    /// Enrollment's duplicate check: the face is another person's.
    #[error("this face is already enrolled as {duplicate_of} (distance {distance:.3}); send force=true to enroll it anyway")]
    Duplicate { duplicate_of: String, distance: f64 },
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

/// The best match for one face.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    pub label: String,
    /// Distance to the closest enrolled encoding (of the people not left out by their
    /// rejections); `None` when there is none.
    pub distance: Option<f64>,
    /// The closest person other than the closest one, with their distance (none with fewer than
    /// two people enrolled).
    #[serde(skip)]
    pub runner_up: Option<(String, f64)>,
    /// Within the tolerance, but not ahead of the runner-up by the margin: the two candidates
    /// (and the label is `Unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<[String; 2]>,
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
    /// Face crops removed by the retention settings.
    pub crops_removed: usize,
}

/// What the gallery keeps of the photos it enrolls (`FACE_CROPS`, `FACE_CROPS_MAX_AGE_DAYS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CropPolicy {
    keep: bool,
    max_age_days: Option<u32>,
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

    pub fn keeps_crops(&self) -> bool {
        self.keep
    }

    fn max_age(&self) -> Option<Duration> {
        self.max_age_days
            .map(|d| Duration::from_secs(u64::from(d) * 86_400))
    }
}

impl Default for CropPolicy {
    fn default() -> Self {
        CropPolicy::keep()
    }
}

/// A face to enroll: its encoding, and optionally its crop (JPEG) and measured quality.
#[derive(Debug, Clone)]
pub struct NewSample {
    encoding: Encoding,
    crop: Option<Vec<u8>>,
    quality: Option<Value>,
}

impl NewSample {
    pub fn new(encoding: Encoding) -> NewSample {
        NewSample {
            encoding,
            crop: None,
            quality: None,
        }
    }

    pub fn with_crop(mut self, jpeg: Vec<u8>) -> NewSample {
        self.crop = Some(jpeg);
        self
    }

    pub fn with_quality(mut self, quality: Value) -> NewSample {
        self.quality = Some(quality);
        self
    }

    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }
}

#[derive(Default)]
struct Matrix {
    labels: Vec<String>,
    index: HashMap<String, u32>,
    /// One row per enrolled face, with the index of its label and its description.
    encodings: Vec<Encoding>,
    owners: Vec<u32>,
    samples: Vec<Sample>,
    /// Negative samples ([`rejected`]): one row per rejected face, with the index of the label
    /// it must not be matched to. Empty in most galleries, and matching then never looks here.
    rejected: Vec<Encoding>,
    rejected_owners: Vec<u32>,
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

    /// The person's rows become `rows` (none: they are gone, and their rejections with them:
    /// rejections never outlive their person, so a new person under the id starts clean).
    fn set_person(&mut self, label: &str, rows: &[(Encoding, Sample)]) {
        if let Some(&i) = self.index.get(label) {
            without_owner(&mut self.encodings, &self.owners, i);
            without_owner(&mut self.samples, &self.owners, i);
            self.owners.retain(|o| *o != i);
        }
        if rows.is_empty() {
            self.set_rejected(label, &[]);
            return;
        }
        let i = self.label_index(label);
        for (encoding, sample) in rows {
            self.encodings.push(*encoding);
            self.owners.push(i);
            self.samples.push(sample.clone());
        }
    }

    /// The person's rejected encodings become `rejected` (none: forgotten).
    fn set_rejected(&mut self, label: &str, rejected: &[Encoding]) {
        if let Some(&i) = self.index.get(label) {
            without_owner(&mut self.rejected, &self.rejected_owners, i);
            self.rejected_owners.retain(|o| *o != i);
        }
        if rejected.is_empty() {
            return;
        }
        let i = self.label_index(label);
        self.rejected.extend_from_slice(rejected);
        self.rejected_owners
            .extend(std::iter::repeat_n(i, rejected.len()));
    }

    /// [`Top2`] of the rows for `encoding`, leaving out the people whose rejections it does not
    /// lead by `margin`: a pass over the rejected rows (the closest per person), then one over
    /// the rows, where people with rejections keep their closest distance aside until the end.
    fn top2_with_rejections(&self, encoding: &Encoding, margin: f64) -> Top2 {
        let mut rejected = vec![f64::INFINITY; self.labels.len()];
        for (e, &owner) in self.rejected.iter().zip(&self.rejected_owners) {
            let d = distance(e, encoding);
            let slot = &mut rejected[owner as usize];
            *slot = slot.min(d);
        }
        let mut own = vec![f64::INFINITY; self.labels.len()];
        let mut top = Top2::default();
        for (e, &owner) in self.encodings.iter().zip(&self.owners) {
            let d = distance(e, encoding);
            if rejected[owner as usize].is_finite() {
                let slot = &mut own[owner as usize];
                *slot = slot.min(d);
            } else {
                top.offer(d, owner);
            }
        }
        for (owner, (&d, &r)) in own.iter().zip(&rejected).enumerate() {
            // Excluded unless the person leads their closest rejection by the margin.
            if d.is_finite() && r - d >= margin {
                top.offer(d, owner as u32);
            }
        }
        top
    }

    /// How many rejected encodings the person has.
    fn rejected_count(&self, label: &str) -> usize {
        self.index.get(label).map_or(0, |i| {
            self.rejected_owners.iter().filter(|o| *o == i).count()
        })
    }

    /// The person's rows, in order.
    fn rows_of(&self, label: &str) -> Vec<usize> {
        let Some(&i) = self.index.get(label) else {
            return Vec::new();
        };
        (0..self.owners.len())
            .filter(|r| self.owners[*r] == i)
            .collect()
    }
}

/// Keeps the entries of `column` (beside `owners`, one each) whose owner is not `i`, in order.
fn without_owner<T>(column: &mut Vec<T>, owners: &[u32], i: u32) {
    // `retain` visits every entry once, in order: the owners are walked alongside.
    let mut owner = owners.iter();
    column.retain(|_| owner.next() != Some(&i));
}

/// The closest row and the closest row of anyone else, offered one distance at a time.
#[derive(Default)]
struct Top2 {
    best: Option<(f64, u32)>,
    other: Option<(f64, u32)>,
}

impl Top2 {
    #[inline]
    fn offer(&mut self, d: f64, owner: u32) {
        match self.best {
            Some((d1, o1)) if d >= d1 => {
                if owner != o1 && self.other.is_none_or(|(d2, _)| d < d2) {
                    self.other = Some((d, owner));
                }
            }
            Some((_, o1)) => {
                if owner != o1 {
                    self.other = self.best;
                }
                self.best = Some((d, owner));
            }
            None => self.best = Some((d, owner)),
        }
    }
}

/// One enrolled person, as `GET /people` lists them. Times are Unix seconds: `enrolled_at` the
/// oldest sample's, `updated_at` the encodings file's last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    pub student_id: String,
    pub samples: usize,
    pub enrolled_at: u64,
    pub updated_at: u64,
}

/// A person with their samples in order (index = row of the `.npy` file).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonDetail {
    pub person: Person,
    pub samples: Vec<Sample>,
    /// How many faces were rejected as not this person ([`Gallery::reject`]).
    pub rejected: usize,
}

impl PersonDetail {
    /// The answer of `GET /people/{id}` (and `people show`): each sample with its index, time,
    /// crop URL (`null` when no crop is kept) and quality, how many faces were rejected as not
    /// them, then `history`.
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
            "samples": samples,
            "rejected": self.rejected,
            "enrolled_at": self.person.enrolled_at,
            "updated_at": self.person.updated_at,
            "history": history,
        })
    }
}

/// A person's rows as stored: encodings with their descriptions.
type Rows = Vec<(Encoding, Sample)>;

/// The rename being done, written before its first step (`data/people/.rename.json`).
#[derive(Debug, Serialize, Deserialize)]
struct RenameJournal {
    from: String,
    to: String,
}

/// What a write does to the person's samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Replace,
}

/// Holds both write locks: this process's and the data folder's (other processes).
struct Writing<'a> {
    _in_process: MutexGuard<'a, ()>,
    _file: fs::File,
}

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
    /// counted for [`sync`]: a wake-up, not a list. Changes applied from the broker are not
    /// counted ([`Gallery::record_quiet`]).
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

    /// The per-person crop folders under `faces/`.
    fn crop_dirs(&self) -> Result<Vec<PathBuf>, GalleryError> {
        Ok(fs::read_dir(&self.faces_dir)
            .map_err(io_err(&self.faces_dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect())
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
                    matrix.set_person(id.as_str(), &rows);
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
        // Another process's change is a local change for the sync, which compares.
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
    /// another process's changes; not counted: changes applied by [`sync`].
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

    pub fn crop_policy(&self) -> CropPolicy {
        self.crops
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

    fn crops_dir(&self, id: &StudentId) -> PathBuf {
        self.faces_dir.join(id.as_str())
    }

    /// [`Gallery::read_person`], [`GalleryError::NotEnrolled`] when they are not.
    fn enrolled_rows(&self, id: &StudentId) -> Result<Rows, GalleryError> {
        self.read_person(id)?
            .ok_or_else(|| GalleryError::NotEnrolled(id.to_string()))
    }

    /// The person's rows as on disk, described ([`samples::reconcile`]); `None` when not
    /// enrolled.
    fn read_person(&self, id: &StudentId) -> Result<Option<Rows>, GalleryError> {
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

    /// Writes the person's `.npy` then metadata (both atomically); `rows` must not be empty.
    fn write_person(
        &self,
        id: &StudentId,
        rows: &[(Encoding, Sample)],
    ) -> Result<(), GalleryError> {
        let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
        let path = self.npy_path(id);
        fsutil::atomic_write(&path, &npy::write_encodings(&encodings)).map_err(io_err(&path))?;
        let meta = self.meta_path(id);
        let file = samples::SamplesFile {
            samples: rows.iter().map(|(_, s)| s.clone()).collect(),
        };
        let bytes = serde_json::to_vec(&file).map_err(|e| GalleryError::Io {
            path: meta.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::atomic_write(&meta, &bytes).map_err(io_err(&meta))
    }

    /// A free crop name in `dir` for now: `<unix-ms>-<n>.jpg`.
    fn crop_name(dir: &Path, taken: &[String]) -> String {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        (0u64..)
            .map(|n| format!("{ms}-{n}.jpg"))
            .find(|name| !taken.contains(name) && !dir.join(name).exists())
            .unwrap_or_default()
    }

    /// Ends a change (callers hold the write lock): counted for other processes
    /// ([`Gallery::reload_if_changed`]), then appended to the audit log. The change is made by
    /// then, so a log that cannot be written (a full disk) is an error in the service's log, not
    /// a failure of the change.
    fn record(&self, entry: audit::Entry) {
        self.record_quiet(entry);
        self.notify_local_change();
    }

    /// [`Gallery::record`] without counting a local change: a change applied from the broker,
    /// which the sync must not publish again.
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
        }
    }

    /// Adds `new` to the person (created if new): `.npy`, metadata, then the crops (when the
    /// policy keeps them), then matching. Returns how many samples the person has now.
    pub fn enroll(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(id, new, Change::Add, None, by)
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
        self.change(id, new, Change::Add, Some(max_distance), by)
    }

    /// Replaces everything enrolled for the person by `new` (bulk enroll `--replace`): the old
    /// crops go once the new rows are written.
    pub fn replace(
        &self,
        id: &StudentId,
        new: Vec<NewSample>,
        by: &str,
    ) -> Result<usize, GalleryError> {
        self.change(id, new, Change::Replace, None, by)
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
        self.write_person(id, &rows)?;
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
        locks::write(&self.matrix).set_person(id.as_str(), &rows);
        self.record(Self::entry(action, id, rows.len(), by));
        Ok(rows.len())
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
    fn remove_locked(&self, id: &StudentId, by: &str) -> Result<Option<usize>, GalleryError> {
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
        self.write_person(id, &rows)?;
        locks::write(&self.matrix).set_person(id.as_str(), &rows);
        let mut entry = Self::entry("delete_sample", id, rows.len(), by);
        entry.index = Some(index);
        self.record(entry);
        Ok(rows.len())
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
            m.set_person(from.as_str(), &[]);
            m.set_person(to.as_str(), &rows);
            m.set_rejected(to.as_str(), &rejected);
        }
        let mut entry = Self::entry("rename", to, rows.len(), by);
        entry.from = Some(from.to_string());
        self.record(entry);
        Ok(rows.len())
    }

    /// Does the steps of the journaled rename, if any (each can be done again), then removes
    /// the journal. The `.npy` moves last: until it does, the person is enrolled under the old id.
    fn finish_rename(&self) -> Result<(), GalleryError> {
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

    /// Applies the crop policy: every crop removed when none are kept, those older than the
    /// maximum age otherwise. Returns how many files went.
    fn apply_crop_policy(&self, crop_dirs: &[PathBuf]) -> usize {
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

    /// The closest enrolled face: its label when within `tolerance`, else `Unknown`.
    pub fn best_match(&self, encoding: &Encoding, tolerance: f64) -> Match {
        self.best_match_with_margin(encoding, tolerance, 0.0)
    }

    /// [`Gallery::best_match`], and a match counts only when the closest person is closer than
    /// the closest *other* person by at least `margin` (`MATCH_MARGIN`); otherwise the face is
    /// `Unknown` and [`Match::ambiguous`] names both. 0: no margin (the original's rule).
    ///
    /// A person with rejected faces ([`Gallery::reject`]) must also lead their own rejections
    /// by `margin`: when the face's closest rejected face of P is closer than its closest sample
    /// of P plus `margin`, P is left out, as if not enrolled (neither the match nor the
    /// runner-up), and the rules apply among the others.
    pub fn best_match_with_margin(
        &self,
        encoding: &Encoding,
        tolerance: f64,
        margin: f64,
    ) -> Match {
        let m = locks::read(&self.matrix);
        let mut top = Top2::default();
        if m.rejected.is_empty() {
            // The common case: one pass, nothing more.
            for (e, &owner) in m.encodings.iter().zip(&m.owners) {
                top.offer(distance(e, encoding), owner);
            }
        } else {
            top = m.top2_with_rejections(encoding, margin);
        }
        let Top2 { best, other } = top;
        let label = |o: u32| m.labels[o as usize].clone();
        let runner_up = other.map(|(d, o)| (label(o), d));
        match best {
            Some((d, owner)) if d <= tolerance => {
                let close = other.filter(|(d2, _)| margin > 0.0 && d2 - d < margin);
                match close {
                    Some((_, o2)) => Match {
                        label: UNKNOWN.into(),
                        distance: Some(d),
                        ambiguous: Some([label(owner), label(o2)]),
                        runner_up,
                    },
                    None => Match {
                        label: label(owner),
                        distance: Some(d),
                        ambiguous: None,
                        runner_up,
                    },
                }
            }
            Some((d, _)) => Match {
                label: UNKNOWN.into(),
                distance: Some(d),
                ambiguous: None,
                runner_up,
            },
            None => Match {
                label: UNKNOWN.into(),
                distance: None,
                ambiguous: None,
                runner_up: None,
            },
        }
    }

    /// The enrolled person other than `except` closest to `encoding`, with the distance: what
    /// the duplicate check of enrollment compares with `ENROLL_DUPLICATE_DISTANCE`.
    pub fn nearest_other(&self, encoding: &Encoding, except: &StudentId) -> Option<(String, f64)> {
        let m = locks::read(&self.matrix);
        let skip = m.index.get(except.as_str()).copied();
        m.encodings
            .iter()
            .zip(&m.owners)
            .filter(|(_, o)| Some(**o) != skip)
            .map(|(e, o)| (distance(e, encoding), *o))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(d, o)| (m.labels[o as usize].clone(), d))
    }

    /// (encodings, people) currently enrolled.
    pub fn counts(&self) -> (usize, usize) {
        let m = locks::read(&self.matrix);
        let mut people = vec![false; m.labels.len()];
        for o in &m.owners {
            people[*o as usize] = true;
        }
        (m.encodings.len(), people.iter().filter(|p| **p).count())
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

    fn describe(&self, id: &str, samples: &[&Sample]) -> Person {
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
        }
    }

    /// Enrolled people whose id starts with `prefix`, sorted by id: how many match in all, and
    /// at most `limit` of them from `offset` on.
    pub fn people_page(&self, prefix: &str, offset: usize, limit: usize) -> (usize, Vec<Person>) {
        let matching: Vec<String> = self
            .people()
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| id.starts_with(prefix))
            .collect();
        let m = locks::read(&self.matrix);
        let page = matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|id| {
                let rows: Vec<&Sample> = m.rows_of(id).iter().map(|r| &m.samples[*r]).collect();
                self.describe(id, &rows)
            })
            .collect();
        (matching.len(), page)
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
            person: self.describe(id.as_str(), &rows),
            samples: rows.into_iter().cloned().collect(),
            rejected: m.rejected_count(id.as_str()),
        })
    }

    /// The person, or `None` when not enrolled.
    pub fn person(&self, id: &StudentId) -> Option<Person> {
        self.person_detail(id).map(|d| d.person)
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

    /// The newest changes to the person, oldest first ([`audit::HISTORY_MAX`] at most).
    pub fn history(&self, id: &StudentId) -> Vec<AuditEntry> {
        self.audit.history(id.as_str())
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
        let (total, page) = g.people_page("al", 0, 10);
        assert_eq!(total, 2);
        let ids: Vec<_> = page.iter().map(|p| p.student_id.as_str()).collect();
        assert_eq!(ids, ["alice", "alip"]);
        assert_eq!(g.people_page("", 1, 1).1[0].student_id, "alip");
        assert_eq!(g.people_page("", 5, 10), (3, vec![]));
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
    fn append_keeps_earlier_rows_and_matches_the_nearest() {
        let dir = tempfile::tempdir().unwrap();
        let (g, report) = Gallery::open(dir.path()).unwrap();
        assert_eq!(report.files, 0);
        assert_eq!(g.best_match(&enc(0.0), 0.45).distance, None);
        let alip = StudentId::parse("alip").unwrap();
        let yoga = StudentId::parse("yoga").unwrap();
        assert_eq!(g.append(&alip, &[enc(0.0)], "test").unwrap(), 1);
        assert_eq!(g.append(&alip, &[enc(0.1)], "test").unwrap(), 2);
        g.append(&yoga, &[enc(1.0)], "test").unwrap();
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
            g.append(&broken, &[enc(0.0)], "test"),
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

    fn with_crop(v: f64, jpeg: &[u8]) -> NewSample {
        NewSample::new(enc(v))
            .with_crop(jpeg.to_vec())
            .with_quality(serde_json::json!({"face_px": 100}))
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
        g.write_person(&id, &rows).unwrap();
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

    #[test]
    fn a_match_must_lead_the_runner_up_by_the_margin() {
        let dir = tempfile::tempdir().unwrap();
        let (g, _) = Gallery::open(dir.path()).unwrap();
        let id = |s: &str| StudentId::parse(s).unwrap();
        g.append(&id("alip"), &[enc(0.0), enc(0.05)], "k").unwrap();
        g.append(&id("budi"), &[enc(0.3)], "k").unwrap();
        g.append(&id("cici"), &[enc(2.0)], "k").unwrap();
        // 0.1 from alip, 0.2 from budi: a lead of 0.1 (alip's two rows count once).
        let m = g.best_match_with_margin(&enc(0.1), 0.45, 0.05);
        assert_eq!((m.label.as_str(), m.ambiguous.as_ref()), ("alip", None));
        let (second, d2) = m.runner_up.clone().unwrap();
        assert_eq!((second.as_str(), (d2 * 100.0).round()), ("budi", 20.0));
        let m = g.best_match_with_margin(&enc(0.1), 0.45, 0.15);
        assert_eq!(m.label, UNKNOWN);
        assert_eq!(m.ambiguous, Some(["alip".into(), "budi".into()]));
        assert_eq!(m.distance.map(|d| (d * 100.0).round()), Some(5.0));
        // No margin: the original rule; beyond the tolerance no one is ambiguous.
        assert_eq!(g.best_match(&enc(0.1), 0.45).label, "alip");
        let far = g.best_match_with_margin(&enc(1.2), 0.45, 0.15);
        assert_eq!((far.label.as_str(), far.ambiguous), (UNKNOWN, None));
        // Rows are visited in any order: the runner-up is still the closest other person.
        let m = g.best_match_with_margin(&enc(0.29), 0.45, 0.0);
        assert_eq!(m.label, "budi");
        assert_eq!(m.runner_up.map(|(l, _)| l).as_deref(), Some("alip"));
    }
}
