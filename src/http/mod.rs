//! The HTTP API on the LAN: tiny_http with a fixed pool of worker threads, face work on a
//! rayon pool sized to the cores, the WebSocket feed on the same port, and the webhook
//! dispatcher behind `/recognize/realtime`.

mod auth;
mod error;
mod form;
mod routes;
mod ws;

use std::net::{SocketAddr, TcpListener};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::camera::CameraStats;
use crate::events::Dispatcher;
use crate::liveness::{Heartbeat, Liveness};
use crate::recognizer::Recognizer;
pub use auth::{ApiKeys, KeyError, MIN_KEY_LEN};
pub use error::ApiError;
pub use routes::{OPEN_ROUTES, ROUTES};
pub use ws::Hub;

/// The form parser, for the fuzz targets (`crate::fuzzing`).
#[doc(hidden)]
pub fn fuzz_form(content_type: Option<&str>, body: Vec<u8>) -> Result<form::Form, ApiError> {
    form::parse(content_type, body)
}

/// The query parsers (realtime parameters, the WebSocket key), for the fuzz targets.
#[doc(hidden)]
pub fn fuzz_query(query: &str) {
    let _ = routes::realtime_params(query);
    let _ = routes::split_url(query);
    let _ = auth::query_value(query, auth::QUERY_PARAM);
}

/// Limits that keep one client from holding the box.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_upload_bytes: usize,
    /// How long a client may take to send its body (then 408), or stall reading an answer.
    pub io_timeout: Duration,
    pub workers: usize,
    /// `/health` turns `ok:false` when the camera has been gone or silent this long.
    pub camera_stale_after: Duration,
}

/// Everything a request handler needs.
pub struct App {
    pub recognizer: Recognizer,
    pub dispatcher: Arc<Dispatcher>,
    pub hub: Hub,
    /// The camera loop's counters, when `serve` runs one.
    pub camera: Option<Arc<CameraStats>>,
    pub limits: Limits,
    /// What `GET /config` shows (never the API key).
    pub config_json: Value,
    /// API keys the protected routes need; empty: every route is open (bind to loopback then).
    pub keys: ApiKeys,
    pool: rayon::ThreadPool,
}

impl App {
    pub fn new(
        recognizer: Recognizer,
        dispatcher: Arc<Dispatcher>,
        hub: Hub,
        limits: Limits,
        config_json: Value,
    ) -> std::io::Result<App> {
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("face-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(App {
            recognizer,
            dispatcher,
            hub,
            camera: None,
            limits,
            config_json,
            keys: ApiKeys::default(),
            pool,
        })
    }

    /// Runs face work on the rayon pool: at most one job per core at a time, however many
    /// HTTP workers are waiting, which bounds CPU and memory on a small board.
    fn compute<T: Send>(
        &self,
        work: impl FnOnce() -> Result<T, crate::Error> + Send,
    ) -> Result<T, ApiError> {
        self.pool.install(work).map_err(ApiError::from)
    }
}

pub struct RunningServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
    app: Arc<App>,
    liveness: Liveness,
}

/// Binds `bind` (port 0 picks a free one) and starts the worker threads.
pub fn start(bind: &str, app: App) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(bind)?;
    // tiny_http has no timeouts of its own. Accepted sockets inherit the listener's timeouts on
    // Linux: a client that stops reading its answer (or the WebSocket feed), or that sends its
    // request head or body too slowly (slowloris), is cut off after HTTP_TIMEOUT_SECONDS without
    // data. The receive timeout also wakes accept() when idle, which the patched tiny_http
    // (vendor/tiny_http/PATCHED.md) takes in its stride; uploads are also bounded as a whole in
    // routes::read_form.
    let socket = socket2::SockRef::from(&listener);
    socket.set_write_timeout(Some(app.limits.io_timeout))?;
    socket.set_read_timeout(Some(app.limits.io_timeout))?;
    let addr = listener.local_addr()?;
    let server =
        Arc::new(tiny_http::Server::from_listener(listener, None).map_err(std::io::Error::other)?);
    let app = Arc::new(app);
    let stop = Arc::new(AtomicBool::new(false));
    let liveness = Liveness::default();
    let workers = (0..app.limits.workers.max(1))
        .map(|i| {
            let (server, app, stop) = (server.clone(), app.clone(), stop.clone());
            let heartbeat = liveness.watch(format!("http-{i}"));
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || worker(&server, &app, &stop, heartbeat))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(RunningServer {
        addr,
        server,
        stop,
        workers,
        app,
        liveness,
    })
}

/// One worker: takes requests until asked to stop. It beats `heartbeat` every turn (at least
/// every 200 ms when idle), so one stuck on a request shows up in [`RunningServer::liveness`].
fn worker(server: &tiny_http::Server, app: &App, stop: &AtomicBool, heartbeat: Heartbeat) {
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
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
        for w in self.workers {
            let _ = w.join();
        }
        drop(self.server);
        self.app.dispatcher.shutdown();
    }
}
