//! The pipeline's one timing hook: the wall-clock time of each stage of one image, filled in
//! as the stages run and reported to `/metrics` ([`StageTimes::record`]) by whoever ran them
//! (the camera per frame, the recognizer per request) and summed by `bench-camera`.

use std::time::{Duration, Instant};

use crate::metrics::{self, Path, Stage};

/// Wall-clock time of each stage of one image (a camera frame or a request's photo).
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Decoding (a photo, an MJPEG frame) or converting (YUYV) to RGB, and, for a camera frame,
    /// into dlib's layout.
    pub convert: Duration,
    /// Detection (downscaling and HOG); for a camera frame also the size and blur checks and
    /// the tracker's thumbnails.
    pub detect: Duration,
    /// The five landmarks of the faces encoded.
    pub landmarks: Duration,
    /// The encodings of the faces encoded (for a photo above the detection budget, landmarks
    /// and encodings together, crop by crop).
    pub encode: Duration,
    /// Nearest enrolled encodings.
    pub matching: Duration,
}

impl StageTimes {
    /// Adds `other`'s times to these, stage by stage.
    pub fn add(&mut self, other: &StageTimes) {
        self.convert += other.convert;
        self.detect += other.detect;
        self.landmarks += other.landmarks;
        self.encode += other.encode;
        self.matching += other.matching;
    }

    /// Reports the times to `/metrics` under `path`: decoding and detection always, the
    /// per-face stages only when `encoded` (a face was encoded; otherwise they did not run).
    pub fn record(&self, path: Path, encoded: bool) {
        let stages = metrics::stages();
        stages.observe(path, Stage::Decode, self.convert);
        stages.observe(path, Stage::Detect, self.detect);
        if encoded {
            stages.observe(path, Stage::Landmarks, self.landmarks);
            stages.observe(path, Stage::Encode, self.encode);
            stages.observe(path, Stage::Match, self.matching);
        }
    }
}

/// Runs `work`, adding the time it took to `stage` (one of a [`StageTimes`]' fields).
pub fn timed<R>(stage: &mut Duration, work: impl FnOnce() -> R) -> R {
    let started = Instant::now();
    let out = work();
    *stage += started.elapsed();
    out
}
