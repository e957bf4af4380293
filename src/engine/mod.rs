//! Face engine: HOG detection, 5-point landmarks and the 128-D ResNet encoding, on the very
//! dlib models the Python `face_recognition` library uses, step for step as it does them.
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
//! are lent to one thread at a time ([`Lender`]): at most one per pool thread, the one used
//! last lent first.
//!
//! Detection costs time and memory in proportion to the pixels scanned, so an image above the
//! detection budget ([`Engine::detect_max_pixels`], `DETECT_MAX_PIXELS`) is detected on a copy
//! scaled down to fit it, and each face's landmarks and encoding are computed on a crop of the
//! full-resolution image around it: the shape predictor and the chip extraction only read pixels
//! near the face, so the crop gives the very encoding the whole image would (see
//! [`Engine::encode_from_crops`]). Images within the budget take exactly the path the Python
//! library takes.

mod allocator;
pub mod blas;
mod dlib_ext;
pub mod hog;
pub mod models;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, FaceLandmarks, ImageMatrix, LandmarkPredictor,
    LandmarkPredictorTrait, Rectangle,
};
use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::image_io::{self, ImageError, Oriented, RgbImage};
use allocator::release_free_memory;
use hog::{HogModel, Spread};
pub use models::ModelError;

/// Default detection budget in pixels: a 1920x1080 frame is still detected at full size, a
/// larger image on a copy scaled down to this many pixels. At upsample 1, detecting this many
/// pixels peaks ~95 MB above the loaded models with 2 rayon threads, ~70 MB with one
/// (benches/memory.rs).
pub const DEFAULT_DETECT_MAX_PIXELS: u64 = 2_100_000;

/// Face regions encoded at once from a large image hold at most this many pixels together
/// (3 bytes each in dlib's copies): 24 MB.
pub const REGION_BATCH_PIXELS: u64 = 8_000_000;

/// After a detection that scanned more pixels than this (after upsampling), the memory it freed
/// is handed back to the system ([`release_free_memory`]); below it, glibc keeps it for reuse.
const TRIM_AFTER_PIXELS: u64 = 2_000_000;

/// Length of a face encoding.
pub const ENCODING_LEN: usize = 128;

/// A face encoding: a point in the 128-D space where distance means dissimilarity.
pub type Encoding = [f64; ENCODING_LEN];

/// A face box in pixels of the image, clipped to it. Serialized as `[top, right, bottom, left]`,
/// the original service's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaceBox {
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
    pub left: i64,
}

impl FaceBox {
    pub fn area(&self) -> i64 {
        (self.right - self.left).max(0) * (self.bottom - self.top).max(0)
    }

    pub fn as_css(&self) -> [i64; 4] {
        [self.top, self.right, self.bottom, self.left]
    }

    /// Clips a detector rectangle to the image, like `face_recognition._trim_css_to_bounds`.
    fn clipped(r: &Rectangle, width: usize, height: usize) -> Self {
        FaceBox {
            top: long(r.top).max(0),
            right: long(r.right).min(width as i64),
            bottom: long(r.bottom).min(height as i64),
            left: long(r.left).max(0),
        }
    }

    fn to_rect(self) -> Rectangle {
        Rectangle {
            left: self.left as _,
            top: self.top as _,
            right: self.right as _,
            bottom: self.bottom as _,
        }
    }
}

impl Serialize for FaceBox {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_css().serialize(s)
    }
}

/// dlib's five landmarks of a face, `(x, y)` in pixels of the image its box is in: the outer
/// and inner corner of the eye on the image's right (0, 1), of the eye on the image's left
/// (2, 3), then the base of the nose (4) (for an upright face seen from the front).
pub type Landmarks = [(i64, i64); 5];

/// One face found in an image.
#[derive(Debug, Clone)]
pub struct Face {
    pub bbox: FaceBox,
    pub encoding: Encoding,
    /// The points the encoding was aligned on (enrollment measures the head's yaw from them).
    pub landmarks: Landmarks,
}

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

    pub fn models_dir(&self) -> &std::path::Path {
        &self.models_dir
    }

    pub fn upsample(&self) -> u32 {
        self.upsample
    }

    pub fn jitters(&self) -> u32 {
        self.jitters
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig::new("models")
    }
}

