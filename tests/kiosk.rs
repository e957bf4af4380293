//! The greeting screen (`GET /kiosk`, its state and the greeting's face crop) with the real
//! server: who may open it (the box's own screen on loopback without a key; from the machine's
//! non-loopback address only with a kiosk key, which opens nothing else; a wrong key or a
//! rebinding `Host` refused from loopback too; `KIOSK_LOOPBACK_WITHOUT_KEY=false`), what it
//! shows for real photos (a `/recognize/realtime` event and its repeat within the cooldown, a
//! replayed camera's person with the crop of that sighting, a stranger), and the idle clock
//! after `KIOSK_GREETING_SECONDS`. Then the page itself in Debian's headless Chromium at 800x480
//! and 1024x600 (tests/browser/kiosk.test.mjs), screenshots kept in
//! target/test-artifacts/kiosk/.

mod common;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser;
use common::http as h;
use common::serve_process;
use face_attendance::image_io::{encode_jpeg, RgbImage};
use face_attendance::recognizer::{EnrollRequest, MatchOptions, Photo};
use face_attendance::service::Service;
use face_attendance::settings::Settings;
use serde_json::Value;

const ADMIN: &str = "kiosk-test-admin-key-0123456789";
const VIEWER: &str = "kiosk-test-viewer-key-0123456789";
const KIOSK: &str = "kiosk-test-kiosk-key-0123456789";

/// A curl answer: status and body.
struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `curl` GET of `url` with these extra arguments.
fn curl(url: &str, args: &[&str]) -> Reply {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-"])
        .args(["-w", "\n%{http_code} %{content_type}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (scripts/install-test-deps installs it)");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let split = out.stdout.iter().rposition(|b| *b == b'\n').unwrap();
    let (body, tail) = out.stdout.split_at(split);
    let tail = String::from_utf8_lossy(&tail[1..]).into_owned();
    let (status, content_type) = tail.split_once(' ').unwrap_or((&tail, ""));
    Reply {
        status: status.parse().unwrap(),
        content_type: content_type.to_string(),
        body: body.to_vec(),
    }
}

/// This machine's first non-loopback IPv4 address, from `ip`.
fn lan_address() -> Option<IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        cidr.split('/').next()?.parse().ok()
    })
}

fn keys_file(dir: &Path) -> PathBuf {
    let keys = dir.join("api-keys");
    std::fs::write(
        &keys,
        format!("office admin {ADMIN}\nhall viewer {VIEWER}\ndoor kiosk {KIOSK}\n"),
    )
    .unwrap();
    keys
}

fn key(k: &str) -> String {
    format!("X-API-Key: {k}")
}

