//! The composition root: builds the service from its settings and runs it. [`start`] wires
//! the recognizer, the event dispatcher and its sinks (outbox, webhook, MQTT, WebSocket), the
//! unknown faces, the camera loop ([`frames`]: what happens to each decided face), the HTTP
//! listeners and the broker connection; [`run`] keeps it as a process (systemd, housekeeping,
//! graceful stop). The command line (`face-attendance serve`) only turns arguments into
//! settings and calls [`run`].

pub(crate) mod frames;
mod open;
mod run;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::camera::capture::Captures;
use crate::camera::live::Live;
use crate::camera::{Camera, CameraStats, CameraView, Pipeline};
use crate::events::{
    CommandSink, Destinations, Dispatcher, EventLog, Punches, Seer, Sink, WebhookSink,
};
use crate::http::budget::{self, Budget};
use crate::http::{self, App, Hub, Limits};
use crate::kiosk::{Kiosk, KioskSink};
use crate::liveness::Stall;
use crate::mqtt::{
    BoxStatus, GalleryLink, HealthSummary, LastPersonSink, Mqtt, MqttSettings, MqttSink,
    DEFAULT_EVENT_TIMEOUT,
};
use crate::recognizer::Recognizer;
use crate::replication::{Policy, ReplicationMode, Replicator};
use crate::settings::default_trust_file;
use crate::settings::document::ConfigDocument;
use crate::settings::{ServeSettings, Settings};
use crate::unknowns::Unknowns;
use frames::FrameWiring;
pub use open::open_recognizer;
pub use run::{run, StartError};

/// How long one HTTP worker or camera loop may go without turning before the service counts as
/// wedged (and stops petting systemd's watchdog). Legitimate work can be long on a small board:
/// a phone photo (12 MP) at upsample 1 takes tens of seconds on a Pi 3, possibly after waiting
/// for the compute pool behind other requests; a body read may take HTTP_TIMEOUT_SECONDS. So:
/// two minutes, or twice the HTTP timeout when that is longer. What this catches is a thread
/// that never comes back (a deadlock, a hung camera driver, a runaway loop) or that died.
const MIN_STALL_LIMIT: Duration = Duration::from_secs(120);

/// The running service: the HTTP server and, when configured, the camera loop.
pub struct Service {
    server: http::RunningServer,
    cameras: Vec<Camera>,
    /// The broker connection and what runs on it, when `MQTT_URL` is set.
    broker: Option<Broker>,
    stall_limit: Duration,
}

/// What runs on the broker connection.
struct Broker {
    mqtt: Arc<Mqtt>,
    status: BoxStatus,
    gallery: Option<GalleryLink>,
    replicator: Option<Arc<Replicator>>,
}

impl Service {
    /// The plain HTTP listener's address (the HTTPS one's when there is no plain listener).
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// The HTTPS listener's address, when it runs.
    pub fn tls_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.tls_addr()
    }

    /// `http://ADDR`, `https://ADDR` or both (`http://A and https://B`).
    pub fn urls(&self) -> String {
        match self.tls_addr() {
            None => format!("http://{}", self.addr()),
            Some(tls) if tls == self.addr() => format!("https://{tls}"),
            Some(tls) => format!("http://{} and https://{tls}", self.addr()),
        }
    }

    /// The state the routes share (recognizer, dispatcher, stores, limits).
    pub fn app(&self) -> &App {
        self.server.app()
    }

    /// The first camera's loop, when one is configured.
    pub fn camera(&self) -> Option<&Camera> {
        self.cameras.first()
    }

    /// Every camera's loop, the first first.
    pub fn cameras(&self) -> &[Camera] {
        &self.cameras
    }

    /// Ok while every HTTP worker and camera thread is turning (see [`MIN_STALL_LIMIT`]).
    pub fn check_alive(&self) -> Result<(), Stall> {
        self.server.liveness().check(self.stall_limit)?;
        for camera in &self.cameras {
            camera.liveness().check(self.stall_limit)?;
        }
        Ok(())
    }

    /// Stops the camera, then the server (which delivers the pending events, to the broker
    /// too), then what runs on the broker connection and the connection (`offline`).
    pub fn shutdown(self) {
        for camera in self.cameras {
            camera.stop();
        }
        self.server.shutdown();
        if let Some(broker) = self.broker {
            broker.status.stop();
            if let Some(gallery) = broker.gallery {
                gallery.stop();
            }
            broker.mqtt.stop();
        }
    }
}

