//! The HTTP API on the LAN: tiny_http with a fixed pool of worker threads, face work on the
//! engine's pool (one thread per core), the WebSocket feed on the same port, and the webhook
//! dispatcher behind `/recognize/realtime`.
//!
//! Where a request goes: the vendored tiny_http reads its head within bounds (size, time,
//! connections per client, and the TLS handshake on the HTTPS port: [`tls`]); an HTTP worker
//! finds its route in [`routes::ROUTES`] and lets the request in or not (`routes::admit`: one
//! credential, [`auth`] for keys, roles, tickets and the guessing throttle, [`guard`] for the
//! `Host` and `Origin` checks), answers light routes itself and hands uploads to [`uploads`],
//! whose image work waits for a place in [`budget`]. Every answer carries the security headers
//! of [`headers`].

pub mod auth;
pub mod budget;
mod error;
mod events;
mod form;
mod guard;
mod headers;
mod query;
mod respond;
mod routes;
mod stream;
pub mod tls;
mod uploads;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::camera::live::Live;
use crate::camera::CameraStats;
use crate::events::Dispatcher;
use crate::liveness::{Heartbeat, Liveness};
use crate::metrics::{Family, Metrics};
use crate::mqtt::MqttStats;
use crate::recognizer::Recognizer;
use crate::replication::ReplicationStats;
use crate::unknowns::Unknowns;
pub use auth::{ApiKeys, Auth, Caller, KeyError, Role, MIN_KEY_LEN};
pub use budget::Budget;
pub use error::ApiError;
pub use guard::Guard;
pub use routes::{Access, Handler, Route, ROUTES};
pub use ws::Hub;

/// The form parser, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub fn fuzz_form(content_type: Option<&str>, body: Vec<u8>) -> Result<form::Form, ApiError> {
    form::parse(content_type, body)
}

/// The query parsers (realtime parameters, the WebSocket key, `/events`), for the fuzz
/// targets.
#[doc(hidden)]
pub fn fuzz_query(query: &str) {
    let _ = routes::realtime_params(query);
    let _ = events::parse_params(query);
    let _ = routes::split_url(query);
    let _ = query::value(query, auth::KEY_PARAM);
    let _ = auth::credential(
        [],
        query,
        auth::Sources {
            ticket: true,
            key_in_url: false,
        },
    );
}

/// The checks on who a request comes from, for the fuzz targets: its one credential (with
/// tickets and keys in the URL allowed), and the `Host` and `Origin` checks of a box bound to
/// loopback, over plain HTTP and over TLS.
#[doc(hidden)]
pub fn fuzz_guard(headers: &[(String, String)], query: &str) {
    let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let sources = auth::Sources {
        ticket: true,
        key_in_url: true,
    };
    let _ = auth::credential(pairs, query, sources);
    static GUARD: std::sync::OnceLock<Guard> = std::sync::OnceLock::new();
    let guard = GUARD.get_or_init(|| Guard::new(None, &["box.school.lan".into()], &[]));
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let host = find("Host");
    let _ = guard.host_allowed(host);
    for secure in [false, true] {
        let _ = guard.cross_site(find("Sec-Fetch-Site"), find("Origin"), secure, host);
    }
}

/// Routing of a request line's target (`/people/a%2Fb?q=al`) for `method`: the route table's
/// path matching, its parameters and the id check, for the fuzz targets. Whatever matches must
/// match again once its parameters are put back into the route's pattern.
#[doc(hidden)]
pub fn fuzz_route(method: &str, target: &str) {
    let (path, query) = routes::split_url(target);
    let _ = query::value(&query, "limit");
    let Ok(method) = method.parse::<tiny_http::Method>() else {
        return;
    };
    if let Ok((route, params)) = routes::find(&method, &path) {
        if let Ok(id) = params.get("id") {
            let _ = crate::gallery::StudentId::parse(id);
        }
        assert!(route.path.split('/').count() == path.split('/').count());
    }
}

