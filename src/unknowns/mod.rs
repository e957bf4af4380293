//! Unknown faces kept for review: faces the camera saw that matched nobody (after its quality
//! checks and confirmation over frames), grouped into clusters of one person each
//! ([`cluster`]), so that someone can enroll a cluster under a name (`POST
//! /unknowns/{cluster}/enroll`) or forget it (`DELETE /unknowns/{cluster}`).
//!
//! ## On disk (`data/unknowns/`)
//! - `faces.jsonl`: a journal, one JSON line per change: `{"op":"add","id":7,...}` (a face: its
//!   encoding, Unix-ms time, `face_px`, `sharpness`, whether a crop was written) or
//!   `{"op":"drop","ids":[...]}` (faces gone: past the bound, forgotten or enrolled); a compacted
//!   journal starts with `{"op":"next","id":N}` so that ids keep increasing across restarts even
//!   when the newest faces were dropped. Each line is appended and fsync'd before the call
//!   returns (as `data/audit.jsonl`, [`crate::gallery::audit`]); a line cut by a crash (the
//!   last one) is skipped when read.
//! - `crops/<id>.jpg`: the face with a margin (its box grown by [`CROP_MARGIN`] of its size on
//!   each side, clamped to the frame), so that enrollment can detect it again; only when the
//!   gallery's `FACE_CROPS` keeps crops. Written atomically ([`crate::fsutil::atomic_write`])
//!   before the journal line that names it.
//!
//! ## Contract
//! - One writing process (the service); within it, one change at a time under a mutex.
//! - Bounded: at most `UNKNOWN_MAX` faces; recording one more drops the oldest (its crop
//!   deleted).
//! - Off: with `UNKNOWN_MAX=0` nothing is kept: opening removes `data/unknowns/` whole (faces,
//!   crops, journals moved aside) and writes nothing there, [`Unknowns::record`] refuses
//!   ([`UnknownsError::Off`]) and the clusters are always none.
//! - Aged: a face older than `UNKNOWN_MAX_AGE_DAYS` (by its recorded time) is dropped with its
//!   crop at open and by [`Unknowns::sweep_old`] (the service calls it hourly); a journal moved
//!   aside as damaged goes once its name's time is that old. 0: no age limit.
//! - Ids are never reused: they increase across restarts.
//! - A kill at any point leaves a store that opens: a crop without its journal line (killed
//!   between the two) or a dropped face's crop not yet deleted is removed at the next open; a
//!   face whose crop is missing is kept, without a crop.
//! - The journal is rewritten (atomically) once it holds more than [`COMPACT_FACTOR`] times as
//!   many lines as live faces (plus [`COMPACT_SLACK`]), so it stays small on an SD card.
//! - A damaged journal (a line that does not read, other than a torn last one) never stops the
//!   service: it is logged, moved aside as `faces.jsonl.damaged-<unix ms>`, and what did read is
//!   kept (written anew as a compacted journal).
//! - Clusters are recomputed when asked for after a change, and cached until the next one.

pub mod cluster;
mod matching;

use matching::nearest;
pub use matching::{matching, KeptFace};

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::engine::{Encoding, FaceBox};
use crate::fsutil;
use crate::image_io::{self, RgbImage};

/// Faces kept by default (`UNKNOWN_MAX`).
pub const DEFAULT_MAX: usize = 200;
/// Days an unknown face is kept by default (`UNKNOWN_MAX_AGE_DAYS`): a week, time enough to
/// enroll a newcomer seen on Monday by Friday.
pub const DEFAULT_MAX_AGE_DAYS: u32 = 7;
/// Largest `UNKNOWN_MAX_AGE_DAYS` (0, no limit, aside): a century, past it a mistake.
pub const MAX_MAX_AGE_DAYS: u32 = 36_500;
/// Most faces `UNKNOWN_MAX` may ask for: clustering costs n²/2 distances (1000: 0.5 M, tens of
/// milliseconds on a Pi 4), done again after each change.
pub const MAX_MAX: usize = 1000;
/// `UNKNOWN_CLUSTER_DISTANCE` default: two faces closer than this are neighbours (the same
/// person, as far as the clustering knows). Measured with `cargo bench --bench unknown_clusters`
/// on `../shared/faces` (58 faces of 17 people: `known/`, `probe/`, `strangers/`; the camera's
/// encoder, no jitter): two photos of one person are 0.257-0.670 apart (median 0.437; stuart's
/// five 0.271-0.670), two people 0.564-1.073 (median 0.842; the closest pairs alex_lacamoire /
/// raj). Below 0.55 people are split over several clusters (at 0.50: 19 clusters, 2 people
/// split, stuart in 2); from 0.55 to 0.60 every person is one cluster and no cluster mixes two
/// people (at 0.60 three pairs of two people are neighbours, which Chinese whispers still keeps
/// apart). 0.55: the low end of that range, since a mixed cluster (a face enrolled under the
/// wrong name) costs more than a split one (two clusters enrolled under one name), and no two
/// people of the set are neighbours at 0.55.
pub const DEFAULT_CLUSTER_DISTANCE: f64 = 0.55;
/// The crop's margin around the face box, as a share of the box's width (height) on each side.
pub const CROP_MARGIN: f64 = 0.5;
/// Compaction: when the journal has more lines than `COMPACT_FACTOR * live + COMPACT_SLACK`.
pub const COMPACT_FACTOR: usize = 4;
/// See [`COMPACT_FACTOR`].
pub const COMPACT_SLACK: usize = 64;
/// Most samples a cluster offers for enrollment (the best ones).
pub const ENROLL_SAMPLES: usize = 5;

