//! The box's state for dashboards: a retained health summary on `<prefix>/<box_id>/health`
//! every `status_every` (and at each connect), the last recognized person on
//! `<prefix>/<box_id>/last_person`, and, with `ha_discovery`, Home Assistant's MQTT discovery
//! configs, retained, at each connect.
//!
//! The summary is whatever the server's closure gives (`/health`'s JSON): the discovery configs
//! read `camera.state` and `outbox.pending` from it. Every entity is available while the status
//! topic says `online` (the connection's retained `online`, or the last will's `offline`).
//!
//! A summary is published only while connected: a stale one is not queued for later.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Mqtt, MqttError};
use crate::events::{Outgoing, Report, Sink, Status};
use crate::locks::{lock, wait_timeout};

/// What the server gives for the summary: `/health`'s JSON.
pub type HealthSummary = Arc<dyn Fn() -> Value + Send + Sync>;

/// Home Assistant's discovery prefix (its default).
const HA_PREFIX: &str = "homeassistant";

/// The health timer and the last person's topic (see the module's contract).
pub struct BoxStatus {
    mqtt: Arc<Mqtt>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Cleared at stop: the connect hook then does nothing.
    active: Arc<AtomicBool>,
}

/// Publishes the summary, retained, when connected.
fn publish_summary(mqtt: &Mqtt, summary: &HealthSummary) {
    if !mqtt.is_connected() {
        return;
    }
    let body = summary().to_string().into_bytes();
    if let Err(e) = mqtt.publish(&mqtt.topic("health"), body, true) {
        log::warn!("mqtt: health summary not published: {e}");
    }
}

/// The Home Assistant discovery configs of `mqtt`'s box: (topic, JSON) for the last person
/// (sensor), the camera (binary_sensor) and the outbox depth (sensor).
pub fn discovery_configs(mqtt: &Mqtt) -> Vec<(String, Value)> {
    let box_id = mqtt.box_id();
    let device = json!({
        "identifiers": [box_id],
        "name": format!("Face attendance {box_id}"),
        "model": "face-attendance",
        "manufacturer": "face-attendance",
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let common = |name: &str, object: &str, state_topic: String| {
        json!({
            "name": name,
            "unique_id": format!("{box_id}_{object}"),
            "state_topic": state_topic,
            "availability_topic": mqtt.topic("status"),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device.clone(),
        })
    };
    let mut last_person = common("Last person", "last_person", mqtt.topic("last_person"));
    last_person["icon"] = json!("mdi:account-check");
    let mut camera = common("Camera", "camera", mqtt.topic("health"));
    camera["device_class"] = json!("running");
    camera["payload_on"] = json!("ON");
    camera["payload_off"] = json!("OFF");
    camera["value_template"] = json!(
        "{{ 'ON' if value_json.camera is defined and value_json.camera.state == 'running' else 'OFF' }}"
    );
    let mut outbox = common("Outbox pending", "outbox_pending", mqtt.topic("health"));
    outbox["value_template"] =
        json!("{{ value_json.outbox.pending if value_json.outbox is defined else 0 }}");
    outbox["unit_of_measurement"] = json!("events");
    outbox["state_class"] = json!("measurement");
    outbox["icon"] = json!("mdi:tray-full");
    let topic =
        |component: &str, object: &str| format!("{HA_PREFIX}/{component}/{box_id}/{object}/config");
    vec![
        (topic("sensor", "last_person"), last_person),
        (topic("binary_sensor", "camera"), camera),
        (topic("sensor", "outbox_pending"), outbox),
    ]
}

impl BoxStatus {
    /// Registers the connect hook (summary, and discovery with `ha_discovery`) and starts the
    /// timer thread that publishes the summary every `every`.
    pub fn start(
        mqtt: &Arc<Mqtt>,
        every: Duration,
        ha_discovery: bool,
        summary: HealthSummary,
    ) -> Result<BoxStatus, MqttError> {
        let active = Arc::new(AtomicBool::new(true));
        let weak: Weak<Mqtt> = Arc::downgrade(mqtt);
        let (hook_summary, hook_active) = (summary.clone(), active.clone());
        mqtt.on_connect(Arc::new(move || {
            let Some(mqtt) = weak.upgrade() else { return };
            if !hook_active.load(Ordering::Relaxed) {
                return;
            }
            if ha_discovery {
                for (topic, config) in discovery_configs(&mqtt) {
                    if let Err(e) = mqtt.publish(&topic, config.to_string().into_bytes(), true) {
                        log::warn!("mqtt: discovery config {topic} not published: {e}");
                    }
                }
            }
            publish_summary(&mqtt, &hook_summary);
        }));
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (timer_stop, weak) = (stop.clone(), Arc::downgrade(mqtt));
        let thread = std::thread::Builder::new()
            .name("mqtt-status".into())
            .spawn(move || {
                let mut next = Instant::now() + every;
                loop {
                    let mut stopped = lock(&timer_stop.0);
                    // Waits until `next` (a spurious wake-up waits again), or a stop.
                    while !*stopped && Instant::now() < next {
                        let left = next.saturating_duration_since(Instant::now());
                        stopped = wait_timeout(&timer_stop.1, stopped, left);
                    }
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    next += every;
                    let Some(mqtt) = weak.upgrade() else { return };
                    publish_summary(&mqtt, &summary);
                }
            })
            .map_err(|e| MqttError::Thread(e.to_string()))?;
        Ok(BoxStatus {
            mqtt: mqtt.clone(),
            stop,
            thread: Mutex::new(Some(thread)),
            active,
        })
    }

    /// The retained last recognized person (Home Assistant's "Last person" sensor); queued,
    /// returns at once.
    pub fn publish_last_person(&self, student_id: &str) -> Result<(), MqttError> {
        self.mqtt.publish(
            &self.mqtt.topic("last_person"),
            student_id.as_bytes().to_vec(),
            true,
        )
    }

    /// Stops the timer (joined). The connect hook stays registered (it ends with the
    /// connection) but does nothing any more.
    pub fn stop(&self) {
        self.active.store(false, Ordering::Relaxed);
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                log::error!("mqtt: the status thread panicked");
            }
        }
    }
}

impl Drop for BoxStatus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last recognized person as a live sink: each attendance event's `student_id`, retained
/// on `<prefix>/<box_id>/last_person` (Home Assistant's "Last person" sensor). Strangers and
/// ambiguous faces leave it as it was.
pub struct LastPersonSink {
    mqtt: Arc<Mqtt>,
    topic: String,
}

impl LastPersonSink {
    /// The sink over `mqtt`, retained on `<prefix>/<box_id>/last_person`.
    pub fn new(mqtt: Arc<Mqtt>) -> LastPersonSink {
        let topic = mqtt.topic("last_person");
        LastPersonSink { mqtt, topic }
    }
}

impl Sink for LastPersonSink {
    fn name(&self) -> &'static str {
        "mqtt-last-person"
    }

    fn durable(&self) -> bool {
        false
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        let message: Value = serde_json::from_str(event.payload).unwrap_or(Value::Null);
        let person = message["student_id"]
            .as_str()
            .unwrap_or(crate::gallery::UNKNOWN);
        if message["type"] != "recognized" || person == crate::gallery::UNKNOWN {
            return Report::status(Status::Skipped);
        }
        match self
            .mqtt
            .publish(&self.topic, person.as_bytes().to_vec(), true)
        {
            Ok(()) => Report::status(Status::Sent),
            Err(e) => Report {
                status: Status::Queued,
                http_status: None,
                message: Some(e.to_string()),
            },
        }
    }

    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}