/// Limits that keep one client from holding the box.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: usize,
    /// Largest gallery archive for `POST /gallery/import`.
    pub max_import_bytes: usize,
    /// How long a client may take to send a request head, idle between requests, or stall
    /// reading an answer; the grace before a body must arrive at [`MIN_BODY_RATE`].
    pub io_timeout: Duration,
    pub workers: usize,
    /// Connections at once, overall and from one client address.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// `/health` turns `ok:false` when the camera has been gone or silent this long.
    pub camera_stale_after: Duration,
}

/// Bytes per second a request body must keep arriving at, after the grace of `io_timeout`: a
/// 10 MiB upload may take 10 minutes, a trickle of a byte now and then is cut off.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

/// Everything a request handler needs.
pub struct App {
    pub recognizer: Recognizer,
    pub dispatcher: Arc<Dispatcher>,
    pub hub: Hub,
    /// The camera loop's counters, when `serve` runs one.
    pub camera: Option<Arc<CameraStats>>,
    /// Camera frames for `POST /people/{id}/capture`, when `serve` runs a camera.
    pub captures: Option<Arc<crate::camera::capture::Captures>>,
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
    /// The camera's live view (`/stream.mjpg`), when `serve` runs a camera.
    live: Option<Arc<Live>>,
    /// The broker connection's and the gallery sync's counters, when the box uses MQTT.
    mqtt: Option<MqttParts>,
    /// Open connections, from the server once it runs.
    connections: std::sync::OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    /// The listeners (`{"http": addr, "https": addr}`), once the server runs.
    listeners: std::sync::OnceLock<Value>,
    /// What `/metrics` records as it happens (the rest it reads from the structs above).
    pub metrics: Metrics,
    /// `/metrics` needs a viewer key (`METRICS_REQUIRE_KEY`, true by default on a box with
    /// keys), else it is open like `/health`.
    pub metrics_require_key: bool,
}

/// What `/health` and `/metrics` read of the MQTT side.
struct MqttParts {
    mqtt: Arc<MqttStats>,
    sync: Option<Arc<ReplicationStats>>,
}

impl App {
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
            camera: None,
            captures: None,
            limits,
            config_json,
            auth: Auth::default(),
            guard: Guard::new(None, &[], &[]),
            budget,
            unknowns: None,
            live: None,
            mqtt: None,
            connections: std::sync::OnceLock::new(),
            listeners: std::sync::OnceLock::new(),
            metrics: Metrics::new(),
            metrics_require_key: false,
        }
    }

    /// The app with the unknown-faces store behind `/unknowns` (and its count in `/health`).
    pub fn with_unknowns(mut self, unknowns: Arc<Unknowns>) -> App {
        self.unknowns = Some(unknowns);
        self
    }

    /// The app with the camera's live view behind `/stream.mjpg`.
    pub fn with_live(mut self, live: Arc<Live>) -> App {
        self.live = Some(live);
        self
    }

    /// The app with the broker connection's counters (and the gallery sync's, when on).
    pub fn with_mqtt(mut self, mqtt: Arc<MqttStats>, sync: Option<Arc<ReplicationStats>>) -> App {
        self.mqtt = Some(MqttParts { mqtt, sync });
        self
    }

    /// `/health`'s `mqtt` and `gallery_sync`, when the box uses MQTT.
    pub fn mqtt_json(&self) -> Option<(Value, Option<Value>)> {
        let parts = self.mqtt.as_ref()?;
        Some((
            parts.mqtt.to_json(),
            parts.sync.as_ref().map(|s| s.to_json()),
        ))
    }

    /// The camera's live view, when the service runs a camera.
    pub fn live(&self) -> Option<&Arc<Live>> {
        self.live.as_ref()
    }

    /// The unknown-faces store, when the service keeps one.
    pub fn unknowns(&self) -> Option<&Arc<Unknowns>> {
        self.unknowns.as_ref()
    }

    /// Runs the work on `image` (decoding included) on the engine's pool, holding one of the image
    /// places, and the large-image place too when the image is above `DETECT_MAX_PIXELS` (read
    /// from its header): it waits at most `HTTP_QUEUE_SECONDS` for them, then the client hears
    /// 503 and `Retry-After`. This bounds what images cost at once in memory and CPU.
    fn image_work<T: Send>(
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
    fn http_stats(&self) -> Value {
        serde_json::json!({
            "listeners": self.listeners.get(),
            "connections": self.open_connections(),
            "uploads": self.budget.uploads.to_json(),
            "imports": self.budget.imports.to_json(),
            "images": self.budget.images.to_json(),
            "large_images": self.budget.large_images.to_json(),
            "websocket_clients": self.hub.clients(),
            "stream_clients": self.live.as_ref().map_or(0, |l| l.viewers()),
        })
    }
}

