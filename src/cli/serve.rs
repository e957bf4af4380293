//! `face-attendance serve`: the HTTP API until SIGTERM or SIGINT, then a graceful stop (the
//! service itself is [`crate::service`]).

use crate::recognizer::Recognizer;
use crate::settings::{ServeSettings, Settings};

/// Runs the service; returns the exit status (2 when it cannot start, with one `error:` line).
pub fn run(settings: &Settings, serve: &ServeSettings, recognizer: Recognizer) -> i32 {
    match crate::service::run(settings, serve, recognizer) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            super::EXIT_SETUP
        }
    }
}
