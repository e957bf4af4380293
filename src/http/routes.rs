//! Which handler answers which request: one function per endpoint of the original service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Request, Response};

use super::error::ApiError;
use super::{form, App};
use crate::events::{events_for, Event, Report};
use crate::recognizer::Recognition;

const OPENAPI: &str = include_str!("openapi.json");
const DOCS: &str = include_str!("docs.html");

/// What a handler answers with (the WebSocket upgrade answers by itself).
pub enum Answer {
    Json(Value),
    Body(&'static str, &'static str),
}

/// The routes and the method each accepts, for 404 vs 405 (and for the OpenAPI test).
pub const ROUTES: &[(&str, &str)] = &[
    ("/enroll", "POST"),
    ("/recognize", "POST"),
    ("/recognize/realtime", "POST"),
    ("/health", "GET"),
    ("/config", "GET"),
    ("/ws/recognitions", "GET"),
    ("/mock/webhook", "POST"),
    ("/openapi.json", "GET"),
    ("/docs", "GET"),
];

/// Routes anyone may call, for monitoring and for reading the API reference. Every other route
/// (including any added later) needs an API key when keys are configured.
pub const OPEN_ROUTES: &[&str] = &["/health", "/openapi.json", "/docs"];

/// The one route that also takes the key as `?api_key=` (browsers cannot set WebSocket headers).
const KEY_IN_QUERY_ROUTE: &str = "/ws/recognitions";

pub fn handle(app: &App, request: Request) {
    let method = request.method().clone();
    let (path, query) = split_url(request.url());
    let refusal = match ROUTES.iter().find(|(p, _)| *p == path) {
        None => ApiError::NotFound(path.clone()),
        Some((_, allowed))
            if method.as_str() != *allowed && !(method == Method::Head && *allowed == "GET") =>
        {
            ApiError::MethodNotAllowed {
                method: method.to_string(),
                path: path.clone(),
                allowed,
            }
        }
        // Checked before anything reads the body: a client without the key costs no upload.
        Some(_)
            if !OPEN_ROUTES.contains(&path.as_str())
                && !app
                    .keys
                    .allows(&request, &query, path == KEY_IN_QUERY_ROUTE) =>
        {
            ApiError::Unauthorized
        }
        Some(_) => return dispatch(app, request, &path, &query),
    };
    answer_unread(request, Err(refusal));
}

fn dispatch(app: &App, request: Request, path: &str, query: &str) {
    let answer = match path {
        "/ws/recognitions" => return upgrade(app, request),
        "/health" => Ok(health(app)),
        "/config" => Ok(Answer::Json(app.config_json.clone())),
        "/openapi.json" => Ok(Answer::Body("application/json", OPENAPI)),
        "/docs" => Ok(Answer::Body("text/html; charset=utf-8", DOCS)),
        _ => {
            let Some((request, body)) = read_form(app, request) else {
                // Answered already, or still reading: the body thread answers when it is done.
                return;
            };
            let answer = match path {
                "/enroll" => enroll(app, body),
                "/recognize" => recognize(app, body),
                "/recognize/realtime" => realtime(app, body, query),
                _ => mock_webhook(body),
            };
            return respond(request, answer);
        }
    };
    answer_unread(request, answer);
}

pub(super) fn split_url(url: &str) -> (String, String) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    (path.to_string(), query.to_string())
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// The raw body and its content type.
struct Body {
    content_type: Option<String>,
    bytes: Vec<u8>,
}

/// Threads reading (or discarding) request bodies at once; past that, new uploads get 503.
const MAX_BODY_THREADS: usize = 64;
static BODY_THREADS: AtomicUsize = AtomicUsize::new(0);

/// One of the `MAX_BODY_THREADS` places, given back when dropped.
struct BodyThread(());