impl App {
    /// Everything `/metrics` reads at a scrape, from the structs `/health` reads.
    fn families(&self) -> Vec<Family> {
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
            if let Some(sync) = &parts.sync {
                families.extend(sync.families());
            }
        }
        families.extend(self.dispatcher.stats().families());
        if let Some(camera) = &self.camera {
            families.extend(camera.families(self.limits.camera_stale_after));
        }
        if let Some(live) = self.live() {
            families.extend(live.families());
        }
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

/// The value of header `name` (case-insensitive), if present.
fn header<'a>(request: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

pub struct RunningServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    /// The HTTPS listener beside the plain one, when both run.
    second: Option<Arc<tiny_http::Server>>,
    tls_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    app: Arc<App>,
    liveness: Liveness,
}

/// Where [`start_listeners`] listens: the plain HTTP address and the HTTPS one with its
/// certificate, at least one of them.
pub struct Listeners<'a> {
    pub plain: Option<&'a str>,
    pub tls: Option<(&'a str, Arc<rustls::ServerConfig>)>,
}

/// Binds `bind` (port 0 picks a free one) and starts the worker threads.
pub fn start(bind: &str, app: App) -> std::io::Result<RunningServer> {
    start_listeners(
        Listeners {
            plain: Some(bind),
            tls: None,
        },
        app,
    )
}