/// Models that keep scratch buffers while they work (dlib's detector keeps its feature pyramid,
/// the network its activations), lent to one thread at a time.
///
/// Contract: at most `max` copies ever exist, `max` being the engine's pool threads, and only
/// those threads borrow, one copy each at a time: so each core holds at most one working set,
/// and a borrower that finds none idle while `max` exist waits for one (never for long: no
/// borrower waits on anything else while it holds one). Returned copies are reused last-in
/// first-out, so a box serving one client at a time keeps using (and keeping in memory) one.
struct Lender<T> {
    state: Mutex<LenderState<T>>,
    returned: Condvar,
    max: usize,
}

struct LenderState<T> {
    idle: Vec<T>,
    made: usize,
}

impl<T> Lender<T> {
    fn new(first: T, max: usize) -> Self {
        Lender {
            state: Mutex::new(LenderState {
                idle: vec![first],
                made: 1,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        }
    }

    /// An idle copy; else, below `max`, a new one copied (by `copy`) from the next copy that
    /// comes back, so no spare is ever kept just to copy from; else the next one back.
    fn borrow(&self, copy: impl FnOnce(&T) -> T) -> Loan<'_, T> {
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = state.idle.pop() {
                return Loan::new(self, item);
            }
            if state.made < self.max {
                state.made += 1;
                let source = loop {
                    match state.idle.pop() {
                        Some(item) => break item,
                        None => state = locks::wait(&self.returned, state),
                    }
                };
                drop(state);
                let item = copy(&source);
                self.give_back(source);
                return Loan::new(self, item);
            }
            state = locks::wait(&self.returned, state);
        }
    }

    /// A copy of its own for the caller, made from a borrowed one: it counts against no limit
    /// and is gone when the caller drops it.
    fn spare(&self, copy: impl Fn(&T) -> T) -> T {
        let loan = self.borrow(&copy);
        copy(&loan)
    }

    fn give_back(&self, item: T) {
        lock(&self.state).idle.push(item);
        self.returned.notify_one();
    }

    /// How many copies exist (idle or lent).
    fn made(&self) -> usize {
        lock(&self.state).made
    }
}

/// A borrowed copy, given back when dropped.
struct Loan<'a, T> {
    lender: &'a Lender<T>,
    item: Option<T>,
}

impl<'a, T> Loan<'a, T> {
    fn new(lender: &'a Lender<T>, item: T) -> Self {
        Loan {
            lender,
            item: Some(item),
        }
    }
}

impl<T> std::ops::Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Present from construction until drop.
        self.item.as_ref().expect("lent item present until drop")
    }
}

impl<T> std::ops::DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Present from construction until drop.
        self.item.as_mut().expect("lent item present until drop")
    }
}

impl<T> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.lender.give_back(item);
        }
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

