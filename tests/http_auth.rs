//! API keys on a real server (127.0.0.1:0) with real clients: every protected route refuses a
//! missing or wrong key with the same 401 and takes the right one in either header; the open
//! routes stay open; the WebSocket refuses before upgrading; a refused upload is never read.

mod common;

use std::time::{Duration, Instant};

use common::http as h;
use face_attendance::http::{Access, ROUTES};
use face_attendance::service::Service;
use serde_json::{json, Value};

const KEY_ENV: &str = "env-key-0123456789abcdef";
const KEY_A: &str = "file-key-a-0123456789abcdef";
const KEY_B: &str = "file-key-b-0123456789abcdef";
const WRONG: &str = "file-key-c-0123456789abcdef";
/// Labelled in the keys file (`office <key>`): the audit log names it so.
const KEY_OFFICE: &str = "office-key-0123456789abcdef";

/// A server with `FACE_API_KEY` and a keys file of two keys (with a comment and a blank line).
fn keyed_server(data: &std::path::Path) -> Service {
    let keys_file = data.join("api-keys");
    std::fs::write(
        &keys_file,
        format!("# site keys\n{KEY_A}\n\n  {KEY_B}  \noffice  {KEY_OFFICE}\n"),
    )
    .unwrap();
    let mut settings = h::serve_settings();
    settings.api_key = Some(KEY_ENV.into());
    settings.api_keys_file = Some(keys_file);
    h::start(data, settings)
}

/// (status, WWW-Authenticate, body) of `method path` with these headers.
fn call(
    server: &Service,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>, String) {
    let url = format!("http://{}{path}", server.addr());
    let agent = h::agent();
    let mut response = if method == "POST" {
        let mut request = agent.post(&url).header("Content-Type", "application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send("{}").unwrap()
    } else if method == "DELETE" {
        let mut request = agent.delete(&url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.call().unwrap()
    } else {
        let mut request = agent.get(&url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.call().unwrap()
    };
    let challenge = response
        .headers()
        .get("WWW-Authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    let status = response.status().as_u16();
    (
        status,
        challenge,
        response.body_mut().read_to_string().unwrap(),
    )
}

const REFUSED: &str = r#"{"ok":false,"error":"missing or invalid API key"}"#;

#[test]
fn every_protected_route_needs_a_configured_key_in_either_header() {
    let data = tempfile::tempdir().unwrap();
    let server = keyed_server(data.path());
    // The greeting screen's routes let the box's own (loopback) screen in without a key, and
    // this client is on loopback: tests/kiosk.rs has them from elsewhere.
    let protected: Vec<(&str, &str)> = ROUTES
        .iter()
        .filter(|r| !matches!(r.access, Access::Open | Access::Health | Access::Kiosk))
        .map(|r| (r.path, r.method))
        .collect();
    let names: Vec<&str> = protected.iter().map(|(p, _)| *p).collect();
    for must in [
        "/enroll",
        "/recognize",
        "/recognize/realtime",
        "/ws/recognitions",
        "/config",
        "/metrics",
        "/mock/webhook",
        "/people",
        "/people/{id}",
        "/people/{id}/samples/{n}.jpg",
        "/people/{id}/samples/{n}",
        "/people/{id}/rename",
        "/gallery/export",
        "/gallery/import",
        "/session",
        "/tickets",
    ] {
        assert!(names.contains(&must), "{must} is not protected");
    }
    let mut wrong_answers = Vec::new();
    for (path, method) in &protected {
        // No credential: 401, as often as asked (nothing is guessed).
        let (status, challenge, body) = call(&server, method, path, &[]);
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(body, REFUSED, "{method} {path}");
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.starts_with("Bearer")),
            "{challenge:?}"
        );
        let refused = [
            vec![("X-API-Key", WRONG)],
            vec![("Authorization", "Bearer file-key-c-0123456789abcdef")],
            // A configured key in the wrong place, or a prefix of one, is no key.
            vec![("Authorization", KEY_A)],
            vec![("Authorization", "Basic ZmlsZS1rZXktYQ==")],
            vec![("X-API-Key", &KEY_A[..KEY_A.len() - 1])],
            vec![("X-API-Key", "")],
        ];
        for headers in refused {
            // A wrong key is refused: 401 within the allowance, then 429 (tests/lan_trust.rs).
            let (status, _, body) = call(&server, method, path, &headers);
            assert!(
                matches!(status, 401 | 429),
                "{method} {path} {headers:?}: {status} {body}"
            );
            wrong_answers.push(status);
        }
        let bearer_b = format!("Bearer {KEY_B}");
        let lower_bearer = format!("bearer {KEY_ENV}");
        for headers in [
            vec![("X-API-Key", KEY_A)],
            vec![("X-API-Key", KEY_B)],
            vec![("X-API-Key", KEY_ENV)],
            vec![("Authorization", bearer_b.as_str())],
            vec![("Authorization", lower_bearer.as_str())],
        ] {
            let (status, _, body) = call(&server, method, path, &headers);
            assert!(
                !matches!(status, 401 | 403 | 429),
                "{method} {path} {headers:?}: {status} {body}"
            );
            // Past the key check: the route's own answer (a form error, a missing upgrade...).
            assert!(status < 500, "{method} {path}: {status} {body}");
        }
        // Two credentials, even one of them right, are refused before either is tried.
        let headers = [("X-API-Key", WRONG), ("Authorization", bearer_b.as_str())];
        assert_eq!(call(&server, method, path, &headers).0, 400);
    }
    assert_eq!(&wrong_answers[..5], [401; 5]);
    assert!(wrong_answers[5..].iter().all(|s| *s == 429));
    // A key in a URL is refused with the reason, not taken.
    let (status, _, body) = call(&server, "GET", &format!("/config?api_key={KEY_A}"), &[]);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("X-API-Key header"), "{body}");
    // Without a key, a path that exists or not, any method: 401 alike (no route enumeration).
    for (method, path) in [("GET", "/nowhere"), ("GET", "/enroll"), ("DELETE", "/")] {
        let (status, _, body) = call(&server, method, path, &[]);
        assert_eq!((status, body.as_str()), (401, REFUSED), "{method} {path}");
    }
    // With one, 404 and 405 as before.
    assert_eq!(
        call(&server, "GET", "/nowhere", &[("X-API-Key", KEY_A)]).0,
        404
    );
    assert_eq!(
        call(&server, "GET", "/enroll", &[("X-API-Key", KEY_A)]).0,
        405
    );
    server.shutdown();
}

#[test]
fn health_and_the_api_reference_stay_open() {
    let data = tempfile::tempdir().unwrap();
    let server = keyed_server(data.path());
    let open: Vec<&str> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Open | Access::Health))
        .map(|r| r.path)
        .collect();
    // The page and its files hold no data: it asks for the key itself.
    assert_eq!(
        open,
        ["/health", "/", "/ui/{file}", "/openapi.json", "/docs"]
    );
    for path in open {
        let path = path.replace("{file}", "app.js");
        let (status, _, body) = call(&server, "GET", &path, &[]);
        assert_eq!(status, 200, "{path}: {body}");
    }
    // Without a key, /health answers the original's fields and the version, nothing more.
    let (_, _, health) = call(&server, "GET", "/health", &[]);
    let health: Value = serde_json::from_str(&health).unwrap();
    assert_eq!(
        health,
        json!({"ok": true, "encodings": 0, "labels": 0, "version": env!("CARGO_PKG_VERSION")})
    );
    // With any key, the whole document.
    let (_, _, full) = call(&server, "GET", "/health", &[("X-API-Key", KEY_B)]);
    let full: Value = serde_json::from_str(&full).unwrap();
    assert!(full["http"]["connections"].is_number(), "{full}");
    // /config says a key is needed, and never shows one.
    let (status, _, config) = call(&server, "GET", "/config", &[("X-API-Key", KEY_A)]);
    assert_eq!(status, 200);
    let config: Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["api_key_required"], true);
    for key in [KEY_ENV, KEY_A, KEY_B] {
        assert!(!config.to_string().contains(key));
    }
    server.shutdown();
}

