//! Which handler answers which request: one table, [`ROUTES`], with each endpoint's method,
//! path pattern (`/people/{id}`: a `{name}` segment matches one non-empty segment, given to the
//! handler percent-decoded in [`Call::params`]), who may call it, what body it takes and its
//! handler. 404/405 (with every allowed method), the key check, the body limit and whether the
//! work is light (answered on an HTTP worker at once) or an upload (read and handled on a thread
//! of its own, within the budgets of [`super::budget`]) all follow from the entry, so a new
//! route is one entry.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde_json::{json, Value};
use tiny_http::{Method, Request};

use super::auth::{self, Caller, Identity, Role, Verdict};
use super::error::ApiError;
use super::form::Form;
use super::query::{percent_decode, value as query_value};
use super::respond::{respond, respond_off_worker, Answer};
use super::uploads::{self, StreamHandler, UploadHandler};
use super::{events, form, header, stream, ws, App};
use crate::events::{events_for, Event};
use crate::gallery::archive::ImportMode;
use crate::gallery::{GalleryError, StudentId};
use crate::recognizer::{EnrollRequest, MatchOptions, Offered, Photo};
use crate::unknowns::Unknowns;

const OPENAPI: &str = include_str!("openapi.json");
const DOCS: &str = include_str!("docs.html");
/// The box's page: plain HTML, CSS and JavaScript in the binary (no CDN, no build step).
const PAGE: &str = include_str!("page/index.html");
const PAGE_ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("page/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("page/app.css"),
    ),
    (
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("page/docs.js"),
    ),
    (
        "docs.css",
        "text/css; charset=utf-8",
        include_str!("page/docs.css"),
    ),
];

/// Who may call a route (see [`super::auth`] for credentials and [`Role`] for what each role
/// may do). Every route declares one; a box without keys lets everyone in as admin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the page, its assets and the API reference.
    Open,
    /// Anyone, but only a valid key sees more than the original's fields (`/health`).
    Health,
    /// A viewer key, unless `METRICS_REQUIRE_KEY=false` opens it (`/metrics`).
    Monitoring,
    /// A key of at least this role, in `X-API-Key` or `Authorization: Bearer`.
    Role(Role),
    /// The same, or a ticket of at least this role in `?ticket=` (browsers cannot set headers
    /// on a WebSocket or an image).
    RoleOrTicket(Role),
}

impl Access {
    /// The role a key needs here (`None`: open to anyone).
    pub fn role(self, metrics_require_key: bool) -> Option<Role> {
        match self {
            Access::Open | Access::Health => None,
            Access::Monitoring => metrics_require_key.then_some(Role::Viewer),
            Access::Role(role) | Access::RoleOrTicket(role) => Some(role),
        }
    }
}

/// The parameters of a matched path pattern (`{id}` -> `alip`), percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// The value of `{name}`. The route table gives each handler the names of its own
    /// pattern, so a missing one is the program's fault.
    pub fn get(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| ApiError::Internal(format!("the route has no {{{name}}} parameter")))
    }
}

/// What a handler gets besides the app and the body.
#[derive(Debug, Clone)]
pub struct Call {
    /// The query string, undecoded (after `?`).
    pub query: String,
    pub params: Params,
    /// Who calls: the label of the API key presented ("anyone" when no key is configured or
    /// none was needed), for the audit log.
    pub by: String,
    /// Who calls, when a valid key or ticket was presented (or the box has no keys).
    pub caller: Option<Caller>,
    /// The route and when it was found, for `/metrics`.
    route: &'static Route,
    started: Instant,
}

impl Call {
    /// Records the answer in `/metrics`.
    pub(super) fn served(&self, app: &App, status: u16) {
        let took = self.started.elapsed();
        app.metrics
            .http(self.route.path, self.route.method, status, took);
    }
}

/// What a route does with the request.
#[derive(Clone, Copy)]
pub enum Handler {
    /// No body, no face work: answered by the HTTP worker at once.
    Light(fn(&App, &Call) -> Result<Answer, ApiError>),
    /// A body of at most `limit` bytes, read as `body` says and handled on an upload thread.
    /// Image work inside takes an image place (see [`App::image_work`]).
    Upload {
        limit: Limit,
        body: Body,
        handle: UploadHandler,
    },
    /// A gallery archive: the body streamed to a file (at most `GALLERY_IMPORT_MAX_BYTES`),
    /// then handled, on a thread of its own under the one import place ([`uploads::stream`]).
    Stream(StreamHandler),
    /// The WebSocket feed.
    WebSocket,
    /// The camera's live view: the connection goes to a viewer thread of its own.
    LiveStream,
}

/// The most body an upload route reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `MAX_UPLOAD_BYTES`: an image.
    Upload,
    /// A few KiB: an event, a small form.
    Small,
    /// None at all (a GET done on an upload thread because it is long work).
    Empty,
}

/// How an upload's body becomes the handler's [`Form`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// A multipart form, or a raw `image/*` body as the `image` field.
    Form,
    /// The bytes as they came (a JSON event).
    Raw,
}