/// A poisoned lock only means another thread panicked while holding it; the pools stay whole.
use crate::locks::{self, lock};

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

    /// Finds every face in `image` and encodes them (in parallel when there are several). An
    /// image above the detection budget is detected on a downscaled copy and encoded from crops.
    pub fn analyze(&self, image: &RgbImage) -> Vec<Face> {
        if self.detects_at_full_size(image.width, image.height) {
            let frame = Frame::new(image);
            let boxes = self.detect_in(&frame);
            self.encode_in(&frame, &boxes)
        } else {
            let boxes = self.detect(image);
            self.encode_from_crops(&Oriented::upright(image), &boxes)
        }
    }

    /// The number of faces in `image` and the largest one (the first of equal boxes), encoded
    /// with `jitters` re-encodings whatever the engine's setting: enrollment takes more care
    /// than recognition. Only that face is encoded.
    pub fn analyze_largest(&self, image: &RgbImage, jitters: u32) -> (usize, Option<Face>) {
        let full_size = self.detects_at_full_size(image.width, image.height);
        let frame = full_size.then(|| Frame::new(image));
        let boxes = match &frame {
            Some(frame) => self.detect_in(frame),
            None => self.detect(image),
        };
        let Some(largest) = largest_box(&boxes) else {
            return (0, None);
        };
        let face = match &frame {
            Some(frame) => self.encode_in_with(frame, &[largest], jitters).pop(),
            None => self
                .encode_from_crops_with(&Oriented::upright(image), &[largest], jitters)
                .pop(),
        };
        (boxes.len(), face)
    }

    /// Analyzes several images in parallel; results in the same order.
    pub fn analyze_batch(&self, images: &[RgbImage]) -> Vec<Vec<Face>> {
        self.install(|| images.par_iter().map(|img| self.analyze(img)).collect())
    }

    /// Face boxes only, clipped to the image, in the detector's order (found on a downscaled
    /// copy when the image is above the detection budget).
    pub fn detect(&self, image: &RgbImage) -> Vec<FaceBox> {
        if self.detects_at_full_size(image.width, image.height) {
            self.detect_in(&Frame::new(image))
        } else {
            let small = image_io::downscale(image, self.detect_max_pixels);
            self.detect_on_copy(&small, (image.width, image.height))
        }
    }

    /// Encodes the faces at `boxes` (as returned by [`Engine::detect`]).
    pub fn encode(&self, image: &RgbImage, boxes: &[FaceBox]) -> Vec<Face> {
        if self.detects_at_full_size(image.width, image.height) {
            self.encode_in(&Frame::new(image), boxes)
        } else {
            self.encode_from_crops(&Oriented::upright(image), boxes)
        }
    }

    /// Face boxes of an image of `size` (upright width, height) found on `small`, an upright
    /// copy of it scaled down (to the detection budget), in pixels of the full image. Only
    /// `small` is scanned: memory and time follow its size, not the image's.
    pub fn detect_on_copy(&self, small: &RgbImage, size: (usize, usize)) -> Vec<FaceBox> {
        let Ok(frame) = Frame::try_new(small) else {
            return Vec::new();
        };
        let found = self.detect_in(&frame);
        drop(frame);
        scale_boxes(&found, (small.width, small.height), size)
    }

    /// Landmarks and encodings of the faces at `boxes` (pixels of the upright `image`), each
    /// computed on a crop of `image` around its face ([`face_region`]): no full-size dlib copy
    /// of the image is made, and crops are turned upright one by one. Faces are encoded in
    /// parallel in batches whose crops hold at most [`REGION_BATCH_PIXELS`] pixels together
    /// (a face larger than that alone), so a group photo with big faces stays bounded too.
    /// dlib's shape predictor reads pixels within about half a face of the box, and the chip
    /// extraction a grown, rotated square around the landmarks, so the crop gives the same
    /// encoding as the whole image (identical in tests/large_images.rs).
    pub fn encode_from_crops(&self, image: &Oriented<'_>, boxes: &[FaceBox]) -> Vec<Face> {
        self.encode_from_crops_with(image, boxes, self.config.jitters)
    }

    /// As [`Engine::encode_from_crops`], with `jitters` re-encodings per face.
    pub fn encode_from_crops_with(
        &self,
        image: &Oriented<'_>,
        boxes: &[FaceBox],
        jitters: u32,
    ) -> Vec<Face> {
        self.install(|| self.encode_regions(image, boxes, jitters))
    }

    fn encode_regions(&self, image: &Oriented<'_>, boxes: &[FaceBox], jitters: u32) -> Vec<Face> {
        let (width, height) = (image.width(), image.height());
        let regions: Vec<_> = boxes
            .iter()
            .map(|b| (*b, face_region(b, width, height)))
            .collect();
        let mut faces = Vec::with_capacity(boxes.len());
        let mut rest = regions.as_slice();
        while !rest.is_empty() {
            let mut total = 0u64;
            let take = rest
                .iter()
                .take_while(|(_, (t, r, b, l))| {
                    total += ((r - l) * (b - t)) as u64;
                    total <= REGION_BATCH_PIXELS
                })
                .count()
                .max(1);
            let (batch, next) = rest.split_at(take);
            rest = next;
            faces.par_extend(batch.par_iter().filter_map(|&(b, region)| {
                let (top, right, bottom, left) = region;
                let frame = Frame::from_region(image, top, right, bottom, left);
                let (dx, dy) = (left as i64, top as i64);
                let local = FaceBox {
                    top: b.top - dy,
                    right: b.right - dx,
                    bottom: b.bottom - dy,
                    left: b.left - dx,
                };
                let mut face = self.encode_in_with(&frame, &[local], jitters).pop()?;
                face.bbox = b;
                // Back to the whole image's pixels, like the box.
                for p in &mut face.landmarks {
                    *p = (p.0 + dx, p.1 + dy);
                }
                Some(face)
            }));
        }
        faces
    }

    /// The five landmark points `(x, y)` of each face at `boxes`.
    pub fn landmarks(&self, image: &RgbImage, boxes: &[FaceBox]) -> Vec<Vec<(i64, i64)>> {
        let frame = Frame::new(image);
        self.shapes_in(&frame, boxes)
            .iter()
            .map(|s| s.0.iter().map(|p| (long(p.x()), long(p.y()))).collect())
            .collect()
    }

    /// Face boxes in `frame`, clipped to it.
    pub fn detect_in(&self, frame: &Frame) -> Vec<FaceBox> {
        self.detect_upsampled(frame, self.config.upsample)
    }

    fn detect_upsampled(&self, frame: &Frame, upsample: u32) -> Vec<FaceBox> {
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

    /// Face boxes found in a copy of `frame` scaled by `scale` (0 < scale <= 1) and upsampled
    /// `upsample` times, mapped back to `frame`'s pixels: detection is the costly step and
    /// scales with the pixel count, while landmarks and encodings stay on the full frame.
    pub fn detect_scaled(&self, frame: &Frame, scale: f64, upsample: u32) -> Vec<FaceBox> {
        if !(scale > 0.0 && scale < 1.0) {
            return self.detect_upsampled(frame, upsample);
        }
        let small = self.install(|| frame.scaled(scale));
        let found = self.detect_upsampled(&small, upsample);
        scale_boxes(
            &found,
            (small.width, small.height),
            (frame.width, frame.height),
        )
    }

    /// The landmark shape of each face at `boxes` (in parallel when there are several).
    pub fn shapes_in(&self, frame: &Frame, boxes: &[FaceBox]) -> Vec<Shape> {
        self.install(|| {
            boxes
                .par_iter()
                .map(|b| Shape(self.predictor.face_landmarks(&frame.matrix, &b.to_rect())))
                .collect()
        })
    }

    /// The encoding of each face from its shape (in parallel when there are several).
    pub fn encode_shapes(&self, frame: &Frame, faces: &[(FaceBox, Shape)]) -> Vec<Face> {
        self.encode_shapes_with(frame, faces, self.config.jitters)
    }

    /// As [`Engine::encode_shapes`], with `jitters` re-encodings per face (1 = none).
    pub fn encode_shapes_with(
        &self,
        frame: &Frame,
        faces: &[(FaceBox, Shape)],
        jitters: u32,
    ) -> Vec<Face> {
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
            landmarks: shape.five(),
        }
    }

    /// Landmarks then encodings of the faces at `boxes`.
    pub fn encode_in(&self, frame: &Frame, boxes: &[FaceBox]) -> Vec<Face> {
        self.encode_in_with(frame, boxes, self.config.jitters)
    }

    /// As [`Engine::encode_in`], with `jitters` re-encodings per face (1 = none).
    pub fn encode_in_with(&self, frame: &Frame, boxes: &[FaceBox], jitters: u32) -> Vec<Face> {
        let shapes = self.shapes_in(frame, boxes);
        let faces: Vec<(FaceBox, Shape)> = boxes.iter().copied().zip(shapes).collect();
        self.encode_shapes_with(frame, &faces, jitters)
    }
}