/// The events' names and groups: the gallery's label map, as the gallery has it when each
/// event is taken.
fn label_lookup(gallery: Arc<crate::gallery::Gallery>) -> crate::events::LabelLookup {
    Box::new(move |id| gallery.label(id))
}

/// Builds the app from the settings and starts the server and, when configured, the camera
/// and what runs on the broker connection (the tests call this too).
pub fn start(
    settings: &Settings,
    serve: &ServeSettings,
    recognizer: Recognizer,
) -> std::io::Result<Service> {
    let keys = serve.api_keys().map_err(std::io::Error::other)?;
    let limits = http_limits(serve);
    let hub = Hub::start(serve.ws_max_clients);
    let webhook = serve.webhook();
    let config_json =
        ConfigDocument::new(settings, serve, !keys.is_empty(), limits.max_connections).to_json();
    let mqtt_settings = serve.mqtt().map_err(std::io::Error::other)?;
    let mqtt = match &mqtt_settings {
        Some(s) => Some(Mqtt::start(s).map_err(std::io::Error::other)?),
        None => None,
    };
    // Every sink is equal: each durable one follows the outbox on its own.
    let mut durable: Vec<Box<dyn Sink>> = Vec::new();
    if let Some(config) = webhook {
        let retry_max = Duration::from_secs_f64(serve.webhook_retry_max_seconds);
        durable.push(Box::new(WebhookSink::new(config, retry_max)));
    }
    if let Some(mqtt) = &mqtt {
        durable.push(Box::new(MqttSink::new(mqtt.clone(), DEFAULT_EVENT_TIMEOUT)));
    }
    // The greeting screen (`/kiosk`) greets each resolved recognized event, live.
    let zone = settings.zone().map_err(std::io::Error::other)?;
    let kiosk = Arc::new(Kiosk::new(serve.kiosk.board(), zone.clone()));
    let mut destinations = open_destinations(settings, serve, durable)?
        .with_live(Box::new(hub.clone()))
        .with_live(Box::new(KioskSink(kiosk.clone())));
    if let Some(mqtt) = &mqtt {
        destinations = destinations.with_live(Box::new(LastPersonSink::new(mqtt.clone())));
    }
    // The event command: live only (never replayed), its queue and thread its own.
    let mut event_command = None;
    if let Some(config) = serve.event_command.config() {
        let sink = CommandSink::start(config)?;
        event_command = Some(sink.stats());
        destinations = destinations.with_live(Box::new(sink));
    }
    destinations = destinations.with_labels(label_lookup(recognizer.gallery().clone()));
    // In or out (events/punch.rs): the box's zone and PUNCH_SCHEDULE.
    let schedule = settings.punch_schedule().map_err(std::io::Error::other)?;
    destinations = destinations.with_punches(Punches::new(zone.clone(), schedule));
    let dispatcher = Arc::new(Dispatcher::start(
        destinations,
        Duration::from_secs_f64(serve.cooldown_seconds),
        Some(EventLog::open(
            &settings.data_dir.join("events"),
            settings.events_keep_days,
        )),
    ));
    let budget = Budget::new(
        serve.max_uploads,
        serve.max_images,
        Duration::from_secs_f64(serve.queue_seconds),
    );
    let unknowns = open_unknowns(settings);
    let entries = serve.camera.cameras().map_err(std::io::Error::other)?;
    let mut cameras = Vec::new();
    let mut views = Vec::new();
    for entry in &entries {
        let source = entry.spec().redacted();
        let stats = Arc::new(CameraStats::for_source(source.clone()));
        let view = CameraView::new(
            entry.name(),
            entry.direction(),
            source,
            stats.clone(),
            Arc::new(Captures::default()),
            Arc::new(Live::new(serve.live())),
        );
        // Camera results go through the same path as /recognize/realtime: cooldown,
        // webhook, WebSocket.
        let on_frame = FrameWiring {
            camera: Seer {
                name: entry.name().to_string(),
                direction: entry.direction(),
                own_cooldown: entries.len() > 1,
            },
            dispatcher: dispatcher.clone(),
            send_unknown: serve.camera.camera_send_unknown,
            unknowns: unknowns.clone(),
            min_face_px: recognizer.enroll_policy().quality().min_face_px(),
            captures: view.captures().clone(),
            live: view.live().clone(),
            kiosk: kiosk.clone(),
        }
        .into_handler();
        let pipeline = Pipeline::new(recognizer.clone(), serve.camera.pipeline(settings));
        let opener = serve.camera.opener(entry);
        cameras.push(Camera::start(
            entry.name(),
            opener,
            pipeline,
            stats,
            on_frame,
        )?);
        views.push(view);
    }
    let stall_limit = MIN_STALL_LIMIT.max(limits.io_timeout * 2);
    let mut app = App::new(recognizer, dispatcher, hub, limits, budget, config_json);
    if let Some(unknowns) = unknowns {
        app = app.with_unknowns(unknowns);
    }
    app = app.with_cameras(views).with_zone(zone);
    if let Some(stats) = event_command {
        app = app.with_event_command(stats);
    }
    app.metrics_require_key = serve.metrics_require_key(!keys.is_empty());
    app.kiosk = kiosk;
    app.kiosk_loopback_without_key = serve.kiosk.loopback_without_key;
    app.auth = http::Auth::new(keys, serve.allow_key_in_url);
    let broker = match (mqtt, mqtt_settings) {
        (Some(mqtt), Some(s)) => {
            let summary = health_summary(&app);
            let broker = start_broker(mqtt, &s, &app.recognizer, app.unknowns(), summary)?;
            let replication = broker.replicator.as_ref().map(|r| r.stats());
            app = app.with_mqtt(broker.mqtt.stats().clone(), replication);
            Some(broker)
        }
        _ => None,
    };
    let tls = serve.tls_setup().map_err(std::io::Error::other)?;
    let plain_bind = serve.bind_address();
    let binds = [
        Some(plain_bind.as_str()).filter(|_| serve.tls.plain_http),
        tls.as_ref().map(|(bind, _)| bind.as_str()),
    ];
    let bound_ip = binds
        .into_iter()
        .flatten()
        .find_map(|b| b.parse::<std::net::SocketAddr>().ok())
        .map(|a| a.ip());
    app.guard = http::Guard::new(bound_ip, &serve.allowed_hosts, &serve.allowed_origins);
    let server = http::start_listeners(
        http::Listeners {
            plain: serve.tls.plain_http.then_some(plain_bind.as_str()),
            tls: tls
                .as_ref()
                .map(|(bind, setup)| (bind.as_str(), setup.config.clone())),
        },
        app,
    )?;
    if let (Some(addr), Some((_, setup))) = (server.tls_addr(), &tls) {
        log::info!(
            "HTTPS on {addr}; certificate SHA-256 fingerprint {}",
            setup.fingerprint
        );
    }
    warn_if_open(server.addr(), server.app().auth.keys());
    Ok(Service {
        server,
        cameras,
        broker,
        stall_limit,
    })
}