/// Binds the listeners (plain HTTP, HTTPS or both; port 0 picks a free one) and starts the
/// worker threads. Both listeners serve the same app with the same limits; their connections
/// count against the same caps, and each has its own `workers` (named `http-N` and `https-N`).
pub fn start_listeners(listeners: Listeners<'_>, app: App) -> std::io::Result<RunningServer> {
    let timeout = app.limits.io_timeout;
    // Every bound on a connection lives in the vendored tiny_http (vendor/tiny_http/PATCHED.md),
    // which applies it before a request reaches a worker.
    let limits = tiny_http::Limits {
        head_timeout: timeout,
        idle_timeout: timeout,
        body_grace: timeout,
        body_min_rate: MIN_BODY_RATE,
        write_timeout: timeout,
        max_connections: app.limits.max_connections,
        max_connections_per_ip: app.limits.max_connections_per_client,
        // A refused upload (401, 413, 503) is read away (for at most `linger_time`) before its
        // connection is closed, so that clients that send the whole body before reading (most
        // do) get the answer rather than a reset, even for a body somewhat over the limit.
        linger_bytes: app.limits.max_upload_bytes.saturating_mul(4),
        ..tiny_http::Limits::default()
    };
    let bind_tls = |bind: &str| -> std::io::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind(bind)?;
        let addr = listener.local_addr()?;
        Ok((listener, addr))
    };
    // The first server (plain when it runs); the HTTPS one beside it shares its caps.
    let (server, addr, second, tls_addr) = match (listeners.plain, listeners.tls) {
        (None, None) => {
            return Err(std::io::Error::other(
                "no listener (plain HTTP is off, no HTTPS)",
            ))
        }
        (Some(bind), tls) => {
            let (listener, addr) = bind_tls(bind)?;
            let server = tiny_http::Server::from_listener_with_limits(listener, None, limits)
                .map_err(std::io::Error::other)?;
            let (second, tls_addr) = match tls {
                None => (None, None),
                Some((bind, config)) => {
                    let (listener, tls_addr) = bind_tls(bind)?;
                    let second = server
                        .sibling(listener, Some(config))
                        .map_err(std::io::Error::other)?;
                    (Some(Arc::new(second)), Some(tls_addr))
                }
            };
            (Arc::new(server), addr, second, tls_addr)
        }
        (None, Some((bind, config))) => {
            let (listener, addr) = bind_tls(bind)?;
            let server = tiny_http::Server::from_listener_with_tls(listener, config, limits)
                .map_err(std::io::Error::other)?;
            (Arc::new(server), addr, None, Some(addr))
        }
    };
    let plain_addr = (tls_addr != Some(addr)).then_some(addr);
    let app = Arc::new(app);
    // Either server counts the connections of both.
    let counted = Arc::downgrade(&server);
    let _ = app.connections.set(Box::new(move || {
        counted.upgrade().map_or(0, |s| s.open_connections())
    }));
    let _ = app.listeners.set(serde_json::json!({
        "http": plain_addr.map(|a| a.to_string()),
        "https": tls_addr.map(|a| a.to_string()),
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let liveness = Liveness::default();
    let mut pools = vec![(
        &server,
        if plain_addr.is_some() {
            "http"
        } else {
            "https"
        },
    )];
    if let Some(second) = &second {
        pools.push((second, "https"));
    }
    let mut workers = Vec::new();
    for (server, name) in pools {
        for i in 0..app.limits.workers.max(1) {
            let (server, app, stop) = (server.clone(), app.clone(), stop.clone());
            let heartbeat = liveness.watch(format!("{name}-{i}"));
            workers.push(
                std::thread::Builder::new()
                    .name(format!("{name}-{i}"))
                    .spawn(move || worker(&server, &app, &stop, heartbeat))?,
            );
        }
    }
    Ok(RunningServer {
        addr,
        server,
        second,
        tls_addr,
        stop,
        workers,
        app,
        liveness,
    })
}

/// One worker: takes requests until asked to stop. It beats `heartbeat` every turn (at least
/// every 200 ms when idle), so one stuck on a request shows up in [`RunningServer::liveness`].
fn worker(server: &tiny_http::Server, app: &Arc<App>, stop: &AtomicBool, heartbeat: Heartbeat) {
    while !stop.load(Ordering::Relaxed) {
        heartbeat.beat();
        match server.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(request)) => {
                // A bug in one request must not take the worker (or the server) down; the
                // dropped request is answered 500 by tiny_http.
                if catch_unwind(AssertUnwindSafe(|| routes::handle(app, request))).is_err() {
                    log::error!("a request handler panicked; the server carries on");
                }
            }
            Ok(None) => {}
            Err(e) => {
                // Dropping the heartbeat unfinished tells the watchdog.
                log::error!("HTTP server stopped accepting: {e}");
                return;
            }
        }
    }
    heartbeat.finish();
}

impl RunningServer {
    /// The plain HTTP listener's address (the HTTPS one's when plain HTTP is off).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The HTTPS listener's address, when it runs.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// The worker threads' heartbeats.
    pub fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// Stops taking requests, lets the ones in flight finish, delivers pending events.
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.server.unblock();
        if let Some(second) = &self.second {
            second.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.second);
        drop(self.server);
        // Live viewers end at once (their threads hold no worker, so nothing above waited).
        if let Some(live) = self.app.live() {
            live.close();
        }
        self.app.dispatcher.shutdown();
    }
}
