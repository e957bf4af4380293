//! `face-attendance serve`: the HTTP API until SIGTERM or SIGINT, then a graceful stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::camera::{Camera, FrameResult};
use crate::config::{ServeSettings, Settings};
use crate::events::{events_for, Dispatcher, WebhookSender};
use crate::http::{self, App, Hub, Limits};
use crate::recognizer::Recognizer;

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
            eprintln!("error: cannot serve on {}: {e}", serve.bind_address());
            return super::EXIT_SETUP;
        }
    };
    let (encodings, labels) = server.app().recognizer.gallery.counts();
    log::info!(
        "serving on http://{} ({encodings} encodings of {labels} people; webhook {}; {})",
        server.addr(),
        if server.app().dispatcher.webhook_enabled() {
            "on"
        } else {
            "off"
        },
        match server.app().keys.len() {
            0 => "no API key".to_string(),
            n => format!("{n} API key(s)"),
        }
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    log::info!("stopping: finishing requests in flight and pending events");
    server.shutdown();
    log::info!("stopped");
    0
}

/// The running service: the HTTP server and, when configured, the camera loop.
pub struct Service {
    server: http::RunningServer,
    camera: Option<Camera>,
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
    let keys = serve.api_keys().map_err(std::io::Error::other)?;
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
        "api_key_required": !keys.is_empty(),
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
    let mut app = App::new(recognizer, dispatcher, hub, limits, config_json)?;
    app.camera = camera.as_ref().map(|c| c.stats().clone());
    app.keys = keys;
    let server = http::start(&serve.bind_address(), app)?;
    warn_if_open(server.addr(), &server.app().keys);
    Ok(Service { server, camera })
}

/// Says loudly when the API is reachable from other machines without a key.
fn warn_if_open(addr: std::net::SocketAddr, keys: &http::ApiKeys) {
    if keys.is_empty() && !addr.ip().is_loopback() {
        log::warn!(
            "listening on {addr} with no API key: anyone who can reach this port can enroll \
             faces and see who was recognized. Set FACE_API_KEY (or FACE_API_KEYS_FILE), or \
             bind to 127.0.0.1"
        );
    }
}
