//! The camera pipeline on replayed real frames: the same code path as a V4L2 camera after the
//! driver (frame source → newest-frame slot → recognizer → events).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::http::{self as h, Behaviour};
use common::wait_for;
use face_attendance::camera::frame::{rgb_to_yuyv, RawFrame};
use face_attendance::camera::tracker::iou;
use face_attendance::camera::{
    Camera, CameraStats, ConfirmSettings, FrameSource, Pipeline, PipelineSettings, SourceError,
};
use face_attendance::engine::Frame;
use face_attendance::gallery::{Gallery, StudentId};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline;
use face_attendance::quality;
use face_attendance::recognizer::Recognizer;
use face_attendance::recognizer::{MatchOptions, Photo};
use face_attendance::service::Service;
use serde_json::Value;

fn photo(rel: &str) -> RgbImage {
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    image_io::decode(&bytes, u64::MAX).unwrap()
}

/// The photo as a 640x480 camera frame, JPEG-encoded.
fn frame_jpeg(rel: &str) -> Vec<u8> {
    image_io::encode_jpeg(&image_io::letterbox(&photo(rel), 640, 480)).unwrap()
}

/// A folder of `n` camera frames of one photo.
fn frames_of(rel: &str, n: usize) -> tempfile::TempDir {
    let frames = tempfile::tempdir().unwrap();
    let jpeg = frame_jpeg(rel);
    for i in 0..n {
        std::fs::write(frames.path().join(format!("{i:03}.jpg")), &jpeg).unwrap();
    }
    frames
}

/// The service on `data` with a webhook receiver, after it replayed `frames` once.
fn replay(data: &Path, frames: &Path, send_unknown: bool) -> (Service, h::Received) {
    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.camera.frames = Some(frames.to_path_buf());
    settings.camera.camera_send_unknown = send_unknown;
    // Slow enough that a loaded machine drops none of the frames a decision needs.
    settings.camera.frames_fps = 4.0;
    let server = h::start(data, settings);
    wait_for("the replay", Duration::from_secs(60), || {
        server.camera().unwrap().finished()
    });
    (server, received)
}

fn recognizer(data: &Path, enroll: &[(&str, &str)]) -> Recognizer {
    let (gallery, _) = Gallery::open(data).unwrap();
    let r = Recognizer::new(common::engine(), Arc::new(gallery));
    for (id, rel) in enroll {
        let face = pipeline::analyze(r.engine(), &photo(rel));
        r.gallery()
            .append(&StudentId::parse(id).unwrap(), &[face[0].encoding], "test")
            .unwrap();
    }
    r
}

