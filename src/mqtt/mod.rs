//! Several boxes, one broker: events, box status and the gallery over MQTT (3.1.1), through
//! one connection per box. This module carries bytes: what a gallery message means, and what a
//! box does with one, is [`crate::replication`]'s; [`GalleryLink`] only moves them between the
//! broker and the [`crate::replication::Replicator`].
//!
//! Topics (`<prefix>` is `MQTT_TOPIC_PREFIX`, default `face-attendance`; `<box_id>` is
//! `BOX_ID`, default the host name):
//! - `<prefix>/<box_id>/events`: every event, QoS 1, from the outbox (the [`crate::events::Sink`]
//!   "mqtt"): the webhook's JSON plus `box_id`; at least once, in order, same `event_id`.
//! - `<prefix>/<box_id>/status`: retained `online` at every connect, `offline` as the last will
//!   and at a clean stop.
//! - `<prefix>/<box_id>/health`: retained, `/health`'s JSON at every connect and every
//!   `MQTT_STATUS_SECONDS`, while connected.
//! - `<prefix>/<box_id>/last_person`: retained, the student id of the last attendance
//!   ([`BoxStatus::publish_last_person`]), for Home Assistant.
//! - `homeassistant/<component>/<box_id>/<object>/config`: retained Home Assistant discovery
//!   configs (with `MQTT_HA_DISCOVERY`), sent on every connect.
//! - `<prefix>/gallery/<student_id>`: replication (`GALLERY_SYNC`), one retained message per
//!   person, QoS 1 (empty: deleted); subscribed to as `<prefix>/gallery/+`.
//! - `<prefix>/gallery-deleted/<student_id>`: replication's tombstones, one retained message per
//!   deleted id, QoS 1: the deletion's version (empty: none, cleared when the person comes
//!   back); subscribed to as `<prefix>/gallery-deleted/+`. The formats and rules are in
//!   [`crate::replication`].
//!
//! Parts: [`Mqtt`] (connection.rs) the connection, [`MqttSink`] (events.rs) the outbox's sink,
//! [`BoxStatus`] (status.rs) the health summary and Home Assistant discovery, [`GalleryLink`]
//! (gallery.rs) the gallery topics to and from replication.

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

use crate::replication::ReplicationMode;

/// The MQTT settings, checked at start-up (plain values: clap stays in src/cli).
#[derive(Debug, Clone)]
pub struct MqttSettings {
    /// `mqtt://host:1883` or `mqtts://host:8883`.
    pub url: String,
    /// PEM roots for `mqtts://` instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// The broker's user name (`MQTT_USERNAME`).
    pub username: Option<String>,
    /// Its password (`MQTT_PASSWORD`).
    pub password: Option<String>,
    /// This box's name in topics and in gallery versions (default: the host name).
    pub box_id: String,
    /// The first level of every topic (`MQTT_TOPIC_PREFIX`).
    pub topic_prefix: String,
    /// How often the health summary is published (`MQTT_STATUS_SECONDS`).
    pub status_every: Duration,
    /// Whether Home Assistant discovery configs are published (`MQTT_HA_DISCOVERY`).
    pub ha_discovery: bool,
    /// How this box takes part in gallery replication (`GALLERY_SYNC`).
    pub gallery_sync: ReplicationMode,
    /// The trust list (`GALLERY_TRUSTED_KEYS`; none: `<data dir>/gallery-trusted-keys`).
    pub gallery_trusted_keys: Option<PathBuf>,
    /// People one publisher may change per hour (`GALLERY_SYNC_PEOPLE_PER_HOUR`).
    pub gallery_people_per_hour: u32,
    /// Encodings one publisher may send per hour (`GALLERY_SYNC_ENCODINGS_PER_HOUR`).
    pub gallery_encodings_per_hour: u32,
    /// Most gallery messages waiting (`GALLERY_SYNC_MAX_WAITING`).
    pub gallery_max_waiting: usize,
}