/// Why the unknown faces' store could not do something.
#[derive(Debug, Error)]
pub enum UnknownsError {
    /// A file of the store could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A face that cannot be kept (an encoding with NaN, a crop that does not encode).
    #[error("unknown face not recorded: {0}")]
    Invalid(String),
    /// No unknown face is kept (`UNKNOWN_MAX=0`).
    #[error("unknown faces are not kept (UNKNOWN_MAX=0)")]
    Off,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> UnknownsError + '_ {
    move |source| UnknownsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How the store behaves (`UNKNOWN_MAX`, `UNKNOWN_MAX_AGE_DAYS`, `FACE_CROPS`,
/// `UNKNOWN_CLUSTER_DISTANCE`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnknownSettings {
    max: usize,
    max_age_days: Option<u32>,
    keep_crops: bool,
    cluster_distance: f64,
}

impl Default for UnknownSettings {
    fn default() -> Self {
        UnknownSettings {
            max: DEFAULT_MAX,
            max_age_days: Some(DEFAULT_MAX_AGE_DAYS),
            keep_crops: true,
            cluster_distance: DEFAULT_CLUSTER_DISTANCE,
        }
    }
}

impl UnknownSettings {
    /// `max` is held to 0..=[`MAX_MAX`] (0: none kept); the settings layer
    /// ([`crate::settings`]) refuses values outside it before they come here. The age limit is
    /// the default one ([`UnknownSettings::with_max_age_days`]).
    pub fn new(max: usize, keep_crops: bool, cluster_distance: f64) -> UnknownSettings {
        UnknownSettings {
            max: max.min(MAX_MAX),
            keep_crops,
            cluster_distance,
            ..UnknownSettings::default()
        }
    }

    /// The same with faces kept at most `days` days (`None` or `Some(0)`: no age limit).
    pub fn with_max_age_days(self, days: Option<u32>) -> UnknownSettings {
        UnknownSettings {
            max_age_days: days.filter(|d| *d > 0),
            ..self
        }
    }

    /// Most faces kept (`UNKNOWN_MAX`; 0: none).
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether no unknown face is kept at all (`UNKNOWN_MAX=0`).
    pub fn is_off(&self) -> bool {
        self.max == 0
    }

    /// Days a face is kept (`UNKNOWN_MAX_AGE_DAYS`; `None`: no age limit).
    pub fn max_age_days(&self) -> Option<u32> {
        self.max_age_days
    }

    /// The oldest recorded time (Unix ms) a face may have to be kept now, if there is a limit.
    fn oldest_kept_ms(&self, now_ms: u64) -> Option<u64> {
        self.max_age_days
            .map(|d| now_ms.saturating_sub(u64::from(d) * 86_400_000))
    }

    /// Whether face crops are kept (`FACE_CROPS`).
    pub fn keep_crops(&self) -> bool {
        self.keep_crops
    }

    /// Distance under which two faces are the same person's (`UNKNOWN_CLUSTER_DISTANCE`).
    pub fn cluster_distance(&self) -> f64 {
        self.cluster_distance
    }
}

/// One kept face.
#[derive(Debug, Clone, PartialEq)]
struct Face {
    id: u64,
    time_ms: u64,
    encoding: Encoding,
    face_px: u32,
    sharpness: f64,
    crop: bool,
}

impl Face {
    /// What makes a sample good for enrollment: a large face that is sharp.
    fn score(&self) -> f64 {
        f64::from(self.face_px) * self.sharpness.max(0.0)
    }
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Line {
    Add {
        id: u64,
        time_ms: u64,
        face_px: u32,
        sharpness: f64,
        crop: bool,
        encoding: Vec<f64>,
    },
    Drop {
        ids: Vec<u64>,
    },
    Next {
        id: u64,
    },
}

impl Line {
    fn add(face: &Face) -> Line {
        Line::Add {
            id: face.id,
            time_ms: face.time_ms,
            face_px: face.face_px,
            sharpness: face.sharpness,
            crop: face.crop,
            encoding: face.encoding.to_vec(),
        }
    }
}

/// What reading a journal found: the live faces oldest first, the next id, the lines read and
/// the lines that did not read (a torn last line is not counted).
#[derive(Debug, Default)]
pub struct Replay {
    faces: Vec<Face>,
    next_id: u64,
    lines: usize,
    bad_lines: usize,
    /// The last line was cut short (and skipped).
    torn: bool,
}

impl Replay {
    /// Faces the journal holds.
    pub fn faces(&self) -> usize {
        self.faces.len()
    }

    /// The id the next face gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Lines that could not be read.
    pub fn bad_lines(&self) -> usize {
        self.bad_lines
    }
}

/// Reads a journal's bytes. Never fails: a line that does not read is counted in
/// [`Replay::bad_lines`] (unless it is the last one and cut short: a crash's torn write), an
/// `add` whose encoding is not 128 finite numbers too.
pub fn replay(bytes: &[u8]) -> Replay {
    let mut out = Replay {
        next_id: 1,
        ..Replay::default()
    };
    let torn_tail = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    let last = lines.len().saturating_sub(1);
    for (n, raw) in lines.iter().enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.lines += 1;
        let line = serde_json::from_slice::<Line>(raw).ok();
        match line {
            Some(Line::Add {
                id,
                time_ms,
                face_px,
                sharpness,
                crop,
                encoding,
            }) => {
                let Some(encoding) = to_encoding(&encoding) else {
                    out.bad_lines += 1;
                    continue;
                };
                out.next_id = out.next_id.max(id.saturating_add(1));
                out.faces.retain(|f| f.id != id);
                out.faces.push(Face {
                    id,
                    time_ms,
                    encoding,
                    face_px,
                    sharpness: if sharpness.is_finite() {
                        sharpness
                    } else {
                        0.0
                    },
                    crop,
                });
            }
            Some(Line::Drop { ids }) => {
                let gone: HashSet<u64> = ids.into_iter().collect();
                out.faces.retain(|f| !gone.contains(&f.id));
            }
            Some(Line::Next { id }) => out.next_id = out.next_id.max(id),
            None if n == last && torn_tail => {
                out.lines -= 1;
                out.torn = true;
            }
            None => out.bad_lines += 1,
        }
    }
    // Ids are given in order, so a journal's faces are oldest first; sorting makes a
    // hand-edited or salvaged one so too.
    out.faces.sort_by_key(|f| f.id);
    out
}

fn to_encoding(values: &[f64]) -> Option<Encoding> {
    let encoding: Encoding = values.try_into().ok()?;
    encoding.iter().all(|v| v.is_finite()).then_some(encoding)
}

/// One cluster as `GET /unknowns` lists it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSummary {
    /// The cluster's id, as `/unknowns/{cluster}` takes it.
    pub cluster: u64,
    /// When its first face was seen.
    pub first_seen_ms: u64,
    /// When its last face was seen.
    pub last_seen_ms: u64,
    /// The members' ids, oldest first, each with whether it has a crop.
    pub faces: Vec<(u64, bool)>,
}