/// Boxes found in an image of size `from` mapped to an image of size `to` (the same picture
/// scaled), clipped to it.
fn scale_boxes(boxes: &[FaceBox], from: (usize, usize), to: (usize, usize)) -> Vec<FaceBox> {
    let (sx, sy) = (
        to.0 as f64 / from.0.max(1) as f64,
        to.1 as f64 / from.1.max(1) as f64,
    );
    let up = |v: i64, s: f64| (v as f64 * s).round() as i64;
    boxes
        .iter()
        .map(|b| FaceBox {
            top: up(b.top, sy).max(0),
            right: up(b.right, sx).min(to.0 as i64),
            bottom: up(b.bottom, sy).min(to.1 as i64),
            left: up(b.left, sx).max(0),
        })
        .collect()
}

/// The part of a `width`x`height` image that landmarks and the encoder look at for the face at
/// `b`: the box grown by its larger side on every side, clipped; `(top, right, bottom, left)`.
pub fn face_region(b: &FaceBox, width: usize, height: usize) -> (usize, usize, usize, usize) {
    let margin = (b.right - b.left).max(b.bottom - b.top).max(1);
    let clamp = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
    (
        clamp(b.top - margin, height),
        clamp(b.right + margin, width),
        clamp(b.bottom + margin, height),
        clamp(b.left - margin, width),
    )
}

