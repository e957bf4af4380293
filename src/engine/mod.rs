//! Face engine: the dlib primitives, on the very models the Python `face_recognition` library
//! uses: HOG detection of an image at an upsample ([`Engine::detect`]), the 5-point landmarks of
//! boxes ([`Engine::landmarks`]) and the 128-D ResNet encoding of shaped faces with jitters
//! ([`Engine::encode`]). The staged face pipeline ([`crate::pipeline`]) puts them together
//! (decode, detect, select, landmarks, encode, match), large images included.
//!
//! HOG detection runs on one immutable model shared by every thread ([`hog::HogModel`]): one
//! detection scans its image pyramid on all cores of the rayon pool while some core has no
//! image of its own, and on its own thread once every core has one ([`spread_for`]); either
//! way with exactly the boxes of dlib's single-threaded detector, and no scratch kept once it
//! returns.
//!
//! Every call runs on the engine's own pool, one thread per core ([`Engine::install`]): dlib
//! never runs on a caller's thread (an HTTP worker, the camera loop). The shape predictor only
//! reads its model and is shared; the encoder network keeps its activations, so copies of it
//! are lent to one thread at a time ([`lender::Lender`]): at most one per pool thread, the one
//! used last lent first.
//!
//! Detection costs time and memory in proportion to the pixels scanned: the engine holds the
//! detection budget ([`Engine::detect_max_pixels`], `DETECT_MAX_PIXELS`) that the pipeline
//! scales larger images down to.

mod allocator;
pub mod blas;
mod dlib_ext;
mod face;
mod frame;
pub mod hog;
mod lender;
mod models;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, LandmarkPredictor, LandmarkPredictorTrait,
};
use rayon::prelude::*;

/// A poisoned lock only means another thread panicked while holding it; the pools stay whole.
use crate::locks::lock;

use allocator::release_free_memory;
pub use face::{distance, Encoding, Face, FaceBox, Landmarks, ENCODING_LEN};
pub use frame::{Frame, Shape};
use hog::{HogModel, Spread};
use lender::Lender;
pub use models::ModelError;

/// Default detection budget in pixels: a 1920x1080 frame is still detected at full size, a
/// larger image on a copy scaled down to this many pixels. At upsample 1, detecting this many
/// pixels peaks ~95 MB above the loaded models with 2 rayon threads, ~70 MB with one
/// (benches/memory.rs).
pub const DEFAULT_DETECT_MAX_PIXELS: u64 = 2_100_000;

/// After a detection that scanned more pixels than this (after upsampling), the memory it freed
/// is handed back to the system ([`release_free_memory`]); below it, glibc keeps it for reuse.
const TRIM_AFTER_PIXELS: u64 = 2_000_000;

/// How the engine runs; the defaults are the original service's.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    models_dir: PathBuf,
    upsample: u32,
    jitters: u32,
    threads: usize,
}

impl EngineConfig {
    /// Models from `models_dir`, upsample 1, no jitter, one thread per core.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            models_dir: models_dir.into(),
            upsample: 1,
            jitters: 1,
            threads: 0,
        }
    }

    /// Times the image is upsampled before HOG detection (finds smaller faces, costs ~4x each).
    pub fn with_upsample(mut self, upsample: u32) -> Self {
        self.upsample = upsample;
        self
    }

    /// Re-encodings of randomly jittered copies of each face, averaged (1 = none).
    pub fn with_jitters(mut self, jitters: u32) -> Self {
        self.jitters = jitters;
        self
    }

    /// Threads of the engine's pool (0: one per core, or `RAYON_NUM_THREADS`).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Where the model files are.
    pub fn models_dir(&self) -> &std::path::Path {
        &self.models_dir
    }

    /// Times images are upsampled before detection.
    pub fn upsample(&self) -> u32 {
        self.upsample
    }

    /// Jittered re-encodings averaged per face (1 = none).
    pub fn jitters(&self) -> u32 {
        self.jitters
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::new("models")
    }
}

static JITTER: Mutex<()> = Mutex::new(());