impl ClusterSummary {
    /// `{"cluster":7,"count":3,"first_seen":<unix s>,"last_seen":<unix s>,"crops":[urls]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let crops: Vec<String> = self
            .faces
            .iter()
            .filter(|(_, crop)| *crop)
            .map(|(id, _)| format!("/unknowns/{}/faces/{id}.jpg", self.cluster))
            .collect();
        serde_json::json!({
            "cluster": self.cluster,
            "count": self.faces.len(),
            "first_seen": self.first_seen_ms / 1000,
            "last_seen": self.last_seen_ms / 1000,
            "crops": crops,
        })
    }
}

/// A face of a cluster offered for enrollment: its crop when one is kept, else its encoding
/// with the quality the camera measured.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The face's id in the store.
    pub entry: u64,
    /// Its encoding.
    pub encoding: Encoding,
    /// Its size in pixels, as the camera measured it.
    pub face_px: u32,
    /// Its sharpness, as the camera measured it.
    pub sharpness: f64,
    /// The JPEG crop (with its margin), when kept and readable.
    pub crop: Option<Vec<u8>>,
}

/// What [`Unknowns::enroll_samples`] hands out: the cluster's best samples and all its members
/// (to forget once enrolled).
#[derive(Debug, Clone)]
pub struct EnrollOffer {
    /// The best faces, best first.
    pub samples: Vec<Sample>,
    /// Every member's id.
    pub members: Vec<u64>,
}

struct State {
    faces: Vec<Face>,
    next_id: u64,
    journal_lines: usize,
    /// The clusters of `faces`, until the next change.
    clusters: Option<Vec<ClusterSummary>>,
}

/// The unknown faces the camera kept, for review: a journal (`data/unknowns/faces.jsonl`), crops
/// (`data/unknowns/crops/`), a bound on how many, and their clusters.
pub struct Unknowns {
    dir: PathBuf,
    journal: PathBuf,
    crops_dir: PathBuf,
    settings: UnknownSettings,
    state: Mutex<State>,
    /// How many clusters there are, counted after each change: `/health` reads it without
    /// waiting for the lock (which a record holds through its fsync).
    cluster_count: AtomicUsize,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Unknowns {
    /// Opens (creating) `data_dir/unknowns`, reads the journal and applies the settings: past
    /// `max` the oldest go, without crops kept the crops go. Fails only when the folder cannot
    /// be made or written; a damaged journal is moved aside (see the module docs).
    pub fn open(data_dir: &Path, settings: UnknownSettings) -> Result<Unknowns, UnknownsError> {
        let dir = data_dir.join("unknowns");
        let crops_dir = dir.join("crops");
        if settings.is_off() {
            return Unknowns::open_off(dir, crops_dir, settings);
        }
        fs::create_dir_all(&crops_dir).map_err(io_err(&crops_dir))?;
        fsutil::remove_stale_temps(&dir, fsutil::STALE_TEMP_AGE);
        fsutil::remove_stale_temps(&crops_dir, fsutil::STALE_TEMP_AGE);
        let store = Unknowns::empty(dir, crops_dir, settings, None);
        let bytes = match fs::read(&store.journal) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(&store.journal)(e)),
        };
        let found = replay(&bytes);
        // A torn last line is cut off by the rewrite, before anything is appended after it.
        let mut rewrite = found.torn;
        if found.bad_lines > 0 {
            let aside = store.dir.join(format!("faces.jsonl.damaged-{}", now_ms()));
            log::warn!(
                "{}: {} of {} lines do not read; moved to {} and the {} faces that read are kept",
                store.journal.display(),
                found.bad_lines,
                found.lines,
                aside.display(),
                found.faces.len()
            );
            fs::rename(&store.journal, &aside).map_err(io_err(&store.journal))?;
            rewrite = true;
        }
        let mut state = sync_lock(&store.state);
        state.next_id = found.next_id;
        state.journal_lines = found.lines;
        state.faces = found.faces;
        for face in state.faces.iter_mut() {
            if face.crop && !(settings.keep_crops && store.crop_path(face.id).is_file()) {
                face.crop = false;
                rewrite = true;
            }
        }
        let excess = state.faces.len().saturating_sub(settings.max);
        if excess > 0 {
            state.faces.drain(..excess);
            rewrite = true;
        }
        if let Some(oldest) = settings.oldest_kept_ms(now_ms()) {
            let before = state.faces.len();
            state.faces.retain(|f| f.time_ms >= oldest);
            if state.faces.len() < before {
                log::info!(
                    "unknown faces: {} older than UNKNOWN_MAX_AGE_DAYS removed",
                    before - state.faces.len()
                );
                rewrite = true;
            }
        }
        store.remove_old_damaged();
        // The crops on disk that no kept face names: a kill between writing a crop and its
        // journal line, a drop whose deletion was cut, or FACE_CROPS turned to none.
        let named: HashSet<u64> = state
            .faces
            .iter()
            .filter(|f| f.crop)
            .map(|f| f.id)
            .collect();
        let mut removed = 0;
        if let Ok(entries) = fs::read_dir(&store.crops_dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let id = name
                    .to_str()
                    .and_then(|n| n.strip_suffix(".jpg"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(id) = id {
                    state.next_id = state.next_id.max(id.saturating_add(1));
                    if !named.contains(&id) && fs::remove_file(entry.path()).is_ok() {
                        removed += 1;
                    }
                }
            }
        }
        if removed > 0 {
            log::info!("removed {removed} unknown-face crop(s) no kept face names");
            let _ = fsutil::sync_dir(&store.crops_dir);
        }
        // Not fatal: the faces are right in memory, and the next change's compaction tries again.
        if rewrite {
            if let Err(e) = store.compact(&mut state) {
                log::warn!("the unknown faces' journal was not rewritten: {e}");
            }
        }
        store.changed(&mut state);
        drop(state);
        Ok(store)
    }

