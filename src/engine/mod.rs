//! Face engine: HOG detection, 5-point landmarks and the 128-D ResNet encoding, on the very
//! dlib models the Python `face_recognition` library uses, step for step as it does them.
//!
//! dlib's detector and network keep scratch buffers, so each thread works with a [`Worker`] of
//! its own, checked out of a pool and returned after use. The pool grows to the number of
//! threads that need one at once (HTTP workers plus the rayon pool) and never shrinks.

mod dlib_ext;
pub mod models;

use std::path::PathBuf;
use std::sync::Mutex;

use dlib_face_recognition::{
    FaceEncoderNetwork, FaceEncoderTrait, FaceLandmarks, ImageMatrix, LandmarkPredictor,
    LandmarkPredictorTrait, Rectangle,
};
use rayon::prelude::*;
use serde::{Serialize, Serializer};

use crate::image_io::RgbImage;
use dlib_ext::HogDetector;
pub use models::ModelError;

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

/// One face found in an image.
#[derive(Debug, Clone)]
pub struct Face {
    pub bbox: FaceBox,
    pub encoding: Encoding,
}

/// How the engine runs; the defaults are the original service's.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub models_dir: PathBuf,
    /// Times the image is upsampled before HOG detection (finds smaller faces, costs ~4x each).
    pub upsample: u32,
    /// Re-encodings of randomly jittered copies of each face, averaged (1 = none).
    pub jitters: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            models_dir: PathBuf::from("models"),
            upsample: 1,
            jitters: 1,
        }
    }
}

/// The models one thread needs to find and encode faces.
#[derive(Clone)]
struct Worker {
    detector: HogDetector,
    predictor: LandmarkPredictor,
    encoder: FaceEncoderNetwork,
}

impl Clone for HogDetector {
    fn clone(&self) -> Self {
        HogDetector::new()
    }
}

static JITTER: Mutex<()> = Mutex::new(());

pub struct Engine {
    config: EngineConfig,
    /// Idle workers, ready for the next caller.
    idle: Mutex<Vec<Worker>>,
    /// The loaded models, copied when every idle worker is in use.
    prototype: Mutex<Worker>,
}

struct Checkout<'a> {
    engine: &'a Engine,
    worker: Option<Worker>,
}

impl std::ops::Deref for Checkout<'_> {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        // Present from construction until drop.
        self.worker.as_ref().expect("worker present until drop")
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.worker.take() {
            lock(&self.engine.idle).push(w);
        }
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (a pool of
/// models) is still whole, so carry on rather than take the whole service down.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
        let prototype = Worker {
            detector: HogDetector::new(),
            predictor,
            encoder,
        };
        Ok(Engine {
            config,
            idle: Mutex::new(vec![prototype.clone()]),
            prototype: Mutex::new(prototype),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    fn checkout(&self) -> Checkout<'_> {
        let pooled = lock(&self.idle).pop();
        let worker = pooled.unwrap_or_else(|| lock(&self.prototype).clone());
        Checkout {
            engine: self,
            worker: Some(worker),
        }
    }

    /// Finds every face in `image` and encodes them (in parallel when there are several).
    pub fn analyze(&self, image: &RgbImage) -> Vec<Face> {
        let frame = Frame::new(image);
        let boxes = self.detect_in(&frame);
        self.encode_in(&frame, &boxes)
    }

    /// Analyzes several images in parallel; results in the same order.
    pub fn analyze_batch(&self, images: &[RgbImage]) -> Vec<Vec<Face>> {
        images.par_iter().map(|img| self.analyze(img)).collect()
    }

    /// Face boxes only, clipped to the image, in the detector's order.
    pub fn detect(&self, image: &RgbImage) -> Vec<FaceBox> {
        self.detect_in(&Frame::new(image))
    }

    /// Encodes the faces at `boxes` (as returned by [`Engine::detect`]).
    pub fn encode(&self, image: &RgbImage, boxes: &[FaceBox]) -> Vec<Face> {
        self.encode_in(&Frame::new(image), boxes)
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
        let worker = self.checkout();
        worker
            .detector
            .detect(&frame.matrix, upsample)
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
        let small = frame.scaled(scale);
        let (sx, sy) = (
            frame.width as f64 / small.width as f64,
            frame.height as f64 / small.height as f64,
        );
        let up = |v: i64, s: f64| (v as f64 * s).round() as i64;
        self.detect_upsampled(&small, upsample)
            .into_iter()
            .map(|b| FaceBox {
                top: up(b.top, sy).max(0),
                right: up(b.right, sx).min(frame.width as i64),
                bottom: up(b.bottom, sy).min(frame.height as i64),
                left: up(b.left, sx).max(0),
            })
            .collect()
    }

    /// The landmark shape of each face at `boxes` (in parallel when there are several).
    pub fn shapes_in(&self, frame: &Frame, boxes: &[FaceBox]) -> Vec<Shape> {
        boxes
            .par_iter()
            .map(|b| {
                Shape(
                    self.checkout()
                        .predictor
                        .face_landmarks(&frame.matrix, &b.to_rect()),
                )
            })
            .collect()
    }

    /// The encoding of each face from its shape (in parallel when there are several).
    pub fn encode_shapes(&self, frame: &Frame, faces: &[(FaceBox, Shape)]) -> Vec<Face> {
        faces
            .par_iter()
            .map(|(bbox, shape)| {
                let worker = self.checkout();
                // Jittering draws from one global dlib::rand in the crate's C++ glue, which is
                // not thread-safe: one jittered encoding at a time (it is the slow path anyway).
                let _jittering = (self.config.jitters > 1).then(|| lock(&JITTER));
                let encodings = worker.encoder.get_face_encodings(
                    &frame.matrix,
                    std::slice::from_ref(&shape.0),
                    self.config.jitters,
                );
                let mut encoding = [0.0; ENCODING_LEN];
                if let Some(e) = encodings.first() {
                    encoding.copy_from_slice(e.as_ref());
                }
                Face {
                    bbox: *bbox,
                    encoding,
                }
            })
            .collect()
    }

    /// Landmarks then encodings of the faces at `boxes`.
    pub fn encode_in(&self, frame: &Frame, boxes: &[FaceBox]) -> Vec<Face> {
        let shapes = self.shapes_in(frame, boxes);
        let faces: Vec<(FaceBox, Shape)> = boxes.iter().copied().zip(shapes).collect();
        self.encode_shapes(frame, &faces)
    }
}

/// An image in dlib's own layout, converted once and shared by the steps that need it.
pub struct Frame {
    matrix: ImageMatrix,
    pub width: usize,
    pub height: usize,
}

impl Frame {
    pub fn new(image: &RgbImage) -> Frame {
        debug_assert_eq!(image.pixels.len(), image.width * image.height * 3);
        // SAFETY: RgbImage guarantees pixels.len() == width * height * 3.
        let matrix = unsafe { ImageMatrix::new(image.width, image.height, image.pixels.as_ptr()) };
        Frame {
            matrix,
            width: image.width,
            height: image.height,
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