/// Finds and encodes faces; see the module docs.
///
/// Every call runs on the engine's own thread pool (one thread per core, [`Engine::install`]):
/// dlib never runs on the caller's thread (an HTTP worker, the camera loop), and the models
/// that keep scratch exist at most once per pool thread.
pub struct Engine {
    config: EngineConfig,
    /// Images with more pixels are detected on a downscaled copy (`DETECT_MAX_PIXELS`).
    detect_max_pixels: u64,
    pool: rayon::ThreadPool,
    /// The HOG face detector, shared by every detection (no per-thread copy).
    hog: HogModel,
    /// dlib's shape_predictor only reads its model: one copy serves every thread.
    predictor: LandmarkPredictor,
    encoders: Lender<FaceEncoderNetwork>,
    /// Images being worked on: [`Engine::install`] calls from outside the pool in progress.
    images: AtomicUsize,
}

/// How a detection spreads over a pool of `threads` while `images` images (its own included)
/// are worked on: over every thread while some thread has no image of its own, else on its
/// own thread. Measured on 2 cores with 4 clients, spreading every request cost ~150-185 ms
/// of CPU per request against ~146 ms alone: a thread waiting for a task another thread took
/// picks up work of the other image, and its own waits behind it.
pub fn spread_for(images: usize, threads: usize) -> Spread {
    if images < threads {
        Spread::AllThreads
    } else {
        Spread::OneThread
    }
}

/// Counts an image as worked on until dropped.
struct Working<'a>(&'a AtomicUsize);

impl<'a> Working<'a> {
    fn start(images: &'a AtomicUsize) -> Self {
        images.fetch_add(1, Ordering::SeqCst);
        Working(images)
    }
}

