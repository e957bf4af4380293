//! `GET /config` as clients see it, pinned: every key, its value and the key order, from the
//! real binary configured only through its environment variables (so the names of the
//! settings are pinned too), with the defaults and with nearly every setting changed (API keys,
//! a camera, MQTT, HTTPS, the webhook). Also: the environment variables `serve --help` names.
// The documents below are longer than `json!`'s default recursion limit.
#![recursion_limit = "256"]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::serve_process::{self, Running};
use serde_json::{json, Value};

/// Every variable `serve` reads, removed from the child's environment before the test's own.
const SETTINGS: &[&str] = &[
    "FACE_DATA_DIR",
    "FACE_MODELS_DIR",
    "FACE_TOLERANCE",
    "FACE_UPSAMPLE",
    "FACE_JITTERS",
    "FACE_MAX_PIXELS",
    "DETECT_MAX_PIXELS",
    "ENROLL_JITTERS",
    "ENROLL_MIN_FACE",
    "ENROLL_MIN_SHARPNESS",
    "ENROLL_MAX_YAW",
    "ENROLL_DUPLICATE_DISTANCE",
    "FACE_CROPS",
    "FACE_CROPS_MAX_AGE_DAYS",
    "MATCH_MARGIN",
    "UNKNOWN_MAX",
    "UNKNOWN_MAX_AGE_DAYS",
    "UNKNOWN_CLUSTER_DISTANCE",
    "EVENTS_KEEP_DAYS",
    "BOX_TIMEZONE",
    "PUNCH_SCHEDULE",
    "FACE_BIND",
    "FACE_API_KEY",
    "FACE_API_KEYS_FILE",
    "HTTP_WORKERS",
    "MAX_UPLOAD_BYTES",
    "GALLERY_IMPORT_MAX_BYTES",
    "HTTP_TIMEOUT_SECONDS",
    "HTTP_MAX_CONNECTIONS",
    "HTTP_MAX_CONNECTIONS_PER_CLIENT",
    "HTTP_MAX_UPLOADS",
    "HTTP_MAX_IMAGES",
    "HTTP_QUEUE_SECONDS",
    "ATTENDANCE_WEBHOOK_URL",
    "ATTENDANCE_API_KEY",
    "EVENT_COOLDOWN_SECONDS",
    "WEBHOOK_TIMEOUT_SECONDS",
    "WEBHOOK_RETRY_MAX_SECONDS",
    "OUTBOX_MAX_EVENTS",
    "WS_MAX_CLIENTS",
    "METRICS_REQUIRE_KEY",
    "FACE_ALLOW_OPEN_LAN",
    "FACE_ALLOWED_HOSTS",
    "FACE_ALLOWED_ORIGINS",
    "FACE_ALLOW_KEY_IN_URL",
    "STREAM_MAX_FPS",
    "STREAM_MAX_CLIENTS",
    "FACE_TLS_BIND",
    "FACE_TLS_CERT",
    "FACE_TLS_KEY",
    "FACE_PLAIN_HTTP",
    "CAMERA_DEVICE",
    "CAMERA_NAME",
    "CAMERA_DIRECTION",
    "CAMERA_HTTP_KEY",
    "CAMERA_TLS_FINGERPRINT",
    "CAMERA_MAX_FRAME_KB",
    "CAMERA_WIDTH",
    "CAMERA_HEIGHT",
    "CAMERA_CAPTURE_FPS",
    "CAMERA_FRAMES",
    "CAMERA_FPS",
    "CAMERA_LOOP",
    "CAMERA_SEND_UNKNOWN",
    "CAMERA_STALE_SECONDS",
    "DETECT_SCALE",
    "CAMERA_UPSAMPLE",
    "CAMERA_RECHECK_FRAMES",
    "CAMERA_MIN_FACE",
    "CAMERA_MIN_SHARPNESS",
    "CAMERA_MATCH_MARGIN",
    "CAMERA_TOLERANCE",
    "CAMERA_CONFIRM_FRAMES",
    "CAMERA_CONFIRM_SECONDS",
    "MQTT_URL",
    "MQTT_CA_FILE",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
    "BOX_ID",
    "MQTT_TOPIC_PREFIX",
    "MQTT_STATUS_SECONDS",
    "MQTT_HA_DISCOVERY",
    "GALLERY_SYNC",
    "GALLERY_TRUSTED_KEYS",
    "GALLERY_SYNC_PEOPLE_PER_HOUR",
    "GALLERY_SYNC_ENCODINGS_PER_HOUR",
    "GALLERY_SYNC_MAX_WAITING",
    // The greeting screen.
    "KIOSK_GREETING_SECONDS",
    "KIOSK_SOUND",
    "KIOSK_LOOPBACK_WITHOUT_KEY",
    // The event command.
    "EVENT_COMMAND",
    "EVENT_COMMAND_TIMEOUT_SECONDS",
    "EVENT_COMMAND_QUEUE",
];