impl BodyThread {
    fn take() -> Option<BodyThread> {
        if BODY_THREADS.fetch_add(1, Ordering::SeqCst) >= MAX_BODY_THREADS {
            BODY_THREADS.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(BodyThread(()))
    }
}

impl Drop for BodyThread {
    fn drop(&mut self) {
        BODY_THREADS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Reads the body on a helper thread and waits at most the I/O timeout for it, so a client
/// that stalls mid-upload never holds an HTTP worker: it gets 408 (from the helper, once its
/// read ends) and the worker moves on. `None`: the helper answers (an error, or late).
fn read_form(app: &App, request: Request) -> Option<(Request, Body)> {
    let content_type = header(&request, "Content-Type").map(str::to_string);
    let length = request.body_length();
    let limit = app.limits.max_upload_bytes;
    let Some(place) = BodyThread::take() else {
        answer_unread(request, Err(ApiError::Busy("too many uploads in progress")));
        return None;
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("http-body".into())
        .spawn(move || {
            let mut request = request;
            let result = form::read_body(request.as_reader(), length, limit);
            match result {
                Ok(bytes) => {
                    drop(place);
                    if let Err(mpsc::SendError((request, _))) = tx.send((request, bytes)) {
                        // The worker gave up waiting: answer the late client here.
                        respond(request, Err(ApiError::Timeout));
                    }
                }
                // Answered here, still holding the place: what is left of the body is
                // discarded when the request is dropped, for as long as the client takes.
                Err(e) => respond(request, Err(e)),
            }
        });
    if spawned.is_err() {
        // The request went down with the closure; tiny_http answered it 500.
        return None;
    }
    match rx.recv_timeout(app.limits.io_timeout) {
        Ok((request, bytes)) => Some((
            request,
            Body {
                content_type,
                bytes,
            },
        )),
        Err(_) => None,
    }
}

/// Answers a request whose body was not read. tiny_http discards an unread body when the
/// request is dropped (to keep the connection usable), which lasts as long as the client makes
/// it: that happens on a helper thread, never on an HTTP worker.
fn answer_unread(request: Request, answer: Result<Answer, ApiError>) {
    if request.body_length().unwrap_or(0) == 0 {
        return respond(request, answer);
    }
    let Some(place) = BodyThread::take() else {
        // Every helper is taken by slow clients already: this worker waits for this one.
        return respond(request, answer);
    };
    let spawned = std::thread::Builder::new()
        .name("http-drain".into())
        .spawn(move || {
            respond(request, answer);
            drop(place);
        });
    if let Err(e) = spawned {
        log::warn!("could not start a thread to answer a request: {e}");
    }
}

fn respond(request: Request, answer: Result<Answer, ApiError>) {
    let (status, content_type, body, header) = match answer {
        Ok(Answer::Json(v)) => (200, "application/json", v.to_string(), None),
        Ok(Answer::Body(ct, text)) => (200, ct, text.to_string(), None),
        Err(e) => {
            if e.status() >= 500 {
                // The path only: a query may hold an API key.
                let (path, _) = split_url(request.url());
                log::error!("{} {path}: {e}", request.method());
            }
            (e.status(), "application/json", e.body(), e.headers())
        }
    };
    let mut response = Response::from_string(body).with_status_code(status);
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(h);
    }
    if let Some(h) = header.and_then(|(name, value)| Header::from_bytes(name, value).ok()) {
        response.add_header(h);
    }
    // The client may have gone away; nothing to do about it.
    let _ = request.respond(response);
}

fn health(app: &App) -> Answer {
    let (encodings, labels) = app.recognizer.gallery.counts();
    let mut answer = json!({"ok": true, "encodings": encodings, "labels": labels});
    if let Some(camera) = &app.camera {
        answer["ok"] = json!(camera.healthy(app.limits.camera_stale_after));
        answer["camera"] = camera.to_json();
    }
    if app.dispatcher.webhook_enabled() {
        // The main API's own trouble: shown, but the box itself is fine.
        answer["outbox"] = app.dispatcher.stats().to_json();
    }
    Answer::Json(answer)
}

fn enroll(app: &App, body: Body) -> Result<Answer, ApiError> {
    let form = form::parse(body.content_type.as_deref(), body.bytes)?;
    let student_id = form.text("student_id")?;
    let image = form.file("image")?;
    let outcome = app.compute(|| app.recognizer.enroll_bytes(&student_id, image))?;
    if outcome.saved > 0 {
        log::info!("enrolled a face for {student_id}");
    }
    Ok(Answer::Json(
        json!({"ok": true, "saved": outcome.saved, "msg": outcome}),
    ))
}

fn recognize(app: &App, body: Body) -> Result<Answer, ApiError> {
    let form = form::parse(body.content_type.as_deref(), body.bytes)?;
    let image = form.file("image")?;
    let results = app.compute(|| app.recognizer.recognize_bytes(image, None))?;
    Ok(Answer::Json(json!({"ok": true, "results": results})))
}

/// Query parameters of `/recognize/realtime`, with FastAPI's defaults.
pub(super) fn realtime_params(query: &str) -> Result<(Option<f64>, bool), ApiError> {
    let mut min_conf = 0.0;
    let mut send_unknown = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "min_conf" => {
                min_conf = value
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "min_conf must be a number >= 0, got {value:?}"
                        ))
                    })?
            }
            "send_unknown" => {
                send_unknown = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "yes" | "on" => true,
                    "false" | "0" | "no" | "off" => false,
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "send_unknown must be true or false, got {value:?}"
                        )))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(((min_conf > 0.0).then_some(min_conf), send_unknown))
}