    /// The store of `UNKNOWN_MAX=0`: `dir` (what an earlier setting kept) removed whole,
    /// nothing created.
    fn open_off(
        dir: PathBuf,
        crops_dir: PathBuf,
        settings: UnknownSettings,
    ) -> Result<Unknowns, UnknownsError> {
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                log::info!(
                    "unknown faces: UNKNOWN_MAX=0, {} removed; none will be kept",
                    dir.display()
                );
                if let Some(parent) = dir.parent() {
                    let _ = fsutil::sync_dir(parent);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&dir)(e)),
        }
        Ok(Unknowns::empty(dir, crops_dir, settings, Some(Vec::new())))
    }

    /// A store with no face yet in `dir` (its journal `faces.jsonl`), with `clusters` cached.
    fn empty(
        dir: PathBuf,
        crops_dir: PathBuf,
        settings: UnknownSettings,
        clusters: Option<Vec<ClusterSummary>>,
    ) -> Unknowns {
        Unknowns {
            journal: dir.join("faces.jsonl"),
            dir,
            crops_dir,
            settings,
            cluster_count: AtomicUsize::new(0),
            state: Mutex::new(State {
                faces: Vec::new(),
                next_id: 1,
                journal_lines: 0,
                clusters,
            }),
        }
    }

    /// Drops the faces past `UNKNOWN_MAX_AGE_DAYS` (with their crops) and journals moved aside
    /// that old; returns how many faces went. Nothing to do without an age limit.
    pub fn sweep_old(&self) -> Result<usize, UnknownsError> {
        let Some(oldest) = self.settings.oldest_kept_ms(now_ms()) else {
            return Ok(0);
        };
        if self.settings.is_off() {
            return Ok(0);
        }
        self.remove_old_damaged();
        let mut state = sync_lock(&self.state);
        let old: Vec<u64> = state
            .faces
            .iter()
            .filter(|f| f.time_ms < oldest)
            .map(|f| f.id)
            .collect();
        if old.is_empty() {
            return Ok(0);
        }
        let done = self.drop_locked(&mut state, &old);
        self.changed(&mut state);
        done?;
        self.compact_if_long(&mut state)?;
        Ok(old.len())
    }

    /// Removes the journals moved aside as damaged (`faces.jsonl.damaged-<unix ms>`: they hold
    /// faces too) once older than the age limit.
    fn remove_old_damaged(&self) {
        let Some(oldest) = self.settings.oldest_kept_ms(now_ms()) else {
            return;
        };
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let made = name
                .to_str()
                .and_then(|n| n.strip_prefix("faces.jsonl.damaged-"))
                .and_then(|ms| ms.parse::<u64>().ok());
            if made.is_some_and(|ms| ms < oldest) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => log::info!(
                        "{}: older than UNKNOWN_MAX_AGE_DAYS, removed",
                        entry.path().display()
                    ),
                    Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
                }
            }
        }
    }

    /// The store's settings.
    pub fn settings(&self) -> &UnknownSettings {
        &self.settings
    }

    /// Faces kept now.
    pub fn len(&self) -> usize {
        sync_lock(&self.state).faces.len()
    }

    /// Whether no face is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn crop_path(&self, id: u64) -> PathBuf {
        self.crops_dir.join(format!("{id}.jpg"))
    }

    /// Keeps a face the camera confirmed as nobody's: `image` is the whole frame, `bbox` the
    /// face in it. Writes the crop (when kept), appends and syncs the journal line, drops the
    /// oldest past the bound, and returns the new face's id.
    pub fn record(
        &self,
        image: &RgbImage,
        bbox: FaceBox,
        encoding: &Encoding,
        face_px: u32,
        sharpness: f64,
    ) -> Result<u64, UnknownsError> {
        if self.settings.is_off() {
            return Err(UnknownsError::Off);
        }
        if !encoding.iter().all(|v| v.is_finite()) {
            return Err(UnknownsError::Invalid(
                "the encoding holds a value that is not a number".into(),
            ));
        }
        // Encoded before the lock: the camera thread should not hold it for the JPEG work.
        let jpeg = match self.settings.keep_crops {
            true => Some(
                image_io::encode_jpeg(&crop_with_margin(image, &bbox))
                    .map_err(|e| UnknownsError::Invalid(e.to_string()))?,
            ),
            false => None,
        };
        let mut state = sync_lock(&self.state);
        let face = Face {
            id: state.next_id,
            time_ms: now_ms(),
            encoding: *encoding,
            face_px,
            sharpness: if sharpness.is_finite() {
                sharpness
            } else {
                0.0
            },
            crop: jpeg.is_some(),
        };
        if let Some(jpeg) = &jpeg {
            let path = self.crop_path(face.id);
            fsutil::atomic_write(&path, jpeg).map_err(io_err(&path))?;
        }
        // The id is taken even if the line below fails: a crop may be on disk under it.
        state.next_id = state.next_id.saturating_add(1);
        if let Err(e) = self.append(&mut state, &Line::add(&face)) {
            let _ = fs::remove_file(self.crop_path(face.id));
            return Err(e);
        }
        let id = face.id;
        state.faces.push(face);
        // The face is kept from here on: trouble with the bound or the compaction is logged (and
        // done again by the next record or open), not reported as a failed record.
        let excess = state.faces.len().saturating_sub(self.settings.max);
        if excess > 0 {
            let oldest: Vec<u64> = state.faces[..excess].iter().map(|f| f.id).collect();
            if let Err(e) = self.drop_locked(&mut state, &oldest) {
                log::warn!("the oldest unknown faces were not dropped: {e}");
            }
        }
        if let Err(e) = self.compact_if_long(&mut state) {
            log::warn!("the unknown faces' journal was not compacted: {e}");
        }
        self.changed(&mut state);
        Ok(id)
    }

    /// The clusters, newest `last_seen` first.
    pub fn clusters(&self) -> Vec<ClusterSummary> {
        let mut state = sync_lock(&self.state);
        self.clusters_locked(&mut state).to_vec()
    }

    /// How many clusters there are (counted at each change: cheap for `/health`).
    pub fn cluster_count(&self) -> usize {
        self.cluster_count.load(Ordering::Relaxed)
    }

    /// After a change: the clusters again (a few hundred faces: milliseconds), and their count.
    fn changed(&self, state: &mut State) {
        state.clusters = None;
        let count = self.clusters_locked(state).len();
        self.cluster_count.store(count, Ordering::Relaxed);
    }

    fn clusters_locked<'a>(&self, state: &'a mut State) -> &'a [ClusterSummary] {
        if state.clusters.is_none() {
            state.clusters = Some(summarize(&state.faces, self.settings.cluster_distance));
        }
        state.clusters.as_deref().unwrap_or_default()
    }

    fn members(&self, state: &mut State, cluster: u64) -> Option<Vec<u64>> {
        self.clusters_locked(state)
            .iter()
            .find(|c| c.cluster == cluster)
            .map(|c| c.faces.iter().map(|(id, _)| *id).collect())
    }

    /// The crop of face `entry` of cluster `cluster`; `None` when either is unknown, the face is
    /// not in that cluster, or it has no crop.
    pub fn crop(&self, cluster: u64, entry: u64) -> Option<Vec<u8>> {
        let mut state = sync_lock(&self.state);
        let members = self.members(&mut state, cluster)?;
        let face = state.faces.iter().find(|f| f.id == entry)?;
        if !(members.contains(&entry) && face.crop) {
            return None;
        }
        drop(state);
        fs::read(self.crop_path(entry)).ok()
    }

    /// The best [`ENROLL_SAMPLES`] faces of `cluster` (largest face times sharpness) and every
    /// member's id; `None` for an unknown cluster.
    pub fn enroll_samples(&self, cluster: u64) -> Option<EnrollOffer> {
        let mut state = sync_lock(&self.state);
        let members = self.members(&mut state, cluster)?;
        let mut faces: Vec<Face> = state
            .faces
            .iter()
            .filter(|f| members.contains(&f.id))
            .cloned()
            .collect();
        drop(state);
        faces.sort_by(|a, b| b.score().total_cmp(&a.score()).then(a.id.cmp(&b.id)));
        faces.truncate(ENROLL_SAMPLES);
        let samples = faces
            .into_iter()
            .map(|f| Sample {
                entry: f.id,
                encoding: f.encoding,
                face_px: f.face_px,
                sharpness: f.sharpness,
                crop: f
                    .crop
                    .then(|| fs::read(self.crop_path(f.id)).ok())
                    .flatten(),
            })
            .collect();
        Some(EnrollOffer { samples, members })
    }

    /// Forgets cluster `cluster` (its faces and their crops); how many faces it had, `None` for
    /// an unknown cluster.
    pub fn forget_cluster(&self, cluster: u64) -> Result<Option<usize>, UnknownsError> {
        let mut state = sync_lock(&self.state);
        let Some(members) = self.members(&mut state, cluster) else {
            return Ok(None);
        };
        let done = self.drop_locked(&mut state, &members);
        self.changed(&mut state);
        done?;
        self.compact_if_long(&mut state)?;
        Ok(Some(members.len()))
    }

    /// Forgets the faces `ids` (those still kept); how many went.
    pub fn forget(&self, ids: &[u64]) -> Result<usize, UnknownsError> {
        let mut state = sync_lock(&self.state);
        let kept: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| state.faces.iter().any(|f| f.id == *id))
            .collect();
        let done = self.drop_locked(&mut state, &kept);
        self.changed(&mut state);
        done?;
        self.compact_if_long(&mut state)?;
        Ok(kept.len())
    }

    /// Forgets the faces within `tolerance` of one of `encodings` (a person's samples, when the
    /// person is deleted: their faces kept as nobody's go with them); how many went.
    pub fn forget_matching(
        &self,
        encodings: &[Encoding],
        tolerance: f64,
    ) -> Result<usize, UnknownsError> {
        let ids: Vec<u64> = sync_lock(&self.state)
            .faces
            .iter()
            .filter(|f| nearest(&f.encoding, encodings).is_some_and(|d| d <= tolerance))
            .map(|f| f.id)
            .collect();
        self.forget(&ids)
    }

    /// Journals the drop of `ids`, then deletes their crops (a kill between leaves crops the
    /// next open removes).
    fn drop_locked(&self, state: &mut State, ids: &[u64]) -> Result<(), UnknownsError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.append(state, &Line::Drop { ids: ids.to_vec() })?;
        let gone: HashSet<u64> = ids.iter().copied().collect();
        let mut crops = false;
        state.faces.retain(|f| {
            if !gone.contains(&f.id) {
                return true;
            }
            if f.crop {
                crops = true;
                if let Err(e) = fs::remove_file(self.crop_path(f.id)) {
                    log::warn!("unknown face {}: crop not removed: {e}", f.id);
                }
            }
            false
        });
        if crops {
            let _ = fsutil::sync_dir(&self.crops_dir);
        }
        state.clusters = None;
        Ok(())
    }

    /// Appends one line and syncs it. After a line cut by a crash, the new one starts on a line
    /// of its own, as in [`crate::gallery::audit`] (the torn one then reads as a bad line: the
    /// next open moves the journal aside and keeps the rest).
    fn append(&self, state: &mut State, line: &Line) -> Result<(), UnknownsError> {
        let path = &self.journal;
        let mut bytes = Vec::new();
        serde_json::to_writer(&mut bytes, line)
            .map_err(|e| UnknownsError::Invalid(e.to_string()))?;
        bytes.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        if ends_without_newline(&mut file).map_err(io_err(path))? {
            bytes.insert(0, b'\n');
        }
        file.write_all(&bytes).map_err(io_err(path))?;
        file.sync_data().map_err(io_err(path))?;
        if state.journal_lines == 0 {
            // A new journal: its directory entry must survive a power cut too.
            fsutil::sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        state.journal_lines += 1;
        Ok(())
    }

    fn compact_if_long(&self, state: &mut State) -> Result<(), UnknownsError> {
        if state.journal_lines > COMPACT_FACTOR * state.faces.len() + COMPACT_SLACK {
            self.compact(state)?;
        }
        Ok(())
    }

    /// Rewrites the journal atomically: the next id, then one line per kept face.
    fn compact(&self, state: &mut State) -> Result<(), UnknownsError> {
        let mut bytes = Vec::new();
        let mut lines = vec![Line::Next { id: state.next_id }];
        lines.extend(state.faces.iter().map(Line::add));
        for line in &lines {
            serde_json::to_writer(&mut bytes, line)
                .map_err(|e| UnknownsError::Invalid(e.to_string()))?;
            bytes.push(b'\n');
        }
        fsutil::atomic_write(&self.journal, &bytes).map_err(io_err(&self.journal))?;
        state.journal_lines = lines.len();
        Ok(())
    }

    /// Lines in the journal now (for tests of compaction).
    #[doc(hidden)]
    pub fn journal_lines(&self) -> usize {
        sync_lock(&self.state).journal_lines
    }

    /// The ids of the faces kept, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        sync_lock(&self.state).faces.iter().map(|f| f.id).collect()
    }
}

