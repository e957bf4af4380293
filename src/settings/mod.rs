//! The settings of the library: plain structs, checked by `validate()` with messages that name
//! the environment variable at fault. The command line (`crate::cli`) fills them from flags and
//! the environment; `GET /config` shows them ([`document`]).
//!
//! - [`Settings`]: the data folder, the models, recognition, enrollment, unknown faces and the
//!   event log (each command uses its share of them);
//! - [`ServeSettings`]: `serve`'s HTTP API, webhook, WebSocket, HTTPS ([`TlsSettings`]), camera
//!   ([`CameraSettings`]), broker ([`MqttOptions`]) and event command
//!   ([`EventCommandSettings`]).

mod camera;
mod command;
pub(crate) mod document;
mod kiosk;
mod mqtt;
mod serve;

pub use camera::{CameraSettings, ToleranceFrom, MAX_CAMERAS, NUMBERED_SUFFIXES};
pub use command::EventCommandSettings;
pub use kiosk::{KioskOptions, KIOSK_GREETING_RANGE};
pub use mqtt::{default_trust_file, host_box_id, MqttOptions, DEFAULT_TOPIC_PREFIX};
pub use serve::{
    bind_is_loopback, ServeSettings, TlsSettings, DEFAULT_BIND, DEFAULT_BIND_WITH_KEY,
};

use std::path::PathBuf;

use crate::engine::{EngineConfig, DEFAULT_DETECT_MAX_PIXELS};
use crate::error::Error;
use crate::events::Schedule;
use crate::gallery::{CropPolicy, Gallery, LoadReport};
use crate::image_io::DEFAULT_MAX_PIXELS;
use crate::localtime::BoxZone;
use crate::quality::{
    QualityLimits, DEFAULT_ENROLL_JITTERS, DEFAULT_MAX_YAW, DEFAULT_MIN_FACE_PX,
    DEFAULT_MIN_SHARPNESS,
};
use crate::recognizer::EnrollPolicy;
use crate::unknowns::{self, UnknownSettings};

/// Upsampling multiplies detection cost and memory by ~4 each time; past 3 it is never useful.
pub const MAX_UPSAMPLE: u32 = 3;
/// Most jittered re-encodings per face (`FACE_JITTERS`, `ENROLL_JITTERS`).
pub const MAX_JITTERS: u32 = 100;
/// Detection budget bounds: below 80x80 no face fits the HOG window; above 100 MP one
/// detection alone needs several GB.
pub const MIN_DETECT_PIXELS: u64 = 80 * 80;
/// See [`MIN_DETECT_PIXELS`].
pub const MAX_DETECT_PIXELS: u64 = 100_000_000;

