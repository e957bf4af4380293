//! What the camera does with one frame: convert to RGB, detect faces on a downscaled copy,
//! drop faces too small or too blurred to be worth encoding, and encode only the faces the
//! tracker cannot vouch for. Each stage is timed, for the bench and the logs.

use std::time::{Duration, Instant};

use super::confirm::{ConfirmSettings, Confirmer, Decided};
use super::frame::RawFrame;
use super::tracker::{Measured, Seen, Tracker};
use crate::engine::{FaceBox, Frame};
use crate::image_io::{ImageError, RgbImage};
use crate::quality;
use crate::recognizer::{Recognition, Recognizer};

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

/// Wall-clock time of each stage of one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Decoding (MJPEG) or converting (YUYV) to RGB, and into dlib's layout.
    pub convert: Duration,
    /// Downscaling, HOG detection, the size and blur checks and the tracker's thumbnails.
    pub detect: Duration,
    pub landmarks: Duration,
    pub encode: Duration,
    /// Nearest enrolled encodings.
    pub matching: Duration,
}

impl StageTimes {
    pub fn add(&mut self, other: &StageTimes) {
        self.convert += other.convert;
        self.detect += other.detect;
        self.landmarks += other.landmarks;
        self.encode += other.encode;
        self.matching += other.matching;
    }
}

/// One processed frame.
pub struct Processed {
    pub image: RgbImage,
    pub faces: Vec<Seen>,
    pub times: StageTimes,
    /// Faces encoded in this frame (the others were tracked).
    pub encoded: usize,
    pub skipped_small: usize,
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

pub struct Pipeline {
    recognizer: Recognizer,
    settings: PipelineSettings,
    tracker: Tracker,
    confirmer: Confirmer,
    frame: u64,
    clock: Instant,
}

impl Pipeline {
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
        let started = Instant::now();
        let image = raw.to_rgb(self.recognizer.max_pixels())?;
        let frame = Frame::new(&image);
        times.convert = started.elapsed();

        let started = Instant::now();
        let engine = &self.recognizer.engine();
        let mut boxes =
            engine.detect_scaled(&frame, self.settings.detect_scale, self.settings.upsample);
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
        let margin = self.settings.match_margin;
        let looks: Vec<_> = boxes
            .iter()
            .map(|b| (*b, quality::Thumbnail::of(&image, b)))
            .collect();
        times.detect = started.elapsed();

        let confirmer = &self.confirmer;
        let faces = self.tracker.step(
            self.frame,
            &looks,
            |id| confirmer.unsettled(id),
            |indices| {
                let chosen: Vec<FaceBox> = indices.iter().map(|&i| boxes[i]).collect();
                encoded = chosen.len();
                let started = Instant::now();
                let shapes = engine.shapes_in(&frame, &chosen);
                times.landmarks = started.elapsed();
                let started = Instant::now();
                let faces = engine
                    .encode_shapes(&frame, &chosen.into_iter().zip(shapes).collect::<Vec<_>>());
                times.encode = started.elapsed();
                let started = Instant::now();
                let labelled: Vec<(Recognition, Measured)> = faces
                    .into_iter()
                    .map(|face| {
                        let measured = Measured {
                            encoding: face.encoding,
                            face_px: quality::width(&face.bbox).max(0) as u32,
                            sharpness: quality::sharpness(&image, &face.bbox),
                        };
                        (recognizer.label_with_margin(face, None, margin), measured)
                    })
                    .collect();
                times.matching = started.elapsed();
                labelled
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
