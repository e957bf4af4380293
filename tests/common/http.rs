//! A real server on 127.0.0.1:0, a real HTTP client (ureq), a real webhook receiver.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use face_attendance::cli::serve;
use face_attendance::cli::serve::Service;
use face_attendance::client::{multipart, Part};
use face_attendance::config::{ServeSettings, Settings};
use face_attendance::gallery::Gallery;
use face_attendance::recognizer::Recognizer;
use serde_json::Value;

pub fn serve_settings() -> ServeSettings {
    ServeSettings {
        bind: Some("127.0.0.1:0".into()),
        api_key: None,
        api_keys_file: None,
        workers: 4,
        max_upload_bytes: 10 * 1024 * 1024,
        http_timeout_seconds: 3,
        webhook_url: String::new(),
        webhook_api_key: String::new(),
        cooldown_seconds: 5.0,
        webhook_timeout_seconds: 1.0,
        ws_max_clients: 16,
        camera: Default::default(),
    }
}

/// A server over `data` (a fresh gallery there), sharing the test binary's engine.
pub fn start(data: &Path, serve: ServeSettings) -> Service {
    let settings = Settings {
        data_dir: data.to_path_buf(),
        ..Settings::default()
    };
    let (gallery, _) = Gallery::open(data).unwrap();
    let recognizer = Recognizer {
        engine: super::engine(),
        gallery: Arc::new(gallery),
        tolerance: settings.tolerance,
        max_pixels: settings.max_pixels,
    };
    serve::start(&settings, &serve, recognizer).unwrap()
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

pub fn get(url: &str) -> (u16, Value) {
    let mut response = agent().get(url).call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
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
#[derive(Clone, Copy)]
pub enum Behaviour {
    Ok,
    Fail500,
    Hang,
}

/// What the receiver got: (authorization header, JSON body).
pub type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver (tiny_http) on 127.0.0.1:0; returns its URL and what it records.
pub fn receiver(behaviour: Behaviour) -> (String, Received) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/attendance/events",
        server.server_addr().to_ip().unwrap()
    );
    let received: Received = Arc::default();
    let log = received.clone();
    std::thread::spawn(move || {
        let mut hung = Vec::new();
        for mut request in server.incoming_requests() {
            let auth = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Authorization"))
                .map(|h| h.value.to_string());
            let mut body = String::new();
            let _ = std::io::Read::read_to_string(request.as_reader(), &mut body);
            log.lock()
                .unwrap()
                .push((auth, serde_json::from_str(&body).unwrap_or(Value::Null)));
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
    (url, received)
}
