//! The settings' flags and environment variables, grouped by what uses them; each command
//! flattens the groups it needs (so its `--help` shows only those). The flags are `global`: a
//! command's subcommands take them too (`people list --data DIR`). Each group fills its share
//! of [`Settings`]; the rest keep their defaults.

use std::path::PathBuf;

use clap::Args;

use crate::engine::DEFAULT_DETECT_MAX_PIXELS;
use crate::image_io::DEFAULT_MAX_PIXELS;
use crate::quality::{
    DEFAULT_ENROLL_JITTERS, DEFAULT_MAX_YAW, DEFAULT_MIN_FACE_PX, DEFAULT_MIN_SHARPNESS,
};
use crate::settings::{FaceCrops, Settings, DEFAULT_EVENTS_KEEP_DAYS};
use crate::unknowns;

/// A group of flags that fills its share of the settings.
pub trait Apply {
    /// Writes this group's values into `settings`.
    fn apply(&self, settings: &mut Settings);

    /// The default settings with this group's values.
    fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        self.apply(&mut settings);
        settings
    }
}

/// `FACE_CROPS` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaceCropsArg {
    /// Keep a crop of each enrolled face.
    Keep,
    /// No crops; those on disk are removed at start.
    None,
}

impl From<FaceCropsArg> for FaceCrops {
    fn from(arg: FaceCropsArg) -> FaceCrops {
        match arg {
            FaceCropsArg::Keep => FaceCrops::Keep,
            FaceCropsArg::None => FaceCrops::None,
        }
    }
}

/// The data folder (every command but the clients).
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// Runtime state: embeddings/<id>.npy, faces/<id>/*.jpg, people/, audit.jsonl, outbox/,
    /// unknowns/, events/, gallery-sync.json (/var/lib/face-attendance on a box)
    #[arg(
        long = "data",
        env = "FACE_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,
}

impl Apply for DataArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.data_dir = self.data_dir.clone();
    }
}

/// Face crops kept by enrollment (applied whenever the gallery is opened).
#[derive(Debug, Clone, Args)]
pub struct CropArgs {
    /// Whether enrollment keeps a crop of each enrolled face: keep, or none (and those on disk
    /// are removed at start)
    #[arg(long, env = "FACE_CROPS", value_enum, default_value_t = FaceCropsArg::Keep, global = true)]
    pub face_crops: FaceCropsArg,
    /// Face crops older than this many days are removed (at start, then every hour)
    #[arg(long, env = "FACE_CROPS_MAX_AGE_DAYS", global = true)]
    pub face_crops_max_age_days: Option<u32>,
}

impl Apply for CropArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.face_crops = self.face_crops.into();
        settings.face_crops_max_age_days = self.face_crops_max_age_days;
    }
}

/// The models and how a face is encoded and matched.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Folder with the dlib model files (filled by scripts/fetch-models)
    #[arg(
        long = "models",
        env = "FACE_MODELS_DIR",
        default_value = "models",
        global = true
    )]
    pub models_dir: PathBuf,
    /// Largest distance that still counts as a match (smaller is stricter) [default: 0.45]. The
    /// camera follows it when set here or in the environment, unless CAMERA_TOLERANCE is set
    #[arg(long, env = "FACE_TOLERANCE", global = true)]
    pub tolerance: Option<f64>,
    /// Jittered re-encodings averaged per face (1 = none; 10 is ~10x slower, a bit steadier)
    #[arg(long, env = "FACE_JITTERS", default_value_t = 1, global = true)]
    pub jitters: u32,
}

impl Apply for EngineArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.models_dir = self.models_dir.clone();
        if let Some(tolerance) = self.tolerance {
            settings.tolerance = tolerance;
        }
        settings.tolerance_given = self.tolerance.is_some();
        settings.jitters = self.jitters;
    }
}

