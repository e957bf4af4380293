//! The box's page (`/`, `/ui/{file}`) and the API reference (`/openapi.json`, `/docs`): static
//! files compiled into the binary.

use crate::http::app::App;
use crate::http::call::Call;
use crate::http::error::ApiError;
use crate::http::respond::Answer;

const OPENAPI: &str = include_str!("../openapi.json");
const DOCS: &str = include_str!("../docs.html");
/// The box's page: plain HTML, CSS and JavaScript in the binary (no CDN, no build step).
const PAGE: &str = include_str!("../page/index.html");
const PAGE_ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../page/app.css"),
    ),
    (
        "kiosk.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/kiosk.js"),
    ),
    (
        "kiosk.css",
        "text/css; charset=utf-8",
        include_str!("../page/kiosk.css"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../page/docs.js"),
    ),
    (
        "docs.css",
        "text/css; charset=utf-8",
        include_str!("../page/docs.css"),
    ),
];

/// `GET /`: the page. It holds no data (it asks for the key, then calls the API), so it is
/// open like `/docs`.
pub(super) fn page(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("text/html; charset=utf-8", PAGE))
}

/// `GET /ui/{file}`: the page's script and style sheet.
pub(super) fn page_asset(_app: &App, call: &Call) -> Result<Answer, ApiError> {
    let file = call.params.get("file")?;
    PAGE_ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, text)| Answer::Body(content_type, text))
        .ok_or_else(|| ApiError::NotFound(format!("/ui/{file}")))
}

pub(super) fn openapi(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("application/json", OPENAPI))
}

pub(super) fn docs(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("text/html; charset=utf-8", DOCS))
}
