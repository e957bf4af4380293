//! What the camera does with one frame, on the stages of [`crate::pipeline`]: convert to RGB,
//! detect faces on a downscaled copy, select (drop faces too small or too blurred to be worth
//! encoding, and keep only the faces the tracker cannot vouch for), landmarks and encode, match
//! through the recognizer. Each stage is timed in the pipeline's [`StageTimes`], for
//! `/metrics`, the bench and the logs.
//!
//! The work splits in two: what the engine sees ([`Pipeline::look`], [`Pipeline::encode`]) and
//! what the camera decides from it ([`Decider`]: the tracker, the match rule of
//! `CAMERA_TOLERANCE` and `CAMERA_MATCH_MARGIN`, and the confirmation over frames). The camera
//! runs both on every frame; `face-attendance-bench open-set` sees each frame once and runs the
//! same [`Decider`] over it for every tolerance and gallery it compares.

use std::time::{Duration, Instant};

use super::confirm::{ConfirmSettings, Confirmer, Decided};
use super::frame::RawFrame;
use super::tracker::{Measured, Seen, Tracker};
use crate::engine::{Face, FaceBox, Frame};
use crate::image_io::{ImageError, RgbImage};
use crate::pipeline::{self, timed, StageTimes};
use crate::quality::{self, Thumbnail};
use crate::recognizer::{MatchOptions, Recognition, Recognizer};

/// The camera's `CAMERA_MATCH_MARGIN`. Measured with `cargo bench --bench decisions` on
/// `../shared/faces` (known/ enrolled; 20 probe faces, 9 strangers): within the default
/// tolerance 0.45 no margin changes an answer (every genuine probe leads the next person by
/// 0.19 or more); at 0.7, where 5 strangers get a name, 0.05 leaves 2 (3 ambiguous) and loses no
/// probe, 0.1 leaves 1 but makes one probe ambiguous from 0.6 on. A stranger close enough to
/// pass a loose tolerance is most often as close to two people.
pub const DEFAULT_CAMERA_MATCH_MARGIN: f64 = 0.05;

/// The camera's match tolerance when neither `CAMERA_TOLERANCE` nor `FACE_TOLERANCE` is set
/// (HTTP answers keep `FACE_TOLERANCE`'s 0.45, the original service's). Chosen by
/// `face-attendance-bench open-set` on `../shared/faces` through this module's [`Decider`]
/// (the camera's margin and confirmation over replayed frames): the lowest tolerance with the
/// most genuine accepts while no stranger, and no enrolled person left out of the gallery, is
/// given a name: 18 of 20 probes counted (17 at 0.45; the other two are too small for the
/// default detection), none of 58 impostor walk-bys named; the first false accept at 0.59.
/// tests/open_set.rs fails when the benchmark would choose another value.
pub const DEFAULT_CAMERA_TOLERANCE: f64 = 0.54;

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
    /// Largest distance that still names a person (`CAMERA_TOLERANCE`).
    pub tolerance: f64,
    /// Lead a match needs over the closest other person (`CAMERA_MATCH_MARGIN`; 0: none).
    pub match_margin: f64,
    /// Agreeing frames a decision needs (`CAMERA_CONFIRM_FRAMES`, `CAMERA_CONFIRM_SECONDS`).
    pub confirm: ConfirmSettings,
}

impl PipelineSettings {
    /// The camera's match rule: its tolerance and margin, for [`Recognizer::label`].
    pub fn match_options(&self) -> MatchOptions {
        MatchOptions {
            tolerance: Some(self.tolerance),
            margin: Some(self.match_margin),
        }
    }
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            detect_scale: 0.5,
            upsample: 0,
            recheck_frames: 10,
            min_face_px: 0,
            min_sharpness: 0.0,
            tolerance: DEFAULT_CAMERA_TOLERANCE,
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

/// A frame looked at: converted, its faces found and selected, none encoded yet.
pub struct Looked {
    /// The frame in RGB.
    pub image: RgbImage,
    frame: Frame,
    /// The faces kept, each with its look (for the tracker).
    pub faces: Vec<(FaceBox, Thumbnail)>,
    /// Faces left out as narrower than `min_face_px`.
    pub skipped_small: usize,
    /// Faces left out as less sharp than `min_sharpness`.
    pub skipped_blurry: usize,
}

/// What one frame's faces decided.
pub struct Stepped {
    /// Every face, encoded in this frame or tracked from an earlier one.
    pub faces: Vec<Seen>,
    /// Faces whose identity this frame decided.
    pub decided: Vec<Decided>,
    /// Faces encoded in this frame.
    pub encoded: usize,
    /// Time spent matching the encoded faces against the gallery.
    pub matching: Duration,
}

/// The camera's decisions over a stream of frames: the tracker (which faces need encoding),
/// the match rule (`CAMERA_TOLERANCE`, `CAMERA_MATCH_MARGIN`) and the confirmation over frames.
/// One per camera (one per replayed walk-by in the open-set benchmark); it never touches the
/// engine, so the same seen frames can be decided again under other settings.
pub struct Decider {
    options: MatchOptions,
    tracker: Tracker,
    confirmer: Confirmer,
    frame: u64,
}

impl Decider {
    /// A decider with no face seen yet.
    pub fn new(settings: &PipelineSettings) -> Decider {
        Decider {
            options: settings.match_options(),
            tracker: Tracker::new(settings.recheck_frames),
            confirmer: Confirmer::new(settings.confirm),
            frame: 0,
        }
    }