impl Body {
    pub fn parse(self, content_type: Option<&str>, bytes: Vec<u8>) -> Result<Form, ApiError> {
        match self {
            Body::Form => form::parse(content_type, bytes),
            Body::Raw => Ok(Form::raw(bytes)),
        }
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
}

/// The body `/mock/webhook` or a rename takes: an event or a small form, not an image.
const SMALL_BODY: usize = 64 * 1024;

pub static ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/enroll",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Upload,
            body: Body::Form,
            handle: enroll,
        },
    },
    Route {
        method: "POST",
        path: "/recognize",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Upload,
            body: Body::Form,
            handle: recognize,
        },
    },
    Route {
        method: "POST",
        path: "/recognize/realtime",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Upload,
            body: Body::Form,
            handle: realtime,
        },
    },
    Route {
        method: "GET",
        path: "/health",
        access: Access::Health,
        handler: Handler::Light(health),
    },
    Route {
        method: "GET",
        path: "/metrics",
        access: Access::Monitoring,
        handler: Handler::Light(metrics),
    },
    Route {
        method: "GET",
        path: "/config",
        access: Access::Role(Role::Admin),
        handler: Handler::Light(config),
    },
    Route {
        method: "GET",
        path: "/people",
        access: Access::Role(Role::Viewer),
        handler: Handler::Light(people),
    },
    Route {
        method: "GET",
        path: "/people/{id}",
        access: Access::Role(Role::Viewer),
        handler: Handler::Light(person),
    },
    Route {
        method: "DELETE",
        path: "/people/{id}",
        access: Access::Role(Role::Admin),
        handler: Handler::Light(delete_person),
    },
    Route {
        method: "GET",
        path: "/people/{id}/samples/{n}.jpg",
        access: Access::Role(Role::Viewer),
        handler: Handler::Light(sample_crop),
    },
    Route {
        method: "DELETE",
        path: "/people/{id}/samples/{n}",
        access: Access::Role(Role::Admin),
        handler: Handler::Light(delete_sample),
    },
    Route {
        method: "POST",
        path: "/people/{id}/rename",
        access: Access::Role(Role::Admin),
        handler: Handler::Upload {
            limit: Limit::Small,
            body: Body::Form,
            handle: rename,
        },
    },
    Route {
        method: "POST",
        path: "/people/{id}/capture",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Small,
            body: Body::Form,
            handle: capture,
        },
    },
    Route {
        method: "POST",
        path: "/people/{id}/reject",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Upload,
            body: Body::Form,
            handle: reject,
        },
    },
    Route {
        method: "DELETE",
        path: "/people/{id}/rejected",
        access: Access::Role(Role::Operator),
        handler: Handler::Light(forget_rejections),
    },
    Route {
        method: "GET",
        path: "/unknowns",
        access: Access::Role(Role::Viewer),
        handler: Handler::Light(unknowns_list),
    },
    Route {
        method: "GET",
        path: "/unknowns/{cluster}/faces/{entry}.jpg",
        access: Access::Role(Role::Viewer),
        handler: Handler::Light(unknown_crop),
    },
    Route {
        method: "POST",
        path: "/unknowns/{cluster}/enroll",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Small,
            body: Body::Form,
            handle: enroll_unknown,
        },
    },
    Route {
        method: "DELETE",
        path: "/unknowns/{cluster}",
        access: Access::Role(Role::Operator),
        handler: Handler::Light(forget_unknown),
    },
    Route {
        method: "GET",
        path: "/gallery/export",
        access: Access::Role(Role::Admin),
        handler: Handler::Upload {
            limit: Limit::Empty,
            body: Body::Raw,
            handle: export,
        },
    },
    Route {
        method: "POST",
        path: "/gallery/import",
        access: Access::Role(Role::Admin),
        handler: Handler::Stream(import),
    },
    Route {
        method: "GET",
        path: "/events",
        access: Access::Role(Role::Viewer),
        handler: Handler::Upload {
            limit: Limit::Empty,
            body: Body::Raw,
            handle: events::answer,
        },
    },
    Route {
        method: "GET",
        path: "/ws/recognitions",
        access: Access::RoleOrTicket(Role::Kiosk),
        handler: Handler::WebSocket,
    },
    Route {
        method: "GET",
        path: "/stream.mjpg",
        access: Access::RoleOrTicket(Role::Viewer),
        handler: Handler::LiveStream,
    },
    Route {
        method: "POST",
        path: "/mock/webhook",
        access: Access::Role(Role::Operator),
        handler: Handler::Upload {
            limit: Limit::Small,
            body: Body::Raw,
            handle: mock_webhook,
        },
    },
    Route {
        method: "GET",
        path: "/session",
        access: Access::Role(Role::Kiosk),
        handler: Handler::Light(session),
    },
    Route {
        method: "POST",
        path: "/tickets",
        access: Access::Role(Role::Kiosk),
        handler: Handler::Light(ticket),
    },
    Route {
        method: "GET",
        path: "/",
        access: Access::Open,
        handler: Handler::Light(page),
    },
    Route {
        method: "GET",
        path: "/ui/{file}",
        access: Access::Open,
        handler: Handler::Light(page_asset),
    },
    Route {
        method: "GET",
        path: "/openapi.json",
        access: Access::Open,
        handler: Handler::Light(openapi),
    },
    Route {
        method: "GET",
        path: "/docs",
        access: Access::Open,
        handler: Handler::Light(docs),
    },
];

