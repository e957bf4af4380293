//! The service's life as a process: started, announced to systemd (ready, status, watchdog),
//! kept (the housekeeping loop), stopped on SIGTERM or SIGINT.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Service;
use crate::engine::blas;
use crate::error::Error;
use crate::recognizer::Recognizer;
use crate::settings::{ServeSettings, Settings};
use crate::systemd::{self, Notifier, Watchdog};

/// How often the service looks whether a CLI command beside it changed the gallery.
const GALLERY_CHECK_EVERY: Duration = Duration::from_secs(2);

/// How often crops past `FACE_CROPS_MAX_AGE_DAYS`, and unknown faces past
/// `UNKNOWN_MAX_AGE_DAYS`, are looked for (also at every start).
const CROP_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Why the service could not start (each message is the one `serve` prints after `error: `).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting of `serve` makes no sense.
    #[error("{0}")]
    Settings(#[from] Error),
    /// The stop signals could not be handled.
    #[error("cannot handle signal {signal}: {source}")]
    Signal {
        /// The signal's number.
        signal: i32,
        /// Why.
        source: std::io::Error,
    },
    /// The listeners, the camera or a store could not be started.
    #[error("cannot serve on {on}: {source}")]
    Serve {
        /// The addresses the service was to listen on (`A and B`).
        on: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the service until SIGTERM or SIGINT, then stops it gracefully: validates the serve
/// settings, starts ([`super::start`]), tells systemd it is ready, checks the gallery for
/// changes by other processes, sweeps old face crops, pets the watchdog while every thread
/// turns, and at the signal finishes the requests in flight and the pending events.
pub fn run(
    settings: &Settings,
    serve: &ServeSettings,
    recognizer: Recognizer,
) -> Result<(), StartError> {
    serve.validate()?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())
            .map_err(|source| StartError::Signal { signal, source })?;
    }
    let server = super::start(settings, serve, recognizer).map_err(|source| {
        let mut on = vec![];
        if serve.tls.plain_http {
            on.push(serve.bind_address());
        }
        on.extend(serve.tls.tls_bind.clone());
        StartError::Serve {
            on: on.join(" and "),
            source,
        }
    })?;
    log::info!(
        "face engine: {} threads; OpenBLAS {} kernels{}",
        server.app().recognizer.engine().threads(),
        blas::corename(),
        match std::env::var(blas::CORETYPE_VAR) {
            Ok(v) => format!(" ({} = {v})", blas::CORETYPE_VAR),
            Err(_) => String::new(),
        }
    );
    let status = status_line(&server);
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
    let mut housekeeping = Housekeeping::new();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        housekeeping.tick(&server);
        if let (Some(notifier), Some(watchdog)) = (&notifier, &mut watchdog) {
            watchdog.tick(notifier, || server.check_alive());
        }
    }
    notify(&notifier, "STOPPING=1\nSTATUS=stopping");
    log::info!("stopping: finishing requests in flight and pending events");
    server.shutdown();
    log::info!("stopped");
    Ok(())
}

/// `serving on URLS (N encodings of M people; webhook on|off; KEYS)`: logged and given to
/// systemd as the status.
fn status_line(server: &Service) -> String {
    let (encodings, labels) = server.app().recognizer.gallery().counts();
    format!(
        "serving on {} ({encodings} encodings of {labels} people; webhook {}; {})",
        server.urls(),
        if server.app().dispatcher.webhook_enabled() {
            "on"
        } else {
            "off"
        },
        match server.app().auth.keys().roles() {
            roles if roles.is_empty() => "no API key".to_string(),
            roles => roles
                .iter()
                .map(|(role, n)| format!("{n} {role} key(s)"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    )
}

/// The periodic chores of a running service: reloading a gallery another process changed,
/// sweeping face crops and unknown faces past their age.
struct Housekeeping {
    last_sweep: Instant,
    last_reload_check: Instant,
}

impl Housekeeping {
    fn new() -> Housekeeping {
        Housekeeping {
            last_sweep: Instant::now(),
            last_reload_check: Instant::now(),
        }
    }

    /// Does whichever chore is due.
    fn tick(&mut self, server: &Service) {
        if self.last_reload_check.elapsed() >= GALLERY_CHECK_EVERY {
            self.last_reload_check = Instant::now();
            let gallery = &server.app().recognizer.gallery();
            match gallery.reload_if_changed() {
                Ok(false) => {}
                Ok(true) => {
                    let (encodings, labels) = gallery.counts();
                    log::info!(
                        "the gallery was changed by another process: reloaded ({encodings} \
                         encodings of {labels} people)"
                    );
                }
                Err(e) => log::warn!("the gallery changed on disk but could not be reloaded: {e}"),
            }
        }
        if self.last_sweep.elapsed() >= CROP_SWEEP_EVERY {
            self.last_sweep = Instant::now();
            match server.app().recognizer.gallery().sweep_crops() {
                Ok(0) => {}
                Ok(n) => log::info!("removed {n} face crop(s) past FACE_CROPS_MAX_AGE_DAYS"),
                Err(e) => log::warn!("face crops not swept: {e}"),
            }
            if let Some(unknowns) = server.app().unknowns() {
                match unknowns.sweep_old() {
                    Ok(0) => {}
                    Ok(n) => log::info!("removed {n} unknown face(s) past UNKNOWN_MAX_AGE_DAYS"),
                    Err(e) => log::warn!("unknown faces not swept: {e}"),
                }
            }
        }
    }
}

fn notify(notifier: &Option<Notifier>, state: &str) {
    if let Some(n) = notifier {
        if let Err(e) = n.notify(state) {
            log::warn!("cannot notify systemd: {e}");
        }
    }
}
