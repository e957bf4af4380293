//! Requests with a body (enroll, recognize, the realtime endpoint): each is read and handled on
//! a thread of its own, holding one of `HTTP_MAX_UPLOADS` places, so the HTTP workers are back
//! for the next request (a `/health` probe, say) at once, however slowly the client sends.
//!
//! The body must arrive at a minimum rate after a grace period (enforced by the vendored
//! tiny_http at the socket: 408 past it), is at most the route's limit (413, checked against
//! `Content-Length` before a byte is read, then while reading), and image work inside the handler
//! waits a bounded time for an image place (503 with `Retry-After`).
//!
//! A gallery import ([`stream`]) is read the same way under the one import place, but its body
//! goes to a private unlinked file in the data folder (gone when the request ends, however it
//! ends, even by a kill) and the handler reads the archive from there: memory does not grow
//! with the body's size.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::sync::Arc;

use tiny_http::Request;

use super::app::App;
use super::call::{Body, Call, StreamHandler, UploadHandler};
use super::error::ApiError;
use super::form;
use super::headers::header;
use super::respond::respond;

/// Takes an upload place (or answers 503 at once, without reading the body) and reads and
/// handles the request on its own thread.
pub fn start(
    app: &Arc<App>,
    request: Request,
    limit: usize,
    body: Body,
    call: Call,
    handle: UploadHandler,
) {
    let Some(place) = app.budget.uploads.try_take() else {
        let status = respond(request, Err(ApiError::Busy("too many uploads in progress")));
        return call.served(app, status);
    };
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("http-upload".into())
        .spawn(move || {
            let mut request = request;
            let content_type = header(&request, "Content-Type").map(str::to_string);
            let length = request.body_length();
            let answer = form::read_body(request.as_reader(), length, limit)
                .and_then(|bytes| body.parse(content_type.as_deref(), bytes))
                .and_then(|form| handle(&app, form, &call));
            let status = respond(request, answer);
            drop(place);
            call.served(&app, status);
        });
    if let Err(e) = spawned {
        // The request went down with the closure: tiny_http answered it 500.
        log::error!("could not start a thread for an upload: {e}");
    }
}

/// Takes the import place (or answers 503 at once, without reading the body), then on a thread
/// of its own copies the body, at most `GALLERY_IMPORT_MAX_BYTES` (413 as for uploads), to an
/// unlinked file in the data folder and hands that file to `handle`.
pub fn stream(app: &Arc<App>, request: Request, call: Call, handle: StreamHandler) {
    let Some(place) = app.budget.imports.try_take() else {
        let status = respond(request, Err(ApiError::Busy("an import is in progress")));
        return call.served(app, status);
    };
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("http-import".into())
        .spawn(move || {
            let mut request = request;
            let length = request.body_length();
            let answer =
                spool(&app, request.as_reader(), length).and_then(|file| handle(&app, file, &call));
            // The import is over: its place is free before the client hears so, or a client
            // that imports again at once would be told one is in progress.
            drop(place);
            let status = respond(request, answer);
            call.served(&app, status);
        });
    if let Err(e) = spawned {
        log::error!("could not start a thread for an import: {e}");
    }
}

/// The body in a fresh unlinked file of the data folder (mode 0600), read back from its start.
fn spool(app: &App, body: &mut dyn std::io::Read, length: Option<usize>) -> Result<File, ApiError> {
    let limit = app.limits.max_import_bytes;
    if length.is_some_and(|n| n > limit) {
        // Refused before the file is made.
        return Err(form::too_large(limit));
    }
    let mut file = app
        .recognizer
        .gallery()
        .import_spool()
        .map_err(|e| ApiError::io("making the file for an uploaded archive", e))?;
    form::copy_body(body, length, limit, &mut file)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ApiError::io("reading back an uploaded archive", e))?;
    Ok(file)
}