fn realtime(app: &App, body: Body, query: &str) -> Result<Answer, ApiError> {
    let (tolerance, send_unknown) = realtime_params(query)?;
    let form = form::parse(body.content_type.as_deref(), body.bytes)?;
    let bytes = form.file("image")?;
    let (results, frame): (Vec<Recognition>, (usize, usize)) = app.compute(|| {
        let image = app.recognizer.decode(bytes)?;
        let frame = (image.width, image.height);
        Ok::<_, crate::Error>((app.recognizer.recognize_image(&image, tolerance), frame))
    })?;
    let events: Vec<Event> = events_for(&results, frame, send_unknown);
    let labels: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.student_id.clone(), e.event_id.clone()))
        .collect();
    let reports: Vec<Report> = app.dispatcher.dispatch(events);
    let dispatch: Vec<Value> = labels
        .into_iter()
        .zip(reports)
        .map(|((label, event_id), report)| {
            json!({"label": label, "event_id": event_id, "report": report})
        })
        .collect();
    Ok(Answer::Json(json!({
        "ok": true,
        "results": results,
        "dispatch": dispatch,
        "webhook_enabled": app.dispatcher.webhook_enabled(),
    })))
}

fn mock_webhook(body: Body) -> Result<Answer, ApiError> {
    let payload: Value = if body.bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body.bytes)
            .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?
    };
    Ok(Answer::Json(
        json!({"ok": true, "token": "dummy-token", "echo": payload}),
    ))
}

fn upgrade(app: &App, request: Request) {
    let is_upgrade =
        header(&request, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = header(&request, "Sec-WebSocket-Key")
        .filter(|_| is_upgrade)
        .map(str::to_string)
    else {
        return respond(
            request,
            Err(ApiError::BadRequest(
                "this endpoint needs a WebSocket upgrade".into(),
            )),
        );
    };
    if app.hub.is_full() {
        return respond(request, Err(ApiError::Busy("too many WebSocket clients")));
    }
    let mut response = Response::empty(101);
    for (name, value) in [
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Accept", super::ws::accept_key(&key)),
    ] {
        if let Ok(h) = Header::from_bytes(name, value) {
            response.add_header(h);
        }
    }
    let stream = request.upgrade("websocket", response);
    app.hub.attach(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_query_defaults_and_errors() {
        assert_eq!(realtime_params("").unwrap(), (None, false));
        assert_eq!(
            realtime_params("min_conf=0.45&send_unknown=true").unwrap(),
            (Some(0.45), true)
        );
        assert_eq!(
            realtime_params("min_conf=0&send_unknown=False").unwrap(),
            (None, false)
        );
        assert_eq!(realtime_params("min_conf=abc").unwrap_err().status(), 400);
        assert_eq!(realtime_params("min_conf=-1").unwrap_err().status(), 400);
        assert_eq!(
            realtime_params("send_unknown=maybe").unwrap_err().status(),
            400
        );
    }

    #[test]
    fn paths_are_split_from_queries() {
        assert_eq!(
            split_url("/recognize/realtime?min_conf=1"),
            ("/recognize/realtime".into(), "min_conf=1".into())
        );
        assert_eq!(split_url("/health/"), ("/health".into(), String::new()));
        assert_eq!(split_url("/"), ("/".into(), String::new()));
    }
}
