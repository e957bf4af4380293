//! One MQTT connection per box: rumqttc's blocking `Client` and its `Connection` driven on a
//! thread of its own ("mqtt").
//!
//! Contract:
//! - [`Mqtt::start`] checks the URL and the CA file and starts the thread; it does not wait for
//!   the broker. The thread reconnects forever, pausing between attempts with a back-off that
//!   doubles from [`FIRST_RETRY`] to [`MAX_RETRY`]; it never spins and never panics.
//! - The broker keeps a retained `offline` on `<prefix>/<box_id>/status` as the last will; on
//!   every (re)connect the box publishes a retained `online` there, subscribes again to every
//!   filter given to [`Mqtt::subscribe`], then calls the [`Mqtt::on_connect`] hooks.
//!   [`Mqtt::stop`] publishes `offline` itself, disconnects and joins the thread.
//! - Every publish is QoS 1. [`Mqtt::publish`] queues (at most [`PUBLISH_QUEUE`] waiting, then
//!   [`MqttError::QueueFull`]: the publish is dropped, the caller is told at once).
//!   [`Mqtt::publish_acked`] refuses at once when not connected ([`MqttError::NotConnected`]:
//!   the outbox keeps the event) and otherwise waits for the broker's PUBACK, at most `timeout`.
//! - Handlers ([`Mqtt::subscribe`]) and hooks ([`Mqtt::on_connect`]) run on the connection
//!   thread: while one runs, nothing is sent or received. They must be quick, or hand the work to
//!   another thread. A panic in one is caught and counted (malformed), the connection stays.
//! - Incoming payloads above [`MAX_INCOMING_BYTES`] never reach a handler: they are counted
//!   (`oversize`) and dropped. rumqttc closes the connection on a packet above its own limit
//!   (`PayloadSizeLimitExceeded`, before reading the payload), and a retained message would come
//!   again at every reconnect, so that limit is set well above ours ([`MAX_PACKET_BYTES`]): a
//!   hostile big message is read (transiently) and dropped, the connection stays. Above
//!   [`MAX_PACKET_BYTES`] the broker's own limit must protect the box (mosquitto:
//!   `message_size_limit` or `max_packet_size`); such a packet is counted as oversize and the
//!   reconnects go at the back-off's slowest pace.
//!
//! Matching PUBACKs: rumqttc 0.25's blocking client has no per-publish notice. It reports
//! `Outgoing::Publish(pkid)` when it takes a request from its channel, in channel order, and
//! `Incoming::PubAck(pkid)`. So every publish is put in the channel under the [`Tracker`]'s lock
//! together with its place in a FIFO; the FIFO's front gets the pkid of each `Outgoing::Publish`.
//! When a connection is lost, rumqttc moves what it had in flight and what was in its channel to
//! `EventLoop::pending`, which a clean session then discards: this module takes that list and
//! fails those waiters (and drops as many FIFO entries), so the FIFO stays aligned with the channel.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttc::{
    Client, Connection, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing, QoS,
    Request, TlsConfiguration, Transport,
};
use serde_json::{json, Value};

use super::MqttSettings;
use crate::locks::{lock, wait_timeout};
use crate::metrics::Family;

/// The largest payload a handler is given; larger ones are counted (`oversize`) and dropped.
pub const MAX_INCOMING_BYTES: usize = 1024 * 1024;
/// rumqttc's limit on one incoming packet (it closes the connection above it). Well above
/// [`MAX_INCOMING_BYTES`] so that a big message is dropped here, not by a reconnect loop.
pub const MAX_PACKET_BYTES: usize = 32 * 1024 * 1024;
/// The largest packet this box sends: a payload of [`MAX_INCOMING_BYTES`] (what other boxes
/// accept) and its topic.
const MAX_OUTGOING_PACKET: usize = MAX_INCOMING_BYTES + 64 * 1024;
/// Publishes waiting for the connection at most; past it, [`MqttError::QueueFull`].
pub const PUBLISH_QUEUE: usize = 64;
/// rumqttc's request channel: the publish queue plus room for the requests of a reconnect
/// (online, subscriptions, disconnect), which are never refused for a full queue.
const CHANNEL: usize = PUBLISH_QUEUE * 2;
/// Keep-alive: a ping every 15 s costs nothing on a LAN; the broker gives the last will of a box
/// that lost power or network after 1.5x this (~23 s), and the box notices a dead broker within
/// two periods. Shorter would only add traffic; longer would leave Home Assistant stale.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// One connection attempt (TCP, TLS and CONNACK) at most.
const CONNECT_TIMEOUT_SECS: u64 = 5;
/// The pause after the first failed attempt, doubled up to [`MAX_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_millis(500);
/// At most this long between attempts: a broker on the LAN that comes back is found again
/// within seconds, and one attempt a few seconds is nothing for it.
pub const MAX_RETRY: Duration = Duration::from_secs(8);
/// How long [`Mqtt::stop`] waits for the broker to take the `offline`.
const STOP_ACK: Duration = Duration::from_secs(2);