#[test]
fn replayed_frames_send_one_event_per_person_per_cooldown() {
    let data = tempfile::tempdir().unwrap();
    recognizer(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
        ],
    );
    let parent = tempfile::tempdir().unwrap();
    let frames = parent.path().join("camera");
    let (hook, received) = h::receiver(Behaviour::Ok);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.cooldown_seconds = 60.0;
    // No frames at start: the camera retries until they appear (a source coming back), so the
    // WebSocket client below is connected before the first frame.
    settings.camera.frames = Some(frames.clone());
    settings.camera.frames_fps = 4.0;
    let server = h::start(data.path(), settings);
    let mut ws = tungstenite::connect(format!("ws://{}/ws/recognitions", server.addr()))
        .unwrap()
        .0;
    let (_, health) = h::get(&format!("http://{}/health", server.addr()));
    assert!(
        health["camera"]["state"]
            .as_str()
            .unwrap()
            .starts_with("retrying"),
        "{health}"
    );

    // Five frames each of two enrolled people and of a stranger, plus a corrupt frame; the
    // folder appears whole (renamed into place) so the camera never sees half of it. Each
    // face is decided once three of its frames agree (CAMERA_CONFIRM_FRAMES).
    let staging = parent.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let mut n = 0;
    for rel in [
        "probe/obama/obama_3.jpg",
        "probe/biden/biden_2.jpg",
        "strangers/stuart_2.jpg",
    ] {
        let jpeg = frame_jpeg(rel);
        for _ in 0..5 {
            std::fs::write(staging.join(format!("{n:03}.jpg")), &jpeg).unwrap();
            n += 1;
        }
    }
    std::fs::write(staging.join("999.jpg"), b"not a jpeg at all").unwrap();
    std::fs::rename(&staging, &frames).unwrap();

    let stats = server.camera().unwrap().stats().clone();
    wait_for("the replay to end", Duration::from_secs(120), || {
        stats.state() == "ended"
    });
    wait_for(
        "the last frame to be processed",
        Duration::from_secs(60),
        || server.camera().unwrap().finished(),
    );
    let hits = received.lock().unwrap().clone();
    let got: Vec<String> = hits
        .iter()
        .map(|hit| hit.body["student_id"].as_str().unwrap().to_string())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(sorted, ["biden", "obama"], "webhook calls: {got:?}");
    // Each event says what its decision rested on.
    for hit in &hits {
        let decision = &hit.body["decision"];
        assert_eq!(hit.body["event"], "attendance.recognized");
        assert!(decision["frames"].as_u64().unwrap() >= 3, "{decision}");
        let best = decision["best_distance"].as_f64().unwrap();
        assert!(best <= 0.45 && best <= hit.body["distance"].as_f64().unwrap());
        let second = if hit.body["student_id"] == "obama" {
            "biden"
        } else {
            "obama"
        };
        assert_eq!(decision["second_label"], second, "{decision}");
        assert!(decision["second_distance"].as_f64().unwrap() > best);
        assert!(decision["face_px"].as_u64().unwrap() >= 80, "{decision}");
        assert!(decision["sharpness"].as_f64().unwrap() > 0.0, "{decision}");
    }

    let (_, health) = h::get(&format!("http://{}/health", server.addr()));
    let camera = &health["camera"];
    assert_eq!(camera["state"], "ended");
    assert_eq!(camera["frames_captured"], 16);
    assert_eq!(camera["confirmed"], 2, "{health}");
    assert!(camera["faces_held_back"].as_u64().unwrap() >= 6, "{health}");
    assert_eq!(camera["frame_errors"], 1, "{health}");
    assert_eq!(health["ok"], true);

    // The WebSocket saw the recognitions: a sent one for each person, the rest skipped.
    let mut sent = Vec::new();
    let mut seen = 0;
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
    while let Ok(message) = ws.read() {
        // Pings (every few seconds) are no recognitions.
        let tungstenite::Message::Text(text) = message else {
            continue;
        };
        let m: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(m["student_id"], "Unknown");
        assert!(m["decision"]["frames"].as_u64().unwrap() >= 3, "{m}");
        if m["dispatch"]["status"] == "sent" {
            sent.push(m["student_id"].as_str().unwrap().to_string());
        }
        seen += 1;
    }
    sent.sort();
    assert_eq!(sent, ["biden", "obama"]);
    assert!(seen >= 2);
    server.shutdown();
}

#[test]
fn strangers_make_events_only_with_camera_send_unknown() {
    let data = tempfile::tempdir().unwrap();
    recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let frames = frames_of("strangers/stuart_2.jpg", 5);
    for send_unknown in [false, true] {
        let (server, received) = replay(data.path(), frames.path(), send_unknown);
        server.shutdown(); // delivers what the dispatcher holds
        let got = received.lock().unwrap().clone();
        if send_unknown {
            assert_eq!(got.len(), 1, "one stranger, one decision: {got:?}");
            assert_eq!(got[0].body["student_id"], "Unknown");
            assert!(got[0].body["decision"]["frames"].as_u64().unwrap() >= 3);
        } else {
            assert!(got.is_empty(), "{got:?}");
        }
    }
}

#[test]
fn health_says_not_ok_while_the_camera_is_gone() {
    let data = tempfile::tempdir().unwrap();
    recognizer(data.path(), &[]);
    let parent = tempfile::tempdir().unwrap();
    let frames = parent.path().join("camera");
    let mut settings = h::serve_settings();
    settings.camera.frames = Some(frames.clone());
    settings.camera.frames_loop = true;
    settings.camera.frames_fps = 20.0;
    settings.camera.camera_stale_seconds = 1;
    let server = h::start(data.path(), settings);
    let health = || h::get(&format!("http://{}/health", server.addr())).1;
    wait_for("ok:false", Duration::from_secs(30), || {
        health()["ok"] == false
    });
    // The device comes back: frames flow and health recovers.
    let staging = parent.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("a.jpg"), frame_jpeg("probe/obama/obama_3.jpg")).unwrap();
    std::fs::rename(&staging, &frames).unwrap();
    wait_for("ok:true", Duration::from_secs(60), || {
        let h = health();
        h["ok"] == true && h["camera"]["frames_processed"].as_u64().unwrap_or(0) > 0
    });
    server.shutdown();
}

