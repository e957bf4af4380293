//! Issue 22, each finding reproduced as it was found, against a real server on 127.0.0.1 with
//! real clients (curl, Python's websocket-client), and now refused with nothing changed on disk:
//! DNS rebinding (`Host`), cross-site writes (`Origin`, `Sec-Fetch-Site`), key guessing (many
//! keys in one request, many requests from one address), missing security headers, every key
//! able to do everything (the route x role matrix, written out here and not read from the route
//! table), `Unknown` as an id, and open routes that said too much.

mod common;

use std::path::Path;
use std::process::Command;

use common::http as h;
use face_attendance::http::ROUTES;
use face_attendance::service::Service;
use serde_json::Value;

const KIOSK: &str = "kiosk-key-0123456789abcdef";
const VIEWER: &str = "viewer-key-0123456789abcdef";
const OPERATOR: &str = "operator-key-0123456789abcdef";
const ADMIN: &str = "admin-key-0123456789abcdef";

/// A curl answer: status, headers (names lower-cased) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// `curl -i` with these arguments, from 127.0.0.1 unless `--interface` says otherwise.
fn curl(args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl (scripts/install-test-deps installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no answer to curl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

fn base(server: &Service) -> String {
    format!("http://{}", server.addr())
}

/// A keyless server on 127.0.0.1 (as the original service) with `penny` enrolled.
fn keyless_with_penny(data: &Path) -> Service {
    let server = h::start(data, h::serve_settings());
    enroll(&server, "penny", &[]);
    server
}

fn enroll(server: &Service, id: &str, extra: &[&str]) -> Reply {
    let photo = common::faces_dir().join("known/obama/obama_1.jpg");
    let mut args = vec![
        "-X".to_string(),
        "POST".into(),
        format!("{}/enroll", base(server)),
        "-F".into(),
        format!("student_id={id}"),
        "-F".into(),
        format!("image=@{}", photo.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args)
}

/// Every file under `dir` with its bytes: what "nothing changed on disk" compares.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = common::tree(dir)
        .into_iter()
        .filter(|p| !p.starts_with("events") && !p.contains("outbox"))
        .filter_map(|p| std::fs::read(dir.join(&p)).ok().map(|b| (p, b)))
        .collect();
    files.sort();
    files
}

#[test]
fn a_rebinding_page_can_neither_read_nor_change_a_keyless_box() {
    let data = tempfile::tempdir().unwrap();
    let server = keyless_with_penny(data.path());
    let before = snapshot(data.path());
    let url = base(&server);
    let rebound = format!("Host: rebind.attacker.example:{}", server.addr().port());
    for (method, path) in [
        ("GET", "/people"),
        ("GET", "/gallery/export"),
        ("GET", "/people/penny/samples/0.jpg"),
        ("GET", "/config"),
        ("GET", "/health"),
        ("GET", "/"),
        ("DELETE", "/people/penny"),
        ("POST", "/people/penny/rename"),
        ("PATCH", "/people/penny"),
        ("GET", "/reports/daily"),
        ("GET", "/kiosk/state"),
    ] {
        let reply = curl(&[
            "-X",
            method,
            "-H",
            &rebound,
            "-d",
            "student_id=x",
            &format!("{url}{path}"),
        ]);
        assert_eq!(reply.status, 421, "{method} {path}: {}", reply.body);
        assert!(
            reply.body.contains("rebind.attacker.example"),
            "{}",
            reply.body
        );
    }
    // The WebSocket, as a browser on the attacker's page would open it.
    let ws = python_ws(
        &server,
        "rebind.attacker.example",
        Some("http://rebind.attacker.example"),
        "",
    );
    assert!(ws.starts_with("refused 421"), "{ws}");
    // The box's own names still work, and nothing changed.
    for host in ["localhost", "127.0.0.1", "[::1]"] {
        let reply = curl(&[
            "-H",
            &format!("Host: {host}:8000"),
            &format!("{url}/people"),
        ]);
        assert_eq!(reply.status, 200, "{host}");
    }
    assert_eq!(snapshot(data.path()), before);
    server.shutdown();
}

/// Opens the WebSocket with Python's websocket-client (`host` and `origin` as a browser would
/// send them, `query` after `?`); says `open <first message>` or `refused <status>`.
fn python_ws(server: &Service, host: &str, origin: Option<&str>, query: &str) -> String {
    let script = r#"
import sys, websocket
url, host, origin = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    kw = {"host": host}
    if origin:
        kw["origin"] = origin
    ws = websocket.create_connection(url, timeout=10, **kw)
    print("open")
    ws.close()
except websocket.WebSocketBadStatusException as e:
    print("refused", e.status_code)
"#;
    let url = format!("ws://{}/ws/recognitions?{query}", server.addr());
    let out = Command::new("/usr/bin/python3")
        .args(["-c", script, &url, host, origin.unwrap_or("")])
        .output()
        .expect("python3 with websocket-client (Debian: python3-websocket)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_page_of_another_site_cannot_change_the_box_with_or_without_keys() {
    let data = tempfile::tempdir().unwrap();
    let server = keyless_with_penny(data.path());
    let before = snapshot(data.path());
    let url = base(&server);
    let form = "Content-Type: application/x-www-form-urlencoded";
    for headers in [
        vec!["Origin: http://evil.example", form],
        vec!["Origin: null", form],
        vec!["Sec-Fetch-Site: cross-site", form],
        // The box's own host, but another scheme or port, is another origin.
        vec!["Origin: https://127.0.0.1", form],
    ] {
        let mut args = vec!["-X", "POST", "--data", "student_id=renamed_by_csrf"];
        for h in &headers {
            args.extend(["-H", h]);
        }
        let target = format!("{url}/people/penny/rename");
        args.push(&target);
        let reply = curl(&args);
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
    }
    // A gallery replaced by a text/plain "simple request".
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        "Origin: http://evil.example",
        "-H",
        "Content-Type: text/plain",
        "--data",
        "garbage",
        &format!("{url}/gallery/import?mode=replace"),
    ]);
    assert_eq!(reply.status, 403, "{}", reply.body);
    let reply = curl(&[
        "-X",
        "DELETE",
        "-H",
        "Origin: http://evil.example",
        &format!("{url}/people/penny"),
    ]);
    assert_eq!(reply.status, 403);
    // A name changed by a text/plain "simple request" (no preflight).
    let reply = curl(&[
        "-X",
        "PATCH",
        "-H",
        "Origin: http://evil.example",
        "-H",
        "Content-Type: text/plain",
        "--data",
        r#"{"name":"renamed by csrf"}"#,
        &format!("{url}/people/penny"),
    ]);
    assert_eq!(reply.status, 403, "{}", reply.body);
    let ws = python_ws(
        &server,
        &server.addr().to_string(),
        Some("http://evil.example"),
        "",
    );
    assert_eq!(ws, "refused 403");
    assert_eq!(
        snapshot(data.path()),
        before,
        "a cross-site request changed the box"
    );
    // Reading stays allowed (the browser itself keeps other sites from reading the answer).
    let reply = curl(&[
        "-H",
        "Origin: http://evil.example",
        &format!("{url}/people"),
    ]);
    assert_eq!(reply.status, 200);
    // Clients that are not browsers: no Origin (curl), or their own (websocket-client).
    assert!(python_ws(&server, &server.addr().to_string(), None, "").starts_with("open"));
    let own = format!("Origin: http://{}", server.addr());
    let reply = curl(&[
        "-X",
        "POST",
        "-H",
        &own,
        "--data",
        "student_id=penelope",
        &format!("{url}/people/penny/rename"),
    ]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.shutdown();

    // With keys, and the right key: a foreign page is still refused; a listed origin is not.
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    settings.api_key = Some(ADMIN.into());
    settings.allowed_origins = vec!["https://office.school.lan".into()];
    let server = h::start(data.path(), settings);
    let key = format!("X-API-Key: {ADMIN}");
    assert_eq!(enroll(&server, "penny", &["-H", &key]).status, 200);
    let url = base(&server);
    let reply = curl(&[
        "-X",
        "DELETE",
        "-H",
        &key,
        "-H",
        "Origin: http://evil.example",
        &format!("{url}/people/penny"),
    ]);
    assert_eq!(reply.status, 403);
    assert!(
        reply.body.contains("FACE_ALLOWED_ORIGINS"),
        "{}",
        reply.body
    );
    let reply = curl(&[
        "-X",
        "DELETE",
        "-H",
        &key,
        "-H",
        "Origin: https://office.school.lan",
        &format!("{url}/people/penny"),
    ]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    server.shutdown();
}

#[test]
fn keys_cannot_be_guessed_many_at_a_time_nor_fast_from_one_address() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    settings.api_key = Some(ADMIN.into());
    let server = h::start(data.path(), settings);
    let people = format!("{}/people", base(&server));
    // 95 wrong keys and the right one in one request: refused before any is tried.
    let mut args: Vec<String> = (0..95)
        .map(|i| format!("X-API-Key: wrong-key-{i:04}-0123456789"))
        .flat_map(|h| ["-H".to_string(), h])
        .collect();
    args.extend(["-H".into(), format!("X-API-Key: {ADMIN}"), people.clone()]);
    let reply = curl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("96 credentials"), "{}", reply.body);
    let reply = curl(&[
        "-H",
        &format!("X-API-Key: {ADMIN}"),
        "-H",
        "Authorization: Bearer x",
        &people,
    ]);
    assert_eq!(reply.status, 400);
    // One address guessing: a few 401s, then 429 with Retry-After, longer each time.
    let guess = |from: &str, key: &str| {
        curl(&[
            "--interface",
            from,
            "-H",
            &format!("X-API-Key: {key}"),
            &people,
        ])
    };
    let mut statuses = Vec::new();
    let mut waits = Vec::new();
    for i in 0..8 {
        let reply = guess("127.0.0.2", &format!("guess-{i:04}-0123456789abcdef"));
        statuses.push(reply.status);
        if let Some(wait) = reply.header("retry-after") {
            waits.push(wait.parse::<u64>().unwrap());
        }
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    assert!(
        waits.windows(2).all(|w| w[1] > w[0]) && waits[0] >= 1,
        "{waits:?}"
    );
    // Staff behind the same address with the right key are never held off.
    assert_eq!(guess("127.0.0.2", ADMIN).status, 200);
    // Another address is not held off by this one.
    assert_eq!(
        guess("127.0.0.3", "guess-other-0123456789abcdef").status,
        401
    );
    // A right guess while held off still gets in: the allowance slows wrong answers, and a key
    // made at install (32 random bytes) is beyond guessing (docs/src/security.md).
    let metrics = curl(&[
        "-H",
        &format!("X-API-Key: {ADMIN}"),
        &format!("{}/metrics", base(&server)),
    ]);
    assert_eq!(metrics.status, 200);
    let value = |name: &str| {
        metrics
            .body
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("face_http_auth_failures_total"), 9.0);
    assert_eq!(value("face_http_auth_held_off_total"), 3.0);
    assert_eq!(value("face_http_auth_held_addresses"), 1.0);
    server.shutdown();
}

#[test]
fn every_answer_carries_the_security_headers() {
    let data = tempfile::tempdir().unwrap();
    let server = keyless_with_penny(data.path());
    let url = base(&server);
    for (path, page) in [
        ("/", true),
        ("/docs", true),
        ("/ui/app.js", false),
        ("/openapi.json", false),
        ("/health", false),
        ("/people", false),
        ("/people/penny/samples/0.jpg", false),
        ("/gallery/export", false),
        ("/nowhere", false),
    ] {
        let reply = curl(&[&format!("{url}{path}")]);
        assert!(
            matches!(reply.status, 200 | 404),
            "{path}: {}",
            reply.status
        );
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-store"),
        ] {
            assert_eq!(reply.header(name), Some(value), "{path} {name}");
        }
        let csp = reply.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(csp.contains("script-src 'self'"), page, "{path}: {csp}");
    }
    server.shutdown();
}

/// Who may call what, written out here (not read from the route table): each route's least
/// role; `None` is open to anyone.
const MATRIX: &[(&str, &str, Option<&str>)] = &[
    ("GET", "/", None),
    ("GET", "/ui/app.js", None),
    ("GET", "/docs", None),
    ("GET", "/openapi.json", None),
    ("GET", "/health", None),
    ("GET", "/session", Some("kiosk")),
    ("POST", "/tickets", Some("kiosk")),
    ("GET", "/ws/recognitions", Some("kiosk")),
    ("GET", "/kiosk", Some("kiosk")),
    ("GET", "/kiosk/state", Some("kiosk")),
    ("GET", "/kiosk/photo/1.jpg", Some("kiosk")),
    ("GET", "/stream.mjpg", Some("viewer")),
    ("GET", "/events", Some("viewer")),
    ("GET", "/reports/daily", Some("viewer")),
    ("GET", "/people", Some("viewer")),
    ("GET", "/people/nobody", Some("viewer")),
    ("GET", "/people/nobody/samples/0.jpg", Some("viewer")),
    ("GET", "/unknowns", Some("viewer")),
    ("GET", "/unknowns/1/faces/1.jpg", Some("viewer")),
    ("GET", "/metrics", Some("viewer")),
    ("POST", "/enroll", Some("operator")),
    ("POST", "/recognize", Some("operator")),
    ("POST", "/recognize/realtime", Some("operator")),
    ("POST", "/mock/webhook", Some("operator")),
    ("POST", "/people/nobody/capture", Some("operator")),
    ("POST", "/people/nobody/reject", Some("operator")),
    ("DELETE", "/people/nobody/rejected", Some("operator")),
    ("POST", "/unknowns/1/enroll", Some("operator")),
    ("DELETE", "/unknowns/1", Some("operator")),
    ("DELETE", "/people/nobody", Some("admin")),
    ("PATCH", "/people/nobody", Some("admin")),
    ("DELETE", "/people/nobody/samples/0", Some("admin")),
    ("POST", "/people/nobody/rename", Some("admin")),
    ("GET", "/gallery/export", Some("admin")),
    ("GET", "/people/nobody/export", Some("admin")),
    ("POST", "/gallery/import", Some("admin")),
    ("GET", "/config", Some("admin")),
];

const ROLES: [(&str, &str); 4] = [
    ("kiosk", KIOSK),
    ("viewer", VIEWER),
    ("operator", OPERATOR),
    ("admin", ADMIN),
];

fn keyed_with_roles(data: &Path) -> Service {
    let keys = data.join("api-keys");
    let mut text = String::from("# label role key\n");
    for (role, key) in ROLES {
        text.push_str(&format!("{role}-box {role} {key}\n"));
    }
    std::fs::write(&keys, text).unwrap();
    let mut settings = h::serve_settings();
    settings.api_keys_file = Some(keys);
    h::start(data, settings)
}

#[test]
fn each_role_may_do_what_it_needs_and_no_more() {
    // The matrix covers every route of the table: a new route must be added here.
    let covered = |method: &str, pattern: &str| {
        MATRIX.iter().any(|(m, path, _)| {
            *m == method && {
                let (a, b): (Vec<&str>, Vec<&str>) =
                    (pattern.split('/').collect(), path.split('/').collect());
                a.len() == b.len()
                    && a.iter().zip(&b).all(|(p, s)| {
                        p == s
                            || (p.starts_with('{')
                                && s.ends_with(p.split('}').nth(1).unwrap_or("")))
                    })
            }
        })
    };
    for route in ROUTES {
        assert!(
            covered(route.method, route.path),
            "{} {} is not in the matrix",
            route.method,
            route.path
        );
    }
    assert_eq!(MATRIX.len(), ROUTES.len());
    let data = tempfile::tempdir().unwrap();
    let server = keyed_with_roles(data.path());
    let url = base(&server);
    for (method, path, least) in MATRIX {
        let rank = |role: &str| ROLES.iter().position(|(r, _)| *r == role).unwrap();
        for (role, key) in ROLES {
            let reply = curl(&[
                "-X",
                method,
                "-H",
                &format!("X-API-Key: {key}"),
                &format!("{url}{path}"),
            ]);
            let allowed = least.is_none_or(|least| rank(role) >= rank(least));
            if allowed {
                assert!(
                    !matches!(reply.status, 401 | 403 | 429) && reply.status < 500,
                    "{role} {method} {path}: {} {}",
                    reply.status,
                    reply.body
                );
            } else {
                assert_eq!(reply.status, 403, "{role} {method} {path}: {}", reply.body);
                let needed = least.unwrap_or_default();
                let said = reply.json()["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(said.contains(&format!("needs the {needed} role")), "{said}");
                assert!(said.contains(&format!("is {role}")), "{said}");
            }
        }
        // Without a key only the open routes answer, and the greeting screen to the box's own
        // (loopback) screen: this curl runs on the box (tests/kiosk.rs has it from elsewhere).
        let anonymous = curl(&["-X", method, &format!("{url}{path}")]);
        let own_screen = path.starts_with("/kiosk");
        assert_eq!(
            anonymous.status == 401,
            least.is_some() && !own_screen,
            "{method} {path}"
        );
    }
    // /session tells the page the role; tickets carry it.
    let session = curl(&[
        "-H",
        &format!("X-API-Key: {VIEWER}"),
        &format!("{url}/session"),
    ])
    .json();
    assert_eq!(session["role"], "viewer");
    assert_eq!(session["label"], "viewer-box");
    let ticket = |key: &str| {
        curl(&[
            "-X",
            "POST",
            "-H",
            &format!("X-API-Key: {key}"),
            &format!("{url}/tickets"),
        ])
        .json()["ticket"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kiosk_ticket = ticket(KIOSK);
    let reply = curl(&[&format!("{url}/stream.mjpg?ticket={kiosk_ticket}")]);
    assert_eq!(reply.status, 403, "a kiosk's ticket opens no live view");
    let own_host = server.addr().to_string();
    let ws = python_ws(
        &server,
        &own_host,
        None,
        &format!("ticket={}", ticket(KIOSK)),
    );
    assert!(ws.starts_with("open"), "{ws}");
    // A viewer's ticket gets past the key check (this box has no camera: 409).
    assert_eq!(
        curl(&[&format!("{url}/stream.mjpg?ticket={}", ticket(VIEWER))]).status,
        409
    );
    server.shutdown();
}

#[test]
fn unknown_is_no_ones_id() {
    let data = tempfile::tempdir().unwrap();
    let server = keyless_with_penny(data.path());
    let before = snapshot(data.path());
    for id in ["Unknown", "unknown", "UNKNOWN"] {
        let reply = enroll(&server, id, &[]);
        assert_eq!(reply.status, 400, "{id}: {}", reply.body);
        assert!(reply.body.contains("reserved"), "{}", reply.body);
        let reply = curl(&[
            "-X",
            "POST",
            "--data",
            &format!("student_id={id}"),
            &format!("{}/people/penny/rename", base(&server)),
        ]);
        assert_eq!(reply.status, 400, "{id}: {}", reply.body);
    }
    assert_eq!(snapshot(data.path()), before);
    server.shutdown();
}