/// The settings every command draws on (each uses its share; the rest keep their defaults).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runtime state: embeddings/<id>.npy and faces/<id>/*.jpg
    pub data_dir: PathBuf,
    /// Folder with the dlib model files (filled by scripts/fetch-models)
    pub models_dir: PathBuf,
    /// Largest distance that still counts as a match (smaller is stricter)
    pub tolerance: f64,
    /// Whether `FACE_TOLERANCE` was given (environment or flag) rather than left at its
    /// default: the camera then follows it unless `CAMERA_TOLERANCE` is set
    /// ([`CameraSettings::tolerance`])
    pub tolerance_given: bool,
    /// Times the image is upsampled before face detection (finds smaller faces, ~4x slower each)
    pub upsample: u32,
    /// Jittered re-encodings averaged per face (1 = none; 10 is ~10x slower, a bit steadier)
    pub jitters: u32,
    /// Largest image accepted, in pixels (checked from the header before decoding)
    pub max_pixels: u64,
    /// Largest image detected at full size, in pixels: a larger one is detected on a copy scaled
    /// down to this many (then upsampled as usual), and its faces encoded at full resolution.
    /// Detection memory and time grow with it: at upsample 1, ~45 MB and ~0.6 s (one x86 core;
    /// several times that on a Pi) per million pixels
    pub detect_max_pixels: u64,
    /// Jittered re-encodings averaged for a face being enrolled (recognition keeps
    /// FACE_JITTERS): a steadier gallery encoding for a one-off cost per enrolled photo
    pub enroll_jitters: u32,
    /// Smallest face enrolled: the shorter side of its box, in pixels (0: any)
    pub enroll_min_face: u32,
    /// Least sharpness of a face enrolled (variance of its Laplacian; sharp faces score
    /// hundreds to thousands; 0: any)
    pub enroll_min_sharpness: f64,
    /// Largest head turn (yaw) of a face enrolled, in degrees, roughly estimated (90: any)
    pub enroll_max_yaw: f64,
    /// Enrollment refuses a face this close to another person's sample (a second record for
    /// one person) unless the request says force=true; default: the tolerance; 0: no check
    pub enroll_duplicate_distance: Option<f64>,
    /// Whether enrollment keeps a crop of each enrolled face: keep, or none (and those on disk
    /// are removed at start)
    pub face_crops: FaceCrops,
    /// Face crops older than this many days are removed (at start, then every hour)
    pub face_crops_max_age_days: Option<u32>,
    /// A match counts only when the closest person is this much closer than the closest other
    /// person; otherwise `/recognize` answers Unknown with "ambiguous" (0 = off, the original's
    /// answers)
    pub match_margin: f64,
    /// Most unknown faces kept for review (faces the camera saw that match nobody, in
    /// data/unknowns/); past it the oldest go; 0 keeps none (and removes data/unknowns/)
    pub unknown_max: usize,
    /// Days an unknown face is kept for review: older ones go with their crops (at start, then
    /// hourly); 0: no age limit
    pub unknown_max_age_days: u32,
    /// Two unknown faces closer than this are taken as one person when they are grouped for
    /// review (see the book's camera pipeline for how it was measured)
    pub unknown_cluster_distance: f64,
    /// Days the local event log (data/events/, one file per UTC day) is kept: files more than
    /// this many days before today are removed (at start, then hourly); 0 keeps them forever
    pub events_keep_days: u32,
    /// The box's time zone, an IANA name (Asia/Jakarta): the local day of punches and of the
    /// daily report [default: the system's]
    pub box_timezone: Option<String>,
    /// In or out by the local time of day (`00:00-10:30 in, 10:30-24:00 out`), for events whose
    /// camera has no direction [default: none: a person's first sighting of the day is in,
    /// later ones out]
    pub punch_schedule: Option<String>,
}

/// `EVENTS_KEEP_DAYS` unless set: a school term's worth of attendance.
pub const DEFAULT_EVENTS_KEEP_DAYS: u32 = 90;
/// A century: past it the number is a mistake (0 is the way to keep everything).
pub const MAX_EVENTS_KEEP_DAYS: u32 = 36_500;

/// A margin setting: 0 (off) to 2 (the largest distance there is).
pub(crate) fn check_margin(name: &str, margin: f64) -> Result<(), Error> {
    if margin.is_finite() && (0.0..=2.0).contains(&margin) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name} must be 0 (off) to 2, got {margin}"
        )))
    }
}

/// `FACE_CROPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FaceCrops {
    /// Enrollment keeps a crop of each enrolled face.
    Keep,
    /// No crops (those on disk are removed at start).
    None,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            tolerance: 0.45,
            tolerance_given: false,
            upsample: 1,
            jitters: 1,
            max_pixels: DEFAULT_MAX_PIXELS,
            detect_max_pixels: DEFAULT_DETECT_MAX_PIXELS,
            enroll_jitters: DEFAULT_ENROLL_JITTERS,
            enroll_min_face: DEFAULT_MIN_FACE_PX,
            enroll_min_sharpness: DEFAULT_MIN_SHARPNESS,
            enroll_max_yaw: DEFAULT_MAX_YAW,
            enroll_duplicate_distance: None,
            face_crops: FaceCrops::Keep,
            face_crops_max_age_days: None,
            match_margin: 0.0,
            unknown_max: unknowns::DEFAULT_MAX,
            unknown_max_age_days: unknowns::DEFAULT_MAX_AGE_DAYS,
            unknown_cluster_distance: unknowns::DEFAULT_CLUSTER_DISTANCE,
            events_keep_days: DEFAULT_EVENTS_KEEP_DAYS,
            box_timezone: None,
            punch_schedule: None,
        }
    }
}

impl Settings {
    /// The box's time zone: `BOX_TIMEZONE`, else the system's.
    pub fn zone(&self) -> Result<BoxZone, Error> {
        match &self.box_timezone {
            Some(name) => {
                BoxZone::named(name).map_err(|e| Error::Config(format!("BOX_TIMEZONE: {e}")))
            }
            None => Ok(BoxZone::system()),
        }
    }