/// A camera faster than recognition: the same real frame, as fast as asked.
struct FastSource {
    jpeg: Vec<u8>,
    left: usize,
}

impl FrameSource for FastSource {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        if self.left == 0 {
            return Err(SourceError::Ended);
        }
        self.left -= 1;
        std::thread::sleep(Duration::from_millis(5));
        Ok(RawFrame::Mjpeg(self.jpeg.clone()))
    }

    fn describe(&self) -> String {
        "fast test source".into()
    }
}

#[test]
fn a_slow_consumer_drops_stale_frames_instead_of_queueing_them() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(data.path(), &[]);
    let jpeg = frame_jpeg("probe/obama/obama_3.jpg");
    let mut source = Some(FastSource { jpeg, left: 200 });
    let calls = Arc::new(AtomicU64::new(0));
    let counted = calls.clone();
    let stats = Arc::new(CameraStats::default());
    let camera = Camera::start(
        "camera1",
        Box::new(move || {
            source
                .take()
                .map(|s| Box::new(s) as Box<dyn FrameSource>)
                .ok_or(SourceError::Ended)
        }),
        Pipeline::new(r, PipelineSettings::default()),
        stats.clone(),
        Box::new(move |f| {
            assert!(f.faces.len() == 1);
            counted.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(100)); // a slow consumer
        }),
    )
    .unwrap();
    wait_for("the source to end", Duration::from_secs(120), || {
        camera.finished()
    });
    let json = stats.to_json();
    let (captured, processed, dropped) = (
        json["frames_captured"].as_u64().unwrap(),
        json["frames_processed"].as_u64().unwrap(),
        json["frames_dropped"].as_u64().unwrap(),
    );
    assert_eq!(captured, 200);
    assert!(processed < captured && dropped > 0, "{json}");
    // Every frame was either processed or replaced by a newer one in the slot: none waited in a
    // queue behind others, so latency stays one frame however slow the consumer is.
    assert_eq!(
        processed + dropped,
        captured,
        "every frame processed or dropped: {json}"
    );
    assert_eq!(calls.load(Ordering::Relaxed), processed);
    camera.stop();
}

#[test]
fn a_face_photo_through_yuyv_is_still_recognized() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let frame = image_io::letterbox(&photo("probe/obama/obama_3.jpg"), 640, 480);
    let raw = RawFrame::Yuyv {
        width: 640,
        height: 480,
        data: rgb_to_yuyv(&frame),
    };
    let rgb = raw.to_rgb(u64::MAX).unwrap();
    let results = r
        .recognize(Photo::Image(&rgb), MatchOptions::default())
        .unwrap()
        .faces;
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].label, "obama");
    let direct = r
        .recognize(Photo::Image(&frame), MatchOptions::default())
        .unwrap()
        .faces;
    assert_eq!(direct[0].label, "obama");
}

fn raw(rel: &str) -> RawFrame {
    RawFrame::Mjpeg(frame_jpeg(rel))
}

#[test]
fn detection_on_a_half_size_copy_finds_the_same_faces() {
    let engine = common::engine();
    for rel in [
        "probe/obama/obama_3.jpg",
        "probe/biden/biden_2.jpg",
        "probe/amy/amy_4.jpg",
        "probe/raj/raj_4.jpg",
        "group/obama_and_biden.jpg",
    ] {
        let image = image_io::letterbox(&photo(rel), 640, 480);
        let frame = Frame::new(&image);
        let full = engine.detect(&frame, engine.config().upsample());
        let half = pipeline::detect_scaled(&engine, &frame, 0.5, 1);
        assert!(!full.is_empty(), "{rel}");
        for b in &half {
            let best = full.iter().map(|f| iou(f, b)).fold(0.0, f64::max);
            assert!(best > 0.6, "{rel}: {b:?} overlaps {best:.2} with {full:?}");
        }
        // Half the pixels, half the reach: the faces lost are the small ones (the group photo's
        // third face, 51 px wide), which the pipeline's defaults knowingly give up.
        let reach = full.iter().filter(|f| f.right - f.left >= 70).count();
        assert!(half.len() >= reach, "{rel}: {full:?} vs {half:?}");
        // Encodings from the mapped boxes still sit near the full-resolution ones.
        let (a, b) = (
            pipeline::encode_in(&engine, &frame, &full, engine.config().jitters()),
            pipeline::encode_in(&engine, &frame, &half, engine.config().jitters()),
        );
        for y in &b {
            let x = a
                .iter()
                .max_by(|p, q| iou(&p.bbox, &y.bbox).total_cmp(&iou(&q.bbox, &y.bbox)))
                .unwrap();
            let d = face_attendance::engine::distance(&x.encoding, &y.encoding);
            assert!(d < 0.2, "{rel}: encodings {d:.3} apart");
        }
    }
}