impl Drop for Working<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// Loads and verifies the models: fails with one clear line naming the missing or corrupt
    /// file and the command that fetches it.
    pub fn load(config: EngineConfig) -> Result<Engine, ModelError> {
        let dir = &config.models_dir;
        let landmarks_path = models::verified_path(dir, models::LANDMARKS_5)?;
        let encoder_path = models::verified_path(dir, models::ENCODER)?;
        let unreadable = |path: &PathBuf, reason: String| ModelError::Unreadable {
            path: path.clone(),
            reason,
        };
        let predictor =
            LandmarkPredictor::open(&landmarks_path).map_err(|e| unreadable(&landmarks_path, e))?;
        let encoder =
            FaceEncoderNetwork::open(&encoder_path).map_err(|e| unreadable(&encoder_path, e))?;
        blas::single_threaded();
        log::debug!("OpenBLAS kernels: {}", blas::corename());
        allocator::map_large_buffers();
        // 0: rayon's default, one thread per core unless RAYON_NUM_THREADS says otherwise.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("face-{i}"))
            .build()
            .map_err(|e| ModelError::Threads(e.to_string()))?;
        let threads = pool.current_num_threads();
        Ok(Engine {
            config,
            detect_max_pixels: DEFAULT_DETECT_MAX_PIXELS,
            pool,
            hog: HogModel::frontal_face(),
            predictor,
            encoders: Lender::new(encoder, threads),
            images: AtomicUsize::new(0),
        })
    }

    /// Runs `work` on the engine's pool (at once when already on it) and waits for it: callers
    /// put the whole of an image's work there, decoding included.
    pub fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        if self.pool.current_thread_index().is_some() {
            // Already on the pool: part of an image counted by the outer call.
            return work();
        }
        let _working = Working::start(&self.images);
        self.pool.install(work)
    }

    /// How a detection started now spreads over the pool ([`spread_for`]).
    pub fn spread(&self) -> Spread {
        spread_for(self.images.load(Ordering::SeqCst), self.threads())
    }

    /// Threads of the engine's pool: the most images worked on at once.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Copies of the encoder network that exist (at most [`Engine::threads`]).
    pub fn encoder_copies(&self) -> usize {
        self.encoders.made()
    }

    /// The same engine with another detection budget (at least 1 pixel).
    pub fn with_detect_max_pixels(mut self, max_pixels: u64) -> Engine {
        self.detect_max_pixels = max_pixels.max(1);
        self
    }

    /// How the engine was configured.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Images with more pixels than this are detected on a copy scaled down to this many.
    pub fn detect_max_pixels(&self) -> u64 {
        self.detect_max_pixels
    }

    /// Whether an image of `width`x`height` is detected at full size (the Python library's path).
    pub fn detects_at_full_size(&self, width: usize, height: usize) -> bool {
        width as u64 * height as u64 <= self.detect_max_pixels
    }

    /// Face boxes in `frame` upsampled `upsample` times (each finds faces half as wide and
    /// costs ~4x), clipped to it, in the detector's order. A detection of many pixels hands
    /// the memory it freed back to the system.
    pub fn detect(&self, frame: &Frame, upsample: u32) -> Vec<FaceBox> {
        // Every core of the engine's pool while one is free (spread_for); all scratch is freed
        // when it returns.
        let found = self.install(|| self.hog.detect_with(frame, upsample, self.spread()));
        let scanned = (frame.width as u64 * frame.height as u64)
            .saturating_mul(1u64.checked_shl(2 * upsample).unwrap_or(u64::MAX));
        if scanned > TRIM_AFTER_PIXELS {
            release_free_memory();
        }
        found
            .iter()
            .map(|r| FaceBox::clipped(r, frame.width, frame.height))
            .collect()
    }

    /// The landmark shape of each face at `boxes` (in parallel when there are several).
    pub fn landmarks(&self, frame: &Frame, boxes: &[FaceBox]) -> Vec<Shape> {
        self.install(|| {
            boxes
                .par_iter()
                .map(|b| Shape(self.predictor.face_landmarks(&frame.matrix, &b.to_rect())))
                .collect()
        })
    }

    /// The encoding of each shaped face, with `jitters` re-encodings of jittered copies
    /// averaged (1 = none), in parallel when there are several.
    pub fn encode(&self, frame: &Frame, faces: &[(FaceBox, Shape)], jitters: u32) -> Vec<Face> {
        self.install(|| {
            faces
                .par_iter()
                .map(|(bbox, shape)| self.encode_one(frame, *bbox, shape, jitters))
                .collect()
        })
    }

    fn encode_one(&self, frame: &Frame, bbox: FaceBox, shape: &Shape, jitters: u32) -> Face {
        let copy = |source: &FaceEncoderNetwork| source.clone();
        let shapes = std::slice::from_ref(&shape.0);
        let encodings = if jitters > 1 {
            // Jittering draws from one global dlib::rand in the crate's C++ glue, which is not
            // thread-safe: one jittered encoding at a time (it is the slow path anyway). Its
            // batch of chips grows a network's scratch to the batch, and a network keeps its
            // scratch: a throwaway copy does it, so the lent copies keep one chip's working set
            // (measured: 99 MB resident after an enrollment with 5 jitters against 84 MB).
            let _jittering = lock(&JITTER);
            let spare = self.encoders.spare(copy);
            spare.get_face_encodings(&frame.matrix, shapes, jitters)
        } else {
            let encoder = self.encoders.borrow(copy);
            encoder.get_face_encodings(&frame.matrix, shapes, jitters)
        };
        let mut encoding = [0.0; ENCODING_LEN];
        if let Some(e) = encodings.first() {
            encoding.copy_from_slice(e.as_ref());
        }
        Face {
            bbox,
            encoding,
            landmarks: shape.points(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detection_spreads_while_some_thread_has_no_image() {
        assert_eq!(spread_for(1, 2), Spread::AllThreads);
        assert_eq!(spread_for(2, 2), Spread::OneThread);
        assert_eq!(spread_for(3, 4), Spread::AllThreads);
        assert_eq!(spread_for(4, 4), Spread::OneThread);
        assert_eq!(spread_for(5, 4), Spread::OneThread);
        // One thread: nothing to spread over.
        assert_eq!(spread_for(1, 1), Spread::OneThread);
    }
}