/// `serve` in `site` with exactly `env` of the settings (and the models).
fn serve(site: &Path, env: &[(&str, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut command = serve_process::serve_command(site, &[]);
    for name in SETTINGS {
        command.env_remove(name);
    }
    command
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", site.join("data"))
        .envs(env);
    let mut running = serve_process::start_command(command);
    let serving = running.early.iter().any(|l| l.contains("serving on"));
    if !serving {
        let _ = running.child.kill();
        panic!("serve did not start: {:?}", running.early);
    }
    running
}

/// `N connections (M per client address)` read as N.
fn connections(part: &str) -> Option<u64> {
    let (n, rest) = part.split_once(' ')?;
    rest.starts_with("connections (").then(|| n.parse().ok())?
}

/// The raw body of `GET /config` (with `key`, when given).
fn config_text(port: u16, key: Option<&str>) -> String {
    let agent = face_attendance::client::agent(Duration::from_secs(30));
    let mut request = agent.get(format!("http://127.0.0.1:{port}/config"));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let mut response = request.call().unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.body_mut().read_to_string().unwrap()
}

/// The body is exactly `want` (compact, keys in this order), with a readable failure.
fn assert_document(text: &str, want: &Value) {
    let got: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let keys = |v: &Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&got), keys(want), "the keys or their order changed");
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&got[k], v, "/config {k}");
    }
    assert_eq!(text, serde_json::to_string(want).unwrap());
}

#[test]
fn the_default_configuration_document() {
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let serve = serve(site.path(), &[("FACE_BIND", format!("127.0.0.1:{port}"))]);
    // HTTP_MAX_CONNECTIONS=0 (the default) shows the budget the open-files limit gave, which
    // the start logs: "limits: open files ...; N connections (...".
    let connections: u64 = serve
        .early
        .iter()
        .find_map(|l| connections(l.split("; ").nth(1)?))
        .unwrap_or_else(|| panic!("no limits line: {:?}", serve.early));
    let mut want = json!({
        "tolerance": 0.45,
        "webhook_enabled": false,
        "cooldown_seconds": 5.0,
        "upsample": 1,
        "jitters": 1,
        "max_upload_bytes": 10485760,
        "max_import_bytes": 134217728,
        "max_pixels": 25000000,
        "enroll_duplicate_distance": 0.45,
        "face_crops": "keep",
        "face_crops_max_age_days": null,
        "detect_max_pixels": 2100000,
        "webhook_timeout_seconds": 5.0,
        "event_command": null,
        "event_command_timeout_seconds": 5.0,
        "event_command_queue": 16,
        "camera": null,
        "camera_send_unknown": false,
        "detect_scale": 0.5,
        "camera_upsample": 0,
        "camera_recheck_frames": 10,
        "match_margin": 0.0,
        "camera_match_margin": 0.05,
        "camera_tolerance": face_attendance::camera::DEFAULT_CAMERA_TOLERANCE,
        "camera_tolerance_from": "default",
        "camera_confirm_frames": 3,
        "camera_confirm_seconds": 2.0,
        "api_key_required": false,
        "metrics_require_key": false,
        "allowed_hosts": [],
        "allowed_origins": [],
        "allow_key_in_url": false,
        "http_timeout_seconds": 15,
        "http_max_connections": connections,
        "http_max_connections_per_client": 32,
        "http_max_uploads": 16,
        "http_max_images": 2,
        "http_queue_seconds": 5.0,
        "unknown_max": 200,
        "unknown_max_age_days": 7,
        "unknown_cluster_distance": 0.55,
        "stream_max_fps": 5.0,
        "stream_max_clients": 4,
        "events_keep_days": 90,
        "cameras": [],
    });
    // The system's zone (serve inherits this process's TZ and /etc/localtime).
    want["box_timezone"] = json!(face_attendance::localtime::BoxZone::system().name());
    want["punch_schedule"] = Value::Null;
    // The greeting screen (the macro above is at its recursion limit).
    want["kiosk_greeting_seconds"] = json!(5.0);
    want["kiosk_sound"] = json!(true);
    want["kiosk_loopback_without_key"] = json!(true);
    assert_document(&config_text(port, None), &want);
}