#[test]
fn a_still_face_is_encoded_once_per_recheck_period_and_labelled_every_frame() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let settings = PipelineSettings {
        recheck_frames: 10,
        ..PipelineSettings::default()
    };
    let mut pipeline = Pipeline::new(r, settings);
    let frame = raw("probe/obama/obama_3.jpg");
    let mut fresh = Vec::new();
    let mut decided = Vec::new();
    for n in 0..25 {
        let out = pipeline.process(&frame).unwrap();
        assert_eq!(out.faces.len(), 1, "frame {n}");
        assert_eq!(out.faces[0].recognition.label, "obama", "frame {n}");
        assert_eq!(out.faces[0].tracked(), out.encoded == 0, "frame {n}");
        if out.encoded > 0 {
            fresh.push(n);
        }
        if !out.decided.is_empty() {
            decided.push(n);
        }
    }
    // Encoded every frame until three agree (CAMERA_CONFIRM_FRAMES), then once per recheck
    // period; decided once.
    assert_eq!(fresh, [0, 1, 2, 12, 22]);
    assert_eq!(decided, [2]);
}

/// Frames of `who` (paths under ../shared/faces), each at `ms` after the previous one.
fn decisions(pipeline: &mut Pipeline, who: &[&str], ms: u64) -> Vec<(usize, String)> {
    let mut decided = Vec::new();
    for (n, rel) in who.iter().enumerate() {
        let at = Duration::from_millis(ms * n as u64);
        let out = pipeline.process_at(&raw(rel), at).unwrap();
        for d in out.decided {
            decided.push((n, d.recognition.label));
        }
    }
    decided
}

#[test]
fn one_stray_frame_between_strangers_decides_nothing_and_five_frames_decide_once() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
        ],
    );
    let (stranger, obama) = ("strangers/stuart_2.jpg", "probe/obama/obama_3.jpg");
    let mut pipeline = Pipeline::new(r.clone(), PipelineSettings::default());
    let got = decisions(
        &mut pipeline,
        &[stranger, stranger, obama, stranger, stranger],
        100,
    );
    assert!(
        got.iter().all(|(_, label)| label == "Unknown"),
        "obama for one frame must decide nothing: {got:?}"
    );
    let mut pipeline = Pipeline::new(r.clone(), PipelineSettings::default());
    let got = decisions(&mut pipeline, &[obama; 5], 100);
    assert_eq!(got, [(2, "obama".to_string())]);
    // Three frames spread over more than CAMERA_CONFIRM_SECONDS do not add up.
    let mut pipeline = Pipeline::new(r.clone(), PipelineSettings::default());
    assert_eq!(decisions(&mut pipeline, &[obama; 3], 1500), []);
    // CAMERA_CONFIRM_FRAMES=1: the first frame decides (once).
    let settings = PipelineSettings {
        confirm: ConfirmSettings::new(1, Duration::from_secs(2)),
        ..PipelineSettings::default()
    };
    let mut pipeline = Pipeline::new(r, settings);
    assert_eq!(
        decisions(&mut pipeline, &[obama; 4], 100),
        [(0, "obama".to_string())]
    );
}