/// `path` matched against `pattern`: the parameters when the segments pair up, literal ones
/// equal and `{name}` ones non-empty (`{name}.jpg`: ending in `.jpg`, the rest the value). A
/// parameter that is not valid percent-encoding is kept as it came (the handler's own check,
/// of an id say, then refuses it).
fn match_path(pattern: &'static str, path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut segments = path.split('/');
    for part in pattern.split('/') {
        let segment = segments.next()?;
        match part.strip_prefix('{').and_then(|p| p.split_once('}')) {
            Some((name, suffix)) => {
                let value = segment.strip_suffix(suffix).filter(|v| !v.is_empty())?;
                let value = percent_decode(value).unwrap_or_else(|| value.to_string());
                params.push((name, value));
            }
            None if part == segment => {}
            None => return None,
        }
    }
    segments.next().is_none().then_some(Params(params))
}

/// The methods of the routes with path pattern `pattern`, for `Allow` ("GET, DELETE").
fn allowed_methods(pattern: &'static str) -> &'static str {
    static ALLOW: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let table = ALLOW.get_or_init(|| {
        let mut table: Vec<(&'static str, String)> = Vec::new();
        for route in ROUTES {
            match table.iter_mut().find(|(p, _)| *p == route.path) {
                Some((_, methods)) => {
                    methods.push_str(", ");
                    methods.push_str(route.method);
                }
                None => table.push((route.path, route.method.to_string())),
            }
        }
        table
    });
    table
        .iter()
        .find(|(p, _)| *p == pattern)
        .map_or("", |(_, methods)| methods.as_str())
}

/// The route for `method path` and its path parameters, or the refusal: 404 for an unknown
/// path, 405 (with `Allow`) for a known path and another method. HEAD is answered like GET.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Params), ApiError> {
    let mut known = None;
    for route in ROUTES {
        let Some(params) = match_path(route.path, path) else {
            continue;
        };
        let same =
            method.as_str() == route.method || (*method == Method::Head && route.method == "GET");
        if same {
            return Ok((route, params));
        }
        known = Some(route.path);
    }
    Err(match known {
        None => ApiError::NotFound(path.to_string()),
        Some(pattern) => ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed: allowed_methods(pattern),
        },
    })
}

/// Routes the request and lets it in (or not) before anything reads its body (a client without
/// the key costs no upload), then answers or hands it on. The order: one credential at most
/// (400), a wrong one slowed (429), the `Host` of a request without a valid key (421), no valid
/// key where one is needed (401, whether the route exists or not), the route (404, 405), a
/// browser from another site changing anything (403), the role (403).
pub fn handle(app: &Arc<App>, request: Request) {
    let started = Instant::now();
    let (path, query) = split_url(request.url());
    let found = find(request.method(), &path);
    let route = found.as_ref().ok().map(|(route, _)| *route);
    let admitted = admit(app, &request, found, &query);
    let (route, params, caller) = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let method = request.method().to_string();
            let status = respond(request, Err(refusal));
            let pattern = route.map_or("unmatched", |r| r.path);
            return app
                .metrics
                .http(pattern, &method, status, started.elapsed());
        }
    };
    let call = Call {
        query,
        params,
        by: caller.as_ref().map_or("anyone", |c| c.label()).to_string(),
        caller,
        route,
        started,
    };
    match route.handler {
        Handler::Light(handler) => {
            let status = respond_off_worker(request, handler(app, &call), &app.budget.downloads);
            call.served(app, status);
        }
        Handler::Upload {
            limit,
            body,
            handle,
        } => {
            let limit = match limit {
                Limit::Upload => app.limits.max_upload_bytes,
                Limit::Small => SMALL_BODY,
                Limit::Empty => 0,
            };
            uploads::start(app, request, limit, body, call, handle)
        }
        Handler::Stream(handle) => uploads::stream(app, request, call, handle),
        Handler::WebSocket => {
            let status = ws::upgrade(app, request);
            call.served(app, status);
        }
        Handler::LiveStream => {
            let status = stream::serve(app, request);
            call.served(app, status);
        }
    }
}

