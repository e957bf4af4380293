//! Settings shared by every command, from flags or the environment (the original service's
//! variables plus the new ones), checked once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::camera::DEFAULT_CAMERA_MATCH_MARGIN;
use crate::engine::{Engine, EngineConfig, DEFAULT_DETECT_MAX_PIXELS};
use crate::error::Error;
use crate::gallery::{CropPolicy, Gallery, LoadReport};
use crate::http::ApiKeys;
use crate::image_io::DEFAULT_MAX_PIXELS;
use crate::quality::{
    QualityLimits, DEFAULT_ENROLL_JITTERS, DEFAULT_MAX_YAW, DEFAULT_MIN_FACE_PX,
    DEFAULT_MIN_SHARPNESS,
};
use crate::recognizer::{EnrollPolicy, Recognizer};
use crate::unknowns::{self, UnknownSettings};

/// Upsampling multiplies detection cost and memory by ~4 each time; past 3 it is never useful.
pub const MAX_UPSAMPLE: u32 = 3;
pub const MAX_JITTERS: u32 = 100;
/// Detection budget bounds: below 80x80 no face fits the HOG window; above 100 MP one
/// detection alone needs several GB.
pub const MIN_DETECT_PIXELS: u64 = 80 * 80;
pub const MAX_DETECT_PIXELS: u64 = 100_000_000;

#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Runtime state: embeddings/<id>.npy and faces/<id>/*.jpg
    #[arg(
        long = "data",
        env = "FACE_DATA_DIR",
        default_value = "data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Folder with the dlib model files (filled by scripts/fetch-models)
    #[arg(
        long = "models",
        env = "FACE_MODELS_DIR",
        default_value = "models",
        global = true
    )]
    pub models_dir: PathBuf,
    /// Largest distance that still counts as a match (smaller is stricter)
    #[arg(long, env = "FACE_TOLERANCE", default_value_t = 0.45, global = true)]
    pub tolerance: f64,
    /// Times the image is upsampled before face detection (finds smaller faces, ~4x slower each)
    #[arg(long, env = "FACE_UPSAMPLE", default_value_t = 1, global = true)]
    pub upsample: u32,
    /// Jittered re-encodings averaged per face (1 = none; 10 is ~10x slower, a bit steadier)
    #[arg(long, env = "FACE_JITTERS", default_value_t = 1, global = true)]
    pub jitters: u32,
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
    /// Whether enrollment keeps a crop of each enrolled face: keep, or none (and those on disk
    /// are removed at start)
    #[arg(long, env = "FACE_CROPS", value_enum, default_value_t = FaceCrops::Keep, global = true)]
    pub face_crops: FaceCrops,
    /// Face crops older than this many days are removed (at start, then every hour)
    #[arg(long, env = "FACE_CROPS_MAX_AGE_DAYS", global = true)]
    pub face_crops_max_age_days: Option<u32>,
    /// A match counts only when the closest person is this much closer than the closest other
    /// person; otherwise `/recognize` answers Unknown with "ambiguous" (0 = off, the original's
    /// answers)
    #[arg(long, env = "MATCH_MARGIN", default_value_t = 0.0, global = true)]
    pub match_margin: f64,
    /// Most unknown faces kept for review (faces the camera saw that match nobody, in
    /// data/unknowns/); past it the oldest go
    #[arg(long, env = "UNKNOWN_MAX", default_value_t = unknowns::DEFAULT_MAX, global = true)]
    pub unknown_max: usize,
    /// Two unknown faces closer than this are taken as one person when they are grouped for
    /// review (see the README for how it was measured)
    #[arg(
        long,
        env = "UNKNOWN_CLUSTER_DISTANCE",
        default_value_t = unknowns::DEFAULT_CLUSTER_DISTANCE,
        global = true
    )]
    pub unknown_cluster_distance: f64,
    /// Days the local event log (data/events/, one file per UTC day) is kept: files more than
    /// this many days before today are removed (at start, then hourly); 0 keeps them forever
    #[arg(long, env = "EVENTS_KEEP_DAYS", default_value_t = DEFAULT_EVENTS_KEEP_DAYS, global = true)]
    pub events_keep_days: u32,
}

/// `EVENTS_KEEP_DAYS` unless set: a school term's worth of attendance.
pub const DEFAULT_EVENTS_KEEP_DAYS: u32 = 90;
/// A century: past it the number is a mistake (0 is the way to keep everything).
pub const MAX_EVENTS_KEEP_DAYS: u32 = 36_500;

/// A margin setting: 0 (off) to 2 (the largest distance there is).
fn check_margin(name: &str, margin: f64) -> Result<(), Error> {
    if margin.is_finite() && (0.0..=2.0).contains(&margin) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "{name} must be 0 (off) to 2, got {margin}"
        )))
    }
}

