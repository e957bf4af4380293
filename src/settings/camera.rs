//! The camera settings of `serve` and `cam-demo`: the cameras (the first from `CAMERA_DEVICE`
//! or `CAMERA_FRAMES`, more from `CAMERA_<N>_DEVICE`), how their frames are asked for, and the
//! pipeline's trade-offs.

use std::time::Duration;

use super::{check_margin, Settings, MAX_UPSAMPLE};
use crate::camera::sources::{HttpAccess, SourceOptions, SourceSpec};
use crate::camera::{Direction, DEFAULT_CAMERA_MATCH_MARGIN, DEFAULT_CAMERA_TOLERANCE};
use crate::client_tls::parse_fingerprint;
use crate::error::Error;

/// The most cameras one box runs (`CAMERA_DEVICE` and `CAMERA_2_DEVICE` to `CAMERA_8_DEVICE`).
pub const MAX_CAMERAS: u32 = 8;

/// What each numbered camera may set: `CAMERA_<N>_<SUFFIX>`.
pub const NUMBERED_SUFFIXES: [&str; 5] =
    ["DEVICE", "NAME", "DIRECTION", "HTTP_KEY", "TLS_FINGERPRINT"];

/// One camera of the box: its name (in events, `/health`, `/metrics`, `?camera=`), its
/// direction (`in` at an entrance, `out` at an exit), where its frames come from and, for an
/// HTTP source, the key it sends and the certificate it accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraEntry {
    name: String,
    direction: Option<Direction>,
    spec: SourceSpec,
    access: HttpAccess,
}

impl CameraEntry {
    /// A camera named `name` (1 to 32 of `A-Z a-z 0-9 _ -`); `setting` names the variable at
    /// fault in the error.
    pub fn new(
        setting: &str,
        name: &str,
        direction: Option<Direction>,
        spec: SourceSpec,
        access: HttpAccess,
    ) -> Result<CameraEntry, Error> {
        let fine = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if name.is_empty() || name.len() > 32 || !name.chars().all(fine) {
            return Err(Error::Config(format!(
                "{setting} must be 1 to 32 letters, digits, _ or -, got {name:?}"
            )));
        }
        Ok(CameraEntry {
            name: name.to_string(),
            direction,
            spec,
            access,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its direction, when set.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Where its frames come from.
    pub fn spec(&self) -> &SourceSpec {
        &self.spec
    }

    /// What an HTTP source sends and trusts.
    pub fn access(&self) -> &HttpAccess {
        &self.access
    }
}

fn parse_direction(setting: &str, value: Option<&str>) -> Result<Option<Direction>, Error> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|e| Error::Config(format!("{setting}: {e}"))),
    }
}

fn parse_access(
    prefix: &str,
    key: Option<&str>,
    fingerprint: Option<&str>,
) -> Result<HttpAccess, Error> {
    let tls_fingerprint = match fingerprint.map(str::trim).filter(|f| !f.is_empty()) {
        None => None,
        Some(f) => Some(
            parse_fingerprint(f)
                .map_err(|e| Error::Config(format!("{prefix}_TLS_FINGERPRINT: {e}")))?,
        ),
    };
    Ok(HttpAccess {
        key: key.map(str::to_string).filter(|k| !k.is_empty()),
        tls_fingerprint,
    })
}

/// Where the camera's match tolerance came from (`/config`'s `camera_tolerance_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ToleranceFrom {
    /// `CAMERA_TOLERANCE`.
    #[serde(rename = "CAMERA_TOLERANCE")]
    CameraTolerance,
    /// `FACE_TOLERANCE`, given and followed.
    #[serde(rename = "FACE_TOLERANCE")]
    FaceTolerance,
    /// Neither: [`DEFAULT_CAMERA_TOLERANCE`].
    #[serde(rename = "default")]
    Default,
}

/// The camera loop of `serve` (and `cam-demo`).
#[derive(Debug, Clone)]
pub struct CameraSettings {
    /// The first camera: a V4L2 device, libcamera[:N], rtsp(s)://, http(s)://, exec:COMMAND
    /// or frames:PATH
    pub camera: Option<SourceSpec>,
    /// The first camera's name
    pub camera_name: String,
    /// The first camera's direction (in or out)
    pub camera_direction: Option<String>,
    /// The API key an http(s):// camera is sent (X-API-Key): another box's /stream.mjpg
    pub camera_http_key: Option<String>,
    /// SHA-256 fingerprint of an https:// camera's certificate: exactly that one is accepted
    pub camera_tls_fingerprint: Option<String>,
    /// Frames of a stream larger than this many KiB are skipped
    pub camera_max_frame_kb: u32,
    /// `CAMERA_<N>_...` variables (N = 2 to 8) as the environment gave them, checked by
    /// [`CameraSettings::cameras`]
    pub numbered: Vec<(String, String)>,
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
    /// The camera's match tolerance (`CAMERA_TOLERANCE`); `None`: see
    /// [`CameraSettings::tolerance`]
    pub camera_tolerance: Option<f64>,
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
            camera_name: "camera1".into(),
            camera_direction: None,
            camera_http_key: None,
            camera_tls_fingerprint: None,
            camera_max_frame_kb: 8192,
            numbered: Vec::new(),
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
            camera_tolerance: None,
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
        if let Some(t) = self.camera_tolerance {
            if !(t.is_finite() && t > 0.0 && t <= 2.0) {
                return Err(Error::Config(format!(
                    "CAMERA_TOLERANCE must be in (0, 2], got {t}"
                )));
            }
        }
        check_margin("CAMERA_MATCH_MARGIN", self.camera_match_margin)?;
        if !(16..=65536).contains(&self.camera_max_frame_kb) {
            return Err(Error::Config(format!(
                "CAMERA_MAX_FRAME_KB must be 16 to 65536, got {}",
                self.camera_max_frame_kb
            )));
        }
        if self.camera_stale_seconds == 0 {
            return Err(Error::Config(
                "CAMERA_STALE_SECONDS must be at least 1".into(),
            ));
        }
        self.cameras()?;
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