    /// `PUNCH_SCHEDULE`, read; `None` when unset or blank.
    pub fn punch_schedule(&self) -> Result<Option<Schedule>, Error> {
        let text = self.punch_schedule.as_deref().unwrap_or_default();
        Schedule::parse(text).map_err(|e| {
            Error::Config(format!(
                "PUNCH_SCHEDULE: {e}; it takes HH:MM-HH:MM in|out parts, comma separated, in \
                 order from 00:00 to 24:00 (00:00-10:30 in, 10:30-24:00 out)"
            ))
        })
    }

    /// Checks every setting; the error names the environment variable at fault.
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.tolerance.is_finite() && self.tolerance > 0.0 && self.tolerance <= 2.0) {
            return Err(Error::Config(format!(
                "FACE_TOLERANCE must be in (0, 2], got {}",
                self.tolerance
            )));
        }
        if self.upsample > MAX_UPSAMPLE {
            return Err(Error::Config(format!(
                "FACE_UPSAMPLE must be 0 to {MAX_UPSAMPLE}, got {}",
                self.upsample
            )));
        }
        if !(1..=MAX_JITTERS).contains(&self.jitters) {
            return Err(Error::Config(format!(
                "FACE_JITTERS must be 1 to {MAX_JITTERS}, got {}",
                self.jitters
            )));
        }
        if self.max_pixels == 0 {
            return Err(Error::Config("FACE_MAX_PIXELS must be above 0".into()));
        }
        if !(MIN_DETECT_PIXELS..=MAX_DETECT_PIXELS).contains(&self.detect_max_pixels) {
            return Err(Error::Config(format!(
                "DETECT_MAX_PIXELS must be {MIN_DETECT_PIXELS} to {MAX_DETECT_PIXELS}, got {}",
                self.detect_max_pixels
            )));
        }
        if !(1..=MAX_JITTERS).contains(&self.enroll_jitters) {
            return Err(Error::Config(format!(
                "ENROLL_JITTERS must be 1 to {MAX_JITTERS}, got {}",
                self.enroll_jitters
            )));
        }
        self.quality_limits()?;
        check_margin("MATCH_MARGIN", self.match_margin)?;
        if let Some(d) = self.enroll_duplicate_distance {
            if !(d.is_finite() && (0.0..=2.0).contains(&d)) {
                return Err(Error::Config(format!(
                    "ENROLL_DUPLICATE_DISTANCE must be in [0, 2] (0 turns the check off), got {d}"
                )));
            }
        }
        if self.unknown_max > unknowns::MAX_MAX {
            return Err(Error::Config(format!(
                "UNKNOWN_MAX must be 0 (keep none) to {}, got {}",
                unknowns::MAX_MAX,
                self.unknown_max
            )));
        }
        if self.unknown_max_age_days > unknowns::MAX_MAX_AGE_DAYS {
            return Err(Error::Config(format!(
                "UNKNOWN_MAX_AGE_DAYS must be 0 (no age limit) to {}, got {}",
                unknowns::MAX_MAX_AGE_DAYS,
                self.unknown_max_age_days
            )));
        }
        let d = self.unknown_cluster_distance;
        if !(d.is_finite() && d > 0.0 && d <= 2.0) {
            return Err(Error::Config(format!(
                "UNKNOWN_CLUSTER_DISTANCE must be in (0, 2], got {d}"
            )));
        }
        self.zone()?;
        self.punch_schedule()?;
        if self.events_keep_days > MAX_EVENTS_KEEP_DAYS {
            return Err(Error::Config(format!(
                "EVENTS_KEEP_DAYS must be 0 (keep forever) to {MAX_EVENTS_KEEP_DAYS}, got {}",
                self.events_keep_days
            )));
        }
        Ok(())
    }

    /// How the unknown faces are kept: UNKNOWN_MAX, UNKNOWN_MAX_AGE_DAYS,
    /// UNKNOWN_CLUSTER_DISTANCE, and crops as FACE_CROPS says.
    pub fn unknown_settings(&self) -> UnknownSettings {
        UnknownSettings::new(
            self.unknown_max,
            self.crop_policy().keeps_crops(),
            self.unknown_cluster_distance,
        )
        .with_max_age_days(Some(self.unknown_max_age_days))
    }

    /// What a face needs to be enrolled (ENROLL_MIN_FACE, ENROLL_MIN_SHARPNESS,
    /// ENROLL_MAX_YAW); an error naming the setting when one makes no sense.
    pub fn quality_limits(&self) -> Result<QualityLimits, Error> {
        Ok(QualityLimits::new(
            self.enroll_min_face,
            self.enroll_min_sharpness,
            self.enroll_max_yaw,
        )?)
    }

    /// What enrollment checks: the duplicate distance and the quality limits.
    pub fn enroll_policy(&self) -> Result<EnrollPolicy, Error> {
        Ok(EnrollPolicy::new(self.quality_limits()?)
            .with_duplicate_distance(self.enroll_duplicate_distance))
    }

    /// What the gallery does with face crops (`FACE_CROPS`, `FACE_CROPS_MAX_AGE_DAYS`).
    pub fn crop_policy(&self) -> CropPolicy {
        let policy = match self.face_crops {
            FaceCrops::Keep => CropPolicy::keep(),
            FaceCrops::None => CropPolicy::none(),
        };
        policy.max_age_days(self.face_crops_max_age_days)
    }

    /// The gallery under the data folder, with the crop policy.
    pub fn open_gallery(&self) -> Result<(Gallery, LoadReport), Error> {
        Ok(Gallery::open_with(&self.data_dir, self.crop_policy())?)
    }

    /// The engine's configuration: the models folder, upsampling and jitters.
    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig::new(&self.models_dir)
            .with_upsample(self.upsample)
            .with_jitters(self.jitters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_original_services() {
        let s = Settings::default();
        assert_eq!((s.tolerance, s.upsample, s.jitters), (0.45, 1, 1));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn nonsense_is_refused_with_the_variable_name() {
        for (s, var) in [
            (
                Settings {
                    tolerance: f64::NAN,
                    ..Default::default()
                },
                "FACE_TOLERANCE",
            ),
            (
                Settings {
                    tolerance: 0.0,
                    ..Default::default()
                },
                "FACE_TOLERANCE",
            ),
            (
                Settings {
                    upsample: 9,
                    ..Default::default()
                },
                "FACE_UPSAMPLE",
            ),
            (
                Settings {
                    jitters: 0,
                    ..Default::default()
                },
                "FACE_JITTERS",
            ),
            (
                Settings {
                    max_pixels: 0,
                    ..Default::default()
                },
                "FACE_MAX_PIXELS",
            ),
            (
                Settings {
                    detect_max_pixels: 100,
                    ..Default::default()
                },
                "DETECT_MAX_PIXELS",
            ),
            (
                Settings {
                    detect_max_pixels: 1 << 40,
                    ..Default::default()
                },
                "DETECT_MAX_PIXELS",
            ),
            (
                Settings {
                    enroll_jitters: 0,
                    ..Default::default()
                },
                "ENROLL_JITTERS",
            ),
            (
                Settings {
                    enroll_jitters: MAX_JITTERS + 1,
                    ..Default::default()
                },
                "ENROLL_JITTERS",
            ),
            (
                Settings {
                    enroll_min_face: 1_000_000,
                    ..Default::default()
                },
                "ENROLL_MIN_FACE",
            ),
            (
                Settings {
                    enroll_min_sharpness: -5.0,
                    ..Default::default()
                },
                "ENROLL_MIN_SHARPNESS",
            ),
            (
                Settings {
                    enroll_max_yaw: 120.0,
                    ..Default::default()
                },
                "ENROLL_MAX_YAW",
            ),
            (
                Settings {
                    unknown_max: unknowns::MAX_MAX + 1,
                    ..Default::default()
                },
                "UNKNOWN_MAX",
            ),
            (
                Settings {
                    unknown_max_age_days: unknowns::MAX_MAX_AGE_DAYS + 1,
                    ..Default::default()
                },
                "UNKNOWN_MAX_AGE_DAYS",
            ),
            (
                Settings {
                    unknown_cluster_distance: f64::NAN,
                    ..Default::default()
                },
                "UNKNOWN_CLUSTER_DISTANCE",
            ),
        ] {
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }
}
