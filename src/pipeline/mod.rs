//! The one staged face pipeline: decode → detect → select → landmarks → encode → match, from
//! the engine's primitives ([`Engine::detect`], [`Engine::landmarks`], [`Engine::encode`]).
//! Requests (recognize, an enrollment candidate, a rejection: [`crate::recognizer`]) run it
//! whole through [`analyze_bytes`] or [`analyze_image`]; the camera
//! ([`crate::camera::Pipeline`]) runs its stages one by one ([`detect_scaled`], then its own
//! selection by size, blur and tracking, then [`encode_timed`]) and matches through the
//! recognizer. Every stage reports its wall-clock time to one hook, [`StageTimes`].
//!
//! - **decode**: the photo's bytes to upright RGB ([`crate::image_io`]).
//! - **detect**: HOG boxes. An image within the detection budget ([`Engine::detect_max_pixels`])
//!   is detected as it is, the Python library's path; a larger one on a copy scaled down to fit
//!   the budget ([`detect_on_copy`]), and its faces encoded from crops of the full-resolution
//!   image ([`encode_from_crops`]): detection never holds more than the budget's pixels, and a
//!   photo's full-size copy is decoded only once its small copy and the detector's scratch are
//!   gone.
//! - **select**: which faces are encoded: every face to recognize, the largest
//!   ([`largest_box`]) to enroll or reject.
//! - **landmarks** and **encode**: the five points, then the 128-D encoding, with jitters.
//! - **match**: the gallery's nearest people ([`crate::recognizer::Recognizer::label`]).

mod crops;
mod times;

use std::time::Instant;

use rayon::prelude::*;

use crate::engine::{Engine, Face, FaceBox, Frame};
use crate::image_io::{self, ImageError, Oriented, RgbImage};
pub use crops::{detect_on_copy, encode_from_crops, face_region, REGION_BATCH_PIXELS};
pub use times::{timed, StageTimes};

/// What a pass over a photo is for, which decides the select stage and the jitters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Every face, encoded at the engine's jitters (`FACE_JITTERS`).
    Recognize,
    /// Only the largest face, encoded with `jitters` re-encodings, and its crop kept.
    Enroll {
        /// Jittered re-encodings averaged (1 = none).
        jitters: u32,
    },
}

/// The faces of one photo, with what enrolling needs and how long each stage took.
#[derive(Debug)]
pub struct Analysis {
    /// Every face (recognizing) or the largest only (enrolling), encoded.
    pub faces: Vec<Face>,
    /// Faces detected, encoded or not.
    pub faces_found: usize,
    /// Upright width and height of the photo.
    pub size: (usize, usize),
    /// The pixels inside the largest face's box (enrolling only).
    pub largest_crop: Option<RgbImage>,
    /// How long each stage took.
    pub times: StageTimes,
    /// Whether the photo was detected at full size (within the detection budget); a larger
    /// one's landmarks and encodings are timed together, as `encode`.
    pub whole: bool,
}

impl Analysis {
    fn empty(size: (usize, usize), times: StageTimes, whole: bool) -> Analysis {
        Analysis {
            faces: Vec::new(),
            faces_found: 0,
            size,
            largest_crop: None,
            times,
            whole,
        }
    }
}

