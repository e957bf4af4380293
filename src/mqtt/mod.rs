//! Several boxes, one broker: events, box status and the gallery over MQTT (3.1.1), through
//! one connection per box. (Being built for issue 15: this file states the contract the parts
//! are written against.)
//!
//! Topics (`<prefix>` is `MQTT_TOPIC_PREFIX`, default `face-attendance`):
//! - `<prefix>/<box_id>/events`: every event, QoS 1, from the outbox (the [`crate::events::Sink`]
//!   "mqtt"): the webhook's JSON plus `box_id`; at least once, in order, same `event_id`.
//! - `<prefix>/<box_id>/status`: retained `online` / `offline` (the last will), and a retained
//!   health summary every `MQTT_STATUS_SECONDS` on `<prefix>/<box_id>/health`.
//! - `<prefix>/gallery/<student_id>`: one retained message per person (empty: deleted).
//! - `<prefix>/<box_id>/last_person`: retained, the student id of the last attendance
//!   ([`BoxStatus::publish_last_person`]), for Home Assistant.
//! - `homeassistant/<component>/<box_id>/<object>/config`: retained Home Assistant discovery
//!   configs (with `MQTT_HA_DISCOVERY`), sent on every connect.
//!
//! Parts: [`Mqtt`] (connection.rs) the connection, [`MqttSink`] (events.rs) the outbox's sink,
//! [`BoxStatus`] (status.rs) the health summary and Home Assistant discovery.

mod connection;
mod events;
mod gallery;
mod status;

pub use connection::{
    valid_level, BrokerUrl, Handler, Hook, Mqtt, MqttError, MqttStats, FIRST_RETRY, KEEP_ALIVE,
    MAX_INCOMING_BYTES, MAX_PACKET_BYTES, MAX_RETRY, PUBLISH_QUEUE,
};
pub use events::{MqttSink, DEFAULT_EVENT_TIMEOUT};
pub use gallery::GalleryLink;
pub use status::{discovery_configs, BoxStatus, HealthSummary, LastPersonSink};

use std::path::PathBuf;
use std::time::Duration;

/// How a box takes part in gallery sync (`GALLERY_SYNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// Neither publishes nor applies gallery messages.
    Off,
    /// Applies what other boxes publish; publishes nothing.
    Pull,
    /// Applies and publishes.
    Both,
}

/// The MQTT settings, checked at start-up (plain values: clap stays in src/cli).
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// PEM roots for `mqtts://` instead of the system's.
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// This box's name in topics and in gallery versions (default: the host name).
    pub box_id: String,
    pub topic_prefix: String,
    pub status_every: Duration,
    pub ha_discovery: bool,
    pub gallery_sync: SyncMode,
}
