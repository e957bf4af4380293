//! The flags and environment variables of `serve` (HTTP, HTTPS, webhook, live view, camera,
//! broker), turned into [`ServeSettings`]; and `serve`'s whole command line.

use std::path::PathBuf;

use clap::Args;

use super::args::{Apply, EnrollArgs, EventsArgs, RecognizerArgs, UnknownArgs};
use crate::settings::{
    CameraSettings, EventCommandSettings, KioskOptions, MqttOptions, ServeSettings, Settings,
    TlsSettings,
};

/// Everything `serve` takes: every group of settings and its own.
#[derive(Debug, Clone, Args)]
pub struct ServeCommand {
    /// The gallery, the models and how photos are recognized.
    #[command(flatten)]
    pub recognizer: RecognizerArgs,
    /// What enrollment asks of a face.
    #[command(flatten)]
    pub enroll: EnrollArgs,
    /// The unknown faces kept for review.
    #[command(flatten)]
    pub unknowns: UnknownArgs,
    /// The local event log.
    #[command(flatten)]
    pub events: EventsArgs,
    /// The HTTP API, HTTPS, the webhook, the live view, the camera and the broker.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Apply for ServeCommand {
    fn apply(&self, settings: &mut Settings) {
        self.recognizer.apply(settings);
        self.enroll.apply(settings);
        self.unknowns.apply(settings);
        self.events.apply(settings);
    }
}

/// The flags of `serve`: the HTTP API, the webhook and the WebSocket feed.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; when set, it always wins. An address other than loopback without
    /// an API key stops serve (exit 2) unless FACE_ALLOW_OPEN_LAN=true [default: 127.0.0.1:8000,
    /// or 0.0.0.0:8000 when an API key is set]
    #[arg(long, env = "FACE_BIND")]
    pub bind: Option<String>,
    /// API key clients must send (`X-API-Key: KEY` or `Authorization: Bearer KEY`) to enroll,
    /// recognize, follow the WebSocket or read /config; at least 16 characters
    #[arg(long, env = "FACE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File of API keys, read at start: one per line, `KEY` (admin), `LABEL KEY` (admin) or
    /// `LABEL ROLE KEY`, the role being kiosk, viewer, operator or admin; `#` comments and
    /// blank lines ignored
    #[arg(long, env = "FACE_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// HTTP worker threads: they answer the light routes and hand uploads to threads of their
    /// own (face work itself runs on one thread per core)
    #[arg(long, env = "HTTP_WORKERS", default_value_t = 4)]
    pub workers: usize,
    /// Largest request body, in bytes
    #[arg(long, env = "MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Largest gallery archive `POST /gallery/import` takes, in bytes (at least
    /// MAX_UPLOAD_BYTES). It is kept in an unnamed file of the data folder (which needs that
    /// much free space) while it is checked and imported, not in memory
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
    /// plus detection scratch; see the book's memory budget)
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
    /// addresses and host name, with and without .local); another `Host` gets 421 without a
    /// valid key (DNS rebinding)
    #[arg(long, env = "FACE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`https://office.school.lan`: scheme, host, port; no path) whose pages
    /// may change this box or open its WebSocket, comma separated, besides the box's own page;
    /// others get 403
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
    /// The HTTPS listener.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// The camera loop.
    #[command(flatten)]
    pub camera: CameraArgs,
    /// The broker.
    #[command(flatten)]
    pub mqtt: MqttArgs,
    /// The greeting screen.
    #[command(flatten)]
    pub kiosk: KioskArgs,
    /// The program run for every event.
    #[command(flatten)]
    pub event_command: EventCommandArgs,
}