/// The box status, Home Assistant discovery and gallery sync on the broker connection.
fn start_broker(
    mqtt: Arc<Mqtt>,
    settings: &MqttSettings,
    recognizer: &Recognizer,
    unknowns: Option<&Arc<Unknowns>>,
    summary: HealthSummary,
) -> std::io::Result<Broker> {
    let gallery = recognizer.gallery();
    let status = BoxStatus::start(&mqtt, settings.status_every, settings.ha_discovery, summary)
        .map_err(std::io::Error::other)?;
    let (gallery, replicator) = match settings.gallery_sync {
        ReplicationMode::Off => (None, None),
        mode => {
            let trust_file = settings
                .gallery_trusted_keys
                .clone()
                .unwrap_or_else(|| default_trust_file(gallery.data_dir()));
            let tolerance = recognizer.tolerance();
            let duplicate = recognizer.enroll_policy().duplicate_limit(tolerance, false);
            let policy = Policy::new(&trust_file, tolerance, duplicate).with_bounds(
                settings.gallery_people_per_hour,
                settings.gallery_encodings_per_hour,
                settings.gallery_max_waiting,
            );
            let mut replicator = Replicator::new(gallery.clone(), &settings.box_id, mode, policy)
                .map_err(std::io::Error::other)?;
            if let Some(unknowns) = unknowns {
                replicator = replicator.with_unknowns(unknowns.clone());
            }
            let replicator = Arc::new(replicator);
            let link =
                GalleryLink::start(&mqtt, replicator.clone()).map_err(std::io::Error::other)?;
            (Some(link), Some(replicator))
        }
    };
    Ok(Broker {
        mqtt,
        status,
        gallery,
        replicator,
    })
}

