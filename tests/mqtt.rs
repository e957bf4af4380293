//! The MQTT connection, sink and status against a real Mosquitto (tests/common/mosquitto.rs),
//! watched by an independent client (rumqttc used directly, not through `Mqtt`).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::mosquitto::{self, Mosquitto, Options, Proxy};
use common::wait_for;
use face_attendance::events::{Outgoing, Sink, Status};
use face_attendance::mqtt::{BoxStatus, Mqtt, MqttSettings, MqttSink, MAX_INCOMING_BYTES};
use face_attendance::replication::ReplicationMode;
use rumqttc::{Client, Event, Incoming, MqttOptions, QoS};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

fn settings(url: &str, box_id: &str) -> MqttSettings {
    MqttSettings {
        url: url.to_string(),
        ca_file: None,
        username: None,
        password: None,
        box_id: box_id.to_string(),
        topic_prefix: "fa-test".into(),
        status_every: Duration::from_secs(60),
        ha_discovery: false,
        gallery_sync: ReplicationMode::Off,
        gallery_trusted_keys: None,
        gallery_people_per_hour: 2000,
        gallery_encodings_per_hour: 10000,
        gallery_max_waiting: 5000,
    }
}

type Messages = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An independent client that records every message on `filters` (retained ones included).
struct Observer {
    client: Client,
    messages: Messages,
}

impl Observer {
    fn start(port: u16, filters: &[&str]) -> Observer {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "observer-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_max_packet_size(64 << 20, 64 << 20);
        let (client, mut connection) = Client::new(options, 64);
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).unwrap();
        }
        let messages: Messages = Arc::default();
        let subscribed = Arc::new(AtomicUsize::new(0));
        let (seen, acks) = (messages.clone(), subscribed.clone());
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Incoming::Publish(p))) => seen
                        .lock()
                        .unwrap()
                        .push((p.topic.clone(), p.payload.to_vec())),
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        let n = filters.len();
        wait_for("the observer's SUBACKs", LIMIT, || {
            subscribed.load(Ordering::SeqCst) >= n
        });
        Observer { client, messages }
    }

    fn on(&self, topic: &str) -> Vec<Vec<u8>> {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn last(&self, topic: &str) -> Option<Vec<u8>> {
        self.on(topic).pop()
    }

    fn wait_last(&self, topic: &str, payload: &[u8]) {
        wait_for(&format!("{payload:?} on {topic}"), LIMIT, || {
            self.last(topic).as_deref() == Some(payload)
        });
    }

    fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .unwrap();
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        let _ = self.client.disconnect();
    }
}

fn connected(mqtt: &Mqtt) {
    wait_for("the connection", LIMIT, || mqtt.is_connected());
}

#[test]
fn online_at_connect_and_offline_at_a_clean_stop() {
    if !mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start();
    let mqtt = Mqtt::start(&settings(&broker.url(), "box-a")).unwrap();
    connected(&mqtt);
    assert_eq!(mqtt.topic("status"), "fa-test/box-a/status");
    // A client that comes later sees the retained `online`.
    let watcher = Observer::start(broker.port(), &["fa-test/box-a/status"]);
    watcher.wait_last("fa-test/box-a/status", b"online");
    mqtt.stop();
    watcher.wait_last("fa-test/box-a/status", b"offline");
    assert!(!mqtt.is_connected());
    let later = Observer::start(broker.port(), &["fa-test/box-a/status"]);
    later.wait_last("fa-test/box-a/status", b"offline");
    let stats = mqtt.stats().to_json();
    assert_eq!(stats["connects"], 1, "{stats}");
}

#[test]
fn the_last_will_says_offline_when_the_connection_dies_and_online_comes_back() {
    if !mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start();
    let proxy = Proxy::start(broker.port());
    let watcher = Observer::start(broker.port(), &["fa-test/box-w/status"]);
    let mqtt = Mqtt::start(&settings(&proxy.url(), "box-w")).unwrap();
    connected(&mqtt);
    watcher.wait_last("fa-test/box-w/status", b"online");
    // No DISCONNECT reaches the broker: it publishes the will.
    proxy.cut();
    wait_for("the will's offline", LIMIT, || {
        watcher
            .on("fa-test/box-w/status")
            .iter()
            .any(|p| p == b"offline")
    });
    // The box reconnects by itself (through the proxy again) and says online again.
    wait_for("a second connect", LIMIT, || mqtt.stats().connects() >= 2);
    watcher.wait_last("fa-test/box-w/status", b"online");
    assert!(mqtt.stats().to_json()["connection_errors"].as_u64() >= Some(1));
}

