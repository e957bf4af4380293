//! What the camera does with one frame, on the stages of [`crate::pipeline`]: convert to RGB,
//! detect faces on a downscaled copy, select (drop faces too small or too blurred to be worth
//! encoding, and keep only the faces the tracker cannot vouch for), landmarks and encode, match
//! through the recognizer. Each stage is timed in the pipeline's [`StageTimes`], for
//! `/metrics`, the bench and the logs.

use std::time::{Duration, Instant};

use super::confirm::{ConfirmSettings, Confirmer, Decided};
use super::frame::RawFrame;
use super::tracker::{Measured, Seen, Tracker};
use crate::engine::{FaceBox, Frame};
use crate::image_io::{ImageError, RgbImage};
use crate::pipeline::{self, timed, StageTimes};
use crate::quality;
use crate::recognizer::{MatchOptions, Recognition, Recognizer};

/// The camera's `CAMERA_MATCH_MARGIN`. Measured with `cargo bench --bench decisions` on
/// `../shared/faces` (known/ enrolled; 20 probe faces, 9 strangers): within the default
/// tolerance 0.45 no margin changes an answer (every genuine probe leads the next person by
/// 0.19 or more); at 0.7, where 5 strangers get a name, 0.05 leaves 2 (3 ambiguous) and loses no
/// probe, 0.1 leaves 1 but makes one probe ambiguous from 0.6 on. A stranger close enough to
/// pass a loose tolerance is most often as close to two people.
pub const DEFAULT_CAMERA_MATCH_MARGIN: f64 = 0.05;

/// How the camera trades accuracy for speed.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Detection runs on the frame scaled by this (0 < s <= 1); 1 detects on the full frame.
    pub detect_scale: f64,
    /// Times the scaled frame is upsampled before detection (each finds faces half as wide and
    /// costs ~4x).
    pub upsample: u32,
    /// A face that stays in place is encoded again every this many frames (1 = every frame).
    pub recheck_frames: u32,
    /// Faces narrower than this many pixels (of the full frame) are ignored (0 = off).
    pub min_face_px: u32,
    /// Faces less sharp than this ([`quality::sharpness`]) are ignored (0 = off).
    pub min_sharpness: f64,
    /// Lead a match needs over the closest other person (`CAMERA_MATCH_MARGIN`; 0: none).
    pub match_margin: f64,
    /// Agreeing frames a decision needs (`CAMERA_CONFIRM_FRAMES`, `CAMERA_CONFIRM_SECONDS`).
    pub confirm: ConfirmSettings,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            detect_scale: 0.5,
            upsample: 0,
            recheck_frames: 10,
            min_face_px: 0,
            min_sharpness: 0.0,
            match_margin: DEFAULT_CAMERA_MATCH_MARGIN,
            confirm: ConfirmSettings::default(),
        }
    }
}

/// One processed frame.
pub struct Processed {
    /// The frame in RGB.
    pub image: RgbImage,
    /// Every face kept, encoded in this frame or tracked from an earlier one.
    pub faces: Vec<Seen>,
    /// How long each stage took.
    pub times: StageTimes,
    /// Faces encoded in this frame (the others were tracked).
    pub encoded: usize,
    /// Faces left out as narrower than `min_face_px`.
    pub skipped_small: usize,
    /// Faces left out as less sharp than `min_sharpness`.
    pub skipped_blurry: usize,
    /// Faces whose identity this frame decided ([`super::confirm`]): what makes events.
    pub decided: Vec<Decided>,
}

impl Processed {
    /// Faces encoded in this frame that decided nothing (yet): held back for confirmation.
    pub fn held_back(&self) -> usize {
        let fresh = self.faces.iter().filter(|s| !s.tracked()).count();
        fresh.saturating_sub(self.decided.len())
    }
}

/// The camera's per-frame processing: the pipeline's stages, the tracker and the confirmation
/// of decisions across frames.
pub struct Pipeline {
    recognizer: Recognizer,
    settings: PipelineSettings,
    tracker: Tracker,
    confirmer: Confirmer,
    frame: u64,
    clock: Instant,
}

impl Pipeline {
    /// A pipeline matching with `recognizer`, tuned by `settings`.
    pub fn new(recognizer: Recognizer, settings: PipelineSettings) -> Pipeline {
        Pipeline {
            tracker: Tracker::new(settings.recheck_frames),
            confirmer: Confirmer::new(settings.confirm),
            recognizer,
            settings,
            frame: 0,
            clock: Instant::now(),
        }
    }

    /// How the camera trades accuracy for speed.
    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    /// Recognizes the faces of one frame; a corrupt frame is a typed error and costs nothing
    /// else (the tracker keeps its state).
    pub fn process(&mut self, raw: &RawFrame) -> Result<Processed, ImageError> {
        let now = self.clock.elapsed();
        self.process_at(raw, now)
    }

    /// [`Pipeline::process`] for a frame taken at `at` (since any fixed instant; never going
    /// back): replays and benches give their own times to the confirmation window.
    pub fn process_at(&mut self, raw: &RawFrame, at: Duration) -> Result<Processed, ImageError> {
        let mut times = StageTimes::default();
        let (image, frame) = timed(&mut times.convert, || {
            let image = raw.to_rgb(self.recognizer.max_pixels())?;
            let frame = Frame::new(&image);
            Ok::<_, ImageError>((image, frame))
        })?;

        let started = Instant::now();
        let engine = self.recognizer.engine();
        let mut boxes = pipeline::detect_scaled(
            engine,
            &frame,
            self.settings.detect_scale,
            self.settings.upsample,
        );
        let found = boxes.len();
        let min_width = i64::from(self.settings.min_face_px);
        boxes.retain(|b| quality::width(b) >= min_width);
        let skipped_small = found - boxes.len();
        let min_sharpness = self.settings.min_sharpness;
        if min_sharpness > 0.0 {
            boxes.retain(|b| quality::sharpness(&image, b) >= min_sharpness);
        }
        let skipped_blurry = found - skipped_small - boxes.len();

        let mut encoded = 0;
        let recognizer = &self.recognizer;
        let options = MatchOptions {
            tolerance: None,
            margin: Some(self.settings.match_margin),
        };
        let looks: Vec<_> = boxes
            .iter()
            .map(|b| (*b, quality::Thumbnail::of(&image, b)))
            .collect();
        times.detect = started.elapsed();

        let confirmer = &self.confirmer;
        let jitters = engine.config().jitters();
        let faces = self.tracker.step(
            self.frame,
            &looks,
            |id| confirmer.unsettled(id),
            |indices| {
                let chosen: Vec<FaceBox> = indices.iter().map(|&i| boxes[i]).collect();
                encoded = chosen.len();
                let faces = pipeline::encode_timed(engine, &frame, &chosen, jitters, &mut times);
                timed(&mut times.matching, || {
                    faces
                        .into_iter()
                        .map(|face| {
                            let measured = Measured {
                                encoding: face.encoding,
                                face_px: quality::width(&face.bbox).max(0) as u32,
                                sharpness: quality::sharpness(&image, &face.bbox),
                            };
                            (recognizer.label(face, options), measured)
                        })
                        .collect::<Vec<(Recognition, Measured)>>()
                })
            },
        );
        let decided = self.confirmer.step(at, &faces, self.tracker.ids());
        self.frame += 1;
        Ok(Processed {
            image,
            faces,
            times,
            encoded,
            skipped_small,
            skipped_blurry,
            decided,
        })
    }
}
