//! What every handler is given: the [`App`] (the recognizer, the dispatcher, the stores, the
//! budgets, the keys and the checks of who may call) and the [`Limits`] that keep one client
//! from holding the box.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::auth::Auth;
use super::budget::Budget;
use super::error::ApiError;
use super::guard::Guard;
use super::ws::Hub;
use crate::camera::live::Live;
use crate::camera::{CameraStats, CameraView};
use crate::events::{CommandStats, Dispatcher};
use crate::kiosk::{Kiosk, KioskSettings};
use crate::localtime::BoxZone;
use crate::metrics::{Family, Metrics};
use crate::mqtt::MqttStats;
use crate::recognizer::Recognizer;
use crate::replication::ReplicationStats;
use crate::unknowns::Unknowns;

/// Limits that keep one client from holding the box.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest upload body (`MAX_UPLOAD_BYTES`): an image.
    pub max_upload_bytes: usize,
    /// Largest gallery archive for `POST /gallery/import`.
    pub max_import_bytes: usize,
    /// How long a client may take to send a request head, idle between requests, or stall
    /// reading an answer; the grace before a body must arrive at [`super::MIN_BODY_RATE`].
    pub io_timeout: Duration,
    /// HTTP worker threads per listener (`HTTP_WORKERS`).
    pub workers: usize,
    /// Connections at once, overall and from one client address.
    pub max_connections: usize,
    /// Connections at once from one client address.
    pub max_connections_per_client: usize,
    /// `/health` turns `ok:false` when the camera has been gone or silent this long.
    pub camera_stale_after: Duration,
}

/// Everything a request handler needs.
pub struct App {
    /// Recognition and enrollment, over the gallery and the engine.
    pub recognizer: Recognizer,
    /// Where events go: cooldown, log, outbox, sinks.
    pub dispatcher: Arc<Dispatcher>,
    /// The `/ws/recognitions` clients.
    pub hub: Hub,
    /// The limits on what one client may take.
    pub limits: Limits,
    /// What `GET /config` shows (never the API key).
    pub config_json: Value,
    /// API keys, tickets and the guessing throttle; no keys: every route is open (bind to
    /// loopback then).
    pub auth: Auth,
    /// The `Host` and `Origin` checks against browsers used from elsewhere.
    pub guard: Guard,
    /// Places for uploads, images and large answers.
    pub budget: Budget,
    /// The unknown faces the camera kept, for review (`/unknowns`); `None` when the store could
    /// not be opened (a data folder this user may only read).
    unknowns: Option<Arc<Unknowns>>,
    /// The cameras `serve` runs (their counters, captures and live views), the first first.
    cameras: Vec<CameraView>,
    /// The box's time zone (`BOX_TIMEZONE`): local days and times of reports and greetings.
    zone: BoxZone,
    /// The broker connection's and the gallery sync's counters, when the box uses MQTT.
    mqtt: Option<MqttParts>,
    /// The event command's counters, when `EVENT_COMMAND` is set.
    event_command: Option<Arc<CommandStats>>,
    /// Open connections, from the server once it runs.
    pub(super) connections: std::sync::OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    /// The listeners (`{"http": addr, "https": addr}`), once the server runs.
    pub(super) listeners: std::sync::OnceLock<Value>,
    /// What `/metrics` records as it happens (the rest it reads from the structs above).
    pub metrics: Metrics,
    /// `/metrics` needs a viewer key (`METRICS_REQUIRE_KEY`, true by default on a box with
    /// keys), else it is open like `/health`.
    pub metrics_require_key: bool,
    /// The greeting screen's board (`/kiosk`).
    pub kiosk: Arc<Kiosk>,
    /// A loopback client opens the greeting screen without a key (`KIOSK_LOOPBACK_WITHOUT_KEY`).
    pub kiosk_loopback_without_key: bool,
}

/// What `/health` and `/metrics` read of the MQTT side.
struct MqttParts {
    mqtt: Arc<MqttStats>,
    replication: Option<Arc<ReplicationStats>>,
}

impl App {
    /// The app with the stores and the counters every service has; the optional parts (unknowns,
    /// live view, MQTT) are added by the `with_*` builders, keys and checks by their fields.
    pub fn new(
        recognizer: Recognizer,
        dispatcher: Arc<Dispatcher>,
        hub: Hub,
        limits: Limits,
        budget: Budget,
        config_json: Value,
    ) -> App {
        App {
            recognizer,
            dispatcher,
            hub,
            limits,
            config_json,
            auth: Auth::default(),
            guard: Guard::new(None, &[], &[]),
            budget,
            unknowns: None,
            cameras: Vec::new(),
            zone: BoxZone::utc(),
            mqtt: None,
            event_command: None,
            connections: std::sync::OnceLock::new(),
            listeners: std::sync::OnceLock::new(),
            metrics: Metrics::new(),
            metrics_require_key: false,
            kiosk: Arc::new(Kiosk::new(KioskSettings::default(), BoxZone::utc())),
            kiosk_loopback_without_key: true,
        }
    }