#[test]
fn the_box_screen_needs_no_key_and_elsewhere_only_a_kiosk_key_opens_it() {
    let Some(lan) = lan_address() else {
        return common::skip_unless_required("this machine has no non-loopback IPv4 address");
    };
    let data = tempfile::tempdir().unwrap();
    let mut serve = h::serve_settings();
    serve.bind = Some("0.0.0.0:0".into());
    serve.api_keys_file = Some(keys_file(data.path()));
    let server = h::start(data.path(), serve);
    let port = server.addr().port();
    let own = format!("http://127.0.0.1:{port}");
    let elsewhere = format!("http://{lan}:{port}");
    let from_lan = ["--interface", &lan.to_string()].map(str::to_string);
    let from_lan: Vec<&str> = from_lan.iter().map(String::as_str).collect();

    // The box's own screen: no key.
    let page = curl(&format!("{own}/kiosk"), &[]);
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.text().contains("/ui/kiosk.js"), "{}", page.text());
    let state = curl(&format!("{own}/kiosk/state"), &[]);
    assert_eq!(state.status, 200, "{}", state.text());
    let state = state.json();
    assert_eq!(state["state"], "idle", "{state}");
    assert!(
        state["clock"].as_str().is_some_and(|c| c.len() == 5),
        "{state}"
    );
    assert_eq!(curl(&format!("{own}/kiosk/photo/1.jpg"), &[]).status, 404);
    // ... which opens nothing else, and a wrong key stays wrong there.
    for path in ["/people", "/events", "/session", "/health?x"] {
        let reply = curl(&format!("{own}{path}"), &[]);
        let want = if path.starts_with("/health") {
            200
        } else {
            401
        };
        assert_eq!(reply.status, want, "{path}: {}", reply.text());
    }
    let wrong = curl(
        &format!("{own}/kiosk/state"),
        &["-H", "X-API-Key: not-a-key-0123456789abcdef"],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    // A page of another name on the box's own browser (DNS rebinding) is refused.
    let rebound = format!("Host: rebind.attacker.example:{port}");
    let reply = curl(&format!("{own}/kiosk/state"), &["-H", &rebound]);
    assert_eq!(reply.status, 421, "{}", reply.text());

    // From the machine's LAN address: a client elsewhere.
    for path in ["/kiosk", "/kiosk/state", "/kiosk/photo/1.jpg"] {
        let reply = curl(&format!("{elsewhere}{path}"), &from_lan);
        assert_eq!(reply.status, 401, "{path} without a key: {}", reply.text());
    }
    let with = |k: &str, path: &str| {
        let header = key(k);
        let mut args = from_lan.clone();
        args.extend(["-H", &header]);
        curl(&format!("{elsewhere}{path}"), &args)
    };
    assert_eq!(with(KIOSK, "/kiosk").status, 200);
    let state = with(KIOSK, "/kiosk/state");
    assert_eq!(
        (state.status, &state.json()["state"]),
        (200, &"idle".into())
    );
    assert_eq!(with(KIOSK, "/kiosk/photo/1.jpg").status, 404);
    assert_eq!(with(VIEWER, "/kiosk/state").status, 200, "a higher role");
    // A kiosk key opens nothing else.
    for path in ["/people", "/events", "/unknowns", "/config", "/stream.mjpg"] {
        let reply = with(KIOSK, path);
        assert_eq!(reply.status, 403, "kiosk key on {path}: {}", reply.text());
        assert!(reply.text().contains("is kiosk"), "{}", reply.text());
    }
    server.shutdown();

    // Behind a reverse proxy on the box every client is loopback: the switch turns the pass off.
    let data = tempfile::tempdir().unwrap();
    let mut serve = h::serve_settings();
    serve.api_keys_file = Some(keys_file(data.path()));
    serve.kiosk.loopback_without_key = false;
    let server = h::start(data.path(), serve);
    let own = format!("http://{}", server.addr());
    for path in ["/kiosk", "/kiosk/state"] {
        assert_eq!(curl(&format!("{own}{path}"), &[]).status, 401, "{path}");
        let reply = curl(&format!("{own}{path}"), &["-H", &key(KIOSK)]);
        assert_eq!(reply.status, 200, "{path}");
    }
    server.shutdown();
}

/// `/kiosk/state` read by the box's own screen.
fn state(server: &Service) -> Value {
    h::get(&format!("http://{}/kiosk/state", server.addr())).1
}

fn seq(state: &Value) -> u64 {
    state["seq"].as_u64().unwrap()
}

