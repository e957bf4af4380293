//! Where events go. Every destination is a [`Sink`], and all sinks are equal: the webhook to
//! the main API, the MQTT broker (src/mqtt/) and the WebSocket hub implement the same trait.
//!
//! Contract:
//! - A **durable** sink (webhook, MQTT) gets every event of the one fsync'd outbox journal, in
//!   journal order, through its own cursor: it is retried with its own back-off until
//!   [`Sink::deliver`] answers `Sent`, and only then does its cursor move (`{"done":…,"sink":…}`
//!   in the journal). Delivery is at least once: after a crash the same event (same `event_id`)
//!   may come again. Each durable sink runs on its own thread, so one sink's outage (a hanging
//!   main API, a broker that is down) never delays another.
//! - A **live** sink (the WebSocket hub) gets each event once, as it is resolved, with the
//!   durable sinks' reports; whoever is not listening then misses it, as with the original.
//! - `deliver` is one attempt, bounded by the sink's own timeout; it never panics on what the
//!   other end answers.

use std::time::Duration;

use super::Report;

/// One event on its way to a sink.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The event's id.
    pub event_id: &'a str,
    /// Durable sinks: the webhook body (JSON text), the event as the original service sent it.
    /// Live sinks: the live message (the event with its reports, see `Event::live_message`).
    pub payload: &'a str,
    /// Live sinks: the webhook body too (durable sinks: `None`, `payload` is it).
    pub webhook: Option<&'a str>,
    /// Live sinks: a repeat within the cooldown (not logged, `skipped` by durable sinks).
    pub repeat: bool,
}

/// A destination of events. Durable sinks (webhook, MQTT) follow the outbox and are retried until
/// they take each event; live ones (WebSocket, last person) get each event once, as it happens.
pub trait Sink: Send {
    /// The sink's name: its cursor in the journal, its label in `/health`, `/metrics` and the
    /// realtime answer's `sinks`. Stable across releases (the journal keeps it).
    fn name(&self) -> &'static str;

    /// Durable (journal, cursor, retries) or live (each event once, as it is resolved).
    fn durable(&self) -> bool {
        true
    }

    /// One attempt at one event: `Sent` when the other end took it; anything else (with the
    /// reason in `message` / `http_status`) means it will be tried again.
    fn deliver(&mut self, event: &Outgoing<'_>) -> Report;

    /// The longest one attempt takes: how long a caller may wait for this sink's report.
    fn timeout(&self) -> Duration;

    /// The longest pause between two attempts while the sink fails.
    fn retry_max(&self) -> Duration {
        Duration::from_secs(60)
    }
}