/// An image in dlib's own layout, converted once and shared by the steps that need it.
pub struct Frame {
    matrix: ImageMatrix,
    pub width: usize,
    pub height: usize,
}

impl Frame {
    /// Copies `image` into dlib's layout.
    ///
    /// # Panics
    /// When `image.pixels` does not hold exactly `width * height` RGB pixels (its fields are
    /// public, so this is checked, not assumed; [`Frame::try_new`] returns an error instead).
    /// Images from [`crate::image_io`] always do.
    pub fn new(image: &RgbImage) -> Frame {
        match Frame::try_new(image) {
            Ok(frame) => frame,
            Err(e) => panic!("Frame::new: {e}"),
        }
    }

    /// Copies `image` into dlib's layout; an error when its pixel buffer does not match its size.
    pub fn try_new(image: &RgbImage) -> Result<Frame, ImageError> {
        if !image.is_consistent() {
            return Err(ImageError::Corrupt(format!(
                "{} bytes of pixels for a {}x{} RGB image",
                image.pixels.len(),
                image.width,
                image.height
            )));
        }
        // SAFETY: ImageMatrix::new reads exactly width * height * 3 bytes from the pointer, and
        // we just checked that `pixels` holds that many (is_consistent: no overflow, equal
        // length); the borrow keeps them alive and unchanged for the call, which copies them.
        let matrix = unsafe { ImageMatrix::new(image.width, image.height, image.pixels.as_ptr()) };
        Ok(Frame {
            matrix,
            width: image.width,
            height: image.height,
        })
    }

    /// The upright rectangle `[left, right) x [top, bottom)` of `image` (clipped to it),
    /// copied straight into dlib's layout: the same pixels as `Frame::new(&image.crop(..))`
    /// without the intermediate RGB crop.
    pub fn from_region(
        image: &Oriented<'_>,
        top: usize,
        right: usize,
        bottom: usize,
        left: usize,
    ) -> Frame {
        let (right, bottom) = (right.min(image.width()), bottom.min(image.height()));
        let (left, top) = (left.min(right), top.min(bottom));
        let (width, height) = (right - left, bottom - top);
        let matrix =
            dlib_ext::matrix_from_rows(width, height, |y, row| image.copy_row(top + y, left, row));
        Frame {
            matrix,
            width,
            height,
        }
    }

    /// A bilinear-resampled copy scaled by `scale`, at least 1x1.
    pub fn scaled(&self, scale: f64) -> Frame {
        let dim = |v: usize| ((v as f64 * scale).round() as usize).max(1);
        let (width, height) = (dim(self.width), dim(self.height));
        Frame {
            matrix: self.matrix.resize(width, height),
            width,
            height,
        }
    }
}

/// The five landmark points of one face, in the form the encoder takes.
pub struct Shape(FaceLandmarks);