/// `FACE_CROPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaceCrops {
    Keep,
    None,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            data_dir: PathBuf::from("data"),
            models_dir: PathBuf::from("models"),
            tolerance: 0.45,
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
            unknown_cluster_distance: unknowns::DEFAULT_CLUSTER_DISTANCE,
            events_keep_days: DEFAULT_EVENTS_KEEP_DAYS,
        }
    }
}

impl Settings {
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
        if !(1..=unknowns::MAX_MAX).contains(&self.unknown_max) {
            return Err(Error::Config(format!(
                "UNKNOWN_MAX must be 1 to {}, got {}",
                unknowns::MAX_MAX,
                self.unknown_max
            )));
        }
        let d = self.unknown_cluster_distance;
        if !(d.is_finite() && d > 0.0 && d <= 2.0) {
            return Err(Error::Config(format!(
                "UNKNOWN_CLUSTER_DISTANCE must be in (0, 2], got {d}"
            )));
        }
        if self.events_keep_days > MAX_EVENTS_KEEP_DAYS {
            return Err(Error::Config(format!(
                "EVENTS_KEEP_DAYS must be 0 (keep forever) to {MAX_EVENTS_KEEP_DAYS}, got {}",
                self.events_keep_days
            )));
        }
        Ok(())
    }

    /// How the unknown faces are kept: UNKNOWN_MAX, UNKNOWN_CLUSTER_DISTANCE, and crops as
    /// FACE_CROPS says.
    pub fn unknown_settings(&self) -> UnknownSettings {
        UnknownSettings::new(
            self.unknown_max,
            self.crop_policy().keeps_crops(),
            self.unknown_cluster_distance,
        )
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

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig::new(&self.models_dir)
            .with_upsample(self.upsample)
            .with_jitters(self.jitters)
    }

    /// Validates the settings, loads the models and the gallery.
    pub fn open(&self) -> Result<(Recognizer, LoadReport), Error> {
        self.validate()?;
        let engine =
            Engine::load(self.engine_config())?.with_detect_max_pixels(self.detect_max_pixels);
        let (gallery, report) = self.open_gallery()?;
        let recognizer = Recognizer::new(Arc::new(engine), Arc::new(gallery))
            .with_tolerance(self.tolerance)
            .with_max_pixels(self.max_pixels)
            .with_match_margin(self.match_margin)
            .with_enroll_jitters(self.enroll_jitters)
            .with_enroll_policy(self.enroll_policy()?);
        Ok((recognizer, report))
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
                    unknown_max: 0,
                    ..Default::default()
                },
                "UNKNOWN_MAX",
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

