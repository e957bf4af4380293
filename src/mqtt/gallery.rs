//! Gallery replication over the broker: the link between the [`Replicator`] (the rules:
//! versions, last writer wins, tombstones, reconcile; [`crate::replication`]) and the
//! connection. It carries topics and bytes and decides nothing.
//!
//! - Every message on `<prefix>/gallery/+` (people; empty: deleted) and on
//!   `<prefix>/gallery-deleted/+` (tombstones: a deletion's version; empty: none) is handed
//!   from the connection thread to the applying thread (`gallery-sync`) through one bounded
//!   queue, in the order it arrived (the connection waits when it is full, so nothing is lost
//!   and a flood of retained messages cannot grow memory), and there to
//!   [`Replicator::receive`] or [`Replicator::receive_deleted`].
//! - At each connection: the replicator is told before the retained messages arrive; once
//!   none has come for [`QUIET`], they are taken as all there (reconcile: a person absent from
//!   the broker is removed only under a newer tombstone, else the broker lost them and they are
//!   published again; a deletion the broker lacks is published again).
//! - Local changes (HTTP, CLI, import) are published (thread `gallery-publish`) retained, QoS 1,
//!   waiting for the broker's PUBACK, once the session's reconcile is done: a person, then their
//!   tombstone cleared; a deletion, its tombstone then the empty person message. What could not
//!   be published goes again after the next reconnection (reconcile finds the broker lacking
//!   it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Mqtt;
use crate::locks::lock;
use crate::replication::{topics, Kind, ReplicationMode, Replicator};

/// Retained messages are taken as all there once none came for this long.
pub const QUIET: Duration = Duration::from_secs(2);
/// How often the applying thread applies the messages waiting and looks at the trust list.
const TICK: Duration = Duration::from_secs(1);
/// Messages waiting for the applying thread.
const QUEUE: usize = 256;
/// How long one gallery publication waits for the broker's PUBACK.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

enum Inbound {
    /// A new session: the retained messages follow.
    Connected,
    Message(Kind, String, Vec<u8>),
    Stop,
}