/// The route, its parameters and the caller (`None`: nobody in particular, on an open route),
/// or why the request is refused (see [`handle`] for the order).
fn admit(
    app: &App,
    request: &Request,
    found: Result<(&'static Route, Params), ApiError>,
    query: &str,
) -> Result<(&'static Route, Params, Option<Caller>), ApiError> {
    let access = found.as_ref().ok().map(|(route, _)| route.access);
    let ticketed = matches!(access, Some(Access::RoleOrTicket(_)));
    let credential = auth::credential(
        auth::header_pairs(request),
        query,
        app.auth.sources(ticketed),
    )?;
    let ip = request.remote_addr().map(|a| a.ip());
    let caller = match app.auth.identify(credential, ip) {
        Identity::Known(caller) => Some(caller),
        Identity::Anonymous | Identity::Wrong(Verdict::Refuse) => None,
        Identity::Wrong(Verdict::HoldOff(seconds)) => {
            return Err(ApiError::TooManyGuesses(seconds))
        }
    };
    let host = header(request, "Host");
    if (caller.is_none() || !app.auth.required()) && !app.guard.host_allowed(host) {
        return Err(ApiError::WrongHost(host.unwrap_or_default().to_string()));
    }
    let needed = access.map(|a| a.role(app.metrics_require_key));
    let Some(caller) = caller else {
        // Without a valid key only the open routes answer; every other path is 401 alike.
        return match (found, needed) {
            (Ok((route, params)), Some(None)) => Ok((route, params, None)),
            _ => Err(ApiError::Unauthorized),
        };
    };
    let (route, params) = found?;
    let changes = !matches!(route.method, "GET") || matches!(route.handler, Handler::WebSocket);
    let secure = request.secure();
    let from_elsewhere = app.guard.cross_site(
        header(request, "Sec-Fetch-Site"),
        header(request, "Origin"),
        secure,
        host,
    );
    if changes && from_elsewhere {
        return Err(ApiError::Forbidden(format!(
            "a page of another site ({}) may not use this box; FACE_ALLOWED_ORIGINS lists the \
             origins that may",
            header(request, "Origin").unwrap_or("Sec-Fetch-Site: cross-site")
        )));
    }
    if let Some(Some(role)) = needed {
        if !caller.role().allows(role) {
            return Err(ApiError::Forbidden(format!(
                "{} {} needs the {role} role; the key {:?} is {}",
                route.method,
                route.path,
                caller.label(),
                caller.role()
            )));
        }
    }
    Ok((route, params, Some(caller)))
}

/// `GET /session`: who the key belongs to, so that the page shows only what its role may do.
fn session(app: &App, call: &Call) -> Result<Answer, ApiError> {
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
fn ticket(app: &App, call: &Call) -> Result<Answer, ApiError> {
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

pub(super) fn split_url(url: &str) -> (String, String) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    (path.to_string(), query.to_string())
}

/// `GET /health`: the original's fields (`ok`, `encodings`, `labels`) and `version` for
/// anyone; the whole document (camera, outbox, broker, HTTP) only with a valid key, or on a box
/// without keys.
fn health(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (encodings, labels) = app.recognizer.gallery().counts();
    let ok = app
        .camera
        .as_ref()
        .is_none_or(|camera| camera.healthy(app.limits.camera_stale_after));
    let mut answer = json!({
        "ok": ok,
        "encodings": encodings,
        "labels": labels,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if call.caller.is_none() {
        return Ok(Answer::Json(answer));
    }
    if let Some(camera) = &app.camera {
        answer["camera"] = camera.to_json();
        if let Some(live) = app.live() {
            answer["camera"]["live"] = live.to_json();
        }
    }
    if app.dispatcher.durable() {
        // The main API's (or the broker's) own trouble: shown, but the box itself is fine.
        answer["outbox"] = app.dispatcher.stats().to_json();
    }
    if let Some(unknowns) = app.unknowns() {
        answer["unknown_clusters"] = json!(unknowns.cluster_count());
    }
    if let Some(log) = app.dispatcher.event_log() {
        // Its trouble is shown, not counted against `ok`: events go on without it.
        answer["event_log"] = log.stats().to_json();
    }
    if let Some((mqtt, sync)) = app.mqtt_json() {
        // The broker's trouble is shown, not counted against `ok`: the box works without it.
        answer["mqtt"] = mqtt;
        if let Some(sync) = sync {
            answer["gallery_sync"] = sync;
        }
    }
    answer["http"] = app.http_stats();
    Ok(Answer::Json(answer))
}

/// `GET /metrics`: the Prometheus text exposition ([`crate::metrics`]).
fn metrics(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    let text = app
        .metrics
        .render(app.families())
        .map_err(|e| ApiError::Internal(format!("metrics: {e}")))?;
    Ok(Answer::Text(crate::metrics::CONTENT_TYPE, text))
}

fn config(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Json(app.config_json.clone()))
}

/// People per page of `GET /people` unless `limit` says otherwise, and the most it may say.
const PEOPLE_PAGE: usize = 100;
const PEOPLE_PAGE_MAX: usize = 1000;

/// `GET /people?q=&limit=&offset=`: enrolled people whose id starts with `q`, by id.
fn people(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let prefix = query_value(&call.query, "q").unwrap_or_default();
    let number = |name: &str, default: usize, max: usize| match query_value(&call.query, name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "{name} must be a whole number up to {max}, got {v:?}"
                ))
            }),
    };
    let limit = number("limit", PEOPLE_PAGE, PEOPLE_PAGE_MAX)?;
    let offset = number("offset", 0, usize::MAX)?;
    let (total, page) = app.recognizer.gallery().people_page(&prefix, offset, limit);
    Ok(Answer::Json(
        json!({"ok": true, "total": total, "people": page}),
    ))
}

/// The `{id}` of the path, checked as enrollment checks it (400 otherwise).
fn person_id(call: &Call) -> Result<StudentId, ApiError> {
    StudentId::parse(call.params.get("id")?).map_err(ApiError::BadRequest)
}