    /// The camera's match tolerance and where it came from: `CAMERA_TOLERANCE` when set; else
    /// `FACE_TOLERANCE` when that was given (a site's own choice stays in force for the camera
    /// too); else [`DEFAULT_CAMERA_TOLERANCE`], which the open-set benchmark chose. HTTP answers
    /// always use `FACE_TOLERANCE` (0.45 unless set, the original service's).
    pub fn tolerance(&self, settings: &Settings) -> (f64, ToleranceFrom) {
        match (self.camera_tolerance, settings.tolerance_given) {
            (Some(t), _) => (t, ToleranceFrom::CameraTolerance),
            (None, true) => (settings.tolerance, ToleranceFrom::FaceTolerance),
            (None, false) => (DEFAULT_CAMERA_TOLERANCE, ToleranceFrom::Default),
        }
    }

    /// How the camera pipeline trades accuracy for speed, and its match rule (`settings`: for
    /// the tolerance, [`CameraSettings::tolerance`]).
    pub fn pipeline(&self, settings: &Settings) -> crate::camera::PipelineSettings {
        crate::camera::PipelineSettings {
            tolerance: self.tolerance(settings).0,
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

    /// The box's cameras, the first (`CAMERA_DEVICE`, else `CAMERA_FRAMES`) first, then
    /// `CAMERA_2_DEVICE` and on in their numbers' order; empty without a camera. Names must
    /// differ; a numbered variable other than `CAMERA_<N>_{DEVICE,NAME,DIRECTION,HTTP_KEY,
    /// TLS_FINGERPRINT}` with N from 2 to 8, or a numbered camera without a device, is refused
    /// (a typo would otherwise leave a camera silently off).
    pub fn cameras(&self) -> Result<Vec<CameraEntry>, Error> {
        let mut cameras = Vec::new();
        let first = self
            .camera
            .clone()
            .or_else(|| self.frames.clone().map(SourceSpec::Frames));
        if let Some(spec) = first {
            cameras.push(CameraEntry::new(
                "CAMERA_NAME",
                &self.camera_name,
                parse_direction("CAMERA_DIRECTION", self.camera_direction.as_deref())?,
                spec,
                parse_access(
                    "CAMERA",
                    self.camera_http_key.as_deref(),
                    self.camera_tls_fingerprint.as_deref(),
                )?,
            )?);
        }
        let mut numbered: std::collections::BTreeMap<u32, Vec<(&str, &str)>> = Default::default();
        for (name, value) in &self.numbered {
            let parsed = name.strip_prefix("CAMERA_").and_then(|rest| {
                let (n, suffix) = rest.split_once('_')?;
                let n: u32 = n.parse().ok()?;
                let suffix = NUMBERED_SUFFIXES.iter().find(|s| **s == suffix)?;
                Some((n, *suffix))
            });
            match parsed {
                Some((n, suffix)) if (2..=MAX_CAMERAS).contains(&n) => numbered
                    .entry(n)
                    .or_default()
                    .push((suffix, value.as_str())),
                _ => {
                    return Err(Error::Config(format!(
                        "{name}: not a camera setting; further cameras are CAMERA_<N>_DEVICE, \
                         _NAME, _DIRECTION, _HTTP_KEY and _TLS_FINGERPRINT with N from 2 to \
                         {MAX_CAMERAS} (the first camera is CAMERA_DEVICE, CAMERA_NAME, ...)"
                    )))
                }
            }
        }
        for (n, values) in numbered {
            let get = |suffix: &str| values.iter().find(|(s, _)| *s == suffix).map(|(_, v)| *v);
            let prefix = format!("CAMERA_{n}");
            let device = get("DEVICE")
                .filter(|d| !d.trim().is_empty())
                .ok_or_else(|| {
                    Error::Config(format!("{prefix}_DEVICE is needed for camera {n}"))
                })?;
            let spec = device
                .parse::<SourceSpec>()
                .map_err(|e| Error::Config(format!("{prefix}_DEVICE: {e}")))?;
            let default_name = format!("camera{n}");
            cameras.push(CameraEntry::new(
                &format!("{prefix}_NAME"),
                get("NAME").unwrap_or(&default_name),
                parse_direction(&format!("{prefix}_DIRECTION"), get("DIRECTION"))?,
                spec,
                parse_access(&prefix, get("HTTP_KEY"), get("TLS_FINGERPRINT"))?,
            )?);
        }
        for (i, camera) in cameras.iter().enumerate() {
            if cameras[..i].iter().any(|c| c.name == camera.name) {
                return Err(Error::Config(format!(
                    "two cameras are named {:?}: give each its own name (CAMERA_NAME, \
                     CAMERA_<N>_NAME)",
                    camera.name
                )));
            }
        }
        Ok(cameras)
    }

    /// How every camera's source is asked for frames.
    pub fn source_options(&self) -> SourceOptions {
        SourceOptions {
            width: self.camera_width,
            height: self.camera_height,
            fps: self.camera_fps,
            replay_fps: self.frames_fps,
            replay_loop: self.frames_loop,
            stale: Duration::from_secs(self.camera_stale_seconds),
            max_frame_bytes: self.camera_max_frame_kb as usize * 1024,
        }
    }

    /// Opens (and reopens) `camera`'s source.
    pub fn opener(&self, camera: &CameraEntry) -> crate::camera::OpenSource {
        let (spec, access, options) = (
            camera.spec().clone(),
            camera.access().clone(),
            self.source_options(),
        );
        Box::new(move || crate::camera::sources::open(&spec, &access, &options))
    }

    /// The first camera's source (`cam-demo`), if a camera is configured.
    pub fn source(&self) -> Option<crate::camera::OpenSource> {
        let cameras = self.cameras().ok()?;
        cameras.first().map(|c| self.opener(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(vars: &[(&str, &str)]) -> CameraSettings {
        CameraSettings {
            camera: Some("/dev/video0".parse().unwrap()),
            numbered: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..CameraSettings::default()
        }
    }

    #[test]
    fn one_camera_is_the_simple_default_and_more_come_by_number() {
        assert!(CameraSettings::default().cameras().unwrap().is_empty());
        let frames = CameraSettings {
            frames: Some("/tmp/f".into()),
            ..CameraSettings::default()
        };
        let cameras = frames.cameras().unwrap();
        assert_eq!(cameras.len(), 1);
        assert_eq!(cameras[0].name(), "camera1");
        assert_eq!(cameras[0].spec(), &SourceSpec::Frames("/tmp/f".into()));

        let two = numbered(&[
            ("CAMERA_3_DEVICE", "rtsp://u:p@cam/x"),
            ("CAMERA_2_DEVICE", "libcamera"),
            ("CAMERA_2_DIRECTION", "OUT"),
            ("CAMERA_3_NAME", "gate"),
            ("CAMERA_3_HTTP_KEY", "k"),
        ]);
        let cameras = two.cameras().unwrap();
        let names: Vec<&str> = cameras.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["camera1", "camera2", "gate"]);
        assert_eq!(cameras[1].direction(), Some(Direction::Out));
        assert_eq!(cameras[2].access().key.as_deref(), Some("k"));
        assert!(two.validate().is_ok());
    }

    #[test]
    fn mistakes_are_refused_with_the_variable_named() {
        for (vars, needle) in [
            (vec![("CAMERA_2_DEVIC", "x")], "CAMERA_2_DEVIC"),
            (vec![("CAMERA_1_DEVICE", "/dev/video1")], "CAMERA_1_DEVICE"),
            (vec![("CAMERA_9_DEVICE", "/dev/video1")], "CAMERA_9_DEVICE"),
            (vec![("CAMERA_2_NAME", "side")], "CAMERA_2_DEVICE"),
            (vec![("CAMERA_2_DEVICE", "ftp://x")], "CAMERA_2_DEVICE"),
            (
                vec![
                    ("CAMERA_2_DEVICE", "/dev/video1"),
                    ("CAMERA_2_NAME", "camera1"),
                ],
                "two cameras",
            ),
            (
                vec![("CAMERA_2_DEVICE", "/dev/video1"), ("CAMERA_2_NAME", "a b")],
                "CAMERA_2_NAME",
            ),
            (
                vec![
                    ("CAMERA_2_DEVICE", "/dev/video1"),
                    ("CAMERA_2_DIRECTION", "up"),
                ],
                "CAMERA_2_DIRECTION",
            ),
            (
                vec![
                    ("CAMERA_2_DEVICE", "https://b/s"),
                    ("CAMERA_2_TLS_FINGERPRINT", "zz"),
                ],
                "CAMERA_2_TLS_FINGERPRINT",
            ),
        ] {
            let err = numbered(&vars).validate().unwrap_err().to_string();
            assert!(err.contains(needle), "{vars:?}: {err}");
        }
    }
}
