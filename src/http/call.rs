//! What the route table is made of and what a handler is given: [`Route`] (method, path
//! pattern, [`Access`], [`Handler`]), the [`Call`] with its path [`Params`], and how an upload's
//! body becomes a [`Form`] ([`Body`], [`Limit`]). Shared by the table ([`super::routes`]), the
//! handlers and the threads that run them ([`super::uploads`]), so none of them imports another
//! for its types.

use std::fs::File;
use std::time::Instant;

use super::app::App;
use super::auth::{Caller, Role};
use super::error::ApiError;
use super::form::{self, Form};
use super::respond::Answer;

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
    /// The greeting screen: a `kiosk` key or above; a client on the box itself (loopback: its
    /// own screen) without any credential too, unless `KIOSK_LOOPBACK_WITHOUT_KEY=false`.
    Kiosk,
}

impl Access {
    /// The role a key needs here (`None`: open to anyone).
    pub fn role(self, metrics_require_key: bool) -> Option<Role> {
        match self {
            Access::Open | Access::Health => None,
            Access::Monitoring => metrics_require_key.then_some(Role::Viewer),
            Access::Role(role) | Access::RoleOrTicket(role) => Some(role),
            Access::Kiosk => Some(Role::Kiosk),
        }
    }
}

/// The parameters of a matched path pattern (`{id}` -> `alip`), percent-decoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(pub(super) Vec<(&'static str, String)>);

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
    /// The request's `Accept` names `text/csv`: a CSV answer where a route has one and no
    /// `format` was given.
    pub wants_csv: bool,
    /// The route and when it was found, for `/metrics`.
    pub(super) route: &'static Route,
    pub(super) started: Instant,
}

impl Call {
    /// Records the answer in `/metrics`.
    pub(super) fn served(&self, app: &App, status: u16) {
        let took = self.started.elapsed();
        app.metrics
            .http(self.route.path, self.route.method, status, took);
    }
}

/// What an upload route does with its parsed body.
pub type UploadHandler = fn(&App, Form, &Call) -> Result<Answer, ApiError>;

/// What a streamed route does with its body: a file, at its start, gone once closed.
pub type StreamHandler = fn(&App, File, &Call) -> Result<Answer, ApiError>;

/// What a route does with the request.
#[derive(Clone, Copy)]
pub enum Handler {
    /// No body, no face work: answered by the HTTP worker at once.
    Light(fn(&App, &Call) -> Result<Answer, ApiError>),
    /// A body of at most `limit` bytes, read as `body` says and handled on an upload thread.
    /// Image work inside takes an image place (see [`App::image_work`]).
    Upload {
        /// The most body read.
        limit: Limit,
        /// How the body becomes a form.
        body: Body,
        /// What is done with it.
        handle: UploadHandler,
    },
    /// A gallery archive: the body streamed to a file (at most `GALLERY_IMPORT_MAX_BYTES`),
    /// then handled, on a thread of its own under the one import place ([`super::uploads::stream`]).
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

/// One endpoint: its method and path pattern, who may call it and what answers it.
pub struct Route {
    /// `GET`, `POST` or `DELETE` (HEAD is answered as GET).
    pub method: &'static str,
    /// The path pattern (`/people/{id}`).
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// What answers it.
    pub handler: Handler,
}