/// Whether every address `bind` (`host:port`) stands for is a loopback one (a name that does
/// not resolve counts as not loopback: the start then fails on it anyway).
pub fn bind_is_loopback(bind: &str) -> bool {
    use std::net::ToSocketAddrs;
    match bind.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Where `serve` listens without `FACE_BIND`: loopback only, as the original (uvicorn) did,
/// because without a key anyone who can reach the port may enroll faces and see who came in.
pub const DEFAULT_BIND: &str = "127.0.0.1:8000";
/// ... and with an API key configured: every interface, the box's usual job on a LAN.
pub const DEFAULT_BIND_WITH_KEY: &str = "0.0.0.0:8000";

#[cfg(test)]
mod serve_tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeSettings,
    }

    fn parse(args: &[&str]) -> ServeSettings {
        Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()))
            .unwrap()
            .serve
    }

    #[test]
    fn tls_settings_are_their_own_and_half_a_setup_is_refused() {
        // (No FACE_TLS_* nor FACE_PLAIN_HTTP in the test's environment.)
        let s = parse(&["--bind", "127.0.0.1:1", "--tls-bind", "127.0.0.1:2"]);
        assert_eq!(s.bind.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(s.tls.tls_bind.as_deref(), Some("127.0.0.1:2"));
        assert!(s.tls.plain_http);
        let e = s.tls_setup().unwrap_err().to_string();
        assert!(e.contains("FACE_TLS_BIND needs FACE_TLS_CERT"), "{e}");
        for off in ["false", "0", "no", "off"] {
            let s = parse(&["--plain-http", off]);
            assert!(!s.tls.plain_http, "{off}");
            let e = s.tls_setup().unwrap_err().to_string();
            assert!(
                e.contains("FACE_PLAIN_HTTP=false needs FACE_TLS_BIND"),
                "{e}"
            );
        }
        assert!(parse(&[]).tls_setup().unwrap().is_none());
    }

    #[test]
    fn loopback_unless_a_key_is_set_and_an_explicit_bind_always_wins() {
        // (FACE_BIND and FACE_API_KEY must not be set in the test's environment.)
        assert_eq!(parse(&[]).bind_address(), "127.0.0.1:8000");
        assert_eq!(parse(&["--api-key", " "]).bind_address(), "127.0.0.1:8000");
        let key = ["--api-key", "0123456789abcdef"];
        assert_eq!(parse(&key).bind_address(), "0.0.0.0:8000");
        assert_eq!(
            parse(&["--api-keys-file", "/etc/keys"]).bind_address(),
            "0.0.0.0:8000"
        );
        let both = ["--api-key", "0123456789abcdef", "--bind", "127.0.0.1:9000"];
        assert_eq!(parse(&both).bind_address(), "127.0.0.1:9000");
        assert_eq!(
            parse(&["--bind", "0.0.0.0:8000"]).bind_address(),
            "0.0.0.0:8000"
        );
    }

    #[test]
    fn bad_keys_stop_the_start_with_the_setting_named() {
        let short = parse(&["--api-key", "short"]).validate().unwrap_err();
        assert!(short.to_string().contains("FACE_API_KEY"), "{short}");
        assert!(!short.to_string().contains("short"), "{short}");
        let missing = parse(&["--api-keys-file", "/nonexistent/keys"]).validate();
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("FACE_API_KEYS_FILE"),
            "unreadable file accepted"
        );
        assert!(parse(&["--api-key", "0123456789abcdef"]).validate().is_ok());
    }

    #[test]
    fn mqtt_settings_are_checked_with_the_setting_named() {
        assert!(parse(&[]).mqtt().unwrap().is_none());
        let url = ["--mqtt-url", "mqtt://broker.lan"];
        let with = |more: &[&str]| {
            let args: Vec<&str> = url.iter().chain(more).copied().collect();
            parse(&args).mqtt()
        };
        let ok = with(&["--box-id", "gate-1"]).unwrap().unwrap();
        assert_eq!(ok.box_id, "gate-1");
        assert_eq!(ok.topic_prefix, "face-attendance");
        assert_eq!(ok.status_every, std::time::Duration::from_secs(60));
        assert_eq!(ok.gallery_sync, crate::mqtt::SyncMode::Both);
        assert!(!ok.ha_discovery);
        let pull = with(&["--gallery-sync", "pull", "--mqtt-ha-discovery"])
            .unwrap()
            .unwrap();
        assert_eq!(pull.gallery_sync, crate::mqtt::SyncMode::Pull);
        assert!(pull.ha_discovery);
        // The host name, made one topic level.
        let host = with(&[]).unwrap().unwrap().box_id;
        assert!(crate::mqtt::valid_level(&host), "{host:?}");
        let tls = parse(&["--mqtt-url", "mqtts://b:8884", "--mqtt-ca-file", "/ca.pem"]);
        assert_eq!(
            tls.mqtt().unwrap().unwrap().ca_file.unwrap().to_str(),
            Some("/ca.pem")
        );
        for (args, named) in [
            (&["--mqtt-url", "http://broker"][..], "MQTT_URL"),
            (&["--mqtt-url", "broker:1883"][..], "MQTT_URL"),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-ca-file", "/ca.pem"][..],
                "MQTT_CA_FILE",
            ),
            (&["--mqtt-url", "mqtt://b", "--box-id", "a/b"][..], "BOX_ID"),
            (&["--mqtt-url", "mqtt://b", "--box-id", "a+"][..], "BOX_ID"),
            (&["--mqtt-url", "mqtt://b", "--box-id", "#"][..], "BOX_ID"),
            (&["--mqtt-url", "mqtt://b", "--box-id", " "][..], "BOX_ID"),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-topic-prefix", "/x"][..],
                "MQTT_TOPIC_PREFIX",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-topic-prefix", "x/"][..],
                "MQTT_TOPIC_PREFIX",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-topic-prefix", "a//b"][..],
                "MQTT_TOPIC_PREFIX",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-topic-prefix", "a/+"][..],
                "MQTT_TOPIC_PREFIX",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-topic-prefix", ""][..],
                "MQTT_TOPIC_PREFIX",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--mqtt-status-seconds", "0"][..],
                "MQTT_STATUS_SECONDS",
            ),
            (
                &["--mqtt-url", "mqtt://b", "--gallery-sync", "push"][..],
                "GALLERY_SYNC",
            ),
        ] {
            let err = parse(args).mqtt().unwrap_err().to_string();
            assert!(err.contains(named), "{args:?}: {err}");
            assert!(parse(args).validate().is_err(), "{args:?}");
        }
        let nested = with(&["--mqtt-topic-prefix", "school/a", "--box-id", "b"]).unwrap();
        assert_eq!(nested.unwrap().topic_prefix, "school/a");
    }

    #[test]
    fn the_host_name_becomes_a_valid_box_id() {
        let id = host_box_id();
        assert!(crate::mqtt::valid_level(&id), "{id:?}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }
}

/// Settings of `serve`: the HTTP API, the webhook and the WebSocket feed.
#[derive(Debug, Clone, Args)]
pub struct ServeSettings {
    /// Address to listen on [default: 127.0.0.1:8000, or 0.0.0.0:8000 when an API key is set]
    #[arg(long, env = "FACE_BIND")]
    pub bind: Option<String>,
    /// API key clients must send (`X-API-Key: KEY` or `Authorization: Bearer KEY`) to enroll,
    /// recognize, follow the WebSocket or read /config; at least 16 characters
    #[arg(long, env = "FACE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File of API keys, one per line (`#` comments, blank lines ignored), read at start
    #[arg(long, env = "FACE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// HTTP worker threads: they answer the light routes and hand uploads to threads of their
    /// own (face work itself runs on one thread per core)
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Largest request body, in bytes
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest gallery archive `POST /gallery/import` takes, in bytes (kept in an unnamed file
    /// of the data folder while it is checked and imported, not in memory)
    #[arg(long, env = "GALLERY_IMPORT_MAX_BYTES", default_value_t = 128 * 1024 * 1024)]
    pub max_import_bytes: usize,
    /// Seconds a client has to send a whole request head, may stay idle between requests, or
    /// may stall reading an answer; a body must then keep arriving at 16 KiB/s or more
    #[arg(long, env = "HTTP_TIMEOUT_SECONDS", default_value_t = 15)]
    pub http_timeout_seconds: u64,
    /// Most client connections at once (each holds a thread and an open file); 0: as many as
    /// the open-files limit allows, at most 512. Past it, 503 at once
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,
    /// Most connections at once from one client address
    #[arg(long, env = "HTTP_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 32)]
    pub max_connections_per_client: usize,
    /// Most requests with a body (uploads) received or handled at once; past it, 503 at once
    #[arg(long, env = "HTTP_MAX_UPLOADS", default_value_t = 16)]
    pub max_uploads: usize,
    /// Most images decoded and analyzed at once (each may cost up to ~FACE_MAX_PIXELS x 3 bytes
    /// plus detection scratch; see the README's memory budget)
    #[arg(long, env = "HTTP_MAX_IMAGES", default_value_t = 2)]
    pub max_images: usize,
    /// Seconds an upload waits for one of HTTP_MAX_IMAGES before it gets 503 and Retry-After
    #[arg(long, env = "HTTP_QUEUE_SECONDS", default_value_t = 5.0)]
    pub queue_seconds: f64,
    /// The main API's attendance endpoint; empty disables the webhook
    #[arg(long, env = "ATTENDANCE_WEBHOOK_URL", default_value = "")]
    pub webhook_url: String,
    /// Sent to the main API as `Authorization: Bearer <key>`
    #[arg(
        long,
        env = "ATTENDANCE_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub webhook_api_key: String,
    /// At most one webhook call per person per this many seconds
    #[arg(long, env = "EVENT_COOLDOWN_SECONDS", default_value_t = 5.0)]
    pub cooldown_seconds: f64,
    /// Bound on one webhook call, connect included
    #[arg(long, env = "WEBHOOK_TIMEOUT_SECONDS", default_value_t = 5.0)]
    pub webhook_timeout_seconds: f64,
    /// Longest pause between two delivery attempts while the main API fails (the first retry
    /// comes after 0.5 s, doubling)
    #[arg(long, env = "WEBHOOK_RETRY_MAX_SECONDS", default_value_t = 60.0)]
    pub webhook_retry_max_seconds: f64,
    /// Most undelivered events kept in the outbox; past it the oldest are dropped (logged,
    /// counted in /health)
    #[arg(long, env = "OUTBOX_MAX_EVENTS", default_value_t = 100_000)]
    pub outbox_max_events: usize,
    /// Most WebSocket clients at once
    #[arg(long, env = "WS_MAX_CLIENTS", default_value_t = 64)]
    pub ws_max_clients: usize,
    /// `GET /metrics` needs a viewer key [default: true on a box with keys]; false opens it
    /// like /health (it tells anyone who can reach the port when people arrive)
    #[arg(long, env = "METRICS_REQUIRE_KEY", num_args = 0..=1, default_missing_value = "true")]
    pub metrics_require_key: Option<bool>,
    /// Serve a non-loopback address without any API key, deliberately (anyone who can reach
    /// the port may then enroll, delete and export faces); without it `serve` refuses to start
    #[arg(long, env = "FACE_ALLOW_OPEN_LAN")]
    pub allow_open_lan: bool,
    /// More host names the box answers to, comma separated (besides loopback, its own
    /// addresses and host name, with and without .local); other `Host` headers get 421
    #[arg(long, env = "FACE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`https://office.school.lan`) whose pages may change this box, comma
    /// separated, besides the box's own page
    #[arg(long, env = "FACE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Accept `?api_key=` on /ws/recognitions and /stream.mjpg (weaker: URLs end up in logs and
    /// history; the page uses single-use tickets instead)
    #[arg(long, env = "FACE_ALLOW_KEY_IN_URL")]
    pub allow_key_in_url: bool,
    /// Most frames a second sent to one viewer of the live view (`/stream.mjpg`); 0.1 to 30
    #[arg(long, env = "STREAM_MAX_FPS", default_value_t = 5.0)]
    pub stream_max_fps: f64,
    /// Most viewers of the live view at once (each has a thread and encodes JPEGs); past it,
    /// 503 at once. 0 turns the live view off
    #[arg(long, env = "STREAM_MAX_CLIENTS", default_value_t = 4)]
    pub stream_max_clients: usize,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub camera: CameraSettings,
    #[command(flatten)]
    pub mqtt_args: MqttArgs,
}

/// The HTTPS listener of `serve` (src/http/tls.rs) and the plain one's switch.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Address of the HTTPS listener, e.g. 0.0.0.0:8443 (unset: no HTTPS); needs FACE_TLS_CERT
    /// and FACE_TLS_KEY
    #[arg(long, env = "FACE_TLS_BIND")]
    pub tls_bind: Option<String>,
    /// PEM certificate chain of the HTTPS listener (the box's certificate first)
    #[arg(long, env = "FACE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of FACE_TLS_CERT (PKCS#8, PKCS#1 or SEC1, not encrypted)
    #[arg(long, env = "FACE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// false: no plain HTTP listener (FACE_BIND), HTTPS only (needs FACE_TLS_BIND)
    #[arg(
        long,
        env = "FACE_PLAIN_HTTP",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub plain_http: bool,
}

/// No HTTPS, plain HTTP on: as without any of the settings.
impl Default for TlsArgs {
    fn default() -> TlsArgs {
        TlsArgs {
            tls_bind: None,
            tls_cert: None,
            tls_key: None,
            plain_http: true,
        }
    }
}

/// The MQTT broker of `serve` (src/mqtt/): events, box status and gallery sync between boxes.
#[derive(Debug, Clone, Default, Args)]
pub struct MqttArgs {
    /// The broker: mqtt://host[:1883] or mqtts://host[:8883] (unset: no MQTT)
    #[arg(long, env = "MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// PEM CA certificates for mqtts:// instead of the system's
    #[arg(long, env = "MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    #[arg(long, env = "MQTT_USERNAME")]
    pub mqtt_username: Option<String>,
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// This box's name in MQTT topics, unique per box (default: the host name)
    #[arg(long, env = "BOX_ID")]
    pub box_id: Option<String>,
    /// First level of this service's MQTT topics
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = DEFAULT_TOPIC_PREFIX)]
    pub mqtt_topic_prefix: String,
    /// Seconds between two retained health summaries on <prefix>/<box_id>/health
    #[arg(long, env = "MQTT_STATUS_SECONDS", default_value_t = 60)]
    pub mqtt_status_seconds: u64,
    /// Publish Home Assistant MQTT discovery configs (retained, under homeassistant/)
    #[arg(long, env = "MQTT_HA_DISCOVERY")]
    pub mqtt_ha_discovery: bool,
    /// Gallery sync between boxes: off, pull (apply others' people) or both (also publish
    /// ours). Default: both when MQTT_URL is set
    #[arg(long, env = "GALLERY_SYNC")]
    pub gallery_sync: Option<String>,
}