#[test]
fn handlers_get_retained_messages_and_subscriptions_survive_a_broker_restart() {
    if !mosquitto::available() {
        return;
    }
    let mut broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let publisher = Observer::start(broker.port(), &[]);
    publisher.publish("fa-test/gallery/ana", b"v1", true);
    let mqtt = Mqtt::start(&settings(&broker.url(), "box-r")).unwrap();
    let got: Messages = Arc::default();
    let sink = got.clone();
    mqtt.subscribe(
        "fa-test/gallery/+",
        Arc::new(move |topic, payload| {
            sink.lock()
                .unwrap()
                .push((topic.to_string(), payload.to_vec()))
        }),
    )
    .unwrap();
    let count = |payload: &[u8]| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|(t, p)| t == "fa-test/gallery/ana" && p == payload)
            .count()
    };
    wait_for("the retained message", LIMIT, || count(b"v1") == 1);
    drop(publisher);
    broker.stop();
    wait_for("the lost connection", LIMIT, || !mqtt.is_connected());
    broker.start_again();
    // Saved by the broker, sent again at the re-subscription.
    wait_for("the retained message again", LIMIT, || count(b"v1") == 2);
    assert!(mqtt.stats().connects() >= 2);
    // The subscription is live: a new message comes too.
    let publisher = Observer::start(broker.port(), &[]);
    publisher.publish("fa-test/gallery/ana", b"v2", false);
    wait_for("the new message", LIMIT, || count(b"v2") == 1);
}

#[test]
fn the_sink_sends_with_box_id_queues_at_once_while_the_broker_is_down_then_sends_again() {
    if !mosquitto::available() {
        return;
    }
    let mut broker = Mosquitto::start();
    let mqtt = Mqtt::start(&settings(&broker.url(), "box-s")).unwrap();
    connected(&mqtt);
    let mut sink = MqttSink::new(mqtt.clone(), Duration::from_secs(5));
    assert_eq!(sink.name(), "mqtt");
    assert!(sink.durable());
    let watcher = Observer::start(broker.port(), &["fa-test/box-s/events"]);
    let body = json!({"event": "attendance", "event_id": "e-1", "student_id": "ana"}).to_string();
    let event = Outgoing {
        event_id: "e-1",
        payload: &body,
        webhook: None,
        repeat: false,
    };
    let report = sink.deliver(&event);
    assert_eq!(report.status, Status::Sent, "{report:?}");
    wait_for("the event", LIMIT, || {
        !watcher.on("fa-test/box-s/events").is_empty()
    });
    let sent: Value = serde_json::from_slice(&watcher.on("fa-test/box-s/events")[0]).unwrap();
    assert_eq!(
        sent,
        json!({"event": "attendance", "event_id": "e-1", "student_id": "ana", "box_id": "box-s"})
    );

    broker.stop();
    wait_for("the lost connection", LIMIT, || !mqtt.is_connected());
    let report = sink.deliver(&event);
    assert_eq!(report.status, Status::Queued, "{report:?}");
    // Refused at once, not after the PUBACK timeout.
    let message = report.message.unwrap_or_default();
    assert!(message.contains("not connected"), "{message}");

    broker.start_again();
    connected(&mqtt);
    let watcher = Observer::start(broker.port(), &["fa-test/box-s/events"]);
    let report = sink.deliver(&Outgoing {
        event_id: "e-2",
        payload: &json!({"event_id": "e-2"}).to_string(),
        webhook: None,
        repeat: false,
    });
    assert_eq!(report.status, Status::Sent, "{report:?}");
    wait_for("the event after the outage", LIMIT, || {
        !watcher.on("fa-test/box-s/events").is_empty()
    });
    let stats = mqtt.stats().to_json();
    assert!(stats["published"].as_u64() >= Some(2), "{stats}");
    assert!(stats["publish_failures"].as_u64() >= Some(1), "{stats}");
}

#[test]
fn a_10_mb_retained_message_is_dropped_counted_and_the_connection_stays() {
    if !mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'x'; 10 * 1024 * 1024]).unwrap();
    broker.publish_file("fa-test/gallery/huge", &big, true);
    let mqtt = Mqtt::start(&settings(&broker.url(), "box-o")).unwrap();
    let got: Messages = Arc::default();
    let sink = got.clone();
    mqtt.subscribe(
        "fa-test/gallery/#",
        Arc::new(move |topic, payload| {
            sink.lock()
                .unwrap()
                .push((topic.to_string(), payload.to_vec()))
        }),
    )
    .unwrap();
    wait_for("the oversize count", LIMIT, || mqtt.stats().oversize() == 1);
    // A message just at the limit is handled; a later normal one too: the connection stayed.
    let publisher = Observer::start(broker.port(), &[]);
    publisher.publish(
        "fa-test/gallery/max",
        &vec![b'y'; MAX_INCOMING_BYTES],
        false,
    );
    publisher.publish("fa-test/gallery/ana", b"small", false);
    wait_for("the normal messages", LIMIT, || {
        got.lock().unwrap().len() == 2
    });
    let got = got.lock().unwrap();
    assert_eq!(got[0].1.len(), MAX_INCOMING_BYTES);
    assert_eq!(
        got[1],
        ("fa-test/gallery/ana".to_string(), b"small".to_vec())
    );
    assert!(got.iter().all(|(t, _)| t != "fa-test/gallery/huge"));
    let stats = mqtt.stats().to_json();
    assert_eq!(stats["connects"], 1, "{stats}");
    assert_eq!(stats["connection_errors"], 0, "{stats}");
    assert_eq!(stats["received"], 3, "{stats}");
}