impl From<&ServeArgs> for ServeSettings {
    fn from(a: &ServeArgs) -> ServeSettings {
        ServeSettings {
            bind: a.bind.clone(),
            api_key: a.api_key.clone(),
            api_keys_file: a.api_keys_file.clone(),
            workers: a.workers,
            max_upload_bytes: a.max_upload_bytes,
            max_import_bytes: a.max_import_bytes,
            http_timeout_seconds: a.http_timeout_seconds,
            max_connections: a.max_connections,
            max_connections_per_client: a.max_connections_per_client,
            max_uploads: a.max_uploads,
            max_images: a.max_images,
            queue_seconds: a.queue_seconds,
            webhook_url: a.webhook_url.clone(),
            webhook_api_key: a.webhook_api_key.clone(),
            cooldown_seconds: a.cooldown_seconds,
            webhook_timeout_seconds: a.webhook_timeout_seconds,
            webhook_retry_max_seconds: a.webhook_retry_max_seconds,
            outbox_max_events: a.outbox_max_events,
            ws_max_clients: a.ws_max_clients,
            metrics_require_key: a.metrics_require_key,
            allow_open_lan: a.allow_open_lan,
            allowed_hosts: a.allowed_hosts.clone(),
            allowed_origins: a.allowed_origins.clone(),
            allow_key_in_url: a.allow_key_in_url,
            stream_max_fps: a.stream_max_fps,
            stream_max_clients: a.stream_max_clients,
            tls: (&a.tls).into(),
            camera: (&a.camera).into(),
            mqtt: (&a.mqtt).into(),
            kiosk: (&a.kiosk).into(),
            event_command: (&a.event_command).into(),
        }
    }
}

/// The HTTPS flags of `serve` (src/http/tls.rs) and the plain listener's switch.
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

impl From<&TlsArgs> for TlsSettings {
    fn from(a: &TlsArgs) -> TlsSettings {
        TlsSettings {
            tls_bind: a.tls_bind.clone(),
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            plain_http: a.plain_http,
        }
    }
}

/// The MQTT flags of `serve` (src/mqtt/): events, box status and gallery sync between boxes.
#[derive(Debug, Clone, Default, Args)]
pub struct MqttArgs {
    /// The broker of several boxes: mqtt://host[:1883] or mqtts://host[:8883] (TLS); nothing
    /// else (no path, no credentials in it). Unset: no MQTT
    #[arg(long, env = "MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// PEM CA certificates that mqtts:// checks the broker's certificate against, instead of
    /// the system's; only with mqtts://
    #[arg(long, env = "MQTT_CA_FILE")]
    pub mqtt_ca_file: Option<PathBuf>,
    /// The box's user on the broker (its ACL names boxes by BOX_ID); never shown by /config
    #[arg(long, env = "MQTT_USERNAME")]
    mqtt_username: Option<String>,
    /// The box's password on the broker (with MQTT_USERNAME); never shown by /config
    #[arg(long, env = "MQTT_PASSWORD", hide_env_values = true)]
    mqtt_password: Option<String>,
    /// This box's name in MQTT topics, unique per box (default: the host name)
    #[arg(long, env = "BOX_ID")]
    pub box_id: Option<String>,
    /// First level(s) of this service's MQTT topics (`<prefix>/<box_id>/events`,
    /// `<prefix>/gallery/<id>`)
    #[arg(long, env = "MQTT_TOPIC_PREFIX", default_value = crate::settings::DEFAULT_TOPIC_PREFIX)]
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
    /// The trust list of gallery sync: `box_id public-key role` lines, managed with
    /// `face-attendance box trust` (default: <data dir>/gallery-trusted-keys)
    #[arg(long, env = "GALLERY_TRUSTED_KEYS")]
    pub gallery_trusted_keys: Option<PathBuf>,
    /// People one box may change per hour through gallery sync (more wait their turn)
    #[arg(long, env = "GALLERY_SYNC_PEOPLE_PER_HOUR", default_value_t = crate::replication::policy::DEFAULT_PEOPLE_PER_HOUR)]
    pub gallery_sync_people_per_hour: u32,
    /// Encodings one box may send per hour through gallery sync (more wait their turn)
    #[arg(long, env = "GALLERY_SYNC_ENCODINGS_PER_HOUR", default_value_t = crate::replication::policy::DEFAULT_ENCODINGS_PER_HOUR)]
    pub gallery_sync_encodings_per_hour: u32,
    /// Gallery messages that may wait at most (over it, refused and counted)
    #[arg(long, env = "GALLERY_SYNC_MAX_WAITING", default_value_t = crate::replication::policy::DEFAULT_MAX_WAITING)]
    pub gallery_sync_max_waiting: usize,
}