/// `MQTT_TOPIC_PREFIX`'s default.
pub const DEFAULT_TOPIC_PREFIX: &str = "face-attendance";
/// Most seconds between two health summaries (a day).
const MAX_STATUS_SECONDS: u64 = 86_400;

/// The host name, made one valid topic level: characters other than letters, digits, `-`, `_`
/// and `.` become `-`; "box" when there is none.
pub fn host_box_id() -> String {
    let name = host_name().unwrap_or_default();
    let safe: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if safe.is_empty() {
        "box".into()
    } else {
        safe
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its whole length, which is what is passed; the
    // result is read only up to the first NUL (or the length, if the name was cut).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !name.trim().is_empty() {
            return Some(name);
        }
    }
    std::fs::read_to_string("/etc/hostname").ok()
}

impl MqttArgs {
    /// The checked MQTT settings; `None` without `MQTT_URL`.
    pub fn settings(&self) -> Result<Option<crate::mqtt::MqttSettings>, Error> {
        use crate::mqtt::{valid_level, BrokerUrl, MqttSettings, SyncMode};
        let Some(url) = self
            .mqtt_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let broker = BrokerUrl::parse(url).map_err(|e| Error::Config(e.to_string()))?;
        if self.mqtt_ca_file.is_some() && !broker.tls {
            return Err(Error::Config(
                "MQTT_CA_FILE is set but MQTT_URL is not mqtts://".into(),
            ));
        }
        let box_id = match self.box_id.as_deref().map(str::trim) {
            Some(id) => {
                if !valid_level(id) {
                    return Err(Error::Config(format!(
                        "BOX_ID must be a non-empty name without '/', '+' or '#', got {id:?}"
                    )));
                }
                id.to_string()
            }
            None => host_box_id(),
        };
        let prefix = self.mqtt_topic_prefix.trim();
        if prefix.is_empty()
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains(['+', '#', '\0'])
            || prefix.split('/').any(str::is_empty)
        {
            return Err(Error::Config(format!(
                "MQTT_TOPIC_PREFIX must be topic levels joined by '/', without '+', '#' or a \
                 leading, trailing or doubled '/', got {prefix:?}"
            )));
        }
        if !(1..=MAX_STATUS_SECONDS).contains(&self.mqtt_status_seconds) {
            return Err(Error::Config(format!(
                "MQTT_STATUS_SECONDS must be 1 to {MAX_STATUS_SECONDS}, got {}",
                self.mqtt_status_seconds
            )));
        }
        let gallery_sync = match self
            .gallery_sync
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") | Some("both") => SyncMode::Both,
            Some("pull") => SyncMode::Pull,
            Some("off") => SyncMode::Off,
            Some(other) => {
                return Err(Error::Config(format!(
                    "GALLERY_SYNC must be off, pull or both, got {other:?}"
                )))
            }
        };
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(Some(MqttSettings {
            url: url.to_string(),
            ca_file: self.mqtt_ca_file.clone(),
            username: text(&self.mqtt_username),
            password: text(&self.mqtt_password),
            box_id,
            topic_prefix: prefix.to_string(),
            status_every: std::time::Duration::from_secs(self.mqtt_status_seconds),
            ha_discovery: self.mqtt_ha_discovery,
            gallery_sync,
        }))
    }
}