impl Shape {
    /// The points as [`Landmarks`] (the engine loads the 5-point model; missing points, which
    /// it never leaves, would read as the origin).
    fn five(&self) -> Landmarks {
        let mut out = [(0, 0); 5];
        for (o, p) in out.iter_mut().zip(self.0.iter()) {
            *o = (long(p.x()), long(p.y()));
        }
        out
    }
}

/// The largest of `boxes` (the first of equals), as enrollment picks its face.
pub fn largest_box(boxes: &[FaceBox]) -> Option<FaceBox> {
    boxes
        .iter()
        .copied()
        .reduce(|best, b| if b.area() > best.area() { b } else { best })
}

/// dlib coordinates are C `long`: 64-bit here, 32-bit on armv7.
#[allow(clippy::useless_conversion)]
fn long(v: std::os::raw::c_long) -> i64 {
    i64::from(v)
}

/// Euclidean distance between two encodings.
pub fn distance(a: &Encoding, b: &Encoding) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

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

    #[test]
    fn a_lender_reuses_the_last_copy_and_never_makes_more_than_its_max() {
        let lender = Lender::new(0u32, 3);
        for _ in 0..5 {
            drop(lender.borrow(|_| unreachable!("one borrower at a time needs no copy")));
        }
        assert_eq!(lender.made(), 1);

        // Eight threads borrowing at once, each holding its copy a moment: at most three exist,
        // all copied from the first (value 0), and every borrower is served.
        let served = std::sync::atomic::AtomicUsize::new(0);
        let held = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let item = lender.borrow(|source| *source);
                        assert_eq!(*item, 0);
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        held.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(served.load(Ordering::SeqCst), 160);
        assert!(lender.made() <= 3, "{} copies", lender.made());
        assert!(most.load(Ordering::SeqCst) <= 3);
        let made = lender.made();
        assert_eq!(lock(&lender.state).idle.len(), made, "every copy came back");
    }

    #[test]
    fn a_spare_is_the_callers_own_and_leaves_the_lent_copies_as_they_were() {
        let lender = Lender::new(7u32, 2);
        let spare = lender.spare(|source| *source + 1);
        assert_eq!(spare, 8, "copied from a lent copy");
        assert_eq!(lender.made(), 1, "a spare is not one of the lent copies");
        assert_eq!(
            lock(&lender.state).idle,
            vec![7],
            "the copy it came from is back"
        );
    }

    #[test]
    fn a_frame_refuses_pixels_that_do_not_fit_its_size() {
        let short = RgbImage {
            width: 100,
            height: 100,
            pixels: vec![0; 10],
        };
        assert!(Frame::try_new(&short).is_err());
        let overflowing = RgbImage {
            width: usize::MAX,
            height: 3,
            pixels: vec![0; 9],
        };
        assert!(Frame::try_new(&overflowing).is_err());
        assert!(std::panic::catch_unwind(|| Frame::new(&short)).is_err());
        let fine = RgbImage::from_raw(4, 3, vec![7; 36]).unwrap();
        let frame = Frame::try_new(&fine).unwrap();
        assert_eq!((frame.width, frame.height), (4, 3));
    }

    #[test]
    fn face_regions_grow_by_a_face_and_stay_inside() {
        let b = FaceBox {
            top: 100,
            right: 260,
            bottom: 220,
            left: 160,
        };
        assert_eq!(face_region(&b, 1000, 1000), (0, 380, 340, 40));
        assert_eq!(face_region(&b, 300, 250), (0, 300, 250, 40));
    }

    #[test]
    fn boxes_scale_back_to_the_full_image() {
        let small = [FaceBox {
            top: 10,
            right: 50,
            bottom: 40,
            left: 20,
        }];
        let full = scale_boxes(&small, (100, 80), (400, 320));
        assert_eq!(
            full,
            [FaceBox {
                top: 40,
                right: 200,
                bottom: 160,
                left: 80
            }]
        );
        let edge = [FaceBox {
            top: -3,
            right: 100,
            bottom: 80,
            left: 95,
        }];
        let clipped = scale_boxes(&edge, (100, 80), (333, 250));
        assert_eq!(clipped[0].top, 0);
        assert_eq!((clipped[0].right, clipped[0].bottom), (333, 250));
    }
}