#[test]
fn the_health_summary_and_home_assistant_discovery_are_retained() {
    if !mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start();
    let mut s = settings(&broker.url(), "box-h");
    s.ha_discovery = true;
    let mqtt = Mqtt::start(&s).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let status = BoxStatus::start(
        &mqtt,
        Duration::from_secs(1),
        true,
        Arc::new(move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            json!({"ok": true, "camera": {"state": "running"}, "outbox": {"pending": 3}, "n": n})
        }),
    )
    .unwrap();
    connected(&mqtt);
    status.publish_last_person("ana").unwrap();
    let watcher = Observer::start(broker.port(), &["homeassistant/#", "fa-test/box-h/#"]);
    watcher.wait_last("fa-test/box-h/last_person", b"ana");
    // Retained, and again on the timer.
    wait_for("two summaries", LIMIT, || {
        watcher.on("fa-test/box-h/health").len() >= 2
    });
    let health: Value =
        serde_json::from_slice(&watcher.last("fa-test/box-h/health").unwrap()).unwrap();
    assert_eq!(health["outbox"]["pending"], 3);
    for (topic, state_topic) in [
        (
            "homeassistant/sensor/box-h/last_person/config",
            "fa-test/box-h/last_person",
        ),
        (
            "homeassistant/binary_sensor/box-h/camera/config",
            "fa-test/box-h/health",
        ),
        (
            "homeassistant/sensor/box-h/outbox_pending/config",
            "fa-test/box-h/health",
        ),
    ] {
        let config = watcher
            .last(topic)
            .unwrap_or_else(|| panic!("no retained {topic}"));
        let config: Value = serde_json::from_slice(&config).unwrap();
        assert_eq!(config["state_topic"], state_topic, "{config}");
        assert_eq!(config["availability_topic"], "fa-test/box-h/status");
        assert_eq!(config["payload_available"], "online");
        assert_eq!(config["payload_not_available"], "offline");
        assert_eq!(config["device"]["identifiers"], json!(["box-h"]));
        assert_eq!(config["device"]["model"], "face-attendance");
        assert_eq!(config["device"]["sw_version"], env!("CARGO_PKG_VERSION"));
        assert!(config["unique_id"].as_str().unwrap().starts_with("box-h_"));
        assert!(config["name"].is_string());
    }
    let camera: Value = serde_json::from_slice(
        &watcher
            .last("homeassistant/binary_sensor/box-h/camera/config")
            .unwrap(),
    )
    .unwrap();
    assert!(camera["value_template"]
        .as_str()
        .unwrap()
        .contains("camera.state"));
    status.stop();
    let before = calls.load(Ordering::SeqCst);
    mqtt.stop();
    assert_eq!(calls.load(Ordering::SeqCst), before, "summary after stop");
}

#[test]
fn mqtts_with_a_ca_file_and_a_password() {
    if !mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        tls: true,
        user: Some(("gate".into(), "s3cret".into())),
        ..Options::default()
    });
    assert!(broker.url().starts_with("mqtts://"));
    let mut s = settings(&broker.url(), "box-t");
    s.ca_file = Some(broker.ca_file());
    s.username = Some("gate".into());
    s.password = Some("s3cret".into());
    let mqtt = Mqtt::start(&s).unwrap();
    connected(&mqtt);
    mqtt.publish_acked(
        &mqtt.topic("x"),
        b"1".to_vec(),
        false,
        Duration::from_secs(5),
    )
    .unwrap();

    // A wrong password: refused, counted, retried, never connected.
    s.box_id = "box-t2".into();
    s.password = Some("wrong".into());
    let refused = Mqtt::start(&s).unwrap();
    wait_for("refusals", LIMIT, || {
        refused.stats().to_json()["connection_errors"].as_u64() >= Some(2)
    });
    assert!(!refused.is_connected());
    // The system's roots do not know this CA: the certificate is refused.
    s.box_id = "box-t3".into();
    s.password = Some("s3cret".into());
    s.ca_file = None;
    let untrusted = Mqtt::start(&s).unwrap();
    wait_for("a TLS refusal", LIMIT, || {
        untrusted.stats().to_json()["connection_errors"].as_u64() >= Some(1)
    });
    assert!(!untrusted.is_connected());
    let error = untrusted.stats().to_json()["last_error"].to_string();
    assert!(
        error.contains("TLS") || error.contains("certificate"),
        "{error}"
    );
}
