//! The outbox's MQTT sink: each event, as the webhook's JSON plus `box_id`, published with QoS 1
//! on `<prefix>/<box_id>/events`; `Sent` only on the broker's PUBACK.
//!
//! Not connected: `Queued` at once (the outbox keeps the event and retries with its back-off);
//! no PUBACK within the timeout or the connection lost before it: `Queued` too. The same event
//! may so arrive twice (same `event_id`): consumers deduplicate, as with the webhook.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::Mqtt;
use crate::events::{Outgoing, Report, Sink, Status};

/// How long one attempt waits for the PUBACK by default.
pub const DEFAULT_EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes each event to `<prefix>/<box_id>/events` (QoS 1, waiting for the PUBACK): a durable
/// sink, as the webhook.
pub struct MqttSink {
    mqtt: Arc<Mqtt>,
    topic: String,
    timeout: Duration,
}

impl MqttSink {
    /// The sink over `mqtt`, each attempt waiting at most `timeout` for the PUBACK.
    pub fn new(mqtt: Arc<Mqtt>, timeout: Duration) -> MqttSink {
        let topic = mqtt.topic("events");
        MqttSink {
            mqtt,
            topic,
            timeout,
        }
    }

    /// The message for `payload` (the webhook's JSON text): the object with `box_id` added; a
    /// payload that is not an object (never from the outbox) goes as `{"box_id", "payload"}`.
    pub fn message(&self, payload: &str) -> Vec<u8> {
        let box_id = Value::String(self.mqtt.box_id().to_string());
        let body = match serde_json::from_str::<Value>(payload) {
            Ok(Value::Object(mut object)) => {
                object.insert("box_id".into(), box_id);
                Value::Object(object)
            }
            Ok(other) => serde_json::json!({"box_id": box_id, "payload": other}),
            Err(_) => serde_json::json!({"box_id": box_id, "payload": payload}),
        };
        body.to_string().into_bytes()
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        let message = self.message(event.payload);
        match self
            .mqtt
            .publish_acked(&self.topic, message, false, self.timeout)
        {
            Ok(()) => Report {
                status: Status::Sent,
                http_status: None,
                message: None,
            },
            Err(e) => Report {
                status: Status::Queued,
                http_status: None,
                message: Some(e.to_string()),
            },
        }
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    /// An attempt while the broker is away fails at once and costs nothing: try often, so the
    /// backlog goes out within seconds of the reconnection.
    fn retry_max(&self) -> Duration {
        Duration::from_secs(5)
    }
}