    /// The app with the unknown-faces store behind `/unknowns` (and its count in `/health`).
    pub fn with_unknowns(mut self, unknowns: Arc<Unknowns>) -> App {
        self.unknowns = Some(unknowns);
        self
    }

    /// The app with the cameras `serve` runs (behind `/health`, `/metrics`, `/stream.mjpg` and
    /// `/people/{id}/capture`).
    pub fn with_cameras(mut self, cameras: Vec<CameraView>) -> App {
        self.cameras = cameras;
        self
    }

    /// The app in the box's time zone (UTC until given).
    pub fn with_zone(mut self, zone: BoxZone) -> App {
        self.zone = zone;
        self
    }

    /// The box's time zone.
    pub fn zone(&self) -> &BoxZone {
        &self.zone
    }

    /// The app with the broker connection's counters (and the gallery sync's, when on).
    pub fn with_mqtt(
        mut self,
        mqtt: Arc<MqttStats>,
        replication: Option<Arc<ReplicationStats>>,
    ) -> App {
        self.mqtt = Some(MqttParts { mqtt, replication });
        self
    }

    /// The app with the event command's counters (behind `/health` and `/metrics`).
    pub fn with_event_command(mut self, stats: Arc<CommandStats>) -> App {
        self.event_command = Some(stats);
        self
    }

    /// The event command's counters, when `EVENT_COMMAND` is set.
    pub fn event_command(&self) -> Option<&CommandStats> {
        self.event_command.as_deref()
    }

    /// `/health`'s `mqtt` and `gallery_sync`, when the box uses MQTT.
    pub fn mqtt_json(&self) -> Option<(Value, Option<Value>)> {
        let parts = self.mqtt.as_ref()?;
        Some((
            parts.mqtt.to_json(),
            parts.replication.as_ref().map(|r| r.to_json()),
        ))
    }

    /// The cameras the service runs, the first first.
    pub fn cameras(&self) -> &[CameraView] {
        &self.cameras
    }

    /// The camera a request's query names (`camera=NAME`), else the first: 409 when the box
    /// runs no camera, 404 naming the cameras there are when none has that name.
    pub fn camera_for(&self, query: &str) -> Result<&CameraView, ApiError> {
        let first = self.cameras.first().ok_or_else(|| ApiError::Conflict {
            message: "this box runs no camera (CAMERA_DEVICE or CAMERA_FRAMES)".into(),
            details: serde_json::json!({}),
        })?;
        let Some((_, name)) = super::query::pairs(query).find(|(k, _)| *k == "camera") else {
            return Ok(first);
        };
        self.cameras
            .iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.cameras.iter().map(|c| c.name()).collect();
                ApiError::NotFound(format!(
                    "no camera named {name:?}; this box has {}",
                    names.join(", ")
                ))
            })
    }

    /// Whether every camera delivers frames (true without a camera): `/health`'s `ok`.
    pub fn cameras_healthy(&self) -> bool {
        let stale_after = self.limits.camera_stale_after;
        self.cameras.iter().all(|c| c.healthy(stale_after))
    }

    /// The unknown-faces store, when the service keeps one.
    pub fn unknowns(&self) -> Option<&Arc<Unknowns>> {
        self.unknowns.as_ref()
    }

    /// Runs the work on `image` (decoding included) on the engine's pool, holding one of the image
    /// places, and the large-image place too when the image is above `DETECT_MAX_PIXELS` (read
    /// from its header): it waits at most `HTTP_QUEUE_SECONDS` for them, then the client hears
    /// 503 and `Retry-After`. This bounds what images cost at once in memory and CPU.
    pub(super) fn image_work<T: Send>(
        &self,
        image: &[u8],
        work: impl FnOnce() -> Result<T, crate::Error> + Send,
    ) -> Result<T, ApiError> {
        let recognizer = &self.recognizer;
        // An image whose header does not read is refused by the work itself, at once.
        let large = crate::image_io::probe(image, recognizer.max_pixels())
            .is_ok_and(|p| p.pixels() > recognizer.engine().detect_max_pixels());
        let deadline = std::time::Instant::now() + self.budget.queue_wait;
        let left = || deadline.saturating_duration_since(std::time::Instant::now());
        let Some(_place) = self.budget.images.take_within(left()) else {
            return Err(ApiError::Busy("too many images in progress"));
        };
        let _large = match large {
            false => None,
            true => match self.budget.large_images.take_within(left()) {
                Some(place) => Some(place),
                None => return Err(ApiError::Busy("a large image is in progress")),
            },
        };
        recognizer.engine().install(work).map_err(ApiError::from)
    }

    /// Connections open now, as the server counts them for its caps (`None` before it runs).
    pub fn open_connections(&self) -> Option<usize> {
        self.connections.get().map(|count| count())
    }

    /// The `http` part of `/health`: open connections and the budgets' places.
    pub(super) fn http_stats(&self) -> Value {
        serde_json::json!({
            "listeners": self.listeners.get(),
            "connections": self.open_connections(),
            "uploads": self.budget.uploads.to_json(),
            "imports": self.budget.imports.to_json(),
            "images": self.budget.images.to_json(),
            "large_images": self.budget.large_images.to_json(),
            "websocket_clients": self.hub.clients(),
            "stream_clients": self.cameras.iter().map(|c| c.live().viewers()).sum::<usize>(),
        })
    }
}