impl From<&MqttArgs> for MqttOptions {
    fn from(a: &MqttArgs) -> MqttOptions {
        MqttOptions {
            mqtt_url: a.mqtt_url.clone(),
            mqtt_ca_file: a.mqtt_ca_file.clone(),
            mqtt_username: a.mqtt_username.clone(),
            mqtt_password: a.mqtt_password.clone(),
            box_id: a.box_id.clone(),
            mqtt_topic_prefix: a.mqtt_topic_prefix.clone(),
            mqtt_status_seconds: a.mqtt_status_seconds,
            mqtt_ha_discovery: a.mqtt_ha_discovery,
            gallery_sync: a.gallery_sync.clone(),
            gallery_trusted_keys: a.gallery_trusted_keys.clone(),
            gallery_sync_people_per_hour: a.gallery_sync_people_per_hour,
            gallery_sync_encodings_per_hour: a.gallery_sync_encodings_per_hour,
            gallery_sync_max_waiting: a.gallery_sync_max_waiting,
        }
    }
}

/// The greeting screen's flags of `serve` (`GET /kiosk`).
#[derive(Debug, Clone, Args)]
pub struct KioskArgs {
    /// Seconds a greeting (or a stranger's notice) stays on the greeting screen (/kiosk) before
    /// its idle clock; 0.5 to 600
    #[arg(long, env = "KIOSK_GREETING_SECONDS", default_value_t = 5.0)]
    pub kiosk_greeting_seconds: f64,
    /// The greeting screen plays a short sound for each greeting and notice (it also has a mute
    /// switch of its own)
    #[arg(
        long,
        env = "KIOSK_SOUND",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kiosk_sound: bool,
    /// A client on the box itself (loopback: its own screen) opens /kiosk without a key; false
    /// for a box behind a reverse proxy on the box (every client would be loopback then)
    #[arg(
        long,
        env = "KIOSK_LOOPBACK_WITHOUT_KEY",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub kiosk_loopback_without_key: bool,
}

impl From<&KioskArgs> for KioskOptions {
    fn from(a: &KioskArgs) -> KioskOptions {
        KioskOptions {
            greeting_seconds: a.kiosk_greeting_seconds,
            sound: a.kiosk_sound,
            loopback_without_key: a.kiosk_loopback_without_key,
        }
    }
}

/// The event command flags of `serve` (src/events/command.rs): a program run for every event.
#[derive(Debug, Clone, Args)]
pub struct EventCommandArgs {
    /// A program run for every event (a buzzer, a light, a door): the absolute path of an
    /// executable file, run directly (no shell) with the event's JSON on standard input and
    /// FACE_EVENT_ID, FACE_EVENT_KIND, FACE_STUDENT_ID, FACE_PUNCH in its environment; one at a
    /// time, never replayed (unset: none)
    #[arg(long, env = "EVENT_COMMAND")]
    pub event_command: Option<PathBuf>,
    /// Seconds one run of EVENT_COMMAND may take before it (and what it started) is killed;
    /// 0.1 to 300
    #[arg(long, env = "EVENT_COMMAND_TIMEOUT_SECONDS", default_value_t = 5.0)]
    pub event_command_timeout_seconds: f64,
    /// Most events waiting for their run of EVENT_COMMAND; past it events are dropped
    /// (counted in /health); 1 to 1000
    #[arg(long, env = "EVENT_COMMAND_QUEUE", default_value_t = 16)]
    pub event_command_queue: usize,
}

impl From<&EventCommandArgs> for EventCommandSettings {
    fn from(a: &EventCommandArgs) -> EventCommandSettings {
        EventCommandSettings {
            command: a.event_command.clone(),
            timeout_seconds: a.event_command_timeout_seconds,
            queue: a.event_command_queue,
        }
    }
}

