//! Face quality: the cheap measures of a face box (sharpness, width, a thumbnail fingerprint:
//! [`sharpness`], [`width`], [`Thumbnail`]), which the camera uses to spare the encoder faces
//! it cannot recognize well, and how well a face can be enrolled: its size, sharpness and yaw,
//! and the limits below which an enrollment is refused. A gallery encoding is compared against every later camera frame, so a
//! poor one (tiny, blurred, turned) costs recognitions for as long as it stays enrolled.
//!
//! All three are measured on the face the encoding came from, from what the engine already
//! computed (its box and five landmarks, [`crate::engine::Face`]): no second detection.
//!
//! - `face_px`: the smaller side of the face box, in pixels of the upright photo.
//! - `sharpness`: [`sharpness`] of the box (variance of the Laplacian of
//!   its grey levels on a 64x64 grid, so one threshold fits small and large faces).
//! - `yaw`: the head's turn left or right, in degrees, estimated from the landmarks ([`yaw`]).
//!
//! ## Yaw: formula and limits
//! With `L` and `R` the centres of the eyes on the image's left and right (the mean of each
//! eye's two corner points) and `N` the base of the nose, `t` is where `N` projects on the
//! segment `L→R` (0 at `L`, 1 at `R`; projecting on the eye axis makes a tilted head, roll,
//! harmless) and `r = 2t − 1` the nose's offset from the eyes' midpoint in half eye distances.
//! A head turned by `θ` about a vertical axis shows its eyes' half distance as `e·cos θ` and
//! moves the nose, which stands a depth `d` in front of the eyes, by `d·sin θ` from their
//! midpoint, so `r = (d / e)·tan θ`, hence
//!
//! `yaw = atan(r / k)` in degrees, with `k = d / e =` [`NOSE_DEPTH_RATIO`] `= 0.8`
//!
//! (adult faces: the nose base ~25 mm in front of the eye corners' centres, which are ~31 mm
//! either side of the face's middle). 0 is frontal; positive when the nose has moved toward the
//! eye on the image's right (the person turned toward the image's right, their own left);
//! ±90 would be a profile.
//!
//! It is a rough estimate, not a head-pose solver: `k` varies by ±30 % between people (so does
//! the angle for a given photo); a lowered or raised head (pitch) and a wide-angle lens close to
//! the face bend it a little; and past ~45° the 5-point predictor, trained on near-frontal
//! faces, places its points less well, so large angles are underestimated. Good enough to
//! refuse a face clearly turned away, which is what enrollment needs.

mod measures;

use serde::Serialize;

use crate::engine::{FaceBox, Landmarks};
use crate::image_io::RgbImage;
pub use measures::{sharpness, width, Thumbnail};

/// Depth of the nose base in front of the eyes, in half eye distances (see the module docs).
pub const NOSE_DEPTH_RATIO: f64 = 0.8;

/// `ENROLL_JITTERS` default (benches/enroll_jitters.rs, the 29 known photos, 20 probes and 9
/// strangers at tolerance 0.45): 5 jitters widen the gap between the farthest genuine probe and
/// the nearest stranger from 0.090 to 0.11-0.13 and turn 1-2 of the 3 probes left Unknown into
/// matches; 10 and 20 do no better (0.111) at 2x and 3.5x the cost. Enrolling a photo costs
/// ~17 ms more per jitter on one x86 core, ~0.17 s on a Pi: ~1.2 s per photo at 5 there.
pub const DEFAULT_ENROLL_JITTERS: u32 = 5;
/// `ENROLL_MIN_FACE` default, in pixels: the known photos' faces measure 124-321 (the BBT
/// 150x150 crops ~129), a photo shrunk to a ~40 px face 36-51.
pub const DEFAULT_MIN_FACE_PX: u32 = 80;
/// `ENROLL_MIN_SHARPNESS` default: the known photos score 541-6322, the probes 601-8298, a
/// box blur over 1/8 of the face's width 7-40.
pub const DEFAULT_MIN_SHARPNESS: f64 = 100.0;
/// `ENROLL_MAX_YAW` default, in degrees: the known photos measure up to 25.4, the probes up to
/// 24.5 (by the rough estimate of [`yaw`]).
pub const DEFAULT_MAX_YAW: f64 = 35.0;

/// Largest `ENROLL_MIN_FACE`: a face box side; more than any photo the service accepts needs.
pub const MAX_MIN_FACE_PX: u32 = 10_000;

