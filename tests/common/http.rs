//! A real server on 127.0.0.1:0, a real HTTP client (ureq), a real webhook receiver.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use face_attendance::client::{multipart, Part};
use face_attendance::gallery::Gallery;
use face_attendance::recognizer::Recognizer;
use face_attendance::service;
use face_attendance::service::Service;
use face_attendance::settings::{ServeSettings, Settings};
use serde_json::Value;

pub fn serve_settings() -> ServeSettings {
    ServeSettings {
        bind: Some("127.0.0.1:0".into()),
        api_key: None,
        api_keys_file: None,
        workers: 4,
        max_upload_bytes: 10 * 1024 * 1024,
        max_import_bytes: 64 * 1024 * 1024,
        http_timeout_seconds: 3,
        max_connections: 0,
        max_connections_per_client: 32,
        max_uploads: 16,
        max_images: 2,
        queue_seconds: 5.0,
        webhook_url: String::new(),
        webhook_api_key: String::new(),
        cooldown_seconds: 5.0,
        webhook_timeout_seconds: 1.0,
        webhook_retry_max_seconds: 1.0,
        outbox_max_events: 100_000,
        ws_max_clients: 16,
        metrics_require_key: None,
        allow_open_lan: false,
        allowed_hosts: Vec::new(),
        allowed_origins: Vec::new(),
        allow_key_in_url: false,
        stream_max_fps: 5.0,
        stream_max_clients: 4,
        tls: Default::default(),
        camera: Default::default(),
        mqtt: Default::default(),
        kiosk: Default::default(),
        event_command: Default::default(),
    }
}

/// A server over `data` (a fresh gallery there), sharing the test binary's engine.
pub fn start(data: &Path, serve: ServeSettings) -> Service {
    let settings = Settings {
        data_dir: data.to_path_buf(),
        ..Settings::default()
    };
    start_with(&settings, serve)
}

/// A server with `settings` (over the gallery of its data folder), sharing the test binary's
/// engine.
pub fn start_with(settings: &Settings, serve: ServeSettings) -> Service {
    service::start(settings, &serve, recognizer(settings)).unwrap()
}

/// A recognizer with `settings`' rules over the gallery in their data folder, on the test
/// binary's engine.
pub fn recognizer(settings: &Settings) -> Recognizer {
    let (gallery, _) = Gallery::open_with(&settings.data_dir, settings.crop_policy()).unwrap();
    Recognizer::new(super::engine(), Arc::new(gallery))
        .with_tolerance(settings.tolerance)
        .with_max_pixels(settings.max_pixels)
        .with_match_margin(settings.match_margin)
        .with_enroll_jitters(settings.enroll_jitters)
        .with_enroll_policy(settings.enroll_policy().unwrap())
}

pub fn agent() -> ureq::Agent {
    face_attendance::client::agent(Duration::from_secs(60))
}

/// POSTs a body; returns (status, parsed JSON).
pub fn post(url: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let mut response = agent()
        .post(url)
        .header("Content-Type", content_type)
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// PATCHes a body; returns (status, the body as JSON, else as a JSON string).
pub fn patch(url: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    answer(
        agent()
            .patch(url)
            .header("Content-Type", content_type)
            .send(body)
            .unwrap(),
    )
}

/// The status and the body (parsed JSON, else the text as a JSON string).
fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// GET with the raw answer: status, Content-Type and bytes.
pub fn get_bytes(url: &str) -> (u16, String, Vec<u8>) {
    let mut response = agent().get(url).call().unwrap();
    let content_type = response
        .headers()
        .get("Content-Type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let status = response.status().as_u16();
    let bytes = response.body_mut().read_to_vec().unwrap();
    (status, content_type, bytes)
}

pub fn get(url: &str) -> (u16, Value) {
    answer(agent().get(url).call().unwrap())
}

pub fn delete(url: &str) -> (u16, Value) {
    answer(agent().delete(url).call().unwrap())
}

pub fn post_image(url: &str, photo: &Path, extra: &[(&str, &str)]) -> (u16, Value) {
    let data = std::fs::read(photo).unwrap();
    let name = photo.file_name().unwrap().to_string_lossy().into_owned();
    let mut fields: Vec<(&str, Part)> = extra.iter().map(|(k, v)| (*k, Part::Text(v))).collect();
    fields.push((
        "image",
        Part::File {
            file_name: &name,
            content_type: "image/jpeg",
            data: &data,
        },
    ));
    let (ct, body) = multipart(&fields);
    post(url, &ct, body)
}

/// Sends raw bytes (a request head, maybe part of a body) and returns the open stream and the
/// first bytes of the answer (empty when none came within 10 s).
pub fn raw_request(addr: std::net::SocketAddr, head: &str) -> (std::net::TcpStream, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    (stream, String::from_utf8_lossy(&answer[..n]).into_owned())
}

/// How the test webhook receiver answers.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Ok,
    Fail500,
    Hang,
}

/// One call the receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub auth: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: Value,
}

/// What the receiver got, in order.
pub type Received = Arc<Mutex<Vec<Hit>>>;

/// A webhook receiver (tiny_http) on 127.0.0.1:0; returns its URL and what it records.
pub fn receiver(behaviour: Behaviour) -> (String, Received) {
    let (url, received, _) = switchable_receiver(behaviour);
    (url, received)
}

/// A receiver whose behaviour the test changes as it goes (a main API going down and up).
pub fn switchable_receiver(behaviour: Behaviour) -> (String, Received, Arc<Mutex<Behaviour>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/attendance/events",
        server.server_addr().to_ip().unwrap()
    );
    serve_receiver(server, url, behaviour)
}

/// A receiver on a given address (a main API coming up where it was down).
pub fn receiver_at(addr: &str, behaviour: Behaviour) -> Received {
    let server = tiny_http::Server::http(addr).unwrap();
    serve_receiver(server, String::new(), behaviour).1
}

fn serve_receiver(
    server: tiny_http::Server,
    url: String,
    behaviour: Behaviour,
) -> (String, Received, Arc<Mutex<Behaviour>>) {
    let received: Received = Arc::default();
    let behaviour = Arc::new(Mutex::new(behaviour));
    let (log, now) = (received.clone(), behaviour.clone());
    std::thread::spawn(move || {
        let mut hung = Vec::new();
        for mut request in server.incoming_requests() {
            let header = |name: &'static str| {
                request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv(name))
                    .map(|h| h.value.to_string())
            };
            let (auth, idempotency_key) = (header("Authorization"), header("Idempotency-Key"));
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
            let behaviour = *now.lock().unwrap();
            if behaviour != Behaviour::Fail500 {
                log.lock().unwrap().push(Hit {
                    auth,
                    idempotency_key,
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                });
            }
            match behaviour {
                Behaviour::Ok => {
                    let _ = request.respond(tiny_http::Response::from_string(r#"{"stored":true}"#));
                }
                Behaviour::Fail500 => {
                    let _ = request.respond(
                        tiny_http::Response::from_string("database down").with_status_code(500),
                    );
                }
                // Never answers: the request is kept open until the receiver ends.
                Behaviour::Hang => hung.push(request),
            }
        }
    });
    (url, received, behaviour)
}

/// The next JSON text message of a WebSocket, past the server's pings.
pub fn next_json<S: std::io::Read + std::io::Write>(ws: &mut tungstenite::WebSocket<S>) -> Value {
    loop {
        if let tungstenite::Message::Text(text) = ws.read().unwrap() {
            return serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        }
    }
}