/// Decodes a photo of at most `max_pixels` pixels and runs the pipeline on it for `purpose`.
/// Within the detection budget this is decode-then-[`analyze_image`], the Python library's
/// path. Above it: a small upright copy is decoded (JPEG: DCT scaling; PNG: rows averaged as
/// they stream) and detected on, its scratch freed, then, only if a face was found, the photo
/// is decoded at full size as stored and each selected face encoded from an upright crop
/// around it: one full-size copy at a time, and never together with the detector's scratch.
pub fn analyze_bytes(
    engine: &Engine,
    bytes: &[u8],
    max_pixels: u64,
    purpose: Purpose,
) -> Result<Analysis, ImageError> {
    let mut times = StageTimes::default();
    let probe = image_io::probe(bytes, max_pixels)?;
    let size = (probe.width(), probe.height());
    if engine.detects_at_full_size(probe.stored_width, probe.stored_height) {
        let image = timed(&mut times.convert, || {
            let stored = image_io::decode_stored(bytes, &probe)?;
            Ok::<_, ImageError>(image_io::upright(stored, probe.orientation))
        })?;
        return Ok(analyze_whole(engine, &image, purpose, times));
    }
    let small = timed(&mut times.convert, || {
        image_io::decode_downscaled(bytes, &probe, engine.detect_max_pixels())
    })?;
    let boxes = timed(&mut times.detect, || detect_on_copy(engine, &small, size));
    drop(small);
    if boxes.is_empty() {
        return Ok(Analysis::empty(size, times, false));
    }
    let stored = timed(&mut times.convert, || {
        image_io::decode_stored(bytes, &probe)
    })?;
    let image = Oriented::new(&stored, probe.orientation);
    Ok(finish_from_crops(
        engine, &image, &boxes, purpose, size, times,
    ))
}

/// Runs the pipeline on a decoded image for `purpose` (no decode stage): at full size within
/// the detection budget, else detected on a scaled-down copy and encoded from crops.
pub fn analyze_image(engine: &Engine, image: &RgbImage, purpose: Purpose) -> Analysis {
    let mut times = StageTimes::default();
    if engine.detects_at_full_size(image.width, image.height) {
        return analyze_whole(engine, image, purpose, times);
    }
    let size = (image.width, image.height);
    let boxes = timed(&mut times.detect, || detect(engine, image));
    if boxes.is_empty() {
        return Analysis::empty(size, times, false);
    }
    finish_from_crops(
        engine,
        &Oriented::upright(image),
        &boxes,
        purpose,
        size,
        times,
    )
}

/// Detect, select, landmarks and encode on an image within the detection budget.
fn analyze_whole(
    engine: &Engine,
    image: &RgbImage,
    purpose: Purpose,
    mut times: StageTimes,
) -> Analysis {
    let size = (image.width, image.height);
    let started = Instant::now();
    let frame = Frame::new(image);
    let boxes = engine.detect(&frame, engine.config().upsample());
    times.detect += started.elapsed();
    let (chosen, jitters) = select(engine, &boxes, purpose);
    if chosen.is_empty() {
        return Analysis::empty(size, times, true);
    }
    let faces = encode_timed(engine, &frame, &chosen, jitters, &mut times);
    drop(frame);
    let largest_crop = match purpose {
        Purpose::Recognize => None,
        Purpose::Enroll { .. } => faces
            .first()
            .map(|f| crop_box(&Oriented::upright(image), &f.bbox)),
    };
    Analysis {
        faces,
        faces_found: boxes.len(),
        size,
        largest_crop,
        times,
        whole: true,
    }
}

/// Select, landmarks and encode of a large image's faces, from crops of the full image.
fn finish_from_crops(
    engine: &Engine,
    image: &Oriented<'_>,
    boxes: &[FaceBox],
    purpose: Purpose,
    size: (usize, usize),
    mut times: StageTimes,
) -> Analysis {
    let (chosen, jitters) = select(engine, boxes, purpose);
    let faces = timed(&mut times.encode, || {
        encode_from_crops(engine, image, &chosen, jitters)
    });
    let largest_crop = match purpose {
        Purpose::Recognize => None,
        Purpose::Enroll { .. } => faces.first().map(|f| crop_box(image, &f.bbox)),
    };
    Analysis {
        faces,
        faces_found: boxes.len(),
        size,
        largest_crop,
        times,
        whole: false,
    }
}

/// The select stage of a request: the faces to encode and the jitters to encode them with.
fn select(engine: &Engine, boxes: &[FaceBox], purpose: Purpose) -> (Vec<FaceBox>, u32) {
    match purpose {
        Purpose::Recognize => (boxes.to_vec(), engine.config().jitters()),
        Purpose::Enroll { jitters } => (largest_box(boxes).into_iter().collect(), jitters),
    }
}