/// The measured quality of one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceQuality {
    /// Smaller side of the face box, in pixels of the upright photo.
    pub face_px: u32,
    /// Variance of the Laplacian of the face (rounded to 0.1).
    pub sharpness: f64,
    /// Degrees, signed: 0 frontal, positive turned toward the image's right (rounded to 0.1).
    pub yaw: f64,
}

impl FaceQuality {
    /// The quality of the face at `bbox` in `image` (upright), with its five `landmarks` in the
    /// same pixels.
    pub fn measure(image: &RgbImage, bbox: &FaceBox, landmarks: &Landmarks) -> FaceQuality {
        Self::from_parts(bbox, sharpness(image, bbox), landmarks)
    }

    /// As [`FaceQuality::measure`], from `crop`: exactly the pixels of the box (as enrollment
    /// keeps them), so that a large photo need not be held whole. Same figures: the box is
    /// clipped to the photo, and sharpness samples relative to the box.
    pub fn measure_crop(crop: &RgbImage, bbox: &FaceBox, landmarks: &Landmarks) -> FaceQuality {
        let whole = FaceBox {
            top: 0,
            right: crop.width as i64,
            bottom: crop.height as i64,
            left: 0,
        };
        Self::from_parts(bbox, sharpness(crop, &whole), landmarks)
    }

    fn from_parts(bbox: &FaceBox, sharpness: f64, landmarks: &Landmarks) -> FaceQuality {
        let side = (bbox.right - bbox.left).min(bbox.bottom - bbox.top).max(0);
        FaceQuality {
            face_px: u32::try_from(side).unwrap_or(u32::MAX),
            sharpness: round1(sharpness),
            yaw: round1(yaw(landmarks)),
        }
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// Yaw in degrees from dlib's five landmarks (see the module docs for the formula and its
/// limits). 0 when the eyes coincide (a degenerate shape).
pub fn yaw(landmarks: &Landmarks) -> f64 {
    let p = |i: usize| (landmarks[i].0 as f64, landmarks[i].1 as f64);
    let mid = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    // dlib's 5-point order: the eye on the image's right (0, 1), then the left one (2, 3).
    let right = mid(p(0), p(1));
    let left = mid(p(2), p(3));
    let nose = p(4);
    let axis = (right.0 - left.0, right.1 - left.1);
    let len_sq = axis.0 * axis.0 + axis.1 * axis.1;
    if len_sq == 0.0 {
        return 0.0;
    }
    let t = ((nose.0 - left.0) * axis.0 + (nose.1 - left.1) * axis.1) / len_sq;
    let r = 2.0 * t - 1.0;
    (r / NOSE_DEPTH_RATIO).atan().to_degrees()
}

/// Which limit a face failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedLimit {
    /// Smaller than `ENROLL_MIN_FACE`.
    FaceTooSmall,
    /// Less sharp than `ENROLL_MIN_SHARPNESS`.
    Blurred,
    /// Turned further than `ENROLL_MAX_YAW`.
    Turned,
}

/// A face refused for enrollment: which limit it failed, the sentence that says so, and its
/// measured quality.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct QualityRefusal {
    /// The limit it failed.
    pub failed: FailedLimit,
    /// What the client is told: the figure, the limit, what to do.
    pub message: String,
    /// The face's measured quality.
    pub quality: FaceQuality,
}

/// A quality limit out of its range: the sentence names the setting (`ENROLL_MIN_FACE`,
/// `ENROLL_MIN_SHARPNESS` or `ENROLL_MAX_YAW`) and the value given. `crate::Error` carries it
/// as an invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidLimit(pub String);

/// The least quality a face needs to be enrolled (`ENROLL_MIN_FACE`, `ENROLL_MIN_SHARPNESS`,
/// `ENROLL_MAX_YAW`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityLimits {
    min_face_px: u32,
    min_sharpness: f64,
    max_yaw: f64,
}

impl Default for QualityLimits {
    fn default() -> Self {
        QualityLimits {
            min_face_px: DEFAULT_MIN_FACE_PX,
            min_sharpness: DEFAULT_MIN_SHARPNESS,
            max_yaw: DEFAULT_MAX_YAW,
        }
    }
}

