//! The camera settings of `serve` and `cam-demo`: the frame source and the pipeline's trade-offs.

use super::{check_margin, MAX_UPSAMPLE};
use crate::camera::DEFAULT_CAMERA_MATCH_MARGIN;
use crate::error::Error;

/// The camera loop of `serve` (and `cam-demo`).
#[derive(Debug, Clone)]
pub struct CameraSettings {
    /// The V4L2 camera device to capture from
    pub camera: Option<std::path::PathBuf>,
    /// Capture width in pixels
    pub camera_width: u32,
    /// Capture height in pixels
    pub camera_height: u32,
    /// Capture rate asked of the camera, frames per second
    pub camera_fps: u32,
    /// Replay frames from a folder of JPEGs, one image or an MJPEG file through the camera
    /// pipeline (as a camera would deliver them)
    pub frames: Option<std::path::PathBuf>,
    /// Replay rate, frames per second
    pub frames_fps: f64,
    /// Replay the frames again and again
    pub frames_loop: bool,
    /// Unknown faces seen by the camera also produce events
    pub camera_send_unknown: bool,
    /// /health says ok:false when the camera has been gone or silent this many seconds
    pub camera_stale_seconds: u64,
    /// Detect faces on the frame scaled by this (0.1 to 1): detection cost follows the pixel
    /// count; landmarks and encodings still use the full frame
    pub detect_scale: f64,
    /// Times the scaled frame is upsampled before detection. Faces are found from about
    /// 80 / DETECT_SCALE px wide, half that per upsample, and each upsample costs ~4x
    pub camera_upsample: u32,
    /// A face that stays in place is encoded again every this many frames (1 = every frame)
    pub recheck_frames: u32,
    /// Ignore faces narrower than this many pixels (0 = off)
    pub min_face: u32,
    /// Ignore faces less sharp than this (variance of the Laplacian on a 64x64 sample; sharp
    /// faces score from several hundred to a few thousand; 0 = off)
    pub min_sharpness: f64,
    /// A camera match counts only when the closest person is this much closer than the closest
    /// other person; otherwise the face is ambiguous (0 = off)
    pub camera_match_margin: f64,
    /// A face's identity (a person, ambiguous, unknown) is decided, and its event sent, only
    /// when this many of its encoded frames agree (1 = at its first frame)
    pub confirm_frames: u32,
    /// ... within this many seconds
    pub confirm_seconds: f64,
}

impl Default for CameraSettings {
    fn default() -> Self {
        CameraSettings {
            camera: None,
            camera_width: 640,
            camera_height: 480,
            camera_fps: 15,
            frames: None,
            frames_fps: 10.0,
            frames_loop: false,
            camera_send_unknown: false,
            camera_stale_seconds: 10,
            detect_scale: 0.5,
            camera_upsample: 0,
            recheck_frames: 10,
            min_face: 0,
            min_sharpness: 0.0,
            camera_match_margin: DEFAULT_CAMERA_MATCH_MARGIN,
            confirm_frames: 3,
            confirm_seconds: 2.0,
        }
    }
}

impl CameraSettings {
    /// Checks the camera settings; the error names the environment variable at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if !(16..=4096).contains(&self.camera_width) || !(16..=4096).contains(&self.camera_height) {
            return Err(Error::Config(format!(
                "CAMERA_WIDTH and CAMERA_HEIGHT must be 16 to 4096, got {}x{}",
                self.camera_width, self.camera_height
            )));
        }
        if !(self.frames_fps.is_finite() && self.frames_fps > 0.0 && self.frames_fps <= 1000.0) {
            return Err(Error::Config(format!(
                "CAMERA_FPS must be above 0 and at most 1000, got {}",
                self.frames_fps
            )));
        }
        if !(self.detect_scale.is_finite() && (0.1..=1.0).contains(&self.detect_scale)) {
            return Err(Error::Config(format!(
                "DETECT_SCALE must be 0.1 to 1, got {}",
                self.detect_scale
            )));
        }
        if self.camera_upsample > MAX_UPSAMPLE {
            return Err(Error::Config(format!(
                "CAMERA_UPSAMPLE must be 0 to {MAX_UPSAMPLE}"
            )));
        }
        if self.recheck_frames == 0 {
            return Err(Error::Config(
                "CAMERA_RECHECK_FRAMES must be at least 1 (1 encodes every face of every frame)"
                    .into(),
            ));
        }
        if !(self.min_sharpness.is_finite() && self.min_sharpness >= 0.0) {
            return Err(Error::Config(format!(
                "CAMERA_MIN_SHARPNESS must be 0 or more, got {}",
                self.min_sharpness
            )));
        }
        check_margin("CAMERA_MATCH_MARGIN", self.camera_match_margin)?;
        if !(1..=100).contains(&self.confirm_frames) {
            return Err(Error::Config(format!(
                "CAMERA_CONFIRM_FRAMES must be 1 to 100 (1 decides at a face's first frame), got {}",
                self.confirm_frames
            )));
        }
        if !(self.confirm_seconds.is_finite() && (0.0..=3600.0).contains(&self.confirm_seconds)) {
            return Err(Error::Config(format!(
                "CAMERA_CONFIRM_SECONDS must be 0 to 3600, got {}",
                self.confirm_seconds
            )));
        }
        Ok(())
    }

    /// How the camera pipeline trades accuracy for speed.
    pub fn pipeline(&self) -> crate::camera::PipelineSettings {
        crate::camera::PipelineSettings {
            detect_scale: self.detect_scale,
            upsample: self.camera_upsample,
            recheck_frames: self.recheck_frames,
            min_face_px: self.min_face,
            min_sharpness: self.min_sharpness,
            match_margin: self.camera_match_margin,
            confirm: crate::camera::ConfirmSettings::new(
                self.confirm_frames,
                std::time::Duration::from_secs_f64(self.confirm_seconds),
            ),
        }
    }

    /// The frame source to open (and reopen), if a camera is configured.
    pub fn source(&self) -> Option<crate::camera::OpenSource> {
        if let Some(device) = self.camera.clone() {
            let (w, h, fps) = (self.camera_width, self.camera_height, self.camera_fps);
            return Some(Box::new(move || {
                crate::camera::sources::v4l2::V4l2Source::open(&device, w, h, fps)
                    .map(|s| Box::new(s) as Box<dyn crate::camera::FrameSource>)
            }));
        }
        let (path, fps, repeat) = (self.frames.clone()?, self.frames_fps, self.frames_loop);
        Some(Box::new(move || {
            crate::camera::ReplaySource::open(&path, fps, repeat)
                .map(|s| Box::new(s) as Box<dyn crate::camera::FrameSource>)
        }))
    }
}