/// The retained health summary: what `/health` says of the box, in short (Home Assistant reads
/// `camera.state` and `outbox.pending`).
fn health_summary(app: &App) -> HealthSummary {
    let dispatcher = app.dispatcher.clone();
    let gallery = app.recognizer.gallery().clone();
    let cameras: Vec<(String, Option<crate::camera::Direction>, Arc<CameraStats>)> = app
        .cameras()
        .iter()
        .map(|c| (c.name().to_string(), c.direction(), c.stats().clone()))
        .collect();
    let stale_after = app.limits.camera_stale_after;
    Arc::new(move || {
        let (encodings, people) = gallery.counts();
        let mut summary = json!({
            "ok": cameras.iter().all(|(_, _, c)| c.healthy(stale_after)),
            "version": env!("CARGO_PKG_VERSION"),
            "people": people,
            "encodings": encodings,
            "outbox": dispatcher.stats().to_json(),
            "at": crate::clock::unix_secs(),
        });
        if let Some((_, _, first)) = cameras.first() {
            summary["camera"] = first.to_json();
        }
        if !cameras.is_empty() {
            summary["cameras"] = cameras
                .iter()
                .map(|(name, direction, stats)| {
                    let mut camera = stats.to_json();
                    camera["name"] = json!(name);
                    camera["direction"] = json!(direction);
                    camera
                })
                .collect();
        }
        summary
    })
}

/// The unknown faces kept for review, under the data folder. Not fatal: without it (a data
/// folder this user may only read) the service runs and `/unknowns` answers 404.
fn open_unknowns(settings: &Settings) -> Option<Arc<Unknowns>> {
    match Unknowns::open(&settings.data_dir, settings.unknown_settings()) {
        Ok(store) => {
            log::info!(
                "unknown faces: {} kept in {} cluster(s)",
                store.len(),
                store.cluster_count()
            );
            Some(Arc::new(store))
        }
        Err(e) => {
            log::warn!("unknown faces will not be kept: {e}");
            None
        }
    }
}

/// Open files the service asks for: enough for the most connections (one descriptor each) and
/// its own files, with room to spare; systemd's unit says the same (`LimitNOFILE`).
const WANTED_OPEN_FILES: u64 = 4096;

