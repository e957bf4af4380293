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
//!
//! Inside, nothing imports upward: the table and the handlers (`routes`, by area) share their
//! types through `call` and `app`; the threads that run handlers (`uploads`, `ws`, `stream`,
//! `events`) import those, never the table; this file holds the listeners and the workers and
//! is imported by none of them.

mod app;
pub mod auth;
pub(crate) mod budget;
mod call;
mod error;
mod events;
mod form;
mod guard;
mod headers;
mod query;
mod reports;
mod respond;
mod routes;
mod stream;
pub(crate) mod tls;
mod uploads;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::liveness::{Heartbeat, Liveness};
pub use app::{App, Limits};
pub use auth::{ApiKeys, Auth, Caller, KeyError, Role, MIN_KEY_LEN};
pub use budget::Budget;
pub use call::{Access, Handler, Route};
pub use error::ApiError;
pub use guard::Guard;
pub use routes::ROUTES;
pub use ws::Hub;

/// The form parser, for the fuzz targets (`crate::fuzzing`).
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_form(content_type: Option<&str>, body: Vec<u8>) -> Result<form::Form, ApiError> {
    form::parse(content_type, body)
}

/// The query parsers (realtime parameters, the WebSocket key, `/events`), for the fuzz
/// targets.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_query(query: &str) {
    let _ = routes::realtime_params(query);
    let _ = events::parse_params(query);
    let _ = query::split_url(query);
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
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_guard(headers: &[(String, String)], query: &str) {
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
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_route(method: &str, target: &str) {
    let (path, query) = query::split_url(target);
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

/// Bytes per second a request body must keep arriving at, after the grace of `io_timeout`: a
/// 10 MiB upload may take 10 minutes, a trickle of a byte now and then is cut off.
pub const MIN_BODY_RATE: u64 = 16 * 1024;

/// The running HTTP service: its listeners and worker threads, until [`RunningServer::shutdown`].
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
    /// The plain HTTP address to bind, if any.
    pub plain: Option<&'a str>,
    /// The HTTPS address to bind and its TLS configuration, if any.
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

    /// What the handlers share.
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
        for camera in self.app.cameras() {
            camera.live().close();
        }
        self.app.dispatcher.shutdown();
    }
}