/// The camera flags of `serve` and `cam-demo`.
#[derive(Debug, Clone, Args)]
pub struct CameraArgs {
    /// The camera: a V4L2 device (/dev/video0, /dev/v4l/by-id/...), libcamera or libcamera:N
    /// (a Raspberry Pi Camera Module, through rpicam-vid), rtsp://... or rtsps://... (an IP
    /// camera, through FFmpeg), http(s)://... (an MJPEG stream or a JPEG snapshot),
    /// exec:COMMAND (a program writing MJPEG) or frames:PATH (replayed frames). Further cameras:
    /// CAMERA_2_DEVICE ... CAMERA_8_DEVICE, with CAMERA_<N>_NAME, _DIRECTION, _HTTP_KEY and
    /// _TLS_FINGERPRINT
    #[arg(
        long,
        env = "CAMERA_DEVICE",
        conflicts_with = "frames",
        hide_env_values = true,
        value_parser = CameraParser
    )]
    pub camera: Option<crate::camera::SourceSpec>,
    /// The camera's name, in its events (`camera`), /health, /metrics and ?camera= (1-32 of
    /// A-Z a-z 0-9 _ -)
    #[arg(long, env = "CAMERA_NAME", default_value = "camera1")]
    pub camera_name: String,
    /// The camera's direction: in (an entrance) or out (an exit); its events say it
    #[arg(long, env = "CAMERA_DIRECTION")]
    pub camera_direction: Option<String>,
    /// The API key sent to an http(s):// camera as X-API-Key (another box's /stream.mjpg)
    #[arg(long, env = "CAMERA_HTTP_KEY", hide_env_values = true)]
    pub camera_http_key: Option<String>,
    /// SHA-256 fingerprint of an https:// camera's certificate (as `openssl x509 -noout
    /// -fingerprint -sha256` prints it): exactly that certificate is accepted
    #[arg(long, env = "CAMERA_TLS_FINGERPRINT")]
    pub camera_tls_fingerprint: Option<String>,
    /// Frames of a stream larger than this many KiB are skipped (and counted)
    #[arg(long, env = "CAMERA_MAX_FRAME_KB", default_value_t = 8192)]
    pub camera_max_frame_kb: u32,
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
    /// /health says ok:false when the camera has been gone or silent this many seconds; a
    /// program or stream that gives no frame this long is restarted
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
    /// The camera's match tolerance. Unset: FACE_TOLERANCE when that is set, else the default
    /// chosen by `face-attendance-bench open-set` (see the book); HTTP answers keep
    /// FACE_TOLERANCE [default: 0.54]
    #[arg(long, env = "CAMERA_TOLERANCE")]
    pub camera_tolerance: Option<f64>,
    /// A camera match counts only when the closest person is this much closer than the closest
    /// other person; otherwise the face is ambiguous (0 = off). On by default: on
    /// ../shared/faces (`cargo bench --bench decisions`) no answer changes within the tolerance
    /// 0.45, and at 0.7 false accepts of strangers go from 5 of 9 to 2 with no probe lost
    #[arg(long, env = "CAMERA_MATCH_MARGIN", default_value_t = crate::camera::DEFAULT_CAMERA_MATCH_MARGIN)]
    pub camera_match_margin: f64,
    /// A face's identity (a person, ambiguous, unknown) is decided, and its event sent, only
    /// when this many of its encoded frames agree (1 = at its first frame)
    #[arg(long, env = "CAMERA_CONFIRM_FRAMES", default_value_t = 3)]
    pub confirm_frames: u32,
    /// ... within this many seconds
    #[arg(long, env = "CAMERA_CONFIRM_SECONDS", default_value_t = 2.0)]
    pub confirm_seconds: f64,
}

/// `--camera` / `CAMERA_DEVICE`: parsed as [`crate::camera::SourceSpec`], refused with the
/// parser's own message only. Clap's usual "invalid value '<value>'" would repeat a camera URL
/// with its password into the journal.
#[derive(Debug, Clone, Copy)]
struct CameraParser;