    /// Decides the faces of the next frame (taken at `at`, never going back) at `faces`:
    /// `encode` is called at most once, with the indices of the faces that need an encoding,
    /// and returns them in that order; each is labelled against `recognizer`'s gallery by the
    /// camera's rule, then counted as a vote.
    pub fn step(
        &mut self,
        recognizer: &Recognizer,
        at: Duration,
        faces: &[(FaceBox, Thumbnail)],
        encode: impl FnOnce(&[usize]) -> Vec<(Face, Measured)>,
    ) -> Stepped {
        let (options, confirmer) = (self.options, &self.confirmer);
        let mut encoded = 0;
        let mut matching = Duration::ZERO;
        let faces = self.tracker.step(
            self.frame,
            faces,
            |id| confirmer.unsettled(id),
            |indices| {
                encoded = indices.len();
                let faces = encode(indices);
                timed(&mut matching, || {
                    faces
                        .into_iter()
                        .map(|(face, measured)| (recognizer.label(face, options), measured))
                        .collect::<Vec<(Recognition, Measured)>>()
                })
            },
        );
        let decided = self.confirmer.step(at, &faces, self.tracker.ids());
        self.frame += 1;
        Stepped {
            faces,
            decided,
            encoded,
            matching,
        }
    }
}

/// The camera's per-frame processing: the pipeline's stages, then the [`Decider`].
pub struct Pipeline {
    recognizer: Recognizer,
    settings: PipelineSettings,
    decider: Decider,
    clock: Instant,
}

impl Pipeline {
    /// A pipeline matching with `recognizer`, tuned by `settings`.
    pub fn new(recognizer: Recognizer, settings: PipelineSettings) -> Pipeline {
        Pipeline {
            decider: Decider::new(&settings),
            recognizer,
            settings,
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
        let looked = self.look(raw, &mut times)?;
        let recognizer = &self.recognizer;
        let stepped = self.decider.step(recognizer, at, &looked.faces, |indices| {
            encode(recognizer, &looked, indices, &mut times)
        });
        times.matching += stepped.matching;
        Ok(Processed {
            image: looked.image,
            faces: stepped.faces,
            times,
            encoded: stepped.encoded,
            skipped_small: looked.skipped_small,
            skipped_blurry: looked.skipped_blurry,
            decided: stepped.decided,
        })
    }

    /// The engine's half of a frame: convert, detect on the scaled copy, drop the faces too
    /// small or too blurred (`min_face_px`, `min_sharpness`); timed into `times`.
    pub fn look(&self, raw: &RawFrame, times: &mut StageTimes) -> Result<Looked, ImageError> {
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
        let faces = boxes
            .iter()
            .map(|b| (*b, Thumbnail::of(&image, b)))
            .collect();
        times.detect = started.elapsed();
        Ok(Looked {
            image,
            frame,
            faces,
            skipped_small,
            skipped_blurry,
        })
    }

    /// The faces of `looked` at `indices`, landmarked and encoded (at the engine's jitters),
    /// with what was measured of each; timed into `times`.
    pub fn encode(
        &self,
        looked: &Looked,
        indices: &[usize],
        times: &mut StageTimes,
    ) -> Vec<(Face, Measured)> {
        encode(&self.recognizer, looked, indices, times)
    }
}

fn encode(
    recognizer: &Recognizer,
    looked: &Looked,
    indices: &[usize],
    times: &mut StageTimes,
) -> Vec<(Face, Measured)> {
    let engine = recognizer.engine();
    let chosen: Vec<FaceBox> = indices
        .iter()
        .filter_map(|&i| looked.faces.get(i).map(|f| f.0))
        .collect();
    let faces = pipeline::encode_timed(
        engine,
        &looked.frame,
        &chosen,
        engine.config().jitters(),
        times,
    );
    faces
        .into_iter()
        .map(|face| {
            let measured = Measured {
                encoding: face.encoding,
                face_px: quality::width(&face.bbox).max(0) as u32,
                sharpness: quality::sharpness(&looked.image, &face.bbox),
            };
            (face, measured)
        })
        .collect()
}