/// `GET /people/{id}`.
fn person(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let gallery = &app.recognizer.gallery();
    let detail = gallery
        .person_detail(&id)
        .ok_or_else(|| ApiError::NotFound(format!("person {id}")))?;
    Ok(Answer::Json(detail.to_json(&gallery.history(&id))))
}

/// The `{n}` of the path: a sample's index.
fn sample_index(call: &Call) -> Result<usize, ApiError> {
    let n = call.params.get("n")?;
    n.parse::<usize>()
        .map_err(|_| ApiError::BadRequest(format!("a sample index is a whole number, got {n:?}")))
}

/// `GET /people/{id}/samples/{n}.jpg`: the face crop.
fn sample_crop(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (id, n) = (person_id(call)?, sample_index(call)?);
    let jpeg = app
        .recognizer
        .gallery()
        .sample_crop(&id, n)
        .ok_or_else(|| ApiError::NotFound(format!("a face crop for sample {n} of {id}")))?;
    Ok(Answer::Bytes("image/jpeg", jpeg))
}

/// `DELETE /people/{id}/samples/{n}`; the last sample takes the person with it.
fn delete_sample(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (id, n) = (person_id(call)?, sample_index(call)?);
    let left = app
        .recognizer
        .gallery()
        .remove_sample(&id, n, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("deleted sample {n} of {id} ({left} left)");
    Ok(Answer::Json(
        json!({"ok": true, "student_id": id.as_str(), "samples": left}),
    ))
}

/// `POST /people/{id}/rename` with `student_id` (JSON or form): 409 when it is taken.
fn rename(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let from = person_id(call)?;
    let to = StudentId::parse_new(&form.text("student_id")?)
        .map_err(|e| ApiError::BadRequest(format!("invalid student_id: {e}")))?;
    let samples = app
        .recognizer
        .gallery()
        .rename(&from, &to, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("renamed {from} to {to}");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": to.as_str(),
        "from": from.as_str(),
        "samples": samples,
    })))
}

/// `POST /people/{id}/capture?samples=3&seconds=20`: enrolls the next camera frames that show
/// exactly one face, through the same checks as `/enroll` (a frame refused by them is skipped
/// and the next one tried), waiting at most `seconds`.
fn capture(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let captures = app.captures.as_ref().ok_or_else(|| ApiError::Conflict {
        message: "this box runs no camera (CAMERA_DEVICE or CAMERA_FRAMES)".into(),
        details: json!({}),
    })?;
    let (mut samples, mut seconds) = (3u64, 20u64);
    for (key, value) in super::query::pairs(&call.query) {
        let number = || {
            value.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!("{key} must be a whole number, got {value:?}"))
            })
        };
        match key {
            "samples" => samples = number()?,
            "seconds" => seconds = number()?,
            _ => {}
        }
    }
    if !(1..=10).contains(&samples) {
        return Err(ApiError::BadRequest(format!(
            "samples must be 1 to 10, got {samples}"
        )));
    }
    let most = crate::camera::capture::MAX_CAPTURE_WAIT.as_secs();
    if !(1..=most).contains(&seconds) {
        return Err(ApiError::BadRequest(format!(
            "seconds must be 1 to {most}, got {seconds}"
        )));
    }
    let request = EnrollRequest {
        force: flag(&form, "force")?,
        by: call.by.clone(),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let (mut saved, mut after, mut refused) = (0u64, 0u64, Vec::new());
    let mut last_refusal = None;
    while saved < samples {
        let Some((n, frame)) = captures.next_after(after, deadline) else {
            break;
        };
        after = n;
        let recognizer = &app.recognizer;
        let Some(_place) = app.budget.images.take_within(app.budget.queue_wait) else {
            return Err(ApiError::Busy("too many images in progress"));
        };
        match recognizer
            .engine()
            .install(|| recognizer.enroll(id.as_str(), Photo::Image(&frame), &request))
        {
            Ok(outcome) if outcome.saved > 0 => saved += 1,
            Ok(_) => refused.push("no face found in the frame".to_string()),
            Err(e @ crate::Error::PoorFace { .. }) => {
                refused.push(e.to_string());
                last_refusal = Some(e);
            }
            // Somebody else's face: the next frames of it would be too.
            Err(e @ crate::Error::Gallery(GalleryError::Duplicate { .. })) => {
                refused.push(e.to_string());
                last_refusal = Some(e);
                break;
            }
            Err(e) => return Err(ApiError::from(e)),
        }
    }
    if saved == 0 {
        return Err(match last_refusal {
            Some(e) => ApiError::from(e),
            None => ApiError::Unprocessable {
                message: format!(
                    "no frame with one face good enough to enroll came from the camera in {seconds} s"
                ),
                details: json!({"refused": refused}),
            },
        });
    }
    log::info!("captured {saved} sample(s) of {id} from the camera");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "saved": saved,
        "asked": samples,
        "refused": refused,
    })))
}

/// Where the face of `POST /people/{id}/reject` comes from.
enum RejectSource<'a> {
    /// A photo (`image`, as `/enroll` takes it): its largest face.
    Image(&'a [u8]),
    /// A cluster of unknown faces the camera kept (`unknown`, its id in `GET /unknowns`): its
    /// best faces.
    Unknown(u64),
}

