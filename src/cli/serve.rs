//! `face-attendance serve`: the HTTP API until SIGTERM or SIGINT, then a graceful stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::camera::{Camera, FrameResult};
use crate::config::{ServeSettings, Settings};
use crate::events::{events_for, Dispatcher, WebhookSender};
use crate::http::{self, App, Hub, Limits};
use crate::liveness::Stall;
use crate::recognizer::Recognizer;
use crate::systemd::{self, Notifier, Watchdog};

/// How long one HTTP worker or camera loop may go without turning before the service counts as
/// wedged (and stops petting systemd's watchdog). Legitimate work can be long on a small board:
/// a phone photo (12 MP) at upsample 1 takes tens of seconds on a Pi 3, possibly after waiting
/// for the compute pool behind other requests; a body read may take HTTP_TIMEOUT_SECONDS. So:
/// two minutes, or twice the HTTP timeout when that is longer. What this catches is a thread
/// that never comes back (a deadlock, a hung camera driver, a runaway loop) or that died.
const MIN_STALL_LIMIT: Duration = Duration::from_secs(120);

pub fn run(settings: &Settings, serve: &ServeSettings, recognizer: Recognizer) -> i32 {
    if let Err(e) = serve.validate() {
        eprintln!("error: {e}");
        return super::EXIT_SETUP;
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("error: cannot handle signal {signal}: {e}");
            return super::EXIT_SETUP;
        }
    }
    let server = match start(settings, serve, recognizer) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot serve on {}: {e}", serve.bind);
            return super::EXIT_SETUP;
        }
    };
    let (encodings, labels) = server.app().recognizer.gallery.counts();
    let status = format!(
        "serving on http://{} ({encodings} encodings of {labels} people; webhook {})",
        server.addr(),
        if server.app().dispatcher.webhook_enabled() {
            "on"
        } else {
            "off"
        }
    );
    log::info!("{status}");
    // Models and gallery are loaded and the socket listens: ready for systemd (Type=notify).
    let notifier = match Notifier::from_env() {
        Ok(n) => n,
        Err(e) => {
            log::warn!("systemd notifications off: {e}");
            None
        }
    };
    notify(&notifier, &format!("READY=1\nSTATUS={status}"));
    let mut watchdog = notifier
        .as_ref()
        .and_then(|_| systemd::watchdog_period())
        .map(Watchdog::new);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if let (Some(notifier), Some(watchdog)) = (&notifier, &mut watchdog) {
            watchdog.tick(notifier, || server.check_alive());
        }
    }
    notify(&notifier, "STOPPING=1\nSTATUS=stopping");
    log::info!("stopping: finishing requests in flight and pending events");
    server.shutdown();
    log::info!("stopped");
    0
}

fn notify(notifier: &Option<Notifier>, state: &str) {
    if let Some(n) = notifier {
        if let Err(e) = n.notify(state) {
            log::warn!("cannot notify systemd: {e}");
        }
    }
}

/// The running service: the HTTP server and, when configured, the camera loop.
pub struct Service {
    server: http::RunningServer,
    camera: Option<Camera>,
    stall_limit: Duration,
}

impl Service {
    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    pub fn app(&self) -> &App {
        self.server.app()
    }

    pub fn camera(&self) -> Option<&Camera> {
        self.camera.as_ref()
    }

    /// Ok while every HTTP worker and camera thread is turning (see [`MIN_STALL_LIMIT`]).
    pub fn check_alive(&self) -> Result<(), Stall> {
        self.server.liveness().check(self.stall_limit)?;
        match &self.camera {
            Some(camera) => camera.liveness().check(self.stall_limit),
            None => Ok(()),
        }
    }

    /// Stops the camera, then the server (which delivers the pending events).
    pub fn shutdown(self) {
        if let Some(camera) = self.camera {
            camera.stop();
        }
        self.server.shutdown();
    }
}

/// Builds the app from the settings and starts the server and camera (the tests call this too).
pub fn start(
    settings: &Settings,
    serve: &ServeSettings,
    recognizer: Recognizer,
) -> std::io::Result<Service> {
    let hub = Hub::start(serve.ws_max_clients);
    let to_hub = hub.clone();
    let webhook = serve.webhook();
    let config_json = json!({
        "tolerance": settings.tolerance,
        "webhook_enabled": webhook.is_some(),
        "cooldown_seconds": serve.cooldown_seconds,
        "upsample": settings.upsample,
        "jitters": settings.jitters,
        "max_upload_bytes": serve.max_upload_bytes,
        "max_pixels": settings.max_pixels,
        "webhook_timeout_seconds": serve.webhook_timeout_seconds,
        "camera": serve.camera.camera.as_ref().or(serve.camera.frames.as_ref()).map(|p| p.display().to_string()),
        "camera_send_unknown": serve.camera.camera_send_unknown,
    });
    let dispatcher = Arc::new(Dispatcher::start(
        webhook.map(WebhookSender::new),
        Duration::from_secs_f64(serve.cooldown_seconds),
        Box::new(move |message| to_hub.broadcast(message)),
    ));
    let limits = Limits {
        max_upload_bytes: serve.max_upload_bytes,
        io_timeout: Duration::from_secs(serve.http_timeout_seconds),
        workers: serve.workers,
        camera_stale_after: Duration::from_secs(serve.camera.camera_stale_seconds),
    };
    let camera = match serve.camera.source() {
        None => None,
        Some(open) => {
            // Camera results go through the same path as /recognize/realtime: cooldown,
            // webhook, WebSocket.
            let (events, send_unknown) = (dispatcher.clone(), serve.camera.camera_send_unknown);
            let on_frame = Box::new(move |f: FrameResult| {
                let batch = events_for(&f.results, (f.width, f.height), send_unknown);
                if !batch.is_empty() {
                    events.submit(batch);
                }
            });
            Some(Camera::start(
                open,
                recognizer.clone(),
                Arc::default(),
                on_frame,
            )?)
        }
    };
    let stall_limit = MIN_STALL_LIMIT.max(limits.io_timeout * 2);
    let mut app = App::new(recognizer, dispatcher, hub, limits, config_json)?;
    app.camera = camera.as_ref().map(|c| c.stats().clone());
    Ok(Service {
        server: http::start(&serve.bind, app)?,
        camera,
        stall_limit,
    })
}