/// Polls the state (as a screen does, every 100 ms) until `done`.
fn wait_state(server: &Service, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = state(server);
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn photo(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

fn enroll_obama(data: &Path) {
    common::recognizer_in(data)
        .enroll(
            "obama",
            Photo::Bytes(&std::fs::read(photo("known/obama/obama_1.jpg")).unwrap()),
            &EnrollRequest::default(),
        )
        .unwrap();
}

#[test]
fn a_recognized_event_greets_its_repeat_greets_again_and_the_clock_comes_back() {
    let data = tempfile::tempdir().unwrap();
    let mut serve = h::serve_settings();
    serve.cooldown_seconds = 60.0;
    serve.kiosk.greeting_seconds = 2.5;
    let server = h::start(data.path(), serve);
    let url = |p: &str| format!("http://{}{p}", server.addr());
    let (status, _) = h::post_image(
        &url("/enroll"),
        &photo("known/obama/obama_1.jpg"),
        &[("student_id", "obama")],
    );
    assert_eq!(status, 200);
    let before = state(&server);
    assert_eq!(before["state"], "idle");
    let (status, answer) = h::post_image(
        &url("/recognize/realtime"),
        &photo("probe/obama/obama_3.jpg"),
        &[],
    );
    assert_eq!(status, 200, "{answer}");
    let s = wait_state(&server, "the greeting", |s| s["state"] == "greeting");
    assert_eq!(s["name"], "obama", "no name given: the id ({s})");
    assert_eq!(s["punch"], "in", "the day's first sighting: {s}");
    assert!(s["time"].as_str().is_some_and(|t| t.len() == 5), "{s}");
    assert_eq!(
        s["photo"],
        Value::Null,
        "an uploaded photo leaves no crop: {s}"
    );
    assert_eq!(seq(&s), seq(&before) + 1);
    // The same person again within the cooldown: greeted again, counted once.
    let (_, again) = h::post_image(
        &url("/recognize/realtime"),
        &photo("probe/obama/obama_3.jpg"),
        &[],
    );
    assert_eq!(again["dispatch"][0]["report"]["status"], "disabled");
    let s = wait_state(&server, "the second greeting", |s| {
        seq(s) == seq(&before) + 2
    });
    assert_eq!(
        (&s["state"], &s["name"]),
        (&"greeting".into(), &"obama".into())
    );
    let (_, events) = h::get(&url("/events"));
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(1),
        "{events}"
    );
    // A stranger sent as an event is the camera's to show, not the upload's.
    let (_, answer) = h::post_image(
        &url("/recognize/realtime?send_unknown=true"),
        &photo("strangers/stuart_2.jpg"),
        &[],
    );
    assert_eq!(answer["dispatch"][0]["label"], "Unknown", "{answer}");
    // Back to the clock after KIOSK_GREETING_SECONDS, without the name.
    let idle = wait_state(&server, "the idle clock", |s| s["state"] == "idle");
    assert_eq!(seq(&idle), seq(&before) + 2, "{idle}");
    assert!(idle.get("name").is_none(), "{idle}");
    server.shutdown();
}

/// A JPEG with no face in it (a plain grey frame).
fn blank_jpeg() -> Vec<u8> {
    let image = RgbImage::from_raw(640, 480, vec![120; 640 * 480 * 3]).unwrap();
    encode_jpeg(&image).unwrap()
}

/// Puts `jpeg` in every frame file of the replayed camera (each atomically).
fn show(frames: &Path, jpeg: &[u8]) {
    for n in 0..FRAME_FILES {
        let tmp = frames.join(format!(".{n:02}.tmp"));
        std::fs::write(&tmp, jpeg).unwrap();
        std::fs::rename(&tmp, frames.join(format!("{n:02}.jpg"))).unwrap();
    }
}

const FRAME_FILES: usize = 8;

/// A looping replayed camera over `frames` (filled with blank frames), `obama` enrolled.
fn camera_box(data: &Path, greeting_seconds: f64) -> (Service, PathBuf) {
    let frames = data.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    show(&frames, &blank_jpeg());
    enroll_obama(data);
    let settings = Settings {
        data_dir: data.to_path_buf(),
        ..Settings::default()
    };
    let mut serve = h::serve_settings();
    serve.camera.frames = Some(frames.clone());
    serve.camera.frames_loop = true;
    serve.camera.frames_fps = 4.0;
    serve.kiosk.greeting_seconds = greeting_seconds;
    (h::start_with(&settings, serve), frames)
}

#[test]
fn the_camera_s_person_is_greeted_with_this_sighting_s_crop_and_a_stranger_is_told() {
    let data = tempfile::tempdir().unwrap();
    let (server, frames) = camera_box(data.path(), 2.0);
    // A screen watches (crops are made only then).
    let first = state(&server);
    show(
        &frames,
        &std::fs::read(photo("probe/obama/obama_3.jpg")).unwrap(),
    );
    let s = wait_state(&server, "the camera's greeting", |s| {
        s["state"] == "greeting" && s["photo"].is_string()
    });
    assert_eq!(s["name"], "obama", "{s}");
    let crop = h::get_bytes(&format!(
        "http://{}{}",
        server.addr(),
        s["photo"].as_str().unwrap()
    ));
    assert_eq!((crop.0, crop.1.as_str()), (200, "image/jpeg"));
    let decoded = face_attendance::image_io::decode(&crop.2, 10_000_000).unwrap();
    assert!(
        decoded.width <= 360 && decoded.width >= 60,
        "{}",
        decoded.width
    );
    // The crop is of a face: the engine finds one in it.
    let found = common::recognizer_in(data.path())
        .recognize(Photo::Bytes(&crop.2), MatchOptions::default())
        .unwrap()
        .faces;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].label, "obama");
    // An older number's crop is not given.
    let old = format!("http://{}/kiosk/photo/{}.jpg", server.addr(), seq(&first));
    assert_eq!(h::get_bytes(&old).0, 404);
    show(&frames, &blank_jpeg());
    std::thread::sleep(Duration::from_secs(2));
    show(
        &frames,
        &std::fs::read(photo("strangers/stuart_2.jpg")).unwrap(),
    );
    let s = wait_state(&server, "the stranger's notice", |s| {
        s["state"] == "stranger"
    });
    assert!(s.get("name").is_none() && s.get("photo").is_none(), "{s}");
    show(&frames, &blank_jpeg());
    let idle = wait_state(&server, "the idle clock", |s| s["state"] == "idle");
    assert_eq!(seq(&idle), seq(&s));
    server.shutdown();
}