/// Why the broker connection or a publish failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// `MQTT_URL` does not parse.
    #[error("MQTT_URL must be mqtt://host[:port] or mqtts://host[:port], got {0:?}")]
    BadUrl(String),
    /// `MQTT_CA_FILE` cannot be read or holds no certificate.
    #[error("MQTT_CA_FILE {}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TLS setup failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// A topic or filter MQTT does not allow.
    #[error("not a valid MQTT topic or filter: {0:?}")]
    BadTopic(String),
    /// A message above the size limit (its size).
    #[error("payload of {0} bytes is above the limit of {MAX_INCOMING_BYTES}")]
    TooLarge(usize),
    /// Not connected now.
    #[error("not connected to the MQTT broker")]
    NotConnected,
    /// Too many publishes waiting.
    #[error("the MQTT publish queue is full ({PUBLISH_QUEUE} waiting): broker down or slow")]
    QueueFull,
    /// No PUBACK within the time given.
    #[error("no PUBACK from the MQTT broker within {0:?}")]
    Timeout(Duration),
    /// The connection dropped before the PUBACK.
    #[error("the connection to the MQTT broker was lost before its PUBACK")]
    ConnectionLost,
    /// The connection was stopped.
    #[error("the MQTT connection is stopped")]
    Stopped,
    /// The connection's thread could not start.
    #[error("could not start the MQTT thread: {0}")]
    Thread(String),
}

/// What a handler of [`Mqtt::subscribe`] is: topic and payload (at most [`MAX_INCOMING_BYTES`]).
pub type Handler = Arc<dyn Fn(&str, &[u8]) + Send + Sync>;
/// What [`Mqtt::on_connect`] calls after each CONNACK.
pub type Hook = Arc<dyn Fn() + Send + Sync>;

/// A broker address from `MQTT_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `mqtts://`: TLS to the broker.
    pub tls: bool,
    /// The broker's host name or address.
    pub host: String,
    /// Its port (1883, 8883 with TLS, unless given).
    pub port: u16,
}

