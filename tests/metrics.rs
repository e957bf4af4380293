//! `GET /metrics` read back by a Prometheus text-format parser (`prometheus-parse`) from a real
//! server with a replayed camera of real photos: counters move as requests, frames and events
//! happen, and agree with `/health`, which reads the same counters.

mod common;

use std::path::Path;
use std::time::Duration;

use common::http::{self as h, Behaviour};
use common::wait_for;
use face_attendance::image_io;
use face_attendance::recognizer::{EnrollRequest, Photo};
use prometheus_parse::{Scrape, Value};

/// The exposition at `base`, parsed, with the key `key` when given.
fn scrape(base: &str, key: Option<&str>) -> (u16, Option<Scrape>) {
    let mut request = h::agent().get(format!("{base}/metrics"));
    if let Some(key) = key {
        request = request.header("X-API-Key", key);
    }
    let mut answer = request.call().unwrap();
    let status = answer.status().as_u16();
    if status != 200 {
        return (status, None);
    }
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = answer.body_mut().read_to_string().unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    (status, Some(Scrape::parse(lines).unwrap()))
}

/// The exposition once `ready` holds of it: a request is counted just after its answer was
/// written, so the client may ask again before the count moved.
fn scrape_when(base: &str, key: Option<&str>, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let mut last = None;
    wait_for("the counters to move", Duration::from_secs(10), || {
        let (status, scraped) = scrape(base, key);
        assert_eq!(status, 200);
        let scraped = scraped.unwrap();
        let done = ready(&scraped);
        last = Some(scraped);
        done
    });
    last.unwrap()
}

/// The value of `metric` with every label of `labels` (0 when absent: a counter not yet moved).
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => panic!("{metric} is not a number"),
        })
        .collect();
    assert!(found.len() <= 1, "{metric} {labels:?}: {found:?}");
    found.first().copied().unwrap_or(0.0)
}

/// A folder of `n` 640x480 camera frames of one photo.
fn frames_of(rel: &str, n: usize, dir: &Path) {
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    let photo = image_io::decode(&bytes, u64::MAX).unwrap();
    let jpeg = image_io::encode_jpeg(&image_io::letterbox(&photo, 640, 480)).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("{i:03}.jpg")), &jpeg).unwrap();
    }
}