#[test]
fn someone_else_in_the_same_place_is_recognized_at_once() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
        ],
    );
    let mut pipeline = Pipeline::new(r, PipelineSettings::default());
    let (obama, biden) = (
        raw("probe/obama/obama_3.jpg"),
        raw("probe/biden/biden_2.jpg"),
    );
    let mut boxes = Vec::new();
    for n in 0..6 {
        let (frame, who) = if n % 2 == 0 {
            (&obama, "obama")
        } else {
            (&biden, "biden")
        };
        let out = pipeline.process(frame).unwrap();
        assert_eq!(out.faces.len(), 1);
        assert_eq!(out.faces[0].recognition.label, who, "frame {n}");
        // From frame 2 on each face may continue its own track (missed for one frame only).
        assert!(
            n > 1 || !out.faces[0].tracked(),
            "frame {n}: a label carried over"
        );
        boxes.push(out.faces[0].recognition.bbox);
    }
    // The two letterboxed portraits put the faces in overlapping places, so the box alone
    // would have matched the track: the look is what told them apart.
    assert!(iou(&boxes[0], &boxes[1]) >= face_attendance::camera::tracker::MIN_IOU);
}

/// A box blur of radius `r`: a face out of focus or moving.
fn blurred(image: &RgbImage, r: usize) -> RgbImage {
    let (w, h) = (image.width, image.height);
    let mut out = image.pixels.clone();
    for y in 0..h {
        for x in 0..w {
            let mut sum = [0u32; 3];
            let mut n = 0;
            for yy in y.saturating_sub(r)..(y + r + 1).min(h) {
                for xx in x.saturating_sub(r)..(x + r + 1).min(w) {
                    let p = &image.pixels[(yy * w + xx) * 3..][..3];
                    sum.iter_mut().zip(p).for_each(|(s, v)| *s += *v as u32);
                    n += 1;
                }
            }
            let o = &mut out[(y * w + x) * 3..][..3];
            o.iter_mut().zip(sum).for_each(|(o, s)| *o = (s / n) as u8);
        }
    }
    RgbImage::from_raw(w, h, out).unwrap()
}

#[test]
fn blurred_and_small_faces_are_skipped_when_asked() {
    let data = tempfile::tempdir().unwrap();
    let r = recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let sharp = image_io::letterbox(&photo("probe/obama/obama_3.jpg"), 640, 480);
    let soft = blurred(&sharp, 3);
    let bbox = pipeline::detect(r.engine(), &sharp)[0];
    let (s_sharp, s_soft) = (
        quality::sharpness(&sharp, &bbox),
        quality::sharpness(&soft, &bbox),
    );
    assert!(
        s_sharp > 3.0 * s_soft,
        "sharp {s_sharp:.1}, blurred {s_soft:.1}"
    );
    let jpeg = |i: &RgbImage| RawFrame::Mjpeg(image_io::encode_jpeg(i).unwrap());

    let mut strict = Pipeline::new(
        r.clone(),
        PipelineSettings {
            min_sharpness: (s_sharp * s_soft).sqrt(),
            ..PipelineSettings::default()
        },
    );
    let out = strict.process(&jpeg(&soft)).unwrap();
    assert_eq!(
        (out.faces.len(), out.skipped_blurry, out.encoded),
        (0, 1, 0)
    );
    let out = strict.process(&jpeg(&sharp)).unwrap();
    assert_eq!((out.faces.len(), out.skipped_blurry), (1, 0));
    assert_eq!(out.faces[0].recognition.label, "obama");

    let found = out.faces[0].recognition.bbox;
    let width = found.right - found.left;
    let mut far = Pipeline::new(
        r,
        PipelineSettings {
            min_face_px: width as u32 + 20,
            ..PipelineSettings::default()
        },
    );
    let out = far.process(&jpeg(&sharp)).unwrap();
    assert_eq!((out.faces.len(), out.skipped_small), (0, 1));
}