impl BrokerUrl {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]` (IPv6 in brackets); nothing else: no path,
    /// no credentials (those are `MQTT_USERNAME` / `MQTT_PASSWORD`).
    pub fn parse(url: &str) -> Result<BrokerUrl, MqttError> {
        let bad = || MqttError::BadUrl(url.to_string());
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(bad());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad());
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(bad)?;
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
            }
        } else {
            match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        };
        if host.is_empty() || host.contains([':', '[', ']']) && !rest.starts_with('[') {
            return Err(bad());
        }
        Ok(BrokerUrl {
            tls,
            host: host.to_string(),
            port,
        })
    }
}

/// The connection's counters, for `/health` ([`MqttStats::to_json`]) and `/metrics`
/// ([`MqttStats::families`]), both read from one table ([`COUNTERS`]).
#[derive(Debug, Default)]
pub struct MqttStats {
    connected: AtomicBool,
    counters: [AtomicU64; COUNTERS.len()],
    last_error: Mutex<Option<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Counter {
    Connects = 0,
    ConnectionErrors,
    Published,
    PublishFailures,
    Received,
    Oversize,
    Malformed,
}

/// Name (in `/health`; `mqtt_<name>` in `/metrics`) and help of each counter, in [`Counter`]
/// order.
const COUNTERS: [(&str, &str); 7] = [
    ("connects", "Connections to the MQTT broker made (CONNACK)."),
    (
        "connection_errors",
        "Failed connection attempts and lost connections to the MQTT broker.",
    ),
    (
        "published",
        "Publishes the MQTT broker acknowledged (PUBACK).",
    ),
    (
        "publish_failures",
        "Publishes refused (queue full, not connected), lost or not acknowledged in time.",
    ),
    ("received", "Messages received on subscribed topics."),
    (
        "oversize",
        "Incoming messages above the size limit, dropped without being handled.",
    ),
    (
        "malformed",
        "Incoming messages that could not be used (bad content, failing handler).",
    ),
];

impl MqttStats {
    fn add(&self, counter: Counter) {
        self.counters[counter as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, counter: Counter) -> u64 {
        self.counters[counter as usize].load(Ordering::Relaxed)
    }

    /// Whether the broker connection is up now.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// A message on a subscribed topic that its handler could not use (gallery sync calls it).
    pub fn count_malformed(&self) {
        self.add(Counter::Malformed);
    }

    /// Messages refused for their size since the start.
    pub fn oversize(&self) -> u64 {
        self.get(Counter::Oversize)
    }

    /// Messages their handler could not use since the start.
    pub fn malformed(&self) -> u64 {
        self.get(Counter::Malformed)
    }

    /// Messages received since the start.
    pub fn received(&self) -> u64 {
        self.get(Counter::Received)
    }

    /// Connections made since the start (reconnects included).
    pub fn connects(&self) -> u64 {
        self.get(Counter::Connects)
    }

    fn set_error(&self, error: Option<String>) {
        *lock(&self.last_error) = error;
    }

    /// `/health`'s `mqtt` section: `connected`, every counter, `last_error` (the last connection
    /// error, null once connected again).
    pub fn to_json(&self) -> Value {
        let mut out = serde_json::Map::new();
        out.insert("connected".into(), json!(self.connected()));
        for (i, (name, _)) in COUNTERS.iter().enumerate() {
            out.insert(
                (*name).into(),
                json!(self.counters[i].load(Ordering::Relaxed)),
            );
        }
        out.insert("last_error".into(), json!(*lock(&self.last_error)));
        Value::Object(out)
    }

    /// The connection's part of `/metrics`, from the same counters.
    pub fn families(&self) -> Vec<Family> {
        let mut families =
            vec![
                Family::gauge("mqtt_connected", "1 while connected to the MQTT broker.")
                    .value(f64::from(u8::from(self.connected()))),
            ];
        for (i, (name, help)) in COUNTERS.iter().enumerate() {
            families.push(
                Family::counter(&format!("mqtt_{name}"), help)
                    .value(self.counters[i].load(Ordering::Relaxed) as f64),
            );
        }
        families
    }
}

/// What a waiting [`Mqtt::publish_acked`] is told.
enum Ack {
    Acked,
    Lost,
}

type Waiter = mpsc::SyncSender<Ack>;

/// Publishes between the caller and the broker's PUBACK (see the module's notes).
#[derive(Default)]
struct Tracker {
    /// In rumqttc's channel, in order: `Some` when someone waits for the PUBACK.
    queued: VecDeque<Option<Waiter>>,
    /// Sent, by pkid, until their PUBACK.
    inflight: HashMap<u16, Option<Waiter>>,
    /// A publish rumqttc holds back for a pkid collision (`Outgoing::AwaitAck`).
    collision: Option<(u16, Option<Waiter>)>,
}

fn tell(waiter: Option<Waiter>, ack: Ack) {
    if let Some(w) = waiter {
        // The caller may have stopped waiting (timeout): nothing to tell then.
        let _ = w.try_send(ack);
    }
}

struct Shared {
    client: Client,
    box_id: String,
    prefix: String,
    stats: Arc<MqttStats>,
    stopping: AtomicBool,
    tracker: Mutex<Tracker>,
    subscriptions: Mutex<Vec<(String, Handler)>>,
    hooks: Mutex<Vec<Hook>>,
    /// Wakes the back-off pause when stopping.
    wake: (Mutex<()>, Condvar),
}

/// The box's connection to the broker (see the module's contract).
pub struct Mqtt {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Mqtt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mqtt")
            .field("box_id", &self.shared.box_id)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// The rustls config for `mqtts://`: the CA file's roots, else the system's; on ring.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, MqttError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_err = |reason: String| MqttError::CaFile {
                path: path.to_path_buf(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let mut count = 0;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| ca_err(e.to_string()))?;
                roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
                count += 1;
            }
            if count == 0 {
                return Err(ca_err("no PEM certificate in it".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A system root rustls cannot use is skipped, as the system's own tools do.
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(MqttError::Tls(
                    "no system CA certificates found (install ca-certificates or set MQTT_CA_FILE)"
                        .into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `true` for a name that can stand as one topic level: non-empty, no `/`, `+`, `#`, NUL.
pub fn valid_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

impl Mqtt {
    /// Checks the settings (URL, CA file) and starts the connection thread; the broker may be
    /// down: the thread keeps trying.
    pub fn start(settings: &MqttSettings) -> Result<Arc<Mqtt>, MqttError> {
        let url = BrokerUrl::parse(settings.url.trim())?;
        if !valid_level(&settings.box_id) {
            return Err(MqttError::BadTopic(settings.box_id.clone()));
        }
        let prefix = settings.topic_prefix.clone();
        if !rumqttc::valid_topic(&prefix) || prefix.starts_with('/') || prefix.ends_with('/') {
            return Err(MqttError::BadTopic(prefix));
        }
        // The client id is the box id: unique per box, and a second process with the same id
        // takes the session over (the broker closes the first), as a replaced box should.
        let mut options = MqttOptions::new(
            format!("face-attendance-{}", settings.box_id),
            &url.host,
            url.port,
        );
        let status = format!("{prefix}/{}/status", settings.box_id);
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_OUTGOING_PACKET)
            .set_last_will(LastWill::new(&status, "offline", QoS::AtLeastOnce, true));
        if let Some(user) = settings.username.as_deref().filter(|u| !u.is_empty()) {
            options.set_credentials(user, settings.password.as_deref().unwrap_or(""));
        }
        if url.tls {
            let config = tls_config(settings.ca_file.as_deref())?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        } else if settings.ca_file.is_some() {
            return Err(MqttError::BadUrl(format!(
                "{} (MQTT_CA_FILE is set: use mqtts://)",
                settings.url
            )));
        }
        let (client, mut connection) = Client::new(options, CHANNEL);
        connection
            .eventloop
            .network_options
            .set_connection_timeout(CONNECT_TIMEOUT_SECS);
        let shared = Arc::new(Shared {
            client,
            box_id: settings.box_id.clone(),
            prefix,
            stats: Arc::new(MqttStats::default()),
            stopping: AtomicBool::new(false),
            tracker: Mutex::new(Tracker::default()),
            subscriptions: Mutex::new(Vec::new()),
            hooks: Mutex::new(Vec::new()),
            wake: (Mutex::new(()), Condvar::new()),
        });
        let runner = shared.clone();
        let thread = std::thread::Builder::new()
            .name("mqtt".into())
            .spawn(move || runner.run(&mut connection))
            .map_err(|e| MqttError::Thread(e.to_string()))?;
        Ok(Arc::new(Mqtt {
            shared,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// This box's id in topics (`MQTT_BOX_ID`).
    pub fn box_id(&self) -> &str {
        &self.shared.box_id
    }

    /// The topics' prefix (`MQTT_TOPIC_PREFIX`).
    pub fn topic_prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// `<prefix>/<box_id>/<suffix>`.
    pub fn topic(&self, suffix: &str) -> String {
        self.shared.topic(suffix)
    }

    /// Whether the broker connection is up now.
    pub fn is_connected(&self) -> bool {
        self.shared.stats.connected()
    }

    /// The connection's counters.
    pub fn stats(&self) -> &Arc<MqttStats> {
        &self.shared.stats
    }

    /// Queues a QoS 1 publish and returns at once: `QueueFull` when [`PUBLISH_QUEUE`] publishes
    /// already wait (broker down or slow). Queued while disconnected, it goes out on reconnect
    /// (unless the connection is lost again with it in flight: then it is dropped, counted).
    pub fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool) -> Result<(), MqttError> {
        self.shared.publish(topic, payload, retain, None, true)
    }

    /// Publishes with QoS 1 and waits for the broker's PUBACK, at most `timeout`. Not connected:
    /// `NotConnected` at once, nothing queued.
    pub fn publish_acked(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        timeout: Duration,
    ) -> Result<(), MqttError> {
        if !self.is_connected() {
            self.shared.stats.add(Counter::PublishFailures);
            return Err(MqttError::NotConnected);
        }
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared
            .publish(topic, payload, retain, Some(tx), true)?;
        match rx.recv_timeout(timeout) {
            Ok(Ack::Acked) => Ok(()),
            Ok(Ack::Lost) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(MqttError::ConnectionLost)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.shared.stats.add(Counter::PublishFailures);
                Err(MqttError::Timeout(timeout))
            }
        }
    }

    /// Subscribes to `filter` (QoS 1) now if connected and again after every reconnect; each
    /// message whose topic matches goes to `handler`, on the connection thread (quick, or hand
    /// over). A retained message comes again at each (re)subscription: handlers are idempotent.
    pub fn subscribe(&self, filter: &str, handler: Handler) -> Result<(), MqttError> {
        if !rumqttc::valid_filter(filter) {
            return Err(MqttError::BadTopic(filter.to_string()));
        }
        lock(&self.shared.subscriptions).push((filter.to_string(), handler));
        if self.is_connected() {
            // Not connected: the reconnect subscribes. A reconnect in between subscribes twice,
            // which the broker takes as one.
            self.shared
                .client
                .try_subscribe(filter, QoS::AtLeastOnce)
                .map_err(|_| MqttError::QueueFull)?;
        }
        Ok(())
    }

    /// Calls `hook` after every CONNACK (after `online` and the subscriptions), on the
    /// connection thread. A hook that needs this `Mqtt` holds a `Weak` (no cycle).
    pub fn on_connect(&self, hook: Hook) {
        lock(&self.shared.hooks).push(hook.clone());
        if self.is_connected() {
            // Connected already: the hook would otherwise wait for the next reconnect.
            hook();
        }
    }

    /// Publishes the retained `offline` (when connected, at most 2 s), disconnects and joins the
    /// thread (at most one connection attempt, 5 s, when the broker is away). Idempotent.
    pub fn stop(&self) {
        let Some(thread) = lock(&self.thread).take() else {
            return;
        };
        if self.is_connected() {
            let status = self.topic("status");
            if let Err(e) = self.publish_acked(&status, b"offline".to_vec(), true, STOP_ACK) {
                log::warn!("mqtt: offline not acknowledged at stop: {e}");
            }
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        // The DISCONNECT makes the broker drop the will (`offline` is there already).
        let _ = self.shared.client.try_disconnect();
        self.shared.wake.1.notify_all();
        if thread.thread().id() == std::thread::current().id() {
            return; // stopped from a handler: the thread ends by itself.
        }
        if thread.join().is_err() {
            log::error!("mqtt: the connection thread panicked");
        }
    }
}

impl Drop for Mqtt {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn topic(&self, suffix: &str) -> String {
        format!("{}/{}/{suffix}", self.prefix, self.box_id)
    }

    /// Puts a QoS 1 publish in rumqttc's channel and its place in the FIFO, under one lock so
    /// that both keep the same order. `limited`: refused past [`PUBLISH_QUEUE`] waiting.
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        retain: bool,
        waiter: Option<Waiter>,
        limited: bool,
    ) -> Result<(), MqttError> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(MqttError::Stopped);
        }
        if !rumqttc::valid_topic(topic) {
            return Err(MqttError::BadTopic(topic.to_string()));
        }
        if payload.len() > MAX_INCOMING_BYTES {
            self.stats.add(Counter::PublishFailures);
            return Err(MqttError::TooLarge(payload.len()));
        }
        let mut tracker = lock(&self.tracker);
        if limited && tracker.queued.len() >= PUBLISH_QUEUE {
            self.stats.add(Counter::PublishFailures);
            return Err(MqttError::QueueFull);
        }
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                tracker.queued.push_back(waiter);
                Ok(())
            }
            Err(_) => {
                self.stats.add(Counter::PublishFailures);
                Err(MqttError::QueueFull)
            }
        }
    }

    fn run(self: Arc<Self>, connection: &mut Connection) {
        let mut backoff = FIRST_RETRY;
        let mut last_logged: Option<String> = None;
        loop {
            let event = match connection.recv() {
                Ok(event) => event,
                Err(_) => break, // every client is gone: nothing more to do
            };
            match event {
                Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
                Ok(event) => {
                    if matches!(event, Event::Incoming(Incoming::ConnAck(_))) {
                        backoff = FIRST_RETRY;
                        last_logged = None;
                    }
                    self.handle(event);
                }
                Err(e) => {
                    self.lost(connection, &e);
                    if self.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let text = e.to_string();
                    // Logged when it changes, not at every attempt of a long outage.
                    if last_logged.as_deref() != Some(text.as_str()) {
                        log::warn!("mqtt: {text}; retrying every {backoff:?} up to {MAX_RETRY:?}");
                        last_logged = Some(text);
                    }
                    self.pause(backoff);
                    backoff = (backoff * 2).min(MAX_RETRY);
                    if self.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                }
            }
        }
        self.stats.connected.store(false, Ordering::SeqCst);
        let mut tracker = lock(&self.tracker);
        let Tracker {
            queued,
            inflight,
            collision,
        } = std::mem::take(&mut *tracker);
        for waiter in queued
            .into_iter()
            .chain(inflight.into_values())
            .chain(collision.map(|c| c.1))
        {
            tell(waiter, Ack::Lost);
        }
    }

    /// Sleeps `pause`, or less when stopping.
    fn pause(&self, pause: Duration) {
        let guard = lock(&self.wake.0);
        if !self.stopping.load(Ordering::SeqCst) {
            drop(wait_timeout(&self.wake.1, guard, pause));
        }
    }

    fn handle(&self, event: Event) {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => self.connected(),
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                let mut tracker = lock(&self.tracker);
                let waiter = match tracker.collision.take() {
                    Some((held, waiter)) if held == pkid => waiter,
                    other => {
                        tracker.collision = other;
                        tracker.queued.pop_front().flatten()
                    }
                };
                tracker.inflight.insert(pkid, waiter);
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                let mut tracker = lock(&self.tracker);
                let waiter = tracker.queued.pop_front().flatten();
                tracker.collision = Some((pkid, waiter));
            }
            Event::Incoming(Incoming::PubAck(ack)) => {
                if let Some(waiter) = lock(&self.tracker).inflight.remove(&ack.pkid) {
                    self.stats.add(Counter::Published);
                    tell(waiter, Ack::Acked);
                }
            }
            Event::Incoming(Incoming::Publish(publish)) => {
                self.stats.add(Counter::Received);
                if publish.payload.len() > MAX_INCOMING_BYTES {
                    self.stats.add(Counter::Oversize);
                    log::warn!(
                        "mqtt: dropped a message of {} bytes on {:?} (limit {MAX_INCOMING_BYTES})",
                        publish.payload.len(),
                        publish.topic
                    );
                    return;
                }
                self.dispatch(&publish.topic, &publish.payload);
            }
            _ => {}
        }
    }

    /// Runs every handler whose filter matches `topic`.
    fn dispatch(&self, topic: &str, payload: &[u8]) {
        let handlers: Vec<Handler> = lock(&self.subscriptions)
            .iter()
            .filter(|(filter, _)| rumqttc::matches(topic, filter))
            .map(|(_, h)| h.clone())
            .collect();
        for handler in handlers {
            let ran =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(topic, payload)));
            if ran.is_err() {
                self.stats.add(Counter::Malformed);
                log::error!("mqtt: the handler of {topic:?} panicked");
            }
        }
    }

    /// After a CONNACK: `online`, the subscriptions again, the hooks.
    fn connected(&self) {
        self.stats.connected.store(true, Ordering::SeqCst);
        self.stats.add(Counter::Connects);
        self.stats.set_error(None);
        log::info!("mqtt: connected as {:?}", self.box_id);
        if let Err(e) = self.publish(&self.topic("status"), b"online".to_vec(), true, None, false) {
            log::warn!("mqtt: could not queue online: {e}");
        }
        let filters: Vec<rumqttc::SubscribeFilter> = lock(&self.subscriptions)
            .iter()
            .map(|(f, _)| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        if !filters.is_empty() {
            if let Err(e) = self.client.try_subscribe_many(filters) {
                log::warn!("mqtt: could not subscribe again: {e}");
            }
        }
        let hooks: Vec<Hook> = lock(&self.hooks).clone();
        for hook in hooks {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook())).is_err() {
                log::error!("mqtt: an on_connect hook panicked");
            }
        }
    }

    /// A connection attempt failed or the connection was lost: what rumqttc set aside for a
    /// session that the clean session will not have is failed here (see the module's notes).
    fn lost(&self, connection: &mut Connection, error: &ConnectionError) {
        let was_connected = self.stats.connected.swap(false, Ordering::SeqCst);
        self.stats.add(Counter::ConnectionErrors);
        self.stats.set_error(Some(error.to_string()));
        if let ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::Error::PayloadSizeLimitExceeded(size),
        )) = error
        {
            self.stats.add(Counter::Oversize);
            log::error!(
                "mqtt: the broker sent a packet of {size} bytes (limit {MAX_PACKET_BYTES}); \
                 set the broker's message_size_limit below it"
            );
        }
        let pending = std::mem::take(&mut connection.eventloop.pending);
        let from_channel = pending
            .iter()
            .filter(|r| matches!(r, Request::Publish(p) if p.pkid == 0))
            .count();
        let mut tracker = lock(&self.tracker);
        let mut failed = 0;
        for waiter in tracker.inflight.drain().map(|(_, w)| w).collect::<Vec<_>>() {
            tell(waiter, Ack::Lost);
            failed += 1;
        }
        if let Some((_, waiter)) = tracker.collision.take() {
            tell(waiter, Ack::Lost);
            failed += 1;
        }
        for _ in 0..from_channel {
            if let Some(waiter) = tracker.queued.pop_front() {
                tell(waiter, Ack::Lost);
                failed += 1;
            }
        }
        drop(tracker);
        if was_connected {
            log::warn!("mqtt: connection lost ({error}); {failed} publishes not acknowledged");
        }
        self.counter_n(Counter::PublishFailures, failed);
    }

    fn counter_n(&self, counter: Counter, n: u64) {
        self.stats.counters[counter as usize].fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_their_default_ports_and_nothing_else() {
        let ok = |u: &str| BrokerUrl::parse(u).unwrap();
        assert_eq!(
            ok("mqtt://broker.lan"),
            BrokerUrl {
                tls: false,
                host: "broker.lan".into(),
                port: 1883
            }
        );
        assert_eq!(ok("mqtts://broker.lan").port, 8883);
        assert!(ok("mqtts://broker.lan").tls);
        assert_eq!(ok("mqtt://10.0.0.2:1884/").port, 1884);
        assert_eq!(ok("mqtt://[::1]:1885").host, "::1");
        assert_eq!(ok("mqtts://[fe80::1]").port, 8883);
        for bad in [
            "",
            "broker:1883",
            "tcp://broker",
            "http://broker",
            "mqtt://",
            "mqtt://:1883",
            "mqtt://broker:0",
            "mqtt://broker:99999",
            "mqtt://broker:x",
            "mqtt://user:pw@broker",
            "mqtt://broker/topic",
            "mqtt://[::1",
            "mqtt://::1",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn health_and_metrics_read_the_same_counters() {
        let stats = MqttStats::default();
        stats.count_malformed();
        stats.add(Counter::Oversize);
        stats.add(Counter::Oversize);
        let json = stats.to_json();
        assert_eq!(json["connected"], false);
        assert_eq!(json["malformed"], 1);
        assert_eq!(json["oversize"], 2);
        let families = stats.families();
        let names: Vec<&str> = families.iter().map(Family::name).collect();
        assert!(names.contains(&"face_mqtt_connected"), "{names:?}");
        assert!(names.contains(&"face_mqtt_oversize_total"), "{names:?}");
        assert_eq!(families.len(), COUNTERS.len() + 1);
        assert_eq!(json.as_object().map(|o| o.len()), Some(COUNTERS.len() + 2));
    }

    #[test]
    fn a_bad_ca_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate").unwrap();
        let mut settings = MqttSettings {
            url: "mqtts://127.0.0.1:1".into(),
            ca_file: Some(empty),
            username: None,
            password: None,
            box_id: "box-1".into(),
            topic_prefix: "face-attendance".into(),
            status_every: Duration::from_secs(60),
            ha_discovery: false,
            gallery_sync: crate::replication::ReplicationMode::Off,
            gallery_trusted_keys: None,
            gallery_people_per_hour: 1,
            gallery_encodings_per_hour: 1,
            gallery_max_waiting: 1,
        };
        let err = Mqtt::start(&settings).unwrap_err();
        assert!(err.to_string().contains("MQTT_CA_FILE"), "{err}");
        settings.ca_file = Some(dir.path().join("missing.pem"));
        assert!(matches!(
            Mqtt::start(&settings),
            Err(MqttError::CaFile { .. })
        ));
        settings.url = "mqtt://127.0.0.1:1".into();
        assert!(matches!(Mqtt::start(&settings), Err(MqttError::BadUrl(_))));
        settings.ca_file = None;
        settings.box_id = "a/b".into();
        assert!(matches!(
            Mqtt::start(&settings),
            Err(MqttError::BadTopic(_))
        ));
    }
}