/// The clusters of `faces` (oldest first), newest `last_seen` first.
fn summarize(faces: &[Face], threshold: f64) -> Vec<ClusterSummary> {
    let points: Vec<(u64, Encoding)> = faces.iter().map(|f| (f.id, f.encoding)).collect();
    let mut summaries: Vec<ClusterSummary> = cluster::clusters(&points, threshold)
        .iter()
        .map(|g| {
            let members: Vec<&Face> = g.members().iter().map(|&i| &faces[i]).collect();
            ClusterSummary {
                cluster: g.id(),
                first_seen_ms: members.iter().map(|f| f.time_ms).min().unwrap_or(0),
                last_seen_ms: members.iter().map(|f| f.time_ms).max().unwrap_or(0),
                faces: members.iter().map(|f| (f.id, f.crop)).collect(),
            }
        })
        .collect();
    // Newest first; within one millisecond, the cluster with the newest face.
    let newest = |c: &ClusterSummary| (c.last_seen_ms, c.faces.last().map(|f| f.0));
    summaries.sort_by_key(|c| std::cmp::Reverse(newest(c)));
    summaries
}

/// The clusters of the store in `data_dir` as it is on disk, changing nothing (for a command
/// beside the running service, which is the store's only writer): a torn or damaged line is
/// skipped, a crop counts when its file is there.
pub fn list(
    data_dir: &Path,
    settings: &UnknownSettings,
) -> Result<Vec<ClusterSummary>, UnknownsError> {
    if settings.is_off() {
        return Ok(Vec::new());
    }
    Ok(summarize(
        &faces_on_disk(data_dir)?,
        settings.cluster_distance,
    ))
}

