//! Two cameras on one box (an entrance and an exit), both replaying real frames: each camera
//! has its own capture, tracker and confirmation, a person passing both is one event per
//! camera, events say which camera saw them and its direction, and `/health`'s `camera` stays
//! the first camera's object in the shape it always had.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::http::{self as h, Behaviour};
use common::wait_for;
use face_attendance::gallery::{Gallery, StudentId};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline;
use face_attendance::recognizer::Recognizer;

fn photo(rel: &str) -> RgbImage {
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    image_io::decode(&bytes, u64::MAX).unwrap()
}

/// A folder of five 640x480 frames of each photo, in order.
fn frames_of(dir: &Path, rels: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let mut n = 0;
    for rel in rels {
        let jpeg = image_io::encode_jpeg(&image_io::letterbox(&photo(rel), 640, 480)).unwrap();
        for _ in 0..5 {
            std::fs::write(dir.join(format!("{n:03}.jpg")), &jpeg).unwrap();
            n += 1;
        }
    }
}

fn enroll(data: &Path, people: &[(&str, &str)]) {
    let (gallery, _) = Gallery::open(data).unwrap();
    let r = Recognizer::new(common::engine(), Arc::new(gallery));
    for (id, rel) in people {
        let face = pipeline::analyze(r.engine(), &photo(rel));
        r.gallery()
            .append(&StudentId::parse(id).unwrap(), &[face[0].encoding], "test")
            .unwrap();
    }
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn two_cameras_each_count_a_person_once_and_say_who_saw_them() {
    let data = tempfile::tempdir().unwrap();
    enroll(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
        ],
    );
    let frames = tempfile::tempdir().unwrap();
    let (entrance, exit) = (frames.path().join("entrance"), frames.path().join("exit"));
    frames_of(&entrance, &["probe/obama/obama_3.jpg"]);
    frames_of(
        &exit,
        &["probe/obama/obama_3.jpg", "probe/biden/biden_2.jpg"],
    );

    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.cooldown_seconds = 600.0;
    settings.camera.frames = Some(entrance);
    settings.camera.camera_name = "door".into();
    settings.camera.camera_direction = Some("in".into());
    settings.camera.numbered = vec![
        (
            "CAMERA_2_DEVICE".into(),
            format!("frames:{}", exit.display()),
        ),
        ("CAMERA_2_NAME".into(), "exit".into()),
        ("CAMERA_2_DIRECTION".into(), "out".into()),
    ];
    settings.camera.frames_fps = 4.0;
    let server = h::start(data.path(), settings);
    let base = format!("http://{}", server.addr());
    assert_eq!(server.cameras().len(), 2);
    wait_for("both replays", Duration::from_secs(120), || {
        server.cameras().iter().all(|c| c.finished())
    });

    let mut got: Vec<(String, String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| {
            let s = |k: &str| hit.body[k].as_str().unwrap_or_default().to_string();
            (s("camera"), s("direction"), s("student_id"))
        })
        .collect();
    got.sort();
    let want = [
        ("door", "in", "obama"),
        ("exit", "out", "biden"),
        ("exit", "out", "obama"),
    ]
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(got, want, "one event per person per camera");

    // The event log says it too.
    let (_, events) = h::get(&format!("{base}/events"));
    let logged: BTreeSet<(String, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["camera"].as_str().unwrap().to_string(),
                e["direction"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        logged,
        [("door", "in"), ("exit", "out")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into()
    );

    let (_, health) = h::get(&format!("{base}/health"));
    let cameras = health["cameras"].as_array().unwrap();
    assert_eq!(cameras.len(), 2);
    assert_eq!(cameras[1]["name"], "exit");
    assert_eq!(cameras[1]["direction"], "out");
    assert_eq!(cameras[1]["frames_captured"], 10);
    assert_eq!(cameras[0]["frames_captured"], 5);
    // `camera` is the first camera, in the shape one camera always had.
    let camera = &health["camera"];
    assert_eq!(camera["frames_captured"], 5);
    let mut listed = keys(&cameras[0]);
    listed.remove("name");
    listed.remove("direction");
    assert_eq!(keys(camera), listed);
    assert!(camera.get("name").is_none());

    let (_, config) = h::get(&format!("{base}/config"));
    assert_eq!(
        config["camera"],
        format!("{}", frames.path().join("entrance").display())
    );
    assert_eq!(config["cameras"][1]["name"], "exit");
    assert_eq!(config["cameras"][1]["direction"], "out");
    assert!(config["cameras"][1]["source"]
        .as_str()
        .unwrap()
        .starts_with("frames:"));

    let (_, _, metrics) = h::get_bytes(&format!("{base}/metrics"));
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "face_camera_frames_captured_total{camera=\"door\"} 5",
        "face_camera_frames_captured_total{camera=\"exit\"} 10",
        "face_camera_confirmed_total{camera=\"exit\"} 2",
        "face_stream_viewers{camera=\"exit\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    // A camera is named in the query; an unknown name is a 404 that lists the cameras.
    let (status, answer) = h::get(&format!("{base}/stream.mjpg?camera=attic"));
    assert_eq!(status, 404, "{answer}");
    assert!(answer.to_string().contains("door, exit"), "{answer}");
    let (status, answer) = h::post(
        &format!("{base}/people/someone/capture?camera=attic&seconds=1"),
        "application/x-www-form-urlencoded",
        Vec::new(),
    );
    assert_eq!(status, 404, "{answer}");
    server.shutdown();
}

/// A camera that never rests (a program writing frames as fast as it can, three faces each)
/// beside one that shows a person now and then: the second still decides and sends its
/// person. Each camera's processing thread has at most one piece of work queued on the shared
/// engine pool, which takes work first come, first served.
#[test]
fn a_busy_camera_does_not_starve_another() {
    let ffmpeg = std::process::Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ffmpeg {
        common::skip_unless_required("ffmpeg is not installed");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    enroll(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let frames = tempfile::tempdir().unwrap();
    let quiet = frames.path().join("quiet");
    frames_of(&quiet, &["probe/obama/obama_3.jpg"]);
    let crowd = common::faces_dir().join("group/bbt1.jpg");

    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.cooldown_seconds = 600.0;
    // No pacing: as many frames as FFmpeg can write, each with several faces to encode.
    settings.camera.camera = Some(
        format!(
            "exec:ffmpeg -nostdin -loglevel error -loop 1 -i {} -vf scale=640:-2 -f mjpeg -q:v 5 -",
            crowd.display()
        )
        .parse()
        .unwrap(),
    );
    settings.camera.camera_name = "busy".into();
    settings.camera.numbered = vec![
        (
            "CAMERA_2_DEVICE".into(),
            format!("frames:{}", quiet.display()),
        ),
        ("CAMERA_2_NAME".into(), "quiet".into()),
    ];
    settings.camera.frames_fps = 4.0;
    // A loaded test machine may process the quiet camera's frames slowly: the decision's window
    // is wide, the point is only that it is reached.
    settings.camera.confirm_seconds = 30.0;
    let server = h::start(data.path(), settings);
    wait_for(
        "the quiet camera's replay",
        Duration::from_secs(120),
        || server.cameras()[1].finished(),
    );
    let got: Vec<(String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| {
            let s = |k: &str| hit.body[k].as_str().unwrap_or_default().to_string();
            (s("camera"), s("student_id"))
        })
        .collect();
    assert!(
        got.contains(&("quiet".to_string(), "obama".to_string())),
        "{got:?}"
    );
    let busy = server.cameras()[0].stats().processed();
    let quiet = server.cameras()[1].stats().processed();
    assert_eq!(quiet, 5, "every frame of the quiet camera was processed");
    assert!(busy > 5, "the busy camera was busy: {busy} frames");
    eprintln!("processed: busy {busy}, quiet {quiet}");
    server.shutdown();
}

/// One box reads another's live view as its camera (`CAMERA_DEVICE=http://.../stream.mjpg`,
/// with that box's key in `CAMERA_HTTP_KEY`): the person the other box sees is counted, once,
/// by this one; without the key it gets nothing and says which setting to fix.
#[test]
fn a_box_counts_the_person_in_another_boxs_live_view() {
    // The other box: a camera replaying a person, and keys.
    let other_data = tempfile::tempdir().unwrap();
    let frames = tempfile::tempdir().unwrap();
    frames_of(frames.path(), &["probe/obama/obama_3.jpg"]);
    let key = "b0x-2-viewer-key-0123456789abcdef";
    let mut other = h::serve_settings();
    other.api_key = Some(key.into());
    other.camera.frames = Some(frames.path().to_path_buf());
    other.camera.frames_loop = true;
    other.camera.frames_fps = 5.0;
    let other = h::start(other_data.path(), other);
    let stream = format!("http://{}/stream.mjpg", other.addr());

    let data = tempfile::tempdir().unwrap();
    enroll(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.cooldown_seconds = 600.0;
    settings.camera.camera = Some(stream.parse().unwrap());
    settings.camera.camera_http_key = Some(key.into());
    let server = h::start(data.path(), settings);
    wait_for("the event", Duration::from_secs(90), || {
        !received.lock().unwrap().is_empty()
    });
    // More frames of the same person: no second event within the cooldown.
    let processed = server.camera().unwrap().stats().processed();
    wait_for("more frames", Duration::from_secs(60), || {
        server.camera().unwrap().stats().processed() >= processed + 10
    });
    let hits = received.lock().unwrap().clone();
    assert_eq!(
        hits.len(),
        1,
        "{:?}",
        hits.iter().map(|h| &h.body).collect::<Vec<_>>()
    );
    assert_eq!(hits[0].body["student_id"], "obama");
    assert_eq!(hits[0].body["camera"], "camera1");
    let (_, health) = h::get(&format!("http://{}/health", server.addr()));
    let source = health["camera"]["source"].as_str().unwrap();
    assert!(source.contains("MJPEG stream"), "{health}");
    server.shutdown();

    // Without the key: no frame, and /health says what to set.
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    settings.camera.camera = Some(stream.parse().unwrap());
    let keyless = h::start(data.path(), settings);
    let mut state = String::new();
    wait_for("the refusal", Duration::from_secs(30), || {
        let (_, health) = h::get(&format!("http://{}/health", keyless.addr()));
        state = health["camera"]["state"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        state.starts_with("retrying")
    });
    assert!(state.contains("CAMERA_HTTP_KEY"), "{state}");
    assert_eq!(keyless.camera().unwrap().stats().processed(), 0);
    keyless.shutdown();
    other.shutdown();
}