/// How photos (requests, files) are looked at: detection and the match margin.
#[derive(Debug, Clone, Args)]
pub struct PhotoArgs {
    /// Times the image is upsampled before face detection (finds smaller faces, ~4x slower each)
    #[arg(long, env = "FACE_UPSAMPLE", default_value_t = 1, global = true)]
    pub upsample: u32,
    /// Largest image accepted, in pixels (checked from the header before decoding)
    #[arg(long, env = "FACE_MAX_PIXELS", default_value_t = DEFAULT_MAX_PIXELS, global = true)]
    pub max_pixels: u64,
    /// Largest image detected at full size, in pixels: a larger one is detected on a copy scaled
    /// down to this many (then upsampled as usual), and its faces encoded at full resolution.
    /// Detection memory and time grow with it: at upsample 1, ~45 MB and ~0.6 s (one x86 core;
    /// several times that on a Pi) per million pixels
    #[arg(
        long,
        env = "DETECT_MAX_PIXELS",
        default_value_t = DEFAULT_DETECT_MAX_PIXELS,
        global = true
    )]
    pub detect_max_pixels: u64,
    /// A match counts only when the closest person is this much closer than the closest other
    /// person; otherwise `/recognize` answers Unknown with "ambiguous" (0 = off, the original's
    /// answers)
    #[arg(long, env = "MATCH_MARGIN", default_value_t = 0.0, global = true)]
    pub match_margin: f64,
}

impl Apply for PhotoArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.upsample = self.upsample;
        settings.max_pixels = self.max_pixels;
        settings.detect_max_pixels = self.detect_max_pixels;
        settings.match_margin = self.match_margin;
    }
}

/// What enrollment asks of a face.
#[derive(Debug, Clone, Args)]
pub struct EnrollArgs {
    /// Jittered re-encodings averaged for a face being enrolled (recognition keeps
    /// FACE_JITTERS): a steadier gallery encoding for a one-off cost per enrolled photo
    #[arg(long, env = "ENROLL_JITTERS", default_value_t = DEFAULT_ENROLL_JITTERS, global = true)]
    pub enroll_jitters: u32,
    /// Smallest face enrolled: the shorter side of its box, in pixels (0: any)
    #[arg(long, env = "ENROLL_MIN_FACE", default_value_t = DEFAULT_MIN_FACE_PX, global = true)]
    pub enroll_min_face: u32,
    /// Least sharpness of a face enrolled (variance of its Laplacian; sharp faces score
    /// hundreds to thousands; 0: any)
    #[arg(
        long,
        env = "ENROLL_MIN_SHARPNESS",
        default_value_t = DEFAULT_MIN_SHARPNESS,
        global = true
    )]
    pub enroll_min_sharpness: f64,
    /// Largest head turn (yaw) of a face enrolled, in degrees, roughly estimated (90: any)
    #[arg(long, env = "ENROLL_MAX_YAW", default_value_t = DEFAULT_MAX_YAW, global = true)]
    pub enroll_max_yaw: f64,
    /// Enrollment refuses a face this close to another person's sample (a second record for
    /// one person) unless the request says force=true; default: the tolerance; 0: no check
    #[arg(long, env = "ENROLL_DUPLICATE_DISTANCE", global = true)]
    pub enroll_duplicate_distance: Option<f64>,
}

impl Apply for EnrollArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.enroll_jitters = self.enroll_jitters;
        settings.enroll_min_face = self.enroll_min_face;
        settings.enroll_min_sharpness = self.enroll_min_sharpness;
        settings.enroll_max_yaw = self.enroll_max_yaw;
        settings.enroll_duplicate_distance = self.enroll_duplicate_distance;
    }
}

/// The unknown faces kept for review.
#[derive(Debug, Clone, Args)]
pub struct UnknownArgs {
    /// Most unknown faces kept for review (faces the camera saw that match nobody, in
    /// data/unknowns/), 0 to 1000; past it the oldest go; 0 keeps none (and removes
    /// data/unknowns/)
    #[arg(long, env = "UNKNOWN_MAX", default_value_t = unknowns::DEFAULT_MAX, global = true)]
    pub unknown_max: usize,
    /// Days an unknown face is kept for review: older ones go with their crops (at start, then
    /// hourly); 0: no age limit; at most 36500
    #[arg(
        long,
        env = "UNKNOWN_MAX_AGE_DAYS",
        default_value_t = unknowns::DEFAULT_MAX_AGE_DAYS,
        global = true
    )]
    pub unknown_max_age_days: u32,
    /// Two unknown faces closer than this are taken as one person when they are grouped for
    /// review (see the book's camera pipeline for how it was measured)
    #[arg(
        long,
        env = "UNKNOWN_CLUSTER_DISTANCE",
        default_value_t = unknowns::DEFAULT_CLUSTER_DISTANCE,
        global = true
    )]
    pub unknown_cluster_distance: f64,
}

