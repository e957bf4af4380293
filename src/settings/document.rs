//! `GET /config`: what the running service is set to, as clients of the original service read
//! it. A serialization of the settings (key names and order are the document's contract, pinned
//! by tests/config_document.rs); secrets (API keys, the webhook's key, the broker's password)
//! are never part of it. A few entries are what the service made of the settings rather than
//! the settings as given (the duplicate distance defaulting to the tolerance, the camera's
//! tolerance and where it came from, the connection budget the open-files limit gave, whether a
//! key is needed).

use serde::Serialize;

#[cfg(doc)]
use super::CameraSettings;
use super::{FaceCrops, ServeSettings, Settings, ToleranceFrom};

/// The `GET /config` document, in its key order.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigDocument {
    tolerance: f64,
    webhook_enabled: bool,
    cooldown_seconds: f64,
    upsample: u32,
    jitters: u32,
    max_upload_bytes: usize,
    max_import_bytes: usize,
    max_pixels: u64,
    enroll_duplicate_distance: f64,
    face_crops: FaceCrops,
    face_crops_max_age_days: Option<u32>,
    detect_max_pixels: u64,
    webhook_timeout_seconds: f64,
    /// The event command's program (`EVENT_COMMAND`), when set.
    event_command: Option<String>,
    event_command_timeout_seconds: f64,
    event_command_queue: usize,
    /// The camera device, else the replayed frames.
    camera: Option<String>,
    camera_send_unknown: bool,
    detect_scale: f64,
    camera_upsample: u32,
    camera_recheck_frames: u32,
    match_margin: f64,
    camera_match_margin: f64,
    /// The camera's match tolerance and where it came from ([`CameraSettings::tolerance`]).
    camera_tolerance: f64,
    camera_tolerance_from: ToleranceFrom,
    camera_confirm_frames: u32,
    camera_confirm_seconds: f64,
    api_key_required: bool,
    metrics_require_key: bool,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    allow_key_in_url: bool,
    http_timeout_seconds: u64,
    http_max_connections: usize,
    http_max_connections_per_client: usize,
    http_max_uploads: usize,
    http_max_images: usize,
    http_queue_seconds: f64,
    unknown_max: usize,
    unknown_max_age_days: u32,
    unknown_cluster_distance: f64,
    stream_max_fps: f64,
    stream_max_clients: usize,
    events_keep_days: u32,
    /// Every camera: its name, direction and source (credentials redacted).
    cameras: Vec<ConfigCamera>,
    /// The box's time zone (`BOX_TIMEZONE`, else the system's).
    box_timezone: String,
    /// `PUNCH_SCHEDULE` as read (`00:00-10:30 in, 10:30-24:00 out`); null without one.
    punch_schedule: Option<String>,
    // The greeting screen (`/kiosk`).
    kiosk_greeting_seconds: f64,
    kiosk_sound: bool,
    kiosk_loopback_without_key: bool,
}

/// One camera in `GET /config`.
#[derive(Debug, Clone, Serialize)]
struct ConfigCamera {
    name: String,
    direction: Option<crate::camera::Direction>,
    source: String,
}

impl ConfigDocument {
    /// The document of a service started with `settings` and `serve`, given whether API keys
    /// are configured (`keyed`) and the connection budget in force (`max_connections`:
    /// `HTTP_MAX_CONNECTIONS`, or what the open-files limit gave when it is 0).
    pub fn new(
        settings: &Settings,
        serve: &ServeSettings,
        keyed: bool,
        max_connections: usize,
    ) -> ConfigDocument {
        let camera = &serve.camera;
        ConfigDocument {
            tolerance: settings.tolerance,
            webhook_enabled: serve.webhook().is_some(),
            cooldown_seconds: serve.cooldown_seconds,
            upsample: settings.upsample,
            jitters: settings.jitters,
            max_upload_bytes: serve.max_upload_bytes,
            max_import_bytes: serve.max_import_bytes,
            max_pixels: settings.max_pixels,
            enroll_duplicate_distance: settings
                .enroll_duplicate_distance
                .unwrap_or(settings.tolerance),
            face_crops: if settings.crop_policy().keeps_crops() {
                FaceCrops::Keep
            } else {
                FaceCrops::None
            },
            face_crops_max_age_days: settings.face_crops_max_age_days,
            detect_max_pixels: settings.detect_max_pixels,
            webhook_timeout_seconds: serve.webhook_timeout_seconds,
            event_command: serve
                .event_command
                .config()
                .map(|c| c.program.display().to_string()),
            event_command_timeout_seconds: serve.event_command.timeout_seconds,
            event_command_queue: serve.event_command.queue,
            camera: match (&camera.camera, &camera.frames) {
                (Some(spec), _) => Some(spec.redacted()),
                (None, frames) => frames.as_ref().map(|p| p.display().to_string()),
            },
            camera_send_unknown: camera.camera_send_unknown,
            detect_scale: camera.detect_scale,
            camera_upsample: camera.camera_upsample,
            camera_recheck_frames: camera.recheck_frames,
            match_margin: settings.match_margin,
            camera_match_margin: camera.camera_match_margin,
            camera_tolerance: camera.tolerance(settings).0,
            camera_tolerance_from: camera.tolerance(settings).1,
            camera_confirm_frames: camera.confirm_frames,
            camera_confirm_seconds: camera.confirm_seconds,
            api_key_required: keyed,
            metrics_require_key: serve.metrics_require_key(keyed),
            allowed_hosts: serve.allowed_hosts.clone(),
            allowed_origins: serve.allowed_origins.clone(),
            allow_key_in_url: serve.allow_key_in_url,
            http_timeout_seconds: serve.http_timeout_seconds,
            http_max_connections: max_connections,
            http_max_connections_per_client: serve.max_connections_per_client,
            http_max_uploads: serve.max_uploads,
            http_max_images: serve.max_images,
            http_queue_seconds: serve.queue_seconds,
            unknown_max: settings.unknown_max,
            unknown_max_age_days: settings.unknown_max_age_days,
            unknown_cluster_distance: settings.unknown_cluster_distance,
            stream_max_fps: serve.stream_max_fps,
            stream_max_clients: serve.stream_max_clients,
            events_keep_days: settings.events_keep_days,
            cameras: camera
                .cameras()
                .unwrap_or_default()
                .iter()
                .map(|c| ConfigCamera {
                    name: c.name().to_string(),
                    direction: c.direction(),
                    source: c.spec().redacted(),
                })
                .collect(),
            box_timezone: settings
                .zone()
                .map_or_else(|_| "invalid".to_string(), |z| z.name().to_string()),
            punch_schedule: settings
                .punch_schedule()
                .ok()
                .flatten()
                .map(|s| s.to_string()),
            kiosk_greeting_seconds: serve.kiosk.greeting_seconds,
            kiosk_sound: serve.kiosk.sound,
            kiosk_loopback_without_key: serve.kiosk.loopback_without_key,
        }
    }

    /// The document as JSON (keys in the order above).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