impl QualityLimits {
    /// Checked limits: `min_face_px` at most [`MAX_MIN_FACE_PX`] (0 lets any size through),
    /// `min_sharpness` finite and not negative (0: any), `max_yaw` in (0, 90] degrees (90: any).
    /// The error names the setting.
    pub fn new(min_face_px: u32, min_sharpness: f64, max_yaw: f64) -> Result<Self, InvalidLimit> {
        if min_face_px > MAX_MIN_FACE_PX {
            return Err(InvalidLimit(format!(
                "ENROLL_MIN_FACE must be 0 to {MAX_MIN_FACE_PX} pixels, got {min_face_px}"
            )));
        }
        if !(min_sharpness.is_finite() && min_sharpness >= 0.0) {
            return Err(InvalidLimit(format!(
                "ENROLL_MIN_SHARPNESS must be a number of at least 0, got {min_sharpness}"
            )));
        }
        if !(max_yaw > 0.0 && max_yaw <= 90.0) {
            return Err(InvalidLimit(format!(
                "ENROLL_MAX_YAW must be above 0 and at most 90 degrees, got {max_yaw}"
            )));
        }
        Ok(QualityLimits {
            min_face_px,
            min_sharpness,
            max_yaw,
        })
    }

    /// `ENROLL_MIN_FACE`, in pixels.
    pub fn min_face_px(&self) -> u32 {
        self.min_face_px
    }

    /// `ENROLL_MIN_SHARPNESS`.
    pub fn min_sharpness(&self) -> f64 {
        self.min_sharpness
    }

    /// `ENROLL_MAX_YAW`, in degrees.
    pub fn max_yaw(&self) -> f64 {
        self.max_yaw
    }

