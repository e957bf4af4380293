//! Which handler answers which request: one table, [`ROUTES`], with each endpoint's method,
//! path pattern (`/people/{id}`: a `{name}` segment matches one non-empty segment, given to the
//! handler percent-decoded in [`Call::params`]), who may call it, what body it takes and its
//! handler. 404/405 (with every allowed method), the key check, the body limit and whether the
//! work is light (answered on an HTTP worker at once) or an upload (read and handled on a thread
//! of its own, within the budgets of [`super::budget`]) all follow from the entry, so a new
//! route is one entry.
//!
//! The handlers live by area: [`status`] (health, metrics, config, session, tickets), [`page`]
//! (the box's page and the API reference), [`people`], [`unknowns`], [`gallery`] (export,
//! import), [`recognize`] (enroll, recognize, realtime, the mock webhook) and [`kiosk`] (the
//! greeting screen).

mod gallery;
mod kiosk;
mod label;
mod page;
mod people;
mod recognize;
mod status;
mod unknowns;

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tiny_http::{Method, Request};

use super::auth::{self, Caller, Identity, Role, Verdict};
use super::call::{Access, Body, Call, Handler, Limit, Params, Route};
use super::error::ApiError;
use super::headers::header;
use super::query::{percent_decode, split_url};
use super::respond::{respond, respond_off_worker};
use super::{events, reports, stream, uploads, ws, App};
use gallery::{export, import};
use kiosk::{kiosk_page, kiosk_photo, kiosk_state};
use page::{docs, openapi, page, page_asset};
use people::{
    capture, delete_person, delete_sample, export_person, forget_rejections, person, reject,
    rename, sample_crop,
};
#[cfg(any(fuzzing, test))]
pub(super) use recognize::realtime_params;
use recognize::{enroll, mock_webhook, realtime, recognize};
use status::{config, health, metrics, session, ticket};
use unknowns::{enroll_unknown, forget_unknown, unknown_crop, unknowns_list};

/// The body `/mock/webhook` or a rename takes: an event or a small form, not an image.
const SMALL_BODY: usize = 64 * 1024;

/// The route table: every endpoint, once. `find` picks the entry of a request; everything else
/// about a route follows from it.
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
        handler: Handler::Light(people::people),
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
        method: "PATCH",
        path: "/people/{id}",
        access: Access::Role(Role::Admin),
        handler: Handler::Upload {
            limit: Limit::Small,
            body: Body::Raw,
            handle: people::set_label,
        },
    },
    Route {
        method: "GET",
        path: "/people/{id}/export",
        access: Access::Role(Role::Admin),
        handler: Handler::Upload {
            limit: Limit::Empty,
            body: Body::Raw,
            handle: export_person,
        },
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
        path: "/reports/daily",
        access: Access::Role(Role::Viewer),
        handler: Handler::Upload {
            limit: Limit::Empty,
            body: Body::Raw,
            handle: reports::answer,
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
        path: "/kiosk",
        access: Access::Kiosk,
        handler: Handler::Light(kiosk_page),
    },
    Route {
        method: "GET",
        path: "/kiosk/state",
        access: Access::Kiosk,
        handler: Handler::Light(kiosk_state),
    },
    Route {
        method: "GET",
        path: "/kiosk/photo/{seq}.jpg",
        access: Access::Kiosk,
        handler: Handler::Light(kiosk_photo),
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

/// The path pattern a request path belongs to: of the patterns it matches, the most specific
/// (the most literal characters: `/people/{id}/samples/{n}.jpg` over
/// `/people/{id}/samples/{n}`, which `…/1.jpg` also matches), with its parameters. Every route
/// of that pattern is the path's; the others are not, so `Allow` and the route agree.
fn resource(path: &str) -> Option<(&'static str, Params)> {
    let literal = |pattern: &str| {
        pattern
            .split('/')
            .map(
                |part| match part.strip_prefix('{').and_then(|p| p.split_once('}')) {
                    Some((_, suffix)) => suffix.len(),
                    None => part.len(),
                },
            )
            .sum::<usize>()
    };
    let mut best: Option<(&'static str, Params)> = None;
    for route in ROUTES {
        if best.as_ref().is_some_and(|(p, _)| *p == route.path) {
            continue;
        }
        if let Some(params) = match_path(route.path, path) {
            if best
                .as_ref()
                .is_none_or(|(p, _)| literal(route.path) > literal(p))
            {
                best = Some((route.path, params));
            }
        }
    }
    best
}

/// The route for `method path` and its path parameters, or the refusal: 404 for an unknown
/// path, 405 (with `Allow`: the methods of the path's pattern, see [`resource`]) for a known
/// path and another method. HEAD is answered like GET.
pub fn find(method: &Method, path: &str) -> Result<(&'static Route, Params), ApiError> {
    let Some((pattern, params)) = resource(path) else {
        return Err(ApiError::NotFound(path.to_string()));
    };
    let same = |route: &&Route| {
        method.as_str() == route.method || (*method == Method::Head && route.method == "GET")
    };
    match ROUTES.iter().filter(|r| r.path == pattern).find(same) {
        Some(route) => Ok((route, params)),
        None => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed: allowed_methods(pattern),
        }),
    }
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
        wants_csv: header(&request, "Accept").is_some_and(|a| a.contains("text/csv")),
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
            let status = ws::upgrade(&app.hub, request);
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
    let identity = app.auth.identify(credential, ip);
    let anonymous = identity == Identity::Anonymous;
    let caller = match identity {
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
    // Past the `Host` check: a rebinding page on the box's own browser is still refused.
    let caller = caller.or_else(|| own_screen(app, access, anonymous, ip));
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

/// The box's own screen (`Access::Kiosk`): a client on loopback that sent no credential at all
/// (a wrong one stays wrong), while `KIOSK_LOOPBACK_WITHOUT_KEY` lets it in, is a kiosk.
fn own_screen(
    app: &App,
    access: Option<Access>,
    anonymous: bool,
    ip: Option<std::net::IpAddr>,
) -> Option<Caller> {
    let screen = access == Some(Access::Kiosk)
        && anonymous
        && app.kiosk_loopback_without_key
        && ip.is_some_and(is_loopback);
    screen.then(|| Caller::new(OWN_SCREEN, Role::Kiosk))
}

/// The label of the box's own screen (a loopback client of `/kiosk` without a key).
const OWN_SCREEN: &str = "own-screen";

/// Whether `ip` is a loopback address, an IPv4 one seen on an IPv6 socket (`::ffff:127.0.0.1`)
/// included.
fn is_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // A crop's path is the crop's: DELETE there is not the sample's DELETE.
        for method in [Method::Delete, Method::Put, Method::Options] {
            let wrong = find(&method, "/people/a/samples/1.jpg").unwrap_err();
            assert_eq!(wrong.headers(), Some(("Allow", "GET".to_string())));
        }
        let (route, p) = find(&Method::Delete, "/people/alip").unwrap();
        assert_eq!((route.method, p.get("id").unwrap()), ("DELETE", "alip"));
        let wrong = find(&Method::Put, "/people/alip").unwrap_err();
        assert_eq!(
            wrong.headers(),
            Some(("Allow", "GET, DELETE, PATCH".to_string()))
        );
    }

    #[test]
    fn loopback_is_loopback_on_either_socket() {
        for (ip, want) in [
            ("127.0.0.1", true),
            ("127.8.9.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:192.168.1.20", false),
            ("192.168.1.20", false),
            ("0.0.0.0", false),
            ("fe80::1", false),
        ] {
            assert_eq!(is_loopback(ip.parse().unwrap()), want, "{ip}");
        }
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