#[test]
fn the_right_key_enrolls_and_recognizes() {
    let data = tempfile::tempdir().unwrap();
    let server = keyed_server(data.path());
    let photo = common::faces_dir().join("known/obama/obama_1.jpg");
    let image = std::fs::read(&photo).unwrap();
    let (content_type, body) = face_attendance::client::image_form(&photo, &image);
    let post = |path: &str, key: Option<&str>, body: Vec<u8>| {
        let mut request = h::agent()
            .post(format!("http://{}{path}", server.addr()))
            .header("Content-Type", &content_type);
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request.send(body).unwrap();
        let text = response.body_mut().read_to_string().unwrap();
        (
            response.status().as_u16(),
            serde_json::from_str::<Value>(&text).unwrap(),
        )
    };
    let student = face_attendance::client::multipart(&[
        ("student_id", face_attendance::client::Part::Text("obama")),
        (
            "image",
            face_attendance::client::Part::File {
                file_name: "obama_1.jpg",
                content_type: "image/jpeg",
                data: &image,
            },
        ),
    ]);
    let enroll = |key| {
        let mut request = h::agent()
            .post(format!("http://{}/enroll", server.addr()))
            .header("Content-Type", &student.0);
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        request.send(&student.1[..]).unwrap().status().as_u16()
    };
    // Refused: nothing written.
    assert_eq!(enroll(None), 401);
    assert_eq!(enroll(Some(WRONG)), 401);
    assert!(common::tree(data.path())
        .iter()
        .all(|p| !p.ends_with(".npy")));
    assert_eq!(enroll(Some(KEY_B)), 200);
    let (status, answer) = post("/recognize", Some(KEY_A), body.clone());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["label"], "obama");
    let (status, answer) = post("/recognize", None, body);
    assert_eq!(
        (status, answer),
        (401, serde_json::from_str(REFUSED).unwrap())
    );
    server.shutdown();
}

