//! The settings of `serve`: listeners (plain and HTTPS), API keys, limits, the webhook, the
//! live view; the camera and the broker are in their own structs.

use std::path::PathBuf;

use super::{CameraSettings, EventCommandSettings, KioskOptions, MqttOptions};
use crate::error::Error;
use crate::http::ApiKeys;

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

/// Settings of `serve`: the HTTP API, the webhook and the WebSocket feed.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// Address to listen on [default: 127.0.0.1:8000, or 0.0.0.0:8000 when an API key is set]
    pub bind: Option<String>,
    /// API key clients must send (`X-API-Key: KEY` or `Authorization: Bearer KEY`) to enroll,
    /// recognize, follow the WebSocket or read /config; at least 16 characters
    pub api_key: Option<String>,
    /// File of API keys, one per line (`#` comments, blank lines ignored), read at start
    pub api_keys_file: Option<PathBuf>,
    /// HTTP worker threads: they answer the light routes and hand uploads to threads of their
    /// own (face work itself runs on one thread per core)
    pub workers: usize,
    /// Largest request body, in bytes
    pub max_upload_bytes: usize,
    /// Largest gallery archive `POST /gallery/import` takes, in bytes (kept in an unnamed file
    /// of the data folder while it is checked and imported, not in memory)
    pub max_import_bytes: usize,
    /// Seconds a client has to send a whole request head, may stay idle between requests, or
    /// may stall reading an answer; a body must then keep arriving at 16 KiB/s or more
    pub http_timeout_seconds: u64,
    /// Most client connections at once (each holds a thread and an open file); 0: as many as
    /// the open-files limit allows, at most 512. Past it, 503 at once
    pub max_connections: usize,
    /// Most connections at once from one client address
    pub max_connections_per_client: usize,
    /// Most requests with a body (uploads) received or handled at once; past it, 503 at once
    pub max_uploads: usize,
    /// Most images decoded and analyzed at once (each may cost up to ~FACE_MAX_PIXELS x 3 bytes
    /// plus detection scratch; see the book's memory budget)
    pub max_images: usize,
    /// Seconds an upload waits for one of HTTP_MAX_IMAGES before it gets 503 and Retry-After
    pub queue_seconds: f64,
    /// The main API's attendance endpoint; empty disables the webhook
    pub webhook_url: String,
    /// Sent to the main API as `Authorization: Bearer <key>`
    pub webhook_api_key: String,
    /// At most one webhook call per person per this many seconds
    pub cooldown_seconds: f64,
    /// Bound on one webhook call, connect included
    pub webhook_timeout_seconds: f64,
    /// Longest pause between two delivery attempts while the main API fails (the first retry
    /// comes after 0.5 s, doubling)
    pub webhook_retry_max_seconds: f64,
    /// Most undelivered events kept in the outbox; past it the oldest are dropped (logged,
    /// counted in /health)
    pub outbox_max_events: usize,
    /// Most WebSocket clients at once
    pub ws_max_clients: usize,
    /// `GET /metrics` needs a viewer key [default: true on a box with keys]; false opens it
    /// like /health (it tells anyone who can reach the port when people arrive)
    pub metrics_require_key: Option<bool>,
    /// Serve a non-loopback address without any API key, deliberately (anyone who can reach
    /// the port may then enroll, delete and export faces); without it `serve` refuses to start
    pub allow_open_lan: bool,
    /// More host names the box answers to, comma separated (besides loopback, its own
    /// addresses and host name, with and without .local); other `Host` headers get 421
    pub allowed_hosts: Vec<String>,
    /// Browser origins (`https://office.school.lan`) whose pages may change this box, comma
    /// separated, besides the box's own page
    pub allowed_origins: Vec<String>,
    /// Accept `?api_key=` on /ws/recognitions and /stream.mjpg (weaker: URLs end up in logs and
    /// history; the page uses single-use tickets instead)
    pub allow_key_in_url: bool,
    /// Most frames a second sent to one viewer of the live view (`/stream.mjpg`); 0.1 to 30
    pub stream_max_fps: f64,
    /// Most viewers of the live view at once (each has a thread and encodes JPEGs); past it,
    /// 503 at once. 0 turns the live view off
    pub stream_max_clients: usize,
    /// The HTTPS listener and the plain one's switch.
    pub tls: TlsSettings,
    /// The camera loop (none without `CAMERA_DEVICE` or `CAMERA_FRAMES`).
    pub camera: CameraSettings,
    /// The broker (none without `MQTT_URL`).
    pub mqtt: MqttOptions,
    /// The greeting screen (`/kiosk`).
    pub kiosk: KioskOptions,
    /// The program run for every event (none without `EVENT_COMMAND`).
    pub event_command: EventCommandSettings,
}

/// The HTTPS listener of `serve` (src/http/tls.rs) and the plain one's switch.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address of the HTTPS listener, e.g. 0.0.0.0:8443 (unset: no HTTPS); needs FACE_TLS_CERT
    /// and FACE_TLS_KEY
    pub tls_bind: Option<String>,
    /// PEM certificate chain of the HTTPS listener (the box's certificate first)
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of FACE_TLS_CERT (PKCS#8, PKCS#1 or SEC1, not encrypted)
    pub tls_key: Option<PathBuf>,
    /// false: no plain HTTP listener (FACE_BIND), HTTPS only (needs FACE_TLS_BIND)
    pub plain_http: bool,
}

/// No HTTPS, plain HTTP on: as without any of the settings.
impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            tls_bind: None,
            tls_cert: None,
            tls_key: None,
            plain_http: true,
        }
    }
}

impl ServeSettings {
    /// Checks every setting of `serve` (the camera's, the broker's and HTTPS's too: the key
    /// and certificate files are read); the error names the environment variable at fault.
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
        self.kiosk.validate()?;
        self.event_command.validate()?;
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
        self.mqtt.settings()
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

    /// The webhook (`ATTENDANCE_WEBHOOK_URL`, its key and timeout); `None` when the URL is empty.
    pub fn webhook(&self) -> Option<crate::events::WebhookConfig> {
        let url = self.webhook_url.trim();
        (!url.is_empty()).then(|| crate::events::WebhookConfig {
            url: url.to_string(),
            api_key: Some(self.webhook_api_key.trim().to_string()).filter(|k| !k.is_empty()),
            timeout: std::time::Duration::from_secs_f64(self.webhook_timeout_seconds),
        })
    }
}