impl Apply for UnknownArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.unknown_max = self.unknown_max;
        settings.unknown_max_age_days = self.unknown_max_age_days;
        settings.unknown_cluster_distance = self.unknown_cluster_distance;
    }
}

/// The local event log.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Days the local event log (data/events/, one file per UTC day) is kept: files more than
    /// this many days before today are removed (at start, then hourly); 0 keeps them forever;
    /// at most 36500
    #[arg(long, env = "EVENTS_KEEP_DAYS", default_value_t = DEFAULT_EVENTS_KEEP_DAYS, global = true)]
    pub events_keep_days: u32,
    /// The box's time zone, an IANA name (Asia/Jakarta, Europe/Berlin): the local day of
    /// punches and of the daily report, daylight-saving changes included; an unknown name stops
    /// serve (exit 2) [default: the system's]
    #[arg(long, env = "BOX_TIMEZONE", global = true)]
    pub box_timezone: Option<String>,
    /// In or out by the local time of day (`00:00-10:30 in, 10:30-24:00 out`), for events whose
    /// camera has no direction; a gap, an overlap or a bad time stops serve (exit 2) [default:
    /// none: a person's first sighting of the day is in, later ones out]
    #[arg(long, env = "PUNCH_SCHEDULE", global = true)]
    pub punch_schedule: Option<String>,
}

impl Apply for EventsArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.events_keep_days = self.events_keep_days;
        settings.box_timezone = self.box_timezone.clone();
        settings.punch_schedule = self.punch_schedule.clone();
    }
}

/// `gallery` (and the base of every command that opens the gallery): the data folder and the
/// crops kept in it.
#[derive(Debug, Clone, Args)]
pub struct GalleryArgs {
    /// The data folder.
    #[command(flatten)]
    pub data: DataArgs,
    /// The crops kept in it.
    #[command(flatten)]
    pub crops: CropArgs,
}

impl Apply for GalleryArgs {
    fn apply(&self, settings: &mut Settings) {
        self.data.apply(settings);
        self.crops.apply(settings);
    }
}

/// `recognize` and `people`: the gallery, the models and how photos are recognized.
#[derive(Debug, Clone, Args)]
pub struct RecognizerArgs {
    /// The data folder and its crops.
    #[command(flatten)]
    pub gallery: GalleryArgs,
    /// The models, the tolerance, the jitters.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Detection on photos and the match margin.
    #[command(flatten)]
    pub photo: PhotoArgs,
}

impl Apply for RecognizerArgs {
    fn apply(&self, settings: &mut Settings) {
        self.gallery.apply(settings);
        self.engine.apply(settings);
        self.photo.apply(settings);
    }
}

/// `cam-demo` and `face-attendance-bench camera`: the data folder (its gallery, read) and the
/// models; the camera has settings of its own.
#[derive(Debug, Clone, Args)]
pub struct CameraEngineArgs {
    /// The data folder.
    #[command(flatten)]
    pub data: DataArgs,
    /// The models, the tolerance, the jitters.
    #[command(flatten)]
    pub engine: EngineArgs,
}

impl Apply for CameraEngineArgs {
    fn apply(&self, settings: &mut Settings) {
        self.data.apply(settings);
        self.engine.apply(settings);
    }
}

/// Several groups at once.
impl<A: Apply, B: Apply> Apply for (&A, &B) {
    fn apply(&self, settings: &mut Settings) {
        self.0.apply(settings);
        self.1.apply(settings);
    }
}