impl<'a> RejectSource<'a> {
    fn of(form: &'a Form) -> Result<RejectSource<'a>, ApiError> {
        match form.text("unknown") {
            Ok(cluster) => cluster
                .parse::<u64>()
                .map(RejectSource::Unknown)
                .map_err(|_| {
                    ApiError::BadRequest(format!("unknown is a cluster id, got {cluster:?}"))
                }),
            Err(ApiError::MissingField(_)) => Ok(RejectSource::Image(form.file("image")?)),
            Err(e) => Err(e),
        }
    }
}

/// `POST /people/{id}/reject`: the face is not this person (see [`crate::gallery::rejected`]).
/// 404 before any image work when the person is not enrolled.
fn reject(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let recognizer = &app.recognizer;
    if recognizer.gallery().person(&id).is_none() {
        return Err(ApiError::NotFound(format!("person {id}")));
    }
    let rejection = match RejectSource::of(&form)? {
        RejectSource::Image(image) => app.image_work(image, || {
            recognizer.reject(&id, Photo::Bytes(image), &call.by)
        })?,
        RejectSource::Unknown(cluster) => {
            let offer = unknowns_store(app)?
                .enroll_samples(cluster)
                .ok_or_else(|| no_cluster(cluster))?;
            let faces: Vec<_> = offer.samples.iter().map(|s| s.encoding).collect();
            recognizer
                .gallery()
                .reject(&id, &faces, &call.by)
                .map_err(|e| ApiError::from(crate::Error::from(e)))?
        }
    };
    log::info!(
        "a face was rejected as not {id} (distance {:.3}; {} rejected)",
        rejection.distance,
        rejection.rejected
    );
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "rejected": rejection.rejected,
        "distance": rejection.distance,
    })))
}

/// `DELETE /people/{id}/rejected`: every rejection of the person forgotten.
fn forget_rejections(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let forgotten = app.recognizer.gallery().forget_rejections(&id, &call.by)?;
    log::info!("forgot {forgotten} rejected face(s) of {id}");
    Ok(Answer::Json(json!({
        "ok": true,
        "student_id": id.as_str(),
        "rejected": 0,
        "forgotten": forgotten,
    })))
}

/// `DELETE /people/{id}`: encodings and crops gone from disk and from matching.
fn delete_person(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let id = person_id(call)?;
    let samples = app
        .recognizer
        .gallery()
        .remove(&id, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?
        .ok_or_else(|| ApiError::NotFound(format!("person {id}")))?;
    log::info!("deleted {id} ({samples} samples)");
    Ok(Answer::Json(
        json!({"ok": true, "deleted": id.as_str(), "samples": samples}),
    ))
}

/// The unknown-faces store, or 404 when the service keeps none.
fn unknowns_store(app: &App) -> Result<&Unknowns, ApiError> {
    app.unknowns()
        .map(|u| u.as_ref())
        .ok_or_else(|| ApiError::NotFound("unknown faces (none are kept: see the log)".into()))
}

/// A whole-number path parameter (`{cluster}`, `{entry}`): 400 otherwise.
fn number_param(call: &Call, name: &'static str) -> Result<u64, ApiError> {
    let v = call.params.get(name)?;
    v.parse::<u64>()
        .map_err(|_| ApiError::BadRequest(format!("{name} is a whole number, got {v:?}")))
}

fn no_cluster(cluster: u64) -> ApiError {
    ApiError::NotFound(format!("unknown-face cluster {cluster}"))
}

/// `GET /unknowns`: the clusters, newest `last_seen` first.
fn unknowns_list(app: &App, _call: &Call) -> Result<Answer, ApiError> {
    let clusters: Vec<Value> = unknowns_store(app)?
        .clusters()
        .iter()
        .map(|c| c.to_json())
        .collect();
    Ok(Answer::Json(json!({"ok": true, "clusters": clusters})))
}

/// `GET /unknowns/{cluster}/faces/{entry}.jpg`: a face's crop (404 when it has none).
fn unknown_crop(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let (cluster, entry) = (number_param(call, "cluster")?, number_param(call, "entry")?);
    let jpeg = unknowns_store(app)?.crop(cluster, entry).ok_or_else(|| {
        ApiError::NotFound(format!("a crop of face {entry} in cluster {cluster}"))
    })?;
    Ok(Answer::Bytes("image/jpeg", jpeg))
}

/// `DELETE /unknowns/{cluster}`: its faces and crops forgotten.
fn forget_unknown(app: &App, call: &Call) -> Result<Answer, ApiError> {
    let cluster = number_param(call, "cluster")?;
    let faces = unknowns_store(app)?
        .forget_cluster(cluster)?
        .ok_or_else(|| no_cluster(cluster))?;
    log::info!("forgot unknown-face cluster {cluster} ({faces} faces)");
    Ok(Answer::Json(
        json!({"ok": true, "deleted": cluster, "faces": faces}),
    ))
}

/// `POST /unknowns/{cluster}/enroll` with `student_id` (and `force`): the cluster's best faces
/// enrolled through `/enroll`'s checks (their crops detected again; without crops, their
/// encodings within the size and sharpness limits), then the cluster forgotten.
fn enroll_unknown(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let store = unknowns_store(app)?;
    let cluster = number_param(call, "cluster")?;
    let student_id = StudentId::parse_new(&form.text("student_id")?)
        .map_err(|e| ApiError::BadRequest(format!("invalid student_id: {e}")))?;
    let request = EnrollRequest {
        force: flag(&form, "force")?,
        by: call.by.clone(),
    };
    let offer = store
        .enroll_samples(cluster)
        .ok_or_else(|| no_cluster(cluster))?;
    let offered: Vec<Offered<'_>> = offer
        .samples
        .iter()
        .map(|s| match &s.crop {
            Some(jpeg) => Offered::Photo(jpeg),
            None => Offered::Encoding {
                encoding: &s.encoding,
                face_px: s.face_px,
                sharpness: s.sharpness,
            },
        })
        .collect();
    // The crops are small: one image place covers them all (the largest decides).
    let largest = offer
        .samples
        .iter()
        .filter_map(|s| s.crop.as_deref())
        .max_by_key(|c| c.len())
        .unwrap_or_default();
    let outcome = app.image_work(largest, || {
        app.recognizer
            .enroll_offered(student_id.as_str(), &offered, &request)
    })?;
    let forgotten = store.forget(&offer.members)?;
    log::info!(
        "enrolled {} face(s) of unknown-face cluster {cluster} as {student_id}; {forgotten} forgotten",
        outcome.saved
    );
    Ok(Answer::Json(json!({
        "ok": true,
        "saved": outcome.saved,
        "msg": {"faces_found": outcome.faces_found, "saved": outcome.saved},
        "student_id": student_id.as_str(),
        "cluster": cluster,
        "samples": outcome.offered,
        "refused": outcome.refused,
        "forgotten": forgotten,
    })))
}

/// `GET /`: the page. It holds no data (it asks for the key, then calls the API), so it is
/// open like `/docs`.
fn page(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("text/html; charset=utf-8", PAGE))
}