/// The HTTP limits of the settings. `HTTP_MAX_CONNECTIONS=0` sizes the connection budget from
/// the open-files limit, which is first raised as far as the hard limit allows; the effective
/// figures are logged once.
fn http_limits(serve: &ServeSettings) -> Limits {
    let open_files = budget::raise_open_files_limit(WANTED_OPEN_FILES);
    let max_connections = match (serve.max_connections, &open_files) {
        (0, Ok((soft, _))) => budget::connections_for_fd_limit(*soft),
        (0, Err(_)) => budget::MAX_CONNECTIONS_DEFAULT,
        (n, _) => n,
    };
    let files = match open_files {
        Ok((soft, hard)) => format!("open files {soft} (hard limit {hard})"),
        Err(e) => format!("open files unknown ({e})"),
    };
    log::info!(
        "limits: {files}; {max_connections} connections ({} per client address); {} uploads of \
         at most {} bytes; {} images at once (waiting at most {} s); {} s for a request head",
        serve.max_connections_per_client,
        serve.max_uploads,
        serve.max_upload_bytes,
        serve.max_images,
        serve.queue_seconds,
        serve.http_timeout_seconds,
    );
    Limits {
        max_upload_bytes: serve.max_upload_bytes,
        max_import_bytes: serve.max_import_bytes.max(serve.max_upload_bytes),
        io_timeout: Duration::from_secs(serve.http_timeout_seconds),
        workers: serve.workers,
        max_connections,
        max_connections_per_client: serve.max_connections_per_client,
        camera_stale_after: Duration::from_secs(serve.camera.camera_stale_seconds),
    }
}

/// Says loudly when the API is reachable from other machines without a key (only with
/// `FACE_ALLOW_OPEN_LAN=true`: `serve` refuses otherwise).
fn warn_if_open(addr: std::net::SocketAddr, keys: &http::ApiKeys) {
    for origin in keys.short() {
        log::warn!(
            "the API key of {origin} is shorter than {} characters: wrong keys are slowed per \
             address, but a right guess always gets in, so a key must be too long to guess \
             (`openssl rand -hex 32`)",
            http::auth::RECOMMENDED_KEY_LEN
        );
    }
    if keys.is_empty() && !addr.ip().is_loopback() {
        log::warn!(
            "listening on {addr} with no API key (FACE_ALLOW_OPEN_LAN=true): anyone who can \
             reach this port can enroll, delete and export faces and see who was recognized"
        );
    }
}

/// The outbox journal in `data/outbox`, and the durable sinks it feeds.
fn open_destinations(
    settings: &Settings,
    serve: &ServeSettings,
    durable: Vec<Box<dyn Sink>>,
) -> std::io::Result<Destinations> {
    if durable.is_empty() {
        warn_of_undelivered(settings);
    }
    let dir = settings.data_dir.join("outbox");
    let (destinations, recovered) = Destinations::open(&dir, serve.outbox_max_events, durable)
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("outbox journal in {}: {e}", dir.display()),
            )
        })?;
    if recovered.pending > 0 {
        log::info!(
            "outbox: {} events from before the restart to deliver",
            recovered.pending
        );
    }
    if recovered.unreadable > 0 {
        log::warn!(
            "outbox: {} unreadable journal lines skipped (a write cut short)",
            recovered.unreadable
        );
    }
    if recovered.dropped > 0 {
        log::warn!(
            "outbox: {} oldest events dropped to keep within OUTBOX_MAX_EVENTS",
            recovered.dropped
        );
    }
    Ok(destinations)
}

/// Events journaled while a webhook was configured stay on disk until one is configured again.
fn warn_of_undelivered(settings: &Settings) {
    let journal = settings.data_dir.join("outbox").join("journal.jsonl");
    if std::fs::metadata(&journal).is_ok_and(|m| m.len() > 0) {
        log::warn!(
            "{} holds undelivered events; set ATTENDANCE_WEBHOOK_URL to deliver them",
            journal.display()
        );
    }
}