    /// Ok when `q` meets every limit; else the first failed, in the order size, sharpness,
    /// yaw (a small face also measures blurrier, so its size is the cause worth naming).
    pub fn check(&self, q: &FaceQuality) -> Result<(), QualityRefusal> {
        let refuse = |failed, message: String| {
            Err(QualityRefusal {
                failed,
                message,
                quality: *q,
            })
        };
        if q.face_px < self.min_face_px {
            return refuse(
                FailedLimit::FaceTooSmall,
                format!(
                    "face is {} px wide, ENROLL_MIN_FACE is {}: move closer or use a larger photo",
                    q.face_px, self.min_face_px
                ),
            );
        }
        if q.sharpness < self.min_sharpness {
            return refuse(
                FailedLimit::Blurred,
                format!(
                    "face is blurred: sharpness {:.1}, ENROLL_MIN_SHARPNESS is {}: hold still and focus",
                    q.sharpness, self.min_sharpness
                ),
            );
        }
        if q.yaw.abs() > self.max_yaw {
            let side = if q.yaw > 0.0 { "right" } else { "left" };
            return refuse(
                FailedLimit::Turned,
                format!(
                    "face is turned {:.0}° toward the photo's {side}, ENROLL_MAX_YAW is {}: look straight at the camera",
                    q.yaw.abs(),
                    self.max_yaw
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Eyes at x 40..60 and 100..120 on y 50 (centres 50 and 110), nose at (`nose_x`, 90), in
    /// dlib's order: the image's right eye's outer and inner corners, the left eye's, the nose.
    fn face(nose_x: i64) -> Landmarks {
        [(120, 50), (100, 50), (40, 50), (60, 50), (nose_x, 90)]
    }

    #[test]
    fn a_nose_between_the_eyes_is_frontal() {
        assert_eq!(yaw(&face(80)), 0.0);
        // The corner order within an eye does not matter.
        let swapped = [(100, 50), (120, 50), (60, 50), (40, 50), (80, 90)];
        assert_eq!(yaw(&swapped), 0.0);
    }

    #[test]
    fn a_shifted_nose_gives_the_sign_and_the_angle() {
        // Half eye distance 30 px: a nose 12 px right of the middle is r = 0.4, atan(0.5).
        let right = yaw(&face(92));
        assert!((right - 0.5f64.atan().to_degrees()).abs() < 1e-9, "{right}");
        assert!((right - 26.57).abs() < 0.01, "{right}");
        assert!((yaw(&face(68)) + right).abs() < 1e-9);
        // Farther is more, up to (never reaching) a profile.
        assert!(yaw(&face(100)) > right);
        let beyond = yaw(&face(400));
        assert!(beyond > 80.0 && beyond < 90.0, "{beyond}");
        // A small shift is a small angle.
        let slight = yaw(&face(82));
        assert!(slight > 0.0 && slight < 6.0, "{slight}");
    }

    #[test]
    fn a_tilted_head_is_not_a_turned_one() {
        // face(80) rotated by 90°: (x, y) -> (-y, x) shifted to stay positive.
        let rot = face(80).map(|(x, y)| (200 - y, x));
        assert!(yaw(&rot).abs() < 1e-9, "{}", yaw(&rot));
        let rot_turned = face(92).map(|(x, y)| (200 - y, x));
        assert!((yaw(&rot_turned) - yaw(&face(92))).abs() < 1e-9);
    }

    #[test]
    fn degenerate_eyes_give_zero() {
        assert_eq!(yaw(&[(5, 5); 5]), 0.0);
    }

    fn quality(face_px: u32, sharpness: f64, yaw: f64) -> FaceQuality {
        FaceQuality {
            face_px,
            sharpness,
            yaw,
        }
    }

    #[test]
    fn check_names_the_failed_limit_and_carries_the_figures() {
        let limits = QualityLimits::new(80, 50.0, 25.0).unwrap();
        assert_eq!(limits.check(&quality(120, 300.0, -10.0)), Ok(()));

        let small = quality(48, 10.0, 40.0);
        let err = limits.check(&small).unwrap_err();
        assert_eq!(err.failed, FailedLimit::FaceTooSmall);
        assert_eq!(err.quality, small);
        assert!(
            err.to_string()
                .starts_with("face is 48 px wide, ENROLL_MIN_FACE is 80"),
            "{err}"
        );

        let err = limits.check(&quality(120, 35.25, 0.0)).unwrap_err();
        assert_eq!(err.failed, FailedLimit::Blurred);
        assert!(
            err.to_string()
                .starts_with("face is blurred: sharpness 35.2, ENROLL_MIN_SHARPNESS is 50"),
            "{err}"
        );

        let err = limits.check(&quality(120, 300.0, -38.0)).unwrap_err();
        assert_eq!(err.failed, FailedLimit::Turned);
        assert!(
            err.to_string()
                .starts_with("face is turned 38° toward the photo's left, ENROLL_MAX_YAW is 25"),
            "{err}"
        );
        let err = limits.check(&quality(120, 300.0, 26.0)).unwrap_err();
        assert!(err.to_string().contains("photo's right"), "{err}");
        // The limits themselves pass.
        assert_eq!(limits.check(&quality(80, 50.0, 25.0)), Ok(()));
    }

    #[test]
    fn nonsense_limits_are_refused_with_the_setting_named() {
        for (limits, var) in [
            (
                QualityLimits::new(MAX_MIN_FACE_PX + 1, 1.0, 20.0),
                "ENROLL_MIN_FACE",
            ),
            (
                QualityLimits::new(80, f64::NAN, 20.0),
                "ENROLL_MIN_SHARPNESS",
            ),
            (QualityLimits::new(80, -1.0, 20.0), "ENROLL_MIN_SHARPNESS"),
            (QualityLimits::new(80, 1.0, 0.0), "ENROLL_MAX_YAW"),
            (QualityLimits::new(80, 1.0, 91.0), "ENROLL_MAX_YAW"),
            (QualityLimits::new(80, 1.0, f64::NAN), "ENROLL_MAX_YAW"),
        ] {
            let err = limits.unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
        let d = QualityLimits::default();
        let same = QualityLimits::new(d.min_face_px(), d.min_sharpness(), d.max_yaw());
        assert_eq!(same.unwrap(), d);
    }

    #[test]
    fn quality_from_a_crop_is_quality_from_the_photo() {
        let (w, h) = (120usize, 100usize);
        let pixels = (0..w * h)
            .flat_map(|i| {
                let v = ((i % w) * 7 + (i / w) * 13) as u8 ^ ((i % 5) as u8 * 40);
                [v, v, v]
            })
            .collect();
        let photo = RgbImage::from_raw(w, h, pixels).unwrap();
        let bbox = FaceBox {
            top: 10,
            right: 110,
            bottom: 90,
            left: 30,
        };
        let lm = face(85);
        let crop = crate::image_io::Oriented::upright(&photo).crop(10, 110, 90, 30);
        let a = FaceQuality::measure(&photo, &bbox, &lm);
        assert_eq!(a, FaceQuality::measure_crop(&crop, &bbox, &lm));
        assert_eq!(a.face_px, 80);
        assert!(a.sharpness > 0.0);
    }
}
