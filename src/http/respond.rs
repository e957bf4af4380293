//! Writing answers. A client that stops reading cannot hold an HTTP worker: small answers fit
//! in the socket's buffers, large ones (the docs, the OpenAPI document) are written from a
//! thread of their own (within [`super::budget::Budget::downloads`]), and every write is bounded
//! by the server's write timeout.

use serde_json::Value;
use tiny_http::{Header, Request, Response};

use super::budget::Places;
use super::error::ApiError;
use super::headers::secure;
use super::query::split_url;

/// What a handler answers with (the WebSocket upgrade answers by itself).
pub enum Answer {
    Json(Value),
    Body(&'static str, &'static str),
    /// Bytes made for this request (a face crop).
    Bytes(&'static str, Vec<u8>),
    /// Text made for this request (the metrics).
    Text(&'static str, String),
    /// A file streamed from its start: a download when it has a `name` (a gallery export, a
    /// CSV), else shown as it is (a large JSON answer).
    File {
        content_type: &'static str,
        file: std::fs::File,
        name: Option<String>,
    },
}

/// Answers above this many bytes may not fit the socket's send buffer of a client that does not
/// read: they are written off the HTTP worker.
const LARGE_ANSWER: usize = 16 * 1024;

/// The status `answer` is sent with.
fn status_of(answer: &Result<Answer, ApiError>) -> u16 {
    match answer {
        Ok(_) => 200,
        Err(e) => e.status(),
    }
}

/// Answers `request`; returns the status sent. Dropping a request whose body was not read
/// closes its connection (the vendored tiny_http does that on the connection's own thread), so
/// this never waits for a body.
pub fn respond(request: Request, answer: Result<Answer, ApiError>) -> u16 {
    let status = status_of(&answer);
    let (status, content_type, body, header) = match answer {
        Ok(Answer::Json(v)) => (200, "application/json", v.to_string().into_bytes(), None),
        Ok(Answer::Body(ct, text)) => (200, ct, text.as_bytes().to_vec(), None),
        Ok(Answer::Bytes(ct, bytes)) => (200, ct, bytes, None),
        Ok(Answer::Text(ct, text)) => (200, ct, text.into_bytes(), None),
        Ok(Answer::File {
            content_type,
            file,
            name,
        }) => {
            let mut response = secure(Response::from_file(file), content_type);
            let disposition = name.map(|name| format!("attachment; filename=\"{name}\""));
            let headers = [
                Some(("Content-Type", content_type.to_string())),
                disposition.map(|d| ("Content-Disposition", d)),
            ];
            for (k, v) in headers.into_iter().flatten() {
                if let Ok(h) = Header::from_bytes(k, v) {
                    response.add_header(h);
                }
            }
            let _ = request.respond(response);
            return status;
        }
        Err(e) => {
            if e.is_servers_trouble() {
                // The path only: a query may hold an API key.
                let (path, _) = split_url(request.url());
                log::error!("{} {path}: {}", request.method(), e.log_detail());
            }
            (
                e.status(),
                "application/json",
                e.body().into_bytes(),
                e.headers(),
            )
        }
    };
    let mut response = secure(
        Response::from_data(body).with_status_code(status),
        content_type,
    );
    if let Ok(h) = Header::from_bytes("Content-Type", content_type) {
        response.add_header(h);
    }
    if let Some(h) = header.and_then(|(name, value)| Header::from_bytes(name, value).ok()) {
        response.add_header(h);
    }
    // The client may have gone away; nothing to do about it.
    let _ = request.respond(response);
    status
}

/// Like [`respond`], but a large answer is written from a thread of its own when `writers` has
/// a free place (else here: the write timeout still bounds it). Returns the status sent.
pub fn respond_off_worker(
    request: Request,
    answer: Result<Answer, ApiError>,
    writers: &Places,
) -> u16 {
    let large = match &answer {
        Ok(Answer::Body(_, text)) => text.len() > LARGE_ANSWER,
        Ok(Answer::Bytes(_, bytes)) => bytes.len() > LARGE_ANSWER,
        Ok(Answer::Text(_, text)) => text.len() > LARGE_ANSWER,
        Ok(Answer::File { .. }) => true,
        _ => false,
    };
    if !large {
        return respond(request, answer);
    }
    let Some(place) = writers.try_take() else {
        return respond(request, answer);
    };
    let status = status_of(&answer);
    let spawned = std::thread::Builder::new()
        .name("http-write".into())
        .spawn(move || {
            respond(request, answer);
            drop(place);
        });
    if let Err(e) = spawned {
        // The request went down with the closure: tiny_http answered it 500.
        log::warn!("could not start a thread to write an answer: {e}");
        return 500;
    }
    status
}