/// The answer of `GET /unknowns` and `unknowns list`: `{"ok":true,"clusters":[…],
/// "collecting":true}`; with `UNKNOWN_MAX=0` no cluster, `"collecting":false` and a message
/// saying why.
pub fn list_json(settings: &UnknownSettings, clusters: &[ClusterSummary]) -> serde_json::Value {
    if settings.is_off() {
        return serde_json::json!({
            "ok": true,
            "clusters": [],
            "collecting": false,
            "message": "unknown faces are not kept (UNKNOWN_MAX=0)",
        });
    }
    let clusters: Vec<serde_json::Value> = clusters.iter().map(|c| c.to_json()).collect();
    serde_json::json!({"ok": true, "clusters": clusters, "collecting": true})
}

/// The faces of the journal in `data_dir` as it is on disk (a crop counts when its file is
/// there), oldest first.
fn faces_on_disk(data_dir: &Path) -> Result<Vec<Face>, UnknownsError> {
    let dir = data_dir.join("unknowns");
    let journal = dir.join("faces.jsonl");
    let bytes = match fs::read(&journal) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_err(&journal)(e)),
    };
    let mut faces = replay(&bytes).faces;
    for face in faces.iter_mut() {
        face.crop = face.crop && dir.join("crops").join(format!("{}.jpg", face.id)).is_file();
    }
    Ok(faces)
}

fn sync_lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    crate::locks::lock(m)
}