/// The camera loop of `serve` (and `cam-demo`).
#[derive(Debug, Clone, Args)]
pub struct CameraSettings {
    /// The V4L2 camera device to capture from
    #[arg(long, env = "CAMERA_DEVICE", conflicts_with = "frames")]
    pub camera: Option<std::path::PathBuf>,
    /// Capture width in pixels
    #[arg(long, env = "CAMERA_WIDTH", default_value_t = 640)]
    pub camera_width: u32,
    /// Capture height in pixels
    #[arg(long, env = "CAMERA_HEIGHT", default_value_t = 480)]
    pub camera_height: u32,
    /// Capture rate asked of the camera, frames per second
    #[arg(long, env = "CAMERA_CAPTURE_FPS", default_value_t = 15)]
    pub camera_fps: u32,
    /// Replay frames from a folder of JPEGs, one image or an MJPEG file through the camera
    /// pipeline (as a camera would deliver them)
    #[arg(long, env = "CAMERA_FRAMES")]
    pub frames: Option<std::path::PathBuf>,
    /// Replay rate, frames per second
    #[arg(long, env = "CAMERA_FPS", default_value_t = 10.0)]
    pub frames_fps: f64,
    /// Replay the frames again and again
    #[arg(long, env = "CAMERA_LOOP")]
    pub frames_loop: bool,
    /// Unknown faces seen by the camera also produce events
    #[arg(long, env = "CAMERA_SEND_UNKNOWN")]
    pub camera_send_unknown: bool,
    /// /health says ok:false when the camera has been gone or silent this many seconds
    #[arg(long, env = "CAMERA_STALE_SECONDS", default_value_t = 10)]
    pub camera_stale_seconds: u64,
    /// Detect faces on the frame scaled by this (0.1 to 1): detection cost follows the pixel
    /// count; landmarks and encodings still use the full frame
    #[arg(long, env = "DETECT_SCALE", default_value_t = 0.5)]
    pub detect_scale: f64,
    /// Times the scaled frame is upsampled before detection. Faces are found from about
    /// 80 / DETECT_SCALE px wide, half that per upsample, and each upsample costs ~4x
    #[arg(long, env = "CAMERA_UPSAMPLE", default_value_t = 0)]
    pub camera_upsample: u32,
    /// A face that stays in place is encoded again every this many frames (1 = every frame)
    #[arg(long, env = "CAMERA_RECHECK_FRAMES", default_value_t = 10)]
    pub recheck_frames: u32,
    /// Ignore faces narrower than this many pixels (0 = off)
    #[arg(long, env = "CAMERA_MIN_FACE", default_value_t = 0)]
    pub min_face: u32,
    /// Ignore faces less sharp than this (variance of the Laplacian on a 64x64 sample; sharp
    /// faces score from several hundred to a few thousand; 0 = off)
    #[arg(long, env = "CAMERA_MIN_SHARPNESS", default_value_t = 0.0)]
    pub min_sharpness: f64,
    /// A camera match counts only when the closest person is this much closer than the closest
    /// other person; otherwise the face is ambiguous (0 = off)
    #[arg(long, env = "CAMERA_MATCH_MARGIN", default_value_t = DEFAULT_CAMERA_MATCH_MARGIN)]
    pub camera_match_margin: f64,
    /// A face's identity (a person, ambiguous, unknown) is decided, and its event sent, only
    /// when this many of its encoded frames agree (1 = at its first frame)
    #[arg(long, env = "CAMERA_CONFIRM_FRAMES", default_value_t = 3)]
    pub confirm_frames: u32,
    /// ... within this many seconds
    #[arg(long, env = "CAMERA_CONFIRM_SECONDS", default_value_t = 2.0)]
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
                crate::camera::v4l2::V4l2Source::open(&device, w, h, fps)
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

impl ServeSettings {
    pub fn validate(&self) -> Result<(), Error> {
        let seconds = |name: &str, v: f64, max: f64| {
            if v.is_finite() && (0.0..=max).contains(&v) {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} must be 0 to {max}, got {v}")))
            }
        };
        self.camera.validate()?;
        seconds("EVENT_COOLDOWN_SECONDS", self.cooldown_seconds, 86_400.0)?;
        seconds(
            "WEBHOOK_TIMEOUT_SECONDS",
            self.webhook_timeout_seconds,
            300.0,
        )?;
        seconds(
            "WEBHOOK_RETRY_MAX_SECONDS",
            self.webhook_retry_max_seconds,
            86_400.0,
        )?;
        if self.outbox_max_events == 0 {
            return Err(Error::Config("OUTBOX_MAX_EVENTS must be above 0".into()));
        }
        if self.webhook_timeout_seconds < 0.1 {
            return Err(Error::Config(
                "WEBHOOK_TIMEOUT_SECONDS must be at least 0.1".into(),
            ));
        }
        if !(1..=256).contains(&self.workers) {
            return Err(Error::Config(format!(
                "HTTP_WORKERS must be 1 to 256, got {}",
                self.workers
            )));
        }
        if self.max_upload_bytes == 0 {
            return Err(Error::Config("MAX_UPLOAD_BYTES must be above 0".into()));
        }
        if !(1..=3600).contains(&self.http_timeout_seconds) {
            return Err(Error::Config(format!(
                "HTTP_TIMEOUT_SECONDS must be 1 to 3600, got {}",
                self.http_timeout_seconds
            )));
        }
        let count = |name: &str, value: usize, min: usize, max: usize| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} must be {min} to {max}, got {value}"
                )))
            }
        };
        count("HTTP_MAX_CONNECTIONS", self.max_connections, 0, 100_000)?;
        count(
            "HTTP_MAX_CONNECTIONS_PER_CLIENT",
            self.max_connections_per_client,
            1,
            100_000,
        )?;
        count("HTTP_MAX_UPLOADS", self.max_uploads, 1, 4096)?;
        count("HTTP_MAX_IMAGES", self.max_images, 1, 256)?;
        seconds("HTTP_QUEUE_SECONDS", self.queue_seconds, 600.0)?;
        if !(self.stream_max_fps.is_finite() && (0.1..=30.0).contains(&self.stream_max_fps)) {
            return Err(Error::Config(format!(
                "STREAM_MAX_FPS must be 0.1 to 30, got {}",
                self.stream_max_fps
            )));
        }
        count("STREAM_MAX_CLIENTS", self.stream_max_clients, 0, 64)?;
        let url = self.webhook_url.trim();
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Error::Config(format!(
                "ATTENDANCE_WEBHOOK_URL must start with http:// or https://, got {url:?}"
            )));
        }
        let keys = self.api_keys()?;
        let tls_bind = self
            .tls
            .tls_bind
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());
        let plain_bind = self.bind_address();
        let open = [
            Some(plain_bind.as_str()).filter(|_| self.tls.plain_http),
            tls_bind,
        ]
        .into_iter()
        .flatten()
        .find(|bind| !bind_is_loopback(bind));
        if let Some(bind) = open.filter(|_| keys.is_empty() && !self.allow_open_lan) {
            return Err(Error::Config(format!(
                "refusing to serve {bind} without an API key: anyone on the network could \
                 enroll, delete and export faces. Set FACE_API_KEYS_FILE (scripts/install makes \
                 one) or FACE_API_KEY, or bind to 127.0.0.1; FACE_ALLOW_OPEN_LAN=true serves the \
                 LAN without keys deliberately"
            )));
        }
        for origin in &self.allowed_origins {
            let rest = origin
                .trim()
                .strip_prefix("https://")
                .or_else(|| origin.trim().strip_prefix("http://"));
            if rest.is_none_or(|r| {
                r.trim_end_matches('/').is_empty() || r.trim_end_matches('/').contains('/')
            }) {
                return Err(Error::Config(format!(
                    "FACE_ALLOWED_ORIGINS takes origins such as https://office.school.lan \
                     (scheme, host, port; no path), got {origin:?}"
                )));
            }
        }
        self.mqtt()?;
        self.tls_setup()?;
        Ok(())
    }

    /// Whether `/metrics` needs a viewer key: `METRICS_REQUIRE_KEY`, else whenever keys are
    /// configured.
    pub fn metrics_require_key(&self, keyed: bool) -> bool {
        self.metrics_require_key.unwrap_or(keyed)
    }

    /// `FACE_TLS_BIND` and the configuration of `FACE_TLS_CERT` / `FACE_TLS_KEY` (the files are
    /// read now); `None` without HTTPS. Refuses half a setup (a certificate without its key, a
    /// listener without either, files without a listener) and `FACE_PLAIN_HTTP=false` without
    /// HTTPS.
    pub fn tls_setup(&self) -> Result<Option<(String, crate::http::tls::TlsSetup)>, Error> {
        let bind = self
            .tls
            .tls_bind
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());
        let set = |p: &Option<PathBuf>| p.as_ref().filter(|p| !p.as_os_str().is_empty()).cloned();
        let (cert, key) = (set(&self.tls.tls_cert), set(&self.tls.tls_key));
        let config = |m: &str| Err(Error::Config(m.to_string()));
        match (bind, &cert, &key) {
            (None, None, None) if !self.tls.plain_http => config(
                "FACE_PLAIN_HTTP=false needs FACE_TLS_BIND (with FACE_TLS_CERT and FACE_TLS_KEY): \
                 the service would listen nowhere",
            ),
            (None, None, None) => Ok(None),
            (_, Some(_), None) => config("FACE_TLS_CERT is set but FACE_TLS_KEY is not"),
            (_, None, Some(_)) => config("FACE_TLS_KEY is set but FACE_TLS_CERT is not"),
            (Some(_), None, None) => config("FACE_TLS_BIND needs FACE_TLS_CERT and FACE_TLS_KEY"),
            (None, Some(_), Some(_)) => config(
                "FACE_TLS_CERT and FACE_TLS_KEY are set but FACE_TLS_BIND is not (no HTTPS \
                 listener): set FACE_TLS_BIND, e.g. 0.0.0.0:8443",
            ),
            (Some(bind), Some(cert), Some(key)) => {
                if self.tls.plain_http && bind == self.bind_address() {
                    return config("FACE_TLS_BIND must differ from FACE_BIND");
                }
                let setup = crate::http::tls::server_config(cert, key)
                    .map_err(|e| Error::Config(e.to_string()))?;
                Ok(Some((bind.to_string(), setup)))
            }
        }
    }

    /// The MQTT settings (`MQTT_URL` and the rest), checked; `None` without `MQTT_URL`.
    pub fn mqtt(&self) -> Result<Option<crate::mqtt::MqttSettings>, Error> {
        self.mqtt_args.settings()
    }

    /// The API keys of `FACE_API_KEY` and `FACE_API_KEYS_FILE` (the file is read now).
    pub fn api_keys(&self) -> Result<ApiKeys, Error> {
        ApiKeys::load(self.api_key.as_deref(), self.api_keys_file.as_deref())
            .map_err(|e| Error::Config(e.to_string()))
    }

    /// `FACE_BIND` when set; else loopback, unless a key protects the API (then the LAN).
    pub fn bind_address(&self) -> String {
        if let Some(bind) = self
            .bind
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            return bind.to_string();
        }
        let keyed = self
            .api_key
            .as_deref()
            .is_some_and(|k| !k.trim().is_empty())
            || self.api_keys_file.is_some();
        if keyed {
            DEFAULT_BIND_WITH_KEY
        } else {
            DEFAULT_BIND
        }
        .to_string()
    }

    /// The live view's bounds.
    pub fn live(&self) -> crate::camera::live::LiveSettings {
        crate::camera::live::LiveSettings {
            max_fps: self.stream_max_fps,
            max_viewers: self.stream_max_clients,
        }
    }

    pub fn webhook(&self) -> Option<crate::events::WebhookConfig> {
        let url = self.webhook_url.trim();
        (!url.is_empty()).then(|| crate::events::WebhookConfig {
            url: url.to_string(),
            api_key: Some(self.webhook_api_key.trim().to_string()).filter(|k| !k.is_empty()),
            timeout: std::time::Duration::from_secs_f64(self.webhook_timeout_seconds),
        })
    }
}