#[test]
fn the_screen_in_chromium_at_800x480_and_1024x600() {
    if !browser::available() {
        return common::skip_unless_required(
            "Chromium or tests/browser/node_modules missing (scripts/install-test-deps installs them)",
        );
    }
    let data = tempfile::tempdir().unwrap();
    let (server, frames) = camera_box(data.path(), 3.0);
    let blank = data.path().join("blank.jpg");
    std::fs::write(&blank, blank_jpeg()).unwrap();
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/kiosk");
    let _ = std::fs::remove_dir_all(&artifacts);
    let (base, files) = (format!("http://{}", server.addr()), FRAME_FILES.to_string());
    let (person, stranger) = (
        photo("probe/obama/obama_3.jpg"),
        photo("strangers/stuart_2.jpg"),
    );
    let out = browser::run(
        "kiosk.test.mjs",
        &[
            ("BASE_URL", base.as_ref()),
            ("FRAMES_DIR", frames.as_ref()),
            ("FRAME_FILES", files.as_ref()),
            ("BLANK", blank.as_ref()),
            ("PERSON", person.as_ref()),
            ("STRANGER", stranger.as_ref()),
            ("ARTIFACTS", artifacts.as_ref()),
        ],
    );
    server.shutdown();
    println!("{}", out.stdout);
    assert!(
        out.success && out.stdout.contains("KIOSK OK"),
        "the kiosk test failed; screenshots in {}\n{}\n{}",
        artifacts.display(),
        out.stdout,
        out.stderr
    );
    for size in ["800x480", "1024x600"] {
        for shot in ["greeting", "stranger", "idle"] {
            let file = artifacts.join(format!("{size}-{shot}.png"));
            assert!(file.exists(), "{}", file.display());
        }
    }
}

#[test]
fn a_bad_kiosk_setting_stops_serve_with_status_2_and_one_line_naming_it() {
    for (name, value) in [
        ("KIOSK_GREETING_SECONDS", "0"),
        ("KIOSK_GREETING_SECONDS", "601"),
        ("KIOSK_GREETING_SECONDS", "soon"),
        ("KIOSK_SOUND", "loud"),
        ("KIOSK_LOOPBACK_WITHOUT_KEY", "maybe"),
    ] {
        let site = tempfile::tempdir().unwrap();
        let port = common::free_port().to_string();
        let bind = format!("127.0.0.1:{port}");
        let out = serve_process::serve_command(site.path(), &[("FACE_BIND", &bind), (name, value)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        let naming: Vec<&str> = stderr
            .lines()
            .filter(|l| {
                l.contains(name) || l.contains(&name.to_ascii_lowercase().replace('_', "-"))
            })
            .collect();
        assert!(!naming.is_empty(), "{name}={value}: {stderr}");
        assert!(!stderr.contains("serving on"), "{stderr}");
    }
}