/// `GET /ui/{file}`: the page's script and style sheet.
fn page_asset(_app: &App, call: &Call) -> Result<Answer, ApiError> {
    let file = call.params.get("file")?;
    PAGE_ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .map(|(_, content_type, text)| Answer::Body(content_type, text))
        .ok_or_else(|| ApiError::NotFound(format!("/ui/{file}")))
}

fn openapi(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("application/json", OPENAPI))
}

fn docs(_app: &App, _call: &Call) -> Result<Answer, ApiError> {
    Ok(Answer::Body("text/html; charset=utf-8", DOCS))
}

/// `GET /gallery/export`: the gallery as one tar file (see [`crate::gallery::archive`]),
/// written to a temp file in the data folder first, so the write lock is not held while a slow
/// client downloads.
fn export(app: &App, _form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let gallery = &app.recognizer.gallery();
    let internal = |e: std::io::Error| {
        ApiError::from(crate::Error::from(GalleryError::Io {
            path: gallery.data_dir().to_path_buf(),
            source: e,
        }))
    };
    let mut file =
        crate::fsutil::unlinked_temp(gallery.data_dir(), "gallery-export.tar").map_err(internal)?;
    let summary = gallery
        .export(&mut file)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(internal)?;
    log::info!("gallery exported: {summary:?}");
    Ok(Answer::File {
        content_type: "application/x-tar",
        file,
        name: Some(format!(
            "face-attendance-gallery-{}.tar",
            crate::events::unix_now_ms() / 1000
        )),
    })
}

/// `POST /gallery/import?mode=merge|replace`: a gallery archive (in a file, see
/// [`uploads::stream`]), checked whole before anything is written.
fn import(app: &App, mut archive: std::fs::File, call: &Call) -> Result<Answer, ApiError> {
    let mode = match query_value(&call.query, "mode").as_deref() {
        None | Some("merge") => ImportMode::Merge,
        Some("replace") => ImportMode::Replace,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "mode must be merge or replace, got {other:?}"
            )))
        }
    };
    let summary = app
        .recognizer
        .gallery()
        .import_from(&mut archive, mode, &call.by)
        .map_err(|e| ApiError::from(crate::Error::from(e)))?;
    log::info!("gallery imported ({mode:?}): {summary:?}");
    Ok(Answer::Json(json!({"ok": true, "imported": summary})))
}

/// A yes/no form field; absent is no.
fn flag(form: &Form, name: &'static str) -> Result<bool, ApiError> {
    match form.text(name) {
        Err(ApiError::MissingField(_)) => Ok(false),
        Err(e) => Err(e),
        Ok(v) => match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(ApiError::BadRequest(format!(
                "{name} must be true or false, got {v:?}"
            ))),
        },
    }
}

fn enroll(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let student_id = form.text("student_id")?;
    let image = form.file("image")?;
    let request = EnrollRequest {
        force: flag(&form, "force")?,
        by: call.by.clone(),
    };
    let outcome = app.image_work(image, || {
        app.recognizer
            .enroll(&student_id, Photo::Bytes(image), &request)
    })?;
    if outcome.saved > 0 {
        log::info!("enrolled a face for {student_id}");
    }
    Ok(Answer::Json(
        json!({"ok": true, "saved": outcome.saved, "msg": outcome}),
    ))
}