#[test]
fn a_face_close_to_two_people_is_ambiguous_for_the_camera_not_a_name() {
    let data = tempfile::tempdir().unwrap();
    // One person's photo under two ids (as a forced enrollment can make): no one may win.
    let r = recognizer(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("barack", "known/obama/obama_2.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
        ],
    );
    let run = |margin: f64, rel: &str| {
        let settings = PipelineSettings {
            match_margin: margin,
            ..PipelineSettings::default()
        };
        let out = Pipeline::new(r.clone(), settings)
            .process(&raw(rel))
            .unwrap();
        assert_eq!(out.faces.len(), 1, "{rel}");
        out.faces[0].recognition.clone()
    };
    let seen = run(
        PipelineSettings::default().match_margin,
        "probe/obama/obama_3.jpg",
    );
    assert_eq!(seen.label, "Unknown", "{seen:?}");
    let mut both = seen.ambiguous.clone().unwrap();
    both.sort();
    assert_eq!(both, ["barack", "obama"]);
    assert!(seen.distance.unwrap() <= 0.45);
    // Biden leads everyone else by far: still a name with the margin.
    let biden = run(
        PipelineSettings::default().match_margin,
        "probe/biden/biden_2.jpg",
    );
    assert_eq!((biden.label.as_str(), &biden.ambiguous), ("biden", &None));
    let (_, second) = biden.runner_up.clone().unwrap();
    assert!(second >= biden.distance.unwrap() + 0.1, "{biden:?}");
    // Without a margin the closest id wins, as the original did.
    let first = run(0.0, "probe/obama/obama_3.jpg");
    assert!(
        ["obama", "barack"].contains(&first.label.as_str()),
        "{first:?}"
    );
}