#[test]
fn the_websocket_refuses_before_upgrading_and_takes_a_header_key_or_a_ticket() {
    use tungstenite::client::IntoClientRequest;
    let data = tempfile::tempdir().unwrap();
    let server = keyed_server(data.path());
    let ws_url = format!("ws://{}/ws/recognitions", server.addr());
    for (url, expected) in [
        (ws_url.clone(), 401),
        (format!("{ws_url}?ticket=0123"), 401),
        (format!("{ws_url}?apikey={KEY_A}"), 401),
        // Keys in URLs are off unless FACE_ALLOW_KEY_IN_URL=true.
        (format!("{ws_url}?api_key={KEY_A}"), 400),
    ] {
        match tungstenite::connect(url.as_str()) {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), expected, "{url}")
            }
            other => panic!("{url}: expected {expected}, got {:?}", other.map(|_| ())),
        }
    }
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("X-API-Key", KEY_A.parse().unwrap());
    let (mut by_header, _) = tungstenite::connect(request).unwrap();
    // A ticket, asked for with a key in a header, opens it once.
    let (status, _, body) = call(&server, "POST", "/tickets", &[("X-API-Key", KEY_B)]);
    assert_eq!(status, 200, "{body}");
    let ticket = serde_json::from_str::<Value>(&body).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_string();
    let by_ticket_url = format!("{ws_url}?ticket={ticket}");
    let (mut by_ticket, _) = tungstenite::connect(by_ticket_url.as_str()).unwrap();
    match tungstenite::connect(by_ticket_url.as_str()) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("a used ticket opened again: {:?}", other.map(|_| ())),
    }
    // Both receive events (a realtime call with send_unknown makes one for a stranger).
    let photo = common::faces_dir().join("strangers/stuart_1.jpg");
    let image = std::fs::read(&photo).unwrap();
    let (content_type, body) = face_attendance::client::image_form(&photo, &image);
    let status = h::agent()
        .post(format!(
            "http://{}/recognize/realtime?send_unknown=true",
            server.addr()
        ))
        .header("Content-Type", &content_type)
        .header("X-API-Key", KEY_ENV)
        .send(body)
        .unwrap()
        .status();
    assert_eq!(status, 200);
    for ws in [&mut by_header, &mut by_ticket] {
        let message: Value = h::next_json(ws);
        assert_eq!(message["student_id"], "Unknown");
    }
    server.shutdown();
}

#[test]
fn an_unauthenticated_upload_is_refused_before_its_body_and_holds_no_worker() {
    let data = tempfile::tempdir().unwrap();
    let keys_file = data.path().join("keys");
    std::fs::write(&keys_file, format!("{KEY_A}\n")).unwrap();
    let mut settings = h::serve_settings();
    settings.api_keys_file = Some(keys_file);
    settings.workers = 2;
    let server = h::start(data.path(), settings);
    // More stalled uploads than workers: each is refused at once, without sending a byte of
    // its declared 10 MB, and the server still answers others.
    let started = Instant::now();
    let stalled: Vec<_> = (0..6)
        .map(|_| {
            let (stream, answer) = h::raw_request(
                server.addr(),
                "POST /enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000\r\n\r\n",
            );
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer:?}");
            assert!(answer.contains(REFUSED), "{answer:?}");
            stream
        })
        .collect();
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _, _) = call(&server, "GET", "/health", &[]);
    assert_eq!(status, 200);
    // Past the key check: `{}` has no image.
    let (status, _, _) = call(&server, "POST", "/recognize", &[("X-API-Key", KEY_A)]);
    assert_eq!(status, 422);
    drop(stalled);
    server.shutdown();
}

#[test]
fn the_audit_log_names_the_key_that_made_each_change() {
    let data = tempfile::tempdir().unwrap();
    let server = keyed_server(data.path());
    let photo = common::faces_dir().join("known/obama/obama_1.jpg");
    let bytes = std::fs::read(photo).unwrap();
    for key in [KEY_OFFICE, KEY_ENV, KEY_A] {
        let (ct, body) = face_attendance::client::multipart(&[
            ("student_id", face_attendance::client::Part::Text("obama")),
            (
                "image",
                face_attendance::client::Part::File {
                    file_name: "o.jpg",
                    content_type: "image/jpeg",
                    data: &bytes,
                },
            ),
        ]);
        let mut response = h::agent()
            .post(&format!("http://{}/enroll", server.addr()))
            .header("Content-Type", &ct)
            .header("X-API-Key", key)
            .send(body)
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let _ = response.body_mut().read_to_string();
    }
    let (status, _, body) = call(&server, "GET", "/people/obama", &[("X-API-Key", KEY_B)]);
    assert_eq!(status, 200, "{body}");
    let person: Value = serde_json::from_str(&body).unwrap();
    let by: Vec<&str> = person["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["by"].as_str().unwrap())
        .collect();
    let keys_file = data.path().join("api-keys").display().to_string();
    assert_eq!(
        by,
        ["office", "FACE_API_KEY", &format!("{keys_file} line 2")]
    );
    // No key ever shows in the log.
    let log = std::fs::read_to_string(data.path().join("audit.jsonl")).unwrap();
    for key in [KEY_OFFICE, KEY_ENV, KEY_A] {
        assert!(!log.contains(key));
    }
    server.shutdown();
}
