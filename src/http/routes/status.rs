//! `/health`, `/metrics`, `/config`, `/session` and `/tickets`: what the box says about itself
//! and the caller.

use serde_json::json;

use crate::http::app::App;
use crate::http::auth::{self, Caller};
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::respond::Answer;

/// `GET /session`: who the key belongs to, so that the page shows only what its role may do.
pub(super) fn session(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let caller = call.caller.clone().unwrap_or_else(Caller::anyone);
    Ok(Answer::Json(json!({
        "ok": true,
        "role": caller.role().as_str(),
        "label": caller.label(),
        "keys_required": app.auth.required(),
    })))
}

/// `POST /tickets`: a single-use ticket, valid for a few seconds, that opens the live view or
/// the WebSocket with the caller's role (so that no key goes into a URL).
pub(super) fn ticket(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let caller = call.caller.clone().unwrap_or_else(Caller::anyone);
    let ticket = app.auth.ticket(&caller).map_err(|e| match e {
        auth::TicketError::TooMany => ApiError::Busy("too many tickets outstanding"),
        auth::TicketError::Random(e) => ApiError::Internal(format!("a ticket: {e}")),
    })?;
    Ok(Answer::Json(json!({
        "ok": true,
        "ticket": ticket,
        "expires_in_seconds": auth::TICKET_TTL.as_secs(),
    })))
}

/// `GET /health`: the original's fields (`ok`, `encodings`, `labels`) and `version` for
/// anyone; the whole document (camera, outbox, broker, HTTP) only with a valid key, or on a box
/// without keys.
pub(super) fn health(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (encodings, labels) = app.recognizer.gallery().counts();
    let ok = app.cameras_healthy();
    let mut answer = json!({
        "ok": ok,
        "encodings": encodings,
        "labels": labels,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if call.caller.is_none() {
        return Ok(Answer::Json(answer));
    }
    if let Some(first) = app.cameras().first() {
        // `camera` is the first camera, as it always was (monitors and Home Assistant read it).
        answer["camera"] = first.stats().to_json();
        answer["camera"]["live"] = first.live().to_json();
        answer["cameras"] = app.cameras().iter().map(|c| c.to_json()).collect();
    }
    if app.dispatcher.durable() {
        // The main API's (or the broker's) own trouble: shown, but the box itself is fine.
        answer["outbox"] = app.dispatcher.stats().to_json();
    }
    if let Some(command) = app.event_command() {
        // The program's trouble is shown, not counted against `ok`: events go on without it.
        answer["event_command"] = command.to_json();
    }
    if let Some(unknowns) = app.unknowns() {
        answer["unknown_clusters"] = json!(unknowns.cluster_count());
    }
    if let Some(log) = app.dispatcher.event_log() {
        // Its trouble is shown, not counted against `ok`: events go on without it.
        answer["event_log"] = log.stats().to_json();
    }
    if let Some((mqtt, replication)) = app.mqtt_json() {
        // The broker's trouble is shown, not counted against `ok`: the box works without it.
        answer["mqtt"] = mqtt;
        if let Some(replication) = replication {
            answer["gallery_sync"] = replication;
        }
    }
    answer["http"] = app.http_stats();
    Ok(Answer::Json(answer))
}

/// `GET /metrics`: the Prometheus text exposition ([`crate::metrics`]).
pub(super) fn metrics(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    let text = app
        .metrics
        .render(app.families())
        .map_err(|e| ApiError::Internal(format!("metrics: {e}")))?;
    Ok(Answer::Text(crate::metrics::CONTENT_TYPE, text))
}

pub(super) fn config(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Json(app.config_json.clone()))
}