/// The running link: two threads (applying, publishing).
pub struct GalleryLink {
    inbound: SyncSender<Inbound>,
    stopping: Arc<AtomicBool>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl GalleryLink {
    /// Subscribes to the gallery topics on `mqtt` and starts the applying and publishing
    /// threads of `replicator`.
    pub fn start(
        mqtt: &Arc<Mqtt>,
        replicator: Arc<Replicator>,
    ) -> Result<GalleryLink, super::MqttError> {
        let (inbound, rx) = mpsc::sync_channel(QUEUE);
        let stopping = Arc::new(AtomicBool::new(false));
        // Set once the session's reconcile is done; cleared at each new connection.
        let ready = Arc::new(AtomicBool::new(false));
        let prefix = mqtt.topic_prefix().to_string();
        {
            let to_sync = inbound.clone();
            let ready = ready.clone();
            // Runs on the connection thread before any retained message of the session.
            mqtt.on_connect(Arc::new(move || {
                ready.store(false, Ordering::SeqCst);
                let _ = to_sync.send(Inbound::Connected);
            }));
        }
        for kind in [Kind::Person, Kind::Deleted] {
            let to_sync = inbound.clone();
            let prefix = prefix.clone();
            let filter = match kind {
                Kind::Person => topics::topic_filter(&prefix),
                Kind::Deleted => topics::topic_deleted_filter(&prefix),
            };
            let handler = Arc::new(move |topic: &str, payload: &[u8]| {
                let id = match kind {
                    Kind::Person => topics::topic_id(&prefix, topic),
                    Kind::Deleted => topics::topic_deleted_id(&prefix, topic),
                };
                if let Some(id) = id {
                    // Blocks while the queue is full: the broker waits, nothing is dropped.
                    let message = Inbound::Message(kind, id.to_string(), payload.to_vec());
                    let _ = to_sync.send(message);
                }
            });
            mqtt.subscribe(&filter, handler)?;
        }
        let mut threads = Vec::new();
        let applier = {
            let replicator = replicator.clone();
            let ready = ready.clone();
            let mqtt = Arc::downgrade(mqtt);
            std::thread::Builder::new()
                .name("gallery-sync".into())
                .spawn(move || apply(rx, &replicator, &ready, &mqtt))
        };
        let publisher = {
            let stopping = stopping.clone();
            let mqtt = Arc::downgrade(mqtt);
            std::thread::Builder::new()
                .name("gallery-publish".into())
                .spawn(move || publish(&replicator, &ready, &stopping, &mqtt))
        };
        for t in [applier, publisher] {
            match t {
                Ok(t) => threads.push(t),
                Err(e) => return Err(super::MqttError::Thread(e.to_string())),
            }
        }
        Ok(GalleryLink {
            inbound,
            stopping,
            threads: Mutex::new(threads),
        })
    }

    /// Stops both threads and waits for them (also done when dropped).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = self.inbound.try_send(Inbound::Stop);
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

impl Drop for GalleryLink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The applying thread: applies what arrives, reconciles once a session's retained messages are in.
fn apply(rx: Receiver<Inbound>, replicator: &Replicator, ready: &AtomicBool, mqtt: &Weak<Mqtt>) {
    let mut reconcile_at: Option<Instant> = None;
    let mut tick_at = Instant::now() + TICK;
    loop {
        let timeout = reconcile_at
            .map_or(tick_at, |t| t.min(tick_at))
            .saturating_duration_since(Instant::now());
        match rx.recv_timeout(timeout) {
            Ok(Inbound::Connected) => {
                replicator.connected();
                reconcile_at = Some(Instant::now() + QUIET);
            }
            Ok(Inbound::Message(kind, id, payload)) => {
                // Errors are logged and counted by the replicator itself.
                let _ = match kind {
                    Kind::Person => replicator.receive(&id, &payload),
                    Kind::Deleted => replicator.receive_deleted(&id, &payload),
                };
                if reconcile_at.is_some() {
                    reconcile_at = Some(Instant::now() + QUIET);
                }
            }
            Ok(Inbound::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= tick_at {
            // Messages waiting (bounds, clock, trust) and the trust list's file.
            replicator.tick();
            tick_at = Instant::now() + TICK;
        }
        if reconcile_at.is_some_and(|t| Instant::now() >= t) {
            reconcile_at = None;
            if !mqtt.upgrade().is_some_and(|m| m.is_connected()) {
                continue;
            }
            match replicator.reconcile() {
                Ok(done) if done.removed + done.to_publish > 0 => log::info!(
                    "gallery sync: {} removed (tombstones), {} to publish",
                    done.removed,
                    done.to_publish
                ),
                Ok(_) => {}
                Err(e) => log::error!("gallery sync: reconcile failed: {e}"),
            }
            ready.store(true, Ordering::SeqCst);
        }
    }
}

/// The publishing thread: local changes, retained, once the session is reconciled.
fn publish(replicator: &Replicator, ready: &AtomicBool, stopping: &AtomicBool, mqtt: &Weak<Mqtt>) {
    if replicator.mode() != ReplicationMode::Both {
        return;
    }
    while !stopping.load(Ordering::SeqCst) {
        replicator.wait_local_change(Duration::from_millis(500));
        if !ready.load(Ordering::SeqCst) {
            continue;
        }
        let Some(mqtt) = mqtt.upgrade() else {
            return;
        };
        for message in replicator.outgoing() {
            let topic = message.topic(mqtt.topic_prefix());
            if let Err(e) = mqtt.publish_acked(&topic, message.payload, true, PUBLISH_TIMEOUT) {
                // Reconcile at the next connection finds the broker lacking it.
                log::warn!("gallery sync: {topic} not published ({e}); again after reconnecting");
            }
        }
    }
}