impl App {
    /// Everything `/metrics` reads at a scrape, from the structs `/health` reads.
    pub(super) fn families(&self) -> Vec<Family> {
        let (encodings, labels) = self.recognizer.gallery().counts();
        let mut families = vec![
            Family::gauge("build_info", "The running version.")
                .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0),
            Family::gauge("gallery_people", "People enrolled.").value(labels as f64),
            Family::gauge("gallery_encodings", "Face samples enrolled.").value(encodings as f64),
            Family::gauge("http_connections", "Open HTTP connections.")
                .value(self.open_connections().unwrap_or(0) as f64),
            Family::gauge("websocket_clients", "Clients of /ws/recognitions.")
                .value(self.hub.clients() as f64),
            Family::gauge("webhook_enabled", "1 when events go to a main API.")
                .value(f64::from(u8::from(self.dispatcher.webhook_enabled()))),
        ];
        let budgets = [
            ("uploads", &self.budget.uploads),
            ("imports", &self.budget.imports),
            ("images", &self.budget.images),
            ("large_images", &self.budget.large_images),
        ];
        let help = [
            ("busy", "Places taken, by budget (/health http)."),
            ("max", "Places, by budget."),
            ("waiting", "Requests waiting for a place, by budget."),
        ];
        // One lock per budget for the four figures.
        let counts = budgets.map(|(budget, places)| (budget, places.counts()));
        for (i, (what, help)) in help.into_iter().enumerate() {
            let mut family = Family::gauge(&format!("http_places_{what}"), help);
            for (budget, counts) in &counts {
                family = family.sample(&[("budget", budget)], counts[i].1 as f64);
            }
            families.push(family);
        }
        let mut refused = Family::counter(
            "http_places_refused",
            "Requests refused for want of a place (503), by budget.",
        );
        for (budget, counts) in &counts {
            refused = refused.sample(&[("budget", budget)], counts[3].1 as f64);
        }
        families.push(refused);
        let (failures, held_off) = self.auth.throttle().counts();
        families.push(
            Family::counter(
                "http_auth_failures",
                "Wrong API keys or tickets presented (401 or 429).",
            )
            .value(failures as f64),
        );
        families.push(
            Family::counter(
                "http_auth_held_off",
                "Wrong API keys or tickets answered 429: their address was held off.",
            )
            .value(held_off as f64),
        );
        families.push(
            Family::gauge(
                "http_auth_held_addresses",
                "Client addresses held off now for presenting wrong keys.",
            )
            .value(
                self.auth
                    .throttle()
                    .held_addresses(std::time::Instant::now()) as f64,
            ),
        );
        if let Some(parts) = &self.mqtt {
            families.extend(parts.mqtt.families());
            if let Some(replication) = &parts.replication {
                families.extend(replication.families());
            }
        }
        families.extend(self.dispatcher.stats().families());
        if let Some(command) = self.event_command() {
            families.extend(command.families());
        }
        let cameras: Vec<(&str, &CameraStats)> = self
            .cameras
            .iter()
            .map(|c| (c.name(), c.stats().as_ref()))
            .collect();
        families.extend(CameraStats::families(
            &cameras,
            self.limits.camera_stale_after,
        ));
        let lives: Vec<(&str, &Live)> = self
            .cameras
            .iter()
            .map(|c| (c.name(), c.live().as_ref()))
            .collect();
        families.extend(Live::families(&lives));
        if let Some(unknowns) = self.unknowns() {
            families.push(
                Family::gauge(
                    "unknown_clusters",
                    "Clusters of unknown faces kept for review.",
                )
                .value(unknowns.cluster_count() as f64),
            );
        }
        families
    }
}