fn ends_without_newline(file: &mut fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// The face with [`CROP_MARGIN`] around it, clamped to the frame: enough of the head for the
/// detector to find it again when the crop is enrolled.
pub fn crop_with_margin(image: &RgbImage, bbox: &FaceBox) -> RgbImage {
    let (w, h) = (image.width as i64, image.height as i64);
    let grow_x = ((bbox.right - bbox.left).max(0) as f64 * CROP_MARGIN).round() as i64;
    let grow_y = ((bbox.bottom - bbox.top).max(0) as f64 * CROP_MARGIN).round() as i64;
    let clamp = |v: i64, max: i64| v.clamp(0, max) as usize;
    image.crop(
        clamp(bbox.top - grow_y, h),
        clamp(bbox.right + grow_x, w),
        clamp(bbox.bottom + grow_y, h),
        clamp(bbox.left - grow_x, w),
    )
}

/// The journal reader, for the fuzz target: whatever it reads must write back (compacted) and
/// read again as the same faces (encodings within float printing's rounding) and next id.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_journal(data: &[u8]) {
    let first = replay(data);
    let mut bytes = Vec::new();
    let mut lines = vec![Line::Next { id: first.next_id }];
    lines.extend(first.faces.iter().map(Line::add));
    for line in &lines {
        if serde_json::to_writer(&mut bytes, line).is_err() {
            return;
        }
        bytes.push(b'\n');
    }
    let again = replay(&bytes);
    assert_eq!(again.bad_lines, 0);
    assert_eq!(again.next_id, first.next_id);
    assert_eq!(again.faces.len(), first.faces.len());
    for (a, b) in again.faces.iter().zip(&first.faces) {
        assert_eq!(
            (a.id, a.time_ms, a.face_px, a.crop),
            (b.id, b.time_ms, b.face_px, b.crop)
        );
        assert!(
            a.encoding.len() == crate::engine::ENCODING_LEN
                && crate::engine::distance(&a.encoding, &b.encoding) <= 1e-9
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 120x100 frame of grey levels with a face box in its middle.
    fn frame() -> (RgbImage, FaceBox) {
        let (w, h) = (120, 100);
        let pixels = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let image = RgbImage::from_raw(w, h, pixels).unwrap();
        let bbox = FaceBox {
            top: 30,
            right: 80,
            bottom: 70,
            left: 40,
        };
        (image, bbox)
    }

    /// An encoding of "person" `p` (far from the others), nudged by `k`.
    fn person(p: usize, k: u64) -> Encoding {
        let mut e = [0.0; 128];
        e[p] = 1.0;
        e[127] = 0.01 * k as f64;
        e
    }

    fn record(store: &Unknowns, p: usize, k: u64) -> u64 {
        let (image, bbox) = frame();
        store
            .record(&image, bbox, &person(p, k), 40, 500.0 + k as f64)
            .unwrap()
    }

    fn settings(max: usize, crops: bool) -> UnknownSettings {
        UnknownSettings::new(max, crops, DEFAULT_CLUSTER_DISTANCE)
    }

    /// A store in `dir` with two faces of two people, closed; the journal's path.
    fn two_faces(dir: &Path, crops: bool) -> PathBuf {
        let store = Unknowns::open(dir, settings(10, crops)).unwrap();
        record(&store, 0, 0);
        record(&store, 1, 0);
        dir.join("unknowns/faces.jsonl")
    }

    fn crop_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("unknowns/crops"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn faces_and_clusters_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), UnknownSettings::default()).unwrap();
        assert_eq!(store.cluster_count(), 0);
        assert_eq!(record(&store, 0, 0), 1);
        assert_eq!(record(&store, 1, 0), 2);
        assert_eq!(record(&store, 0, 1), 3);
        let clusters = store.clusters();
        assert_eq!(store.cluster_count(), 2);
        // Newest last_seen first: cluster 1 got face 3 last.
        let members: Vec<(u64, Vec<u64>)> = clusters
            .iter()
            .map(|c| (c.cluster, c.faces.iter().map(|f| f.0).collect()))
            .collect();
        assert_eq!(members, [(1, vec![1, 3]), (2, vec![2])]);
        let json = clusters[0].to_json();
        assert_eq!(json["count"], 2);
        assert_eq!(json["crops"][1], "/unknowns/1/faces/3.jpg");
        // The crop is the box with its margin: 40x40 grown by 20 each side, clamped.
        let jpeg = store.crop(1, 3).unwrap();
        let crop = image_io::decode(&jpeg, image_io::DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((crop.width, crop.height), (80, 80));
        assert_eq!(store.crop(2, 3), None, "face 3 is not in cluster 2");
        drop(store);
        assert_eq!(
            list(dir.path(), &UnknownSettings::default()).unwrap(),
            clusters
        );
        let again = Unknowns::open(dir.path(), UnknownSettings::default()).unwrap();
        assert_eq!(again.clusters(), clusters);
        assert_eq!(again.cluster_count(), 2);
        assert_eq!(record(&again, 1, 1), 4);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let journal = two_faces(dir.path(), false);
        OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(b"{\"op\":\"add\",\"id\":9,\"time_ms\":1,\"enc")
            .unwrap();
        let store = Unknowns::open(dir.path(), settings(10, false)).unwrap();
        assert_eq!(store.ids(), [1, 2]);
        assert!(fs::read(&journal).unwrap().ends_with(b"\n"));
        assert_eq!(record(&store, 2, 0), 3);
        drop(store);
        let store = Unknowns::open(dir.path(), settings(10, false)).unwrap();
        assert_eq!(store.ids(), [1, 2, 3]);
        let aside = fs::read_dir(dir.path().join("unknowns"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().contains("damaged")
            })
            .count();
        assert_eq!(aside, 0, "a torn last line is no damage");
    }

    #[test]
    fn a_damaged_journal_is_moved_aside_and_what_reads_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let journal = two_faces(dir.path(), true);
        let mut text = fs::read_to_string(&journal).unwrap();
        text.insert_str(
            0,
            "not json at all\n{\"op\":\"add\",\"id\":5,\"encoding\":[1]}\n",
        );
        fs::write(&journal, text).unwrap();
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        assert_eq!(store.ids(), [1, 2]);
        assert!(store.crop(1, 1).is_some());
        let names: Vec<String> = fs::read_dir(dir.path().join("unknowns"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("faces.jsonl.damaged-")));
        assert_eq!(replay(&fs::read(&journal).unwrap()).bad_lines(), 0);
        // Garbage of any kind never fails the open.
        fs::write(&journal, [0xff, 0x00, b'\n', b'{', b'\n', b'[']).unwrap();
        assert!(Unknowns::open(dir.path(), settings(10, true)).is_ok());
    }

    #[test]
    fn past_the_bound_the_oldest_go_with_their_crops() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(3, true)).unwrap();
        for k in 0..5 {
            record(&store, k as usize, 0);
        }
        assert_eq!(store.ids(), [3, 4, 5]);
        assert_eq!(crop_files(dir.path()), ["3.jpg", "4.jpg", "5.jpg"]);
        drop(store);
        // A smaller bound at the next start drops the oldest there and then.
        let store = Unknowns::open(dir.path(), settings(2, true)).unwrap();
        assert_eq!(store.ids(), [4, 5]);
        assert_eq!(crop_files(dir.path()), ["4.jpg", "5.jpg"]);
    }

    #[test]
    fn ids_keep_increasing_across_reopens_even_when_all_went() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        for k in 0..3 {
            record(&store, 0, k);
        }
        assert_eq!(store.forget_cluster(1).unwrap(), Some(3));
        assert_eq!(store.forget_cluster(1).unwrap(), None);
        assert!(store.is_empty() && crop_files(dir.path()).is_empty());
        drop(store);
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        assert_eq!(record(&store, 0, 0), 4);
        assert_eq!(store.forget(&[4, 99]).unwrap(), 1);
        // Compacted (and reopened): the next id is kept by the journal's first line.
        store.compact(&mut sync_lock(&store.state)).unwrap();
        drop(store);
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        assert_eq!(record(&store, 0, 0), 5);
    }

    #[test]
    fn the_journal_is_compacted_when_it_grows_past_the_live_faces() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(2, false)).unwrap();
        for k in 0..200 {
            record(&store, (k % 3) as usize, k);
        }
        let lines = store.journal_lines();
        assert!(lines <= COMPACT_FACTOR * 2 + COMPACT_SLACK + 1, "{lines}");
        let text = fs::read_to_string(dir.path().join("unknowns/faces.jsonl")).unwrap();
        assert_eq!(text.lines().count(), lines);
        drop(store);
        let store = Unknowns::open(dir.path(), settings(2, false)).unwrap();
        assert_eq!(store.ids(), [199, 200]);
    }

    #[test]
    fn without_crops_none_are_written_and_old_ones_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(10, false)).unwrap();
        record(&store, 0, 0);
        assert!(crop_files(dir.path()).is_empty());
        assert_eq!(
            store.clusters()[0].to_json()["crops"],
            serde_json::json!([])
        );
        assert!(store.crop(1, 1).is_none());
        let offer = store.enroll_samples(1).unwrap();
        assert!(offer.samples[0].crop.is_none());
        drop(store);
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        record(&store, 0, 1);
        assert_eq!(crop_files(dir.path()), ["2.jpg"]);
        drop(store);
        // FACE_CROPS=none at the next start: the crops go, the faces stay.
        let store = Unknowns::open(dir.path(), settings(10, false)).unwrap();
        assert!(crop_files(dir.path()).is_empty());
        assert_eq!(store.ids(), [1, 2]);
    }

    #[test]
    fn a_face_whose_crop_is_missing_is_kept_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        record(&store, 0, 0);
        record(&store, 0, 1);
        drop(store);
        fs::remove_file(dir.path().join("unknowns/crops/1.jpg")).unwrap();
        // And a crop no face names (a kill between crop and journal line) goes.
        fs::write(dir.path().join("unknowns/crops/7.jpg"), b"x").unwrap();
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        assert_eq!(store.ids(), [1, 2]);
        assert_eq!(store.clusters()[0].faces, [(1, false), (2, true)]);
        assert_eq!(crop_files(dir.path()), ["2.jpg"]);
        // Its id is not given again.
        assert_eq!(record(&store, 0, 2), 8);
    }

    #[test]
    fn the_best_samples_come_first_and_a_nan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(20, false)).unwrap();
        for k in 0..8 {
            record(&store, 0, k);
        }
        let offer = store.enroll_samples(1).unwrap();
        let best: Vec<u64> = offer.samples.iter().map(|s| s.entry).collect();
        assert_eq!(best, [8, 7, 6, 5, 4], "sharpest first");
        assert_eq!(offer.members.len(), 8);
        assert!(store.enroll_samples(2).is_none());
        let (image, bbox) = frame();
        let mut bad = person(0, 0);
        bad[3] = f64::NAN;
        assert!(store.record(&image, bbox, &bad, 40, 1.0).is_err());
        assert_eq!(store.len(), 8);
    }

    #[test]
    fn the_fuzz_check_holds_for_real_journals_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(3, false)).unwrap();
        for k in 0..5 {
            record(&store, 0, k);
        }
        let journal = fs::read(dir.path().join("unknowns/faces.jsonl")).unwrap();
        for data in [
            &journal[..],
            &journal[..journal.len() / 2],
            b"{\"op\":\"next\",\"id\":18446744073709551615}\n",
            b"{\"op\":\"drop\",\"ids\":[]}\n\xff\n",
            b"",
        ] {
            fuzz_journal(data);
        }
        assert_eq!(replay(&journal).faces(), 3);
    }

    #[test]
    fn with_max_zero_nothing_is_kept_and_the_folder_goes() {
        let dir = tempfile::tempdir().unwrap();
        two_faces(dir.path(), true);
        fs::write(dir.path().join("unknowns/faces.jsonl.damaged-1"), b"x").unwrap();
        let off = settings(0, true);
        assert!(off.is_off());
        let store = Unknowns::open(dir.path(), off).unwrap();
        assert!(!dir.path().join("unknowns").exists());
        let (image, bbox) = frame();
        assert!(matches!(
            store.record(&image, bbox, &person(0, 0), 40, 500.0),
            Err(UnknownsError::Off)
        ));
        assert!(store.clusters().is_empty() && store.is_empty());
        assert_eq!(store.sweep_old().unwrap(), 0);
        assert_eq!(store.forget_matching(&[person(0, 0)], 0.6).unwrap(), 0);
        assert!(!dir.path().join("unknowns").exists(), "nothing written");
        assert!(list(dir.path(), &off).unwrap().is_empty());
        assert_eq!(list_json(&off, &[])["collecting"], false);
    }

    /// Sets every face's recorded time in the journal of `dir` to `days` days ago.
    fn age_journal(dir: &Path, ids: &[u64], days: u64) {
        let journal = dir.join("unknowns/faces.jsonl");
        let old = now_ms() - days * 86_400_000;
        let text: Vec<String> = fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                if v["op"] == "add" && ids.contains(&v["id"].as_u64().unwrap()) {
                    v["time_ms"] = old.into();
                }
                v.to_string()
            })
            .collect();
        fs::write(&journal, text.join("\n") + "\n").unwrap();
    }

    #[test]
    fn faces_past_the_age_limit_go_with_their_crops() {
        let dir = tempfile::tempdir().unwrap();
        two_faces(dir.path(), true);
        age_journal(dir.path(), &[1], 8);
        let old_aside = format!("faces.jsonl.damaged-{}", now_ms() - 8 * 86_400_000);
        let new_aside = format!("faces.jsonl.damaged-{}", now_ms());
        for name in [&old_aside, &new_aside] {
            fs::write(dir.path().join("unknowns").join(name), b"x").unwrap();
        }
        // No age limit: kept.
        let store =
            Unknowns::open(dir.path(), settings(10, true).with_max_age_days(Some(0))).unwrap();
        assert_eq!(store.ids(), [1, 2]);
        assert_eq!(store.sweep_old().unwrap(), 0);
        drop(store);
        // A week: face 1 (8 days) goes at open, with its crop and the old journal aside.
        let week = settings(10, true).with_max_age_days(Some(7));
        let store = Unknowns::open(dir.path(), week).unwrap();
        assert_eq!(store.ids(), [2]);
        assert_eq!(crop_files(dir.path()), ["2.jpg"]);
        assert!(!dir.path().join("unknowns").join(&old_aside).exists());
        assert!(dir.path().join("unknowns").join(&new_aside).exists());
        drop(store);
        // The hourly sweep does the same for a face that aged while the service ran.
        let store = Unknowns::open(dir.path(), week).unwrap();
        record(&store, 3, 0);
        assert_eq!(store.sweep_old().unwrap(), 0);
        {
            let mut state = sync_lock(&store.state);
            assert_eq!(state.faces[0].id, 2);
            state.faces[0].time_ms = now_ms() - 30 * 86_400_000;
        }
        assert_eq!(store.sweep_old().unwrap(), 1);
        assert_eq!(store.ids(), [3]);
        assert_eq!(crop_files(dir.path()), ["3.jpg"]);
        drop(store);
        let store = Unknowns::open(dir.path(), week).unwrap();
        assert_eq!(store.ids(), [3], "the drop was journalled");
    }

    #[test]
    fn the_faces_near_a_persons_samples_are_found_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Unknowns::open(dir.path(), settings(10, true)).unwrap();
        record(&store, 0, 0);
        record(&store, 1, 0);
        record(&store, 0, 1);
        let near = matching(dir.path(), &[person(0, 0)], 0.1).unwrap();
        let ids: Vec<u64> = near.iter().map(|f| f.id).collect();
        assert_eq!(ids, [1, 3]);
        assert!(near.iter().all(|f| f.crop.is_some() && f.distance <= 0.1));
        assert!(matching(dir.path(), &[], 0.1).unwrap().is_empty());
        assert_eq!(store.forget_matching(&[person(0, 0)], 0.1).unwrap(), 2);
        assert_eq!(store.ids(), [2]);
        assert_eq!(crop_files(dir.path()), ["2.jpg"]);
    }

    #[test]
    fn the_crop_margin_is_clamped_to_the_frame() {
        let (image, _) = frame();
        let corner = FaceBox {
            top: 0,
            right: 30,
            bottom: 20,
            left: 10,
        };
        let crop = crop_with_margin(&image, &corner);
        assert_eq!((crop.width, crop.height), (40, 30));
    }
}