impl clap::builder::TypedValueParser for CameraParser {
    type Value = crate::camera::SourceSpec;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("the camera (--camera, CAMERA_DEVICE): {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not UTF-8 text".into()))?;
        text.parse().map_err(refuse)
    }
}

/// The environment's `CAMERA_<digit>...` variables (further cameras), checked by
/// [`CameraSettings::cameras`]. A value that is not UTF-8 is kept as lossy text, so that it is
/// refused there with its name rather than ignored.
fn numbered_camera_variables(
    vars: impl Iterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(String, String)> {
    vars.filter_map(|(name, value)| {
        let name = name.to_string_lossy().into_owned();
        let numbered = name
            .strip_prefix("CAMERA_")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        numbered.then(|| (name, value.to_string_lossy().into_owned()))
    })
    .collect()
}

impl From<&CameraArgs> for CameraSettings {
    fn from(a: &CameraArgs) -> CameraSettings {
        CameraSettings {
            camera: a.camera.clone(),
            camera_name: a.camera_name.clone(),
            camera_direction: a.camera_direction.clone(),
            camera_http_key: a.camera_http_key.clone(),
            camera_tls_fingerprint: a.camera_tls_fingerprint.clone(),
            camera_max_frame_kb: a.camera_max_frame_kb,
            numbered: numbered_camera_variables(std::env::vars_os()),
            camera_width: a.camera_width,
            camera_height: a.camera_height,
            camera_fps: a.camera_fps,
            frames: a.frames.clone(),
            frames_fps: a.frames_fps,
            frames_loop: a.frames_loop,
            camera_send_unknown: a.camera_send_unknown,
            camera_stale_seconds: a.camera_stale_seconds,
            detect_scale: a.detect_scale,
            camera_upsample: a.camera_upsample,
            recheck_frames: a.recheck_frames,
            min_face: a.min_face,
            min_sharpness: a.min_sharpness,
            camera_tolerance: a.camera_tolerance,
            camera_match_margin: a.camera_match_margin,
            confirm_frames: a.confirm_frames,
            confirm_seconds: a.confirm_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(args: &[&str]) -> ServeSettings {
        let cli = Cli::try_parse_from(std::iter::once("serve").chain(args.iter().copied()));
        ServeSettings::from(&cli.unwrap().serve)
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
        assert_eq!(ok.gallery_sync, crate::replication::ReplicationMode::Both);
        assert!(!ok.ha_discovery);
        let pull = with(&["--gallery-sync", "pull", "--mqtt-ha-discovery"])
            .unwrap()
            .unwrap();
        assert_eq!(pull.gallery_sync, crate::replication::ReplicationMode::Pull);
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
    fn the_event_command_defaults_are_the_settings_and_its_errors_name_it() {
        // (No EVENT_COMMAND* in the test's environment.)
        let s = parse(&[]).event_command;
        let default = EventCommandSettings::default();
        assert_eq!(
            (s.command, s.timeout_seconds, s.queue),
            (None, default.timeout_seconds, default.queue)
        );
        for (args, named) in [
            (&["--event-command", "beep.sh"][..], "EVENT_COMMAND must"),
            (
                &["--event-command", "/nonexistent/beep"][..],
                "EVENT_COMMAND must",
            ),
            (
                &["--event-command-timeout-seconds", "0"][..],
                "EVENT_COMMAND_TIMEOUT_SECONDS",
            ),
            (&["--event-command-queue", "0"][..], "EVENT_COMMAND_QUEUE"),
        ] {
            let err = parse(args).validate().unwrap_err().to_string();
            assert!(err.contains(named), "{args:?}: {err}");
        }
        assert!(parse(&["--event-command", "/bin/true"]).validate().is_ok());
    }

    #[test]
    fn the_host_name_becomes_a_valid_box_id() {
        let id = crate::settings::host_box_id();
        assert!(crate::mqtt::valid_level(&id), "{id:?}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }
}