#[test]
fn a_configuration_with_keys_camera_mqtt_https_and_a_webhook() {
    let site = tempfile::tempdir().unwrap();
    let (port, tls_port) = (common::free_port(), common::free_port());
    // A self-signed certificate, as the install helper makes one.
    let (cert, key_file) = (site.path().join("cert.pem"), site.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key_file)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed");
    assert!(made.status.success(), "{made:?}");
    let frames = site.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::copy(
        common::faces_dir().join("probe/obama/obama_3.jpg"),
        frames.join("0001.jpg"),
    )
    .unwrap();
    let keys = site.path().join("keys");
    std::fs::write(
        &keys,
        "# the office\noffice admin 0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let admin = "0123456789abcdef0123456789abcdef";
    let env = [
        ("FACE_BIND", format!("127.0.0.1:{port}")),
        ("FACE_API_KEYS_FILE", keys.display().to_string()),
        ("FACE_TLS_BIND", format!("127.0.0.1:{tls_port}")),
        ("FACE_TLS_CERT", cert.display().to_string()),
        ("FACE_TLS_KEY", key_file.display().to_string()),
        ("FACE_PLAIN_HTTP", "true".into()),
        ("FACE_TOLERANCE", "0.5".into()),
        ("FACE_UPSAMPLE", "0".into()),
        ("FACE_JITTERS", "2".into()),
        ("FACE_MAX_PIXELS", "30000000".into()),
        ("DETECT_MAX_PIXELS", "1500000".into()),
        ("ENROLL_JITTERS", "3".into()),
        ("ENROLL_MIN_FACE", "50".into()),
        ("ENROLL_MIN_SHARPNESS", "10".into()),
        ("ENROLL_MAX_YAW", "40".into()),
        ("ENROLL_DUPLICATE_DISTANCE", "0.3".into()),
        ("FACE_CROPS", "none".into()),
        ("FACE_CROPS_MAX_AGE_DAYS", "30".into()),
        ("MATCH_MARGIN", "0.05".into()),
        ("UNKNOWN_MAX", "150".into()),
        ("UNKNOWN_MAX_AGE_DAYS", "3".into()),
        ("UNKNOWN_CLUSTER_DISTANCE", "0.4".into()),
        ("EVENTS_KEEP_DAYS", "7".into()),
        ("BOX_TIMEZONE", "Asia/Jakarta".into()),
        ("PUNCH_SCHEDULE", " 00:00-10:30 IN,10:30-24:00 out ".into()),
        ("HTTP_WORKERS", "3".into()),
        ("MAX_UPLOAD_BYTES", "2000000".into()),
        ("GALLERY_IMPORT_MAX_BYTES", "3000000".into()),
        ("HTTP_TIMEOUT_SECONDS", "20".into()),
        ("HTTP_MAX_CONNECTIONS", "100".into()),
        ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "8".into()),
        ("HTTP_MAX_UPLOADS", "4".into()),
        ("HTTP_MAX_IMAGES", "1".into()),
        ("HTTP_QUEUE_SECONDS", "2.5".into()),
        (
            "ATTENDANCE_WEBHOOK_URL",
            "http://127.0.0.1:9/attendance/events".into(),
        ),
        ("ATTENDANCE_API_KEY", "main-api-secret".into()),
        ("EVENT_COOLDOWN_SECONDS", "7.5".into()),
        ("WEBHOOK_TIMEOUT_SECONDS", "2".into()),
        ("WEBHOOK_RETRY_MAX_SECONDS", "30".into()),
        ("OUTBOX_MAX_EVENTS", "500".into()),
        ("WS_MAX_CLIENTS", "5".into()),
        ("METRICS_REQUIRE_KEY", "false".into()),
        ("FACE_ALLOWED_HOSTS", "gate.school.lan,box-2".into()),
        (
            "FACE_ALLOWED_ORIGINS",
            "https://office.school.lan,http://10.0.0.5:8080".into(),
        ),
        ("FACE_ALLOW_KEY_IN_URL", "true".into()),
        ("STREAM_MAX_FPS", "2".into()),
        ("STREAM_MAX_CLIENTS", "1".into()),
        ("CAMERA_FRAMES", frames.display().to_string()),
        ("CAMERA_FPS", "1".into()),
        ("CAMERA_LOOP", "true".into()),
        ("CAMERA_SEND_UNKNOWN", "true".into()),
        ("CAMERA_STALE_SECONDS", "30".into()),
        ("DETECT_SCALE", "0.75".into()),
        ("CAMERA_UPSAMPLE", "1".into()),
        ("CAMERA_RECHECK_FRAMES", "4".into()),
        ("CAMERA_MIN_FACE", "40".into()),
        ("CAMERA_MIN_SHARPNESS", "20".into()),
        ("CAMERA_MATCH_MARGIN", "0.08".into()),
        ("CAMERA_TOLERANCE", "0.55".into()),
        ("CAMERA_CONFIRM_FRAMES", "2".into()),
        ("CAMERA_CONFIRM_SECONDS", "1.5".into()),
        // No broker there: the service starts anyway and keeps trying.
        ("MQTT_URL", "mqtt://127.0.0.1:9".into()),
        ("MQTT_USERNAME", "box".into()),
        ("MQTT_PASSWORD", "broker-secret".into()),
        ("BOX_ID", "gate-1".into()),
        ("MQTT_TOPIC_PREFIX", "school/a".into()),
        ("MQTT_STATUS_SECONDS", "30".into()),
        ("MQTT_HA_DISCOVERY", "true".into()),
        ("GALLERY_SYNC", "pull".into()),
        ("CAMERA_NAME", "gate".into()),
        ("CAMERA_DIRECTION", "in".into()),
        (
            "CAMERA_2_DEVICE",
            "rtsp://viewer:cam-secret@127.0.0.1:9/live?pwd=cam-pass".into(),
        ),
        ("CAMERA_2_NAME", "exit".into()),
        ("CAMERA_2_DIRECTION", "out".into()),
        ("CAMERA_2_HTTP_KEY", "cam-key".into()),
        ("KIOSK_GREETING_SECONDS", "2.5".into()),
        ("KIOSK_SOUND", "false".into()),
        ("KIOSK_LOOPBACK_WITHOUT_KEY", "false".into()),
        ("EVENT_COMMAND", "/bin/true".into()),
        ("EVENT_COMMAND_TIMEOUT_SECONDS", "0.5".into()),
        ("EVENT_COMMAND_QUEUE", "3".into()),
    ];
    let serve = serve(site.path(), &env);
    assert!(
        serve.early.iter().any(|l| l.contains("HTTPS on 127.0.0.1")),
        "{:?}",
        serve.early
    );
    let mut want = json!({
        "tolerance": 0.5,
        "webhook_enabled": true,
        "cooldown_seconds": 7.5,
        "upsample": 0,
        "jitters": 2,
        "max_upload_bytes": 2000000,
        "max_import_bytes": 3000000,
        "max_pixels": 30000000,
        "enroll_duplicate_distance": 0.3,
        "face_crops": "none",
        "face_crops_max_age_days": 30,
        "detect_max_pixels": 1500000,
        "webhook_timeout_seconds": 2.0,
        "event_command": "/bin/true",
        "event_command_timeout_seconds": 0.5,
        "event_command_queue": 3,
        "camera": frames.display().to_string(),
        "camera_send_unknown": true,
        "detect_scale": 0.75,
        "camera_upsample": 1,
        "camera_recheck_frames": 4,
        "match_margin": 0.05,
        "camera_match_margin": 0.08,
        "camera_tolerance": 0.55,
        "camera_tolerance_from": "CAMERA_TOLERANCE",
        "camera_confirm_frames": 2,
        "camera_confirm_seconds": 1.5,
        "api_key_required": true,
        "metrics_require_key": false,
        "allowed_hosts": ["gate.school.lan", "box-2"],
        "allowed_origins": ["https://office.school.lan", "http://10.0.0.5:8080"],
        "allow_key_in_url": true,
        "http_timeout_seconds": 20,
        "http_max_connections": 100,
        "http_max_connections_per_client": 8,
        "http_max_uploads": 4,
        "http_max_images": 1,
        "http_queue_seconds": 2.5,
        "unknown_max": 150,
        "unknown_max_age_days": 3,
        "unknown_cluster_distance": 0.4,
        "stream_max_fps": 2.0,
        "stream_max_clients": 1,
        "events_keep_days": 7,
    });
    // Every camera, its source redacted (the macro above is at its recursion limit).
    want["cameras"] = json!([
        {"name": "gate", "direction": "in", "source": format!("frames:{}", frames.display())},
        {"name": "exit", "direction": "out", "source": "rtsp://***@127.0.0.1:9/live?***"},
    ]);
    want["box_timezone"] = json!("Asia/Jakarta");
    // As read: one space after each comma, in and out in lower case.
    want["punch_schedule"] = json!("00:00-10:30 in, 10:30-24:00 out");
    want["kiosk_greeting_seconds"] = json!(2.5);
    want["kiosk_sound"] = json!(false);
    want["kiosk_loopback_without_key"] = json!(false);
    let text = config_text(port, Some(admin));
    assert_document(&text, &want);
    // No secret is shown.
    for secret in [
        admin,
        "main-api-secret",
        "broker-secret",
        "cam-secret",
        "cam-pass",
        "cam-key",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn a_key_and_camera_device_show_as_the_original_did() {
    // FACE_API_KEY (not a file) also makes the key required; CAMERA_DEVICE is what "camera"
    // names when set (a device that does not open: the loop keeps retrying, the API serves).
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let key = "fedcba9876543210fedcba9876543210";
    let _serve = serve(
        site.path(),
        &[
            ("FACE_BIND", format!("127.0.0.1:{port}")),
            ("FACE_API_KEY", key.into()),
            ("CAMERA_DEVICE", "/dev/video-not-here".into()),
            ("METRICS_REQUIRE_KEY", "true".into()),
        ],
    );
    let text = config_text(port, Some(key));
    let got: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(got["camera"], "/dev/video-not-here", "{text}");
    assert_eq!(got["api_key_required"], true, "{text}");
    assert_eq!(got["metrics_require_key"], true, "{text}");
    assert!(!text.contains(key));
}

/// The `[env: NAME]` names `--help` of `command` shows, in order.
fn help_env_names(command: &[&str]) -> Vec<String> {
    help_env_names_of(env!("CARGO_BIN_EXE_face-attendance"), command)
}

/// The same for `binary`.
fn help_env_names_of(binary: &str, command: &[&str]) -> Vec<String> {
    let out = Command::new(binary)
        .args(command)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split("[env: ")
        .skip(1)
        .map(|rest| {
            rest.split(['=', ']'])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[test]
fn serve_help_names_every_setting_variable() {
    let mut names = help_env_names(&["serve"]);
    names.sort();
    let mut want: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn each_command_shows_the_settings_it_uses() {
    let gallery = ["FACE_DATA_DIR", "FACE_CROPS", "FACE_CROPS_MAX_AGE_DAYS"];
    let engine = ["FACE_MODELS_DIR", "FACE_TOLERANCE", "FACE_JITTERS"];
    let photos = [
        "FACE_UPSAMPLE",
        "FACE_MAX_PIXELS",
        "DETECT_MAX_PIXELS",
        "MATCH_MARGIN",
    ];
    let enroll = [
        "ENROLL_JITTERS",
        "ENROLL_MIN_FACE",
        "ENROLL_MIN_SHARPNESS",
        "ENROLL_MAX_YAW",
        "ENROLL_DUPLICATE_DISTANCE",
    ];
    let unknowns = [
        "UNKNOWN_MAX",
        "UNKNOWN_MAX_AGE_DAYS",
        "UNKNOWN_CLUSTER_DISTANCE",
    ];
    let camera = &SETTINGS[SETTINGS.iter().position(|s| *s == "CAMERA_DEVICE").unwrap()..][..23];
    assert_eq!(camera.last(), Some(&"CAMERA_CONFIRM_SECONDS"));
    let recognizer: Vec<&str> = [&gallery[..], &engine, &photos].concat();
    let sorted = |names: Vec<&str>| {
        let mut names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        names.sort();
        names
    };
    let shown = |binary: &str, command: &[&str]| {
        let mut names = help_env_names_of(binary, command);
        names.sort();
        names
    };
    let main = env!("CARGO_BIN_EXE_face-attendance");
    let bench = env!("CARGO_BIN_EXE_face-attendance-bench");
    let with = |more: &[&[&str]]| {
        let mut names = recognizer.clone();
        for m in more {
            names.extend_from_slice(m);
        }
        sorted(names)
    };
    for (binary, command, want) in [
        (main, &["enroll"][..], with(&[&enroll, &["FACE_KNOWN_DIR"]])),
        (main, &["recognize"], with(&[])),
        (main, &["people"], with(&[])),
        (main, &["people", "list"], with(&[])),
        (main, &["people", "reject"], with(&[])),
        (main, &["gallery", "export"], sorted(gallery.to_vec())),
        (main, &["gallery", "import"], sorted(gallery.to_vec())),
        (
            main,
            &["unknowns", "list"],
            sorted([&gallery[..], &unknowns].concat()),
        ),
        (main, &["cam-demo"], {
            let mut names = vec!["FACE_DATA_DIR"];
            names.extend_from_slice(&engine);
            names.extend_from_slice(camera);
            sorted(names)
        }),
        (
            main,
            &["rt-client"],
            sorted(vec!["FACE_SERVER", "FACE_API_KEY"]),
        ),
        (
            bench,
            &["http"],
            sorted(vec!["FACE_SERVER", "FACE_API_KEY"]),
        ),
        (bench, &["camera"], {
            let mut names = vec!["FACE_DATA_DIR"];
            names.extend_from_slice(&engine);
            sorted(names)
        }),
        (bench, &["open-set"], {
            let mut names = vec!["FACES_DIR"];
            names.extend_from_slice(&engine);
            names.extend_from_slice(camera);
            sorted(names)
        }),
    ] {
        assert_eq!(shown(binary, command), want, "{command:?}");
    }
    // The benchmarks are not in the service's binary any more.
    let old = Command::new(main)
        .args(["bench-camera", "--help"])
        .output()
        .unwrap();
    assert_eq!(old.status.code(), Some(2));
}