/// The pixels inside `b` (clipped to the image).
fn crop_box(image: &Oriented<'_>, b: &FaceBox) -> RgbImage {
    image.crop(
        b.top.max(0) as usize,
        b.right.max(0) as usize,
        b.bottom.max(0) as usize,
        b.left.max(0) as usize,
    )
}

/// The largest of `boxes` (the first of equals), as enrollment picks its face.
pub fn largest_box(boxes: &[FaceBox]) -> Option<FaceBox> {
    boxes
        .iter()
        .copied()
        .reduce(|best, b| if b.area() > best.area() { b } else { best })
}

/// Every face in `image`, encoded at the engine's jitters (in parallel when there are
/// several): [`analyze_image`] to recognize, without the timing.
pub fn analyze(engine: &Engine, image: &RgbImage) -> Vec<Face> {
    analyze_image(engine, image, Purpose::Recognize).faces
}

/// Analyzes several images in parallel ([`analyze`]); results in the same order.
pub fn analyze_batch(engine: &Engine, images: &[RgbImage]) -> Vec<Vec<Face>> {
    engine.install(|| images.par_iter().map(|img| analyze(engine, img)).collect())
}

/// Face boxes of `image`, clipped to it, in the detector's order, at the engine's upsample:
/// on the image itself within the detection budget, else on a copy scaled down to it.
pub fn detect(engine: &Engine, image: &RgbImage) -> Vec<FaceBox> {
    if engine.detects_at_full_size(image.width, image.height) {
        engine.detect(&Frame::new(image), engine.config().upsample())
    } else {
        let small = image_io::downscale(image, engine.detect_max_pixels());
        detect_on_copy(engine, &small, (image.width, image.height))
    }
}

/// Face boxes found in a copy of `frame` scaled by `scale` (0 < scale <= 1) and upsampled
/// `upsample` times, mapped back to `frame`'s pixels: detection is the costly step and
/// scales with the pixel count, while landmarks and encodings stay on the full frame (the
/// camera's detect stage; a scale outside (0, 1) detects on `frame` itself).
pub fn detect_scaled(engine: &Engine, frame: &Frame, scale: f64, upsample: u32) -> Vec<FaceBox> {
    if !(scale > 0.0 && scale < 1.0) {
        return engine.detect(frame, upsample);
    }
    let small = engine.install(|| frame.scaled(scale));
    let found = engine.detect(&small, upsample);
    crops::scale_boxes(
        &found,
        (small.width, small.height),
        (frame.width, frame.height),
    )
}

/// Landmarks then encodings (with `jitters` re-encodings) of the faces at `boxes` in `frame`.
pub fn encode_in(engine: &Engine, frame: &Frame, boxes: &[FaceBox], jitters: u32) -> Vec<Face> {
    encode_timed(engine, frame, boxes, jitters, &mut StageTimes::default())
}

/// [`encode_in`], the landmarks and encode stages timed into `times`.
pub fn encode_timed(
    engine: &Engine,
    frame: &Frame,
    boxes: &[FaceBox],
    jitters: u32,
    times: &mut StageTimes,
) -> Vec<Face> {
    let shapes = timed(&mut times.landmarks, || engine.landmarks(frame, boxes));
    let shaped: Vec<_> = boxes.iter().copied().zip(shapes).collect();
    timed(&mut times.encode, || engine.encode(frame, &shaped, jitters))
}

/// Encodes the faces at `boxes` of `image` (as returned by [`detect`]) at the engine's
/// jitters: on the image itself within the detection budget, else from crops.
pub fn encode(engine: &Engine, image: &RgbImage, boxes: &[FaceBox]) -> Vec<Face> {
    let jitters = engine.config().jitters();
    if engine.detects_at_full_size(image.width, image.height) {
        encode_in(engine, &Frame::new(image), boxes, jitters)
    } else {
        encode_from_crops(engine, &Oriented::upright(image), boxes, jitters)
    }
}