#[test]
fn an_ambiguous_face_fires_no_attendance_event_and_is_counted() {
    let data = tempfile::tempdir().unwrap();
    recognizer(
        data.path(),
        &[
            ("obama", "known/obama/obama_1.jpg"),
            ("barack", "known/obama/obama_2.jpg"),
        ],
    );
    let frames = frames_of("probe/obama/obama_3.jpg", 5);
    for send_unknown in [false, true] {
        let (server, received) = replay(data.path(), frames.path(), send_unknown);
        let (_, health) = h::get(&format!("http://{}/health", server.addr()));
        // Every face encoded was ambiguous (a loaded machine may drop a frame: newest first).
        let camera = &health["camera"];
        assert!(camera["faces_ambiguous"].as_u64().unwrap() >= 3, "{health}");
        assert_eq!(
            camera["faces_ambiguous"], camera["faces_encoded"],
            "{health}"
        );
        assert_eq!(camera["confirmed_ambiguous"], 1, "{health}");
        assert_eq!(camera["confirmed"], 0, "{health}");
        server.shutdown();
        let got = received.lock().unwrap().clone();
        if !send_unknown {
            assert!(got.is_empty(), "no attendance for either id: {got:?}");
            continue;
        }
        // With CAMERA_SEND_UNKNOWN: one attendance.ambiguous event naming both.
        assert_eq!(got.len(), 1, "{got:?}");
        let body = &got[0].body;
        assert_eq!(body["event"], "attendance.ambiguous");
        assert_eq!(body["student_id"], "Unknown");
        let mut both: Vec<&str> = body["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        both.sort();
        assert_eq!(both, ["barack", "obama"]);
        assert!(body["decision"]["frames"].as_u64().unwrap() >= 3, "{body}");
    }
}

#[test]
fn capture_enrolls_the_next_frames_with_one_face_from_the_camera() {
    let data = tempfile::tempdir().unwrap();
    recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    let parent = tempfile::tempdir().unwrap();
    let frames = parent.path().join("camera");
    let mut settings = h::serve_settings();
    // The folder appears once the request waits: a camera that shows somebody later, and
    // keeps showing them however long each enrollment takes on a loaded machine.
    settings.camera.frames = Some(frames.clone());
    settings.camera.frames_fps = 4.0;
    settings.camera.frames_loop = true;
    let server = h::start(data.path(), settings);
    let base = format!("http://{}", server.addr());
    let json = "application/json";

    let (status, body) = h::post(
        &format!("{base}/people/biden/capture?samples=0"),
        json,
        b"{}".to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    let (status, body) = h::post(
        &format!("{base}/people/..%2Fetc/capture"),
        json,
        b"{}".to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    // Nothing in front of the camera: refused once the wait is over, nothing enrolled.
    let (status, body) = h::post(
        &format!("{base}/people/biden/capture?seconds=1"),
        json,
        b"{}".to_vec(),
    );
    assert_eq!(status, 422, "{body}");

    let request = {
        let url = format!("{base}/people/biden/capture?samples=3&seconds=50");
        std::thread::spawn(move || h::post(&url, "application/json", b"{}".to_vec()))
    };
    std::thread::sleep(Duration::from_millis(500));
    // A group photo first (more than one face: never enrolled), then biden.
    let staging = parent.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let group = std::fs::read_dir(common::faces_dir().join("group"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let group = image_io::decode(&std::fs::read(group).unwrap(), u64::MAX).unwrap();
    let group = image_io::encode_jpeg(&image_io::letterbox(&group, 640, 480)).unwrap();
    std::fs::write(staging.join("000.jpg"), group).unwrap();
    for n in 1..12 {
        let path = staging.join(format!("{n:03}.jpg"));
        std::fs::write(path, frame_jpeg("probe/biden/biden_2.jpg")).unwrap();
    }
    std::fs::rename(&staging, &frames).unwrap();
    let (status, body) = request.join().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["saved"], 3, "{body}");
    let (_, person) = h::get(&format!("{base}/people/biden"));
    assert_eq!(
        person["samples"].as_array().map(Vec::len),
        Some(3),
        "{person}"
    );
    let (status, got) = h::post_image(
        &format!("{base}/recognize"),
        &common::faces_dir().join("known/biden/biden_1.jpg"),
        &[],
    );
    assert_eq!(status, 200);
    assert_eq!(got["results"][0]["label"], "biden", "{got}");
    server.shutdown();

    // Without a camera there is nothing to capture from.
    let server = h::start(data.path(), h::serve_settings());
    let url = format!("http://{}/people/biden/capture", server.addr());
    let (status, body) = h::post(&url, json, b"{}".to_vec());
    assert_eq!(status, 409, "{body}");
    server.shutdown();
}

#[test]
fn a_stranger_the_camera_keeps_seeing_becomes_one_cluster_and_once_enrolled_gets_their_id() {
    let data = tempfile::tempdir().unwrap();
    recognizer(data.path(), &[("obama", "known/obama/obama_1.jpg")]);
    // Stuart walks up six times (four photos of him, two of them twice), the scene empty for
    // three frames in between so each visit is a face of its own. Six frames a visit: a loaded
    // machine may drop a frame or two and still see the three that decide.
    let frames = tempfile::tempdir().unwrap();
    let empty =
        image_io::encode_jpeg(&RgbImage::from_raw(640, 480, vec![40; 640 * 480 * 3]).unwrap())
            .unwrap();
    let mut n = 0;
    let mut put = |jpeg: &[u8]| {
        std::fs::write(frames.path().join(format!("{n:03}.jpg")), jpeg).unwrap();
        n += 1;
    };
    for visit in [1, 2, 3, 4, 1, 2] {
        let face = frame_jpeg(&format!("strangers/stuart_{visit}.jpg"));
        for _ in 0..6 {
            put(&face);
        }
        for _ in 0..3 {
            put(&empty);
        }
    }
    let (server, received) = replay(data.path(), frames.path(), false);
    let base = format!("http://{}", server.addr());
    let (_, health) = h::get(&format!("{base}/health"));
    assert_eq!(health["camera"]["confirmed_unknown"], 6, "{health}");
    assert_eq!(health["unknown_clusters"], 1, "{health}");
    let (status, listed) = h::get(&format!("{base}/unknowns"));
    assert_eq!(status, 200);
    let clusters = listed["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 1, "{listed}");
    assert_eq!(clusters[0]["count"], 6, "{listed}");
    let cluster = clusters[0]["cluster"].as_u64().unwrap();
    let (status, enrolled) = h::post(
        &format!("{base}/unknowns/{cluster}/enroll"),
        "application/json",
        br#"{"student_id":"stuart"}"#.to_vec(),
    );
    assert_eq!(status, 200, "{enrolled}");
    assert!(enrolled["saved"].as_u64().unwrap() >= 1, "{enrolled}");
    server.shutdown();
    assert!(
        received.lock().unwrap().is_empty(),
        "strangers made no event"
    );

    // The next time he walks up, he is somebody.
    let again = frames_of("strangers/stuart_3.jpg", 5);
    let (server, received) = replay(data.path(), again.path(), false);
    let (_, listed) = h::get(&format!("http://{}/unknowns", server.addr()));
    assert_eq!(listed["clusters"], serde_json::json!([]), "{listed}");
    server.shutdown();
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].body["student_id"], "stuart");
}