#[test]
fn counters_move_with_requests_frames_and_events_and_agree_with_health() {
    let data = tempfile::tempdir().unwrap();
    let frames = data.path().join("camera");
    frames_of("probe/obama/obama_3.jpg", 6, &frames);
    common::recognizer_in(data.path())
        .enroll(
            "obama",
            Photo::Bytes(
                &std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap(),
            ),
            &EnrollRequest::default(),
        )
        .unwrap();
    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.camera.frames = Some(frames);
    settings.camera.frames_fps = 4.0;
    let server = h::start(data.path(), settings);
    let base = format!("http://{}", server.addr());
    wait_for("the replay", Duration::from_secs(60), || {
        server.camera().unwrap().finished()
    });
    wait_for("the webhook", Duration::from_secs(10), || {
        !received.lock().unwrap().is_empty()
    });

    let (_, before) = scrape(&base, None);
    let before = before.unwrap();
    let (_, health) = h::get(&format!("{base}/health"));
    // The camera's counters are /health's.
    for name in [
        "frames_captured",
        "frames_processed",
        "faces_detected",
        "confirmed",
    ] {
        assert_eq!(
            value(&before, &format!("face_camera_{name}_total"), &[]),
            health["camera"][name].as_f64().unwrap(),
            "{name}"
        );
    }
    assert_eq!(
        value(&before, "face_camera_frames_processed_total", &[]),
        6.0
    );
    assert!(value(&before, "face_camera_confirmed_total", &[]) >= 1.0);
    assert_eq!(value(&before, "face_camera_up", &[]), 1.0);
    assert_eq!(
        value(&before, "face_camera_state", &[("state", "ended")]),
        1.0
    );
    assert_eq!(value(&before, "face_gallery_people", &[]), 1.0);
    assert_eq!(value(&before, "face_webhook_enabled", &[]), 1.0);
    let sent = [("kind", "attendance"), ("outcome", "sent")];
    assert_eq!(value(&before, "face_events_total", &sent), 1.0);
    assert_eq!(value(&before, "face_webhook_deliveries_total", &[]), 1.0);
    assert_eq!(value(&before, "face_outbox_pending", &[]), 0.0);
    let camera_detect = [("path", "camera"), ("stage", "detect")];
    assert!(value(&before, "face_stage_duration_seconds_count", &camera_detect) >= 6.0);
    let encode = [("path", "camera"), ("stage", "encode")];
    assert!(value(&before, "face_stage_duration_seconds_count", &encode) >= 1.0);
    assert!(
        before
            .samples
            .iter()
            .any(|s| s.metric == "face_stage_duration_seconds"
                && matches!(&s.value, Value::Histogram(b) if !b.is_empty())),
        "the stage histogram has buckets"
    );

    // A recognition, a stranger's realtime event, a 404 and a scrape: each counted.
    let photo = common::faces_dir().join("probe/obama/obama_3.jpg");
    let (status, _) = h::post_image(&format!("{base}/recognize"), &photo, &[]);
    assert_eq!(status, 200);
    let stranger = common::faces_dir().join("strangers/stuart_2.jpg");
    let realtime = format!("{base}/recognize/realtime?send_unknown=true");
    let (status, answer) = h::post_image(&realtime, &stranger, &[]);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(h::get(&format!("{base}/no/such/page")).0, 404);
    assert_eq!(h::get(&format!("{base}/people/nobody")).0, 404);
    let requests = "face_http_requests_total";
    let person = [
        ("route", "/people/:id"),
        ("method", "GET"),
        ("status", "404"),
    ];
    let realtime = [("route", "/recognize/realtime"), ("status", "200")];
    let after = scrape_when(&base, None, |s| {
        value(s, requests, &person) == 1.0 && value(s, requests, &realtime) == 1.0
    });
    let recognize = [
        ("route", "/recognize"),
        ("method", "POST"),
        ("status", "200"),
    ];
    assert_eq!(value(&before, requests, &recognize), 0.0);
    assert_eq!(value(&after, requests, &recognize), 1.0);
    let unmatched = [("route", "unmatched"), ("status", "404")];
    assert_eq!(value(&after, requests, &unmatched), 1.0);
    // A route's pattern, never the path asked for.
    assert!(!after
        .samples
        .iter()
        .any(|s| s.labels.get("route") == Some("/people/nobody")));
    let scrapes = [("route", "/metrics"), ("status", "200")];
    assert!(value(&after, requests, &scrapes) >= 1.0);
    let latency = [("route", "/recognize")];
    assert!(value(&after, "face_http_request_duration_seconds_count", &latency) >= 1.0);
    for stage in ["decode", "detect", "landmarks", "encode", "match"] {
        let labels = [("path", "request"), ("stage", stage)];
        assert!(
            value(&after, "face_stage_duration_seconds_count", &labels) >= 1.0,
            "{stage}"
        );
    }
    let unknown = [("kind", "unknown"), ("outcome", "sent")];
    assert_eq!(value(&after, "face_events_total", &unknown), 1.0);
    assert_eq!(value(&after, "face_webhook_deliveries_total", &[]), 2.0);
    server.shutdown();
}

#[test]
fn metrics_need_a_viewer_key_on_a_keyed_box_unless_metrics_require_key_is_false() {
    let key = "0123456789abcdef-metrics";
    // (METRICS_REQUIRE_KEY, whether a scrape without a key is answered)
    for (require, open) in [(Some(false), true), (None, false), (Some(true), false)] {
        let data = tempfile::tempdir().unwrap();
        let mut settings = h::serve_settings();
        settings.api_key = Some(key.to_string());
        settings.metrics_require_key = require;
        let server = h::start(data.path(), settings);
        let base = format!("http://{}", server.addr());
        let (status, scraped) = scrape(&base, None);
        match open {
            true => {
                assert_eq!(status, 200);
                assert!(value(&scraped.unwrap(), "face_build_info", &[]) == 1.0);
            }
            false => {
                assert_eq!(status, 401, "METRICS_REQUIRE_KEY={require:?}");
                let refused = [("route", "/metrics"), ("status", "401")];
                scrape_when(&base, Some(key), |s| {
                    value(s, "face_http_requests_total", &refused) == 1.0
                });
            }
        }
        assert_eq!(h::get(&format!("{base}/health")).0, 200);
        server.shutdown();
    }
}
