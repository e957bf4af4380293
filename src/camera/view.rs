//! One running camera as the HTTP side sees it: its name and direction, its redacted source,
//! its counters (`/health`, `/metrics`), the frames `/people/{id}/capture` waits for, and its
//! live view (`/stream.mjpg?camera=`). The service makes one per camera; the first is the one
//! `/health`'s `camera`, `/stream.mjpg` and `/capture` mean when no camera is named.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::capture::Captures;
use super::live::Live;
use super::{CameraStats, Direction};

/// One camera's name, direction and what the HTTP side reads of it.
pub struct CameraView {
    name: String,
    direction: Option<Direction>,
    source: String,
    stats: Arc<CameraStats>,
    captures: Arc<Captures>,
    live: Arc<Live>,
}

impl CameraView {
    /// The view of camera `name` reading `source` (redacted), with its parts.
    pub fn new(
        name: &str,
        direction: Option<Direction>,
        source: String,
        stats: Arc<CameraStats>,
        captures: Arc<Captures>,
        live: Arc<Live>,
    ) -> CameraView {
        CameraView {
            name: name.to_string(),
            direction,
            source,
            stats,
            captures,
            live,
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its direction, when set.
    pub fn direction(&self) -> Option<Direction> {
        self.direction
    }

    /// Where its frames come from, as it may be shown (credentials redacted).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<CameraStats> {
        &self.stats
    }

    /// The frames `/people/{id}/capture` waits for.
    pub fn captures(&self) -> &Arc<Captures> {
        &self.captures
    }

    /// Its live view.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// `/health`'s object for it: the counters (as `camera` always had them), its live view,
    /// and its name and direction.
    pub fn to_json(&self) -> Value {
        let mut answer = self.stats.to_json();
        answer["live"] = self.live.to_json();
        answer["name"] = json!(self.name);
        answer["direction"] = json!(self.direction);
        answer
    }

    /// Whether it delivers frames (see [`CameraStats::healthy`]).
    pub fn healthy(&self, stale_after: Duration) -> bool {
        self.stats.healthy(stale_after)
    }
}