fn recognize(app: &App, form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let image = form.file("image")?;
    let results = app.image_work(image, || {
        let options = MatchOptions::default();
        Ok(app
            .recognizer
            .recognize(Photo::Bytes(image), options)?
            .faces)
    })?;
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

fn realtime(app: &App, form: Form, call: &Call) -> Result<Answer, ApiError> {
    let (tolerance, send_unknown) = realtime_params(&call.query)?;
    let bytes = form.file("image")?;
    // The image place is given back before the webhook wait below.
    let (results, frame) = app.image_work(bytes, || {
        let options = MatchOptions::tolerance(tolerance);
        let recognized = app.recognizer.recognize(Photo::Bytes(bytes), options)?;
        Ok((recognized.faces, recognized.size))
    })?;
    let events: Vec<Event> = events_for(&results, frame, send_unknown);
    let labels: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.student_id.clone(), e.event_id.clone()))
        .collect();
    let delivered = app.dispatcher.dispatch(events);
    // `report` is the webhook's, as in the original; `sinks` has every durable sink's.
    let dispatch: Vec<Value> = labels
        .into_iter()
        .zip(delivered)
        .map(|((label, event_id), d)| {
            json!({"label": label, "event_id": event_id, "report": d.report, "sinks": d.sinks})
        })
        .collect();
    Ok(Answer::Json(json!({
        "ok": true,
        "results": results,
        "dispatch": dispatch,
        "webhook_enabled": app.dispatcher.webhook_enabled(),
    })))
}

fn mock_webhook(_app: &App, form: Form, _call: &Call) -> Result<Answer, ApiError> {
    let body = form.into_raw();
    let payload: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("body is not JSON: {e}")))?
    };
    Ok(Answer::Json(
        json!({"ok": true, "token": "dummy-token", "echo": payload}),
    ))
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
    fn path_patterns_take_parameters() {
        let params = |pattern, path| match_path(pattern, path).map(|p| p.0);
        assert_eq!(
            params("/people/{id}", "/people/alip"),
            Some(vec![("id", "alip".into())])
        );
        assert_eq!(
            params("/people/{id}", "/people/a%2Fb"),
            Some(vec![("id", "a/b".into())])
        );
        // A bad escape is kept as it came, for the id check to refuse.
        assert_eq!(
            params("/people/{id}", "/people/%zz"),
            Some(vec![("id", "%zz".into())])
        );
        assert_eq!(params("/people/{id}", "/people/"), None);
        assert_eq!(params("/people/{id}", "/people"), None);
        assert_eq!(params("/people/{id}", "/people/a/b"), None);
        assert_eq!(params("/people", "/people"), Some(vec![]));
        assert_eq!(params("/people", "/peoples"), None);
        let crop = "/people/{id}/samples/{n}.jpg";
        assert_eq!(
            params(crop, "/people/a/samples/12.jpg"),
            Some(vec![("id", "a".into()), ("n", "12".into())])
        );
        assert_eq!(params(crop, "/people/a/samples/.jpg"), None);
        assert_eq!(params(crop, "/people/a/samples/12"), None);
        let (route, _) = find(&Method::Get, "/people/a/samples/1.jpg").unwrap();
        assert_eq!(route.path, crop);
        let (route, p) = find(&Method::Delete, "/people/a/samples/1").unwrap();
        assert_eq!(
            (route.path, p.get("n").unwrap()),
            ("/people/{id}/samples/{n}", "1")
        );
        let wrong = find(&Method::Get, "/people/a/samples/1").unwrap_err();
        assert_eq!(wrong.headers(), Some(("Allow", "DELETE".to_string())));
        let (route, p) = find(&Method::Delete, "/people/alip").unwrap();
        assert_eq!((route.method, p.get("id").unwrap()), ("DELETE", "alip"));
        let wrong = find(&Method::Put, "/people/alip").unwrap_err();
        assert_eq!(wrong.headers(), Some(("Allow", "GET, DELETE".to_string())));
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

    #[test]
    fn the_table_gives_404_405_and_head_as_get() {
        assert_eq!(find(&Method::Get, "/health").unwrap().0.path, "/health");
        assert_eq!(find(&Method::Head, "/docs").unwrap().0.path, "/docs");
        assert_eq!(find(&Method::Get, "/nowhere").unwrap_err().status(), 404);
        let wrong = find(&Method::Put, "/enroll").unwrap_err();
        assert_eq!(wrong.status(), 405);
        assert_eq!(wrong.headers(), Some(("Allow", "POST".to_string())));
        // Every POST route has its own handler: none falls through to another.
        for route in ROUTES {
            let concrete = route.path.replace("{id}", "alip").replace("{n}", "0");
            if route.method == "DELETE" && concrete.ends_with(".jpg") {
                continue;
            }
            let (found, _) = find(&route.method.parse().unwrap(), &concrete).unwrap();
            assert!(
                std::ptr::eq(found, route),
                "{} {}",
                route.method,
                route.path
            );
        }
    }
}
