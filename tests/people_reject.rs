//! "Not this person" end to end, on the real photos and models: a stranger the service names as
//! an enrolled person at a loose tolerance is rejected for that person over HTTP (a real server
//! on 127.0.0.1:0) and with the real binary's `people reject`; then they are not named so
//! again, while the person's own photos still are.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::http as h;
use face_attendance::bulk_enroll;
use face_attendance::client::{multipart, Part};
use face_attendance::service::{self, Service};
use face_attendance::settings::Settings;
use serde_json::Value;

/// Loose enough that strangers get names (benches/decisions.rs: 5 of 9 at 0.7).
const TOLERANCE: f64 = 0.7;
const KEY: &str = "reject-test-key-0123456789";

fn faces(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

/// Every `known/` photo enrolled as bulk enrollment does it, then a server at [`TOLERANCE`]
/// with the API key [`KEY`].
fn enrolled_server(data: &Path) -> Service {
    let settings = Settings {
        data_dir: data.to_path_buf(),
        ..Settings::default()
    };
    let recognizer = h::recognizer(&settings);
    let (people, _) = bulk_enroll::scan(&faces("known")).unwrap();
    let report = bulk_enroll::enroll_all(&recognizer, &people, Default::default(), &|_| {});
    assert!(report.iter().map(|p| p.saved).sum::<usize>() >= 25);
    // Enrolled at the default tolerance (its duplicate check), served at the loose one.
    let settings = Settings {
        tolerance: TOLERANCE,
        ..settings
    };
    let recognizer = recognizer.with_tolerance(TOLERANCE);
    let mut serve_settings = h::serve_settings();
    serve_settings.api_key = Some(KEY.into());
    service::start(&settings, &serve_settings, recognizer).unwrap()
}

/// (status, JSON) of a request with the key (or without it: `key` false).
fn send(
    server: &Service,
    method: &str,
    path: &str,
    image: Option<&[u8]>,
    key: bool,
) -> (u16, Value) {
    let url = format!("http://{}{path}", server.addr());
    let agent = h::agent();
    let mut response = match (method, image) {
        ("POST", Some(data)) => {
            let (ct, body) = multipart(&[(
                "image",
                Part::File {
                    file_name: "photo.jpg",
                    content_type: "image/jpeg",
                    data,
                },
            )]);
            let mut request = agent.post(&url).header("Content-Type", ct);
            if key {
                request = request.header("X-API-Key", KEY);
            }
            request.send(body).unwrap()
        }
        ("GET", None) => {
            let mut request = agent.get(&url);
            if key {
                request = request.header("X-API-Key", KEY);
            }
            request.call().unwrap()
        }
        ("DELETE", None) => {
            let mut request = agent.delete(&url);
            if key {
                request = request.header("X-API-Key", KEY);
            }
            request.call().unwrap()
        }
        other => panic!("no such request: {other:?}"),
    };
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// The label and distance `/recognize` gives the one face of `photo`.
fn recognize(server: &Service, photo: &Path) -> (String, f64) {
    recognize_at(server, photo, "/recognize")
}

/// As [`recognize`], through `route` (`/recognize/realtime?min_conf=…`: another tolerance).
fn recognize_at(server: &Service, photo: &Path, route: &str) -> (String, f64) {
    let bytes = std::fs::read(photo).unwrap();
    let (status, answer) = send(server, "POST", route, Some(&bytes), true);
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{}: {answer}", photo.display());
    let label = results[0]["label"].as_str().unwrap().to_string();
    (label, results[0]["distance"].as_f64().unwrap())
}

/// The label of each photo of `dir`, by file name.
fn labels(server: &Service, dir: &Path) -> BTreeMap<String, String> {
    labels_at(server, dir, "/recognize")
}

fn labels_at(server: &Service, dir: &Path, route: &str) -> BTreeMap<String, String> {
    common::photos(dir)
        .iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, recognize_at(server, p, route).0)
        })
        .collect()
}

/// Where the tolerance is so loose that every face gets a name: who is each stranger closest to.
const LOOSEST: &str = "/recognize/realtime?min_conf=0.95";

/// Every probe photo's label, `probe/<person>/<file>` as the key.
fn probe_labels(server: &Service) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for dir in std::fs::read_dir(faces("probe")).unwrap() {
        let dir = dir.unwrap().path();
        let person = dir.file_name().unwrap().to_string_lossy().into_owned();
        for (file, label) in labels(server, &dir) {
            out.insert(format!("{person}/{file}"), label);
        }
    }
    out
}

/// A grey photo: no face in it.
fn faceless_jpeg() -> Vec<u8> {
    let image =
        face_attendance::image_io::RgbImage::from_raw(200, 160, vec![128; 200 * 160 * 3]).unwrap();
    face_attendance::image_io::encode_jpeg(&image).unwrap()
}

#[test]
fn a_rejected_stranger_is_not_named_again_and_the_person_still_is() {
    let data = tempfile::tempdir().unwrap();
    let server = enrolled_server(data.path());
    let strangers = labels(&server, &faces("strangers"));
    let probes = probe_labels(&server);
    eprintln!("strangers at {TOLERANCE}: {strangers:?}");
    // A stranger named as someone: one of stuart's photos if any (he has five).
    let named: Vec<(&String, &String)> = strangers
        .iter()
        .filter(|(_, label)| *label != "Unknown")
        .collect();
    let (photo, person) = named
        .iter()
        .find(|(file, _)| file.starts_with("stuart_"))
        .or(named.first())
        .map(|(f, l)| ((*f).clone(), (*l).clone()))
        .expect("no stranger is named at 0.7: the test has nothing to reject");
    let photo_path = faces("strangers").join(&photo);
    let bytes = std::fs::read(&photo_path).unwrap();
    let (_, distance_before) = recognize(&server, &photo_path);
    let closest_before = labels_at(&server, &faces("strangers"), LOOSEST);
    eprintln!("strangers at 0.95: {closest_before:?}");
    let rejected_file = data.path().join(format!("rejected/{person}.npy"));
    let reject_path = format!("/people/{person}/reject");

    // Refusals first: nothing written by any of them.
    let (status, answer) = send(&server, "POST", &reject_path, Some(&bytes), false);
    assert_eq!(status, 401, "{answer}");
    let (status, answer) = send(&server, "POST", "/people/nobody/reject", Some(&bytes), true);
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("nobody"));
    let (status, answer) = send(&server, "POST", &reject_path, Some(&faceless_jpeg()), true);
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["error"], "no face found in the image");
    assert_eq!(answer["faces_found"], 0);
    let (status, answer) = send(&server, "POST", &reject_path, Some(b"not an image"), true);
    assert_eq!(status, 415, "{answer}");
    assert!(!rejected_file.exists());

    // The rejection.
    let (status, answer) = send(&server, "POST", &reject_path, Some(&bytes), true);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["student_id"], person.as_str());
    assert_eq!(answer["rejected"], 1);
    let distance = answer["distance"].as_f64().unwrap();
    assert!(
        (distance - distance_before).abs() < 0.01,
        "{distance} vs {distance_before}"
    );
    assert!(rejected_file.exists());
    let (_, detail) = send(&server, "GET", &format!("/people/{person}"), None, true);
    assert_eq!(detail["rejected"], 1, "{detail}");
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.last().unwrap()["action"], "reject");

    // That photo is not the person any more, nor any other photo of the stranger that was.
    let after = labels(&server, &faces("strangers"));
    eprintln!("strangers after rejecting {photo} as {person}: {after:?}");
    assert_ne!(after[&photo], person);
    let stem = photo.split('_').next().unwrap_or_default();
    let same_stranger: Vec<&String> = strangers
        .iter()
        .filter(|(file, label)| file.starts_with(stem) && **label == person && **file != photo)
        .map(|(file, _)| file)
        .collect();
    for file in &same_stranger {
        assert_ne!(
            after[*file], person,
            "{file}: another photo of the stranger"
        );
    }
    // Even where every face gets a name, the stranger's other photos that were closest to the
    // person are not theirs any more: the rejection covers the stranger, not one photo.
    let closest_after = labels_at(&server, &faces("strangers"), LOOSEST);
    eprintln!("strangers at 0.95 after: {closest_after:?}");
    let others: Vec<&String> = closest_before
        .iter()
        .filter(|(file, label)| file.starts_with(stem) && **label == person && **file != photo)
        .map(|(file, _)| file)
        .collect();
    // (stuart_2 is rejected as howard; stuart_1 and stuart_5 were closest to howard too.)
    assert!(!others.is_empty(), "the photos no longer test this");
    for file in &others {
        assert_ne!(closest_after[*file], person, "{file} at 0.95");
    }
    // Every probe is named as before, the person's own among them.
    assert!(probes.keys().any(|k| k.starts_with(&format!("{person}/"))));
    assert_eq!(probe_labels(&server), probes);

    // Forgetting the rejections gives the old answer back.
    let (status, answer) = send(
        &server,
        "DELETE",
        &format!("/people/{person}/rejected"),
        None,
        true,
    );
    assert_eq!((status, &answer["forgotten"]), (200, &Value::from(1)));
    assert!(!rejected_file.exists());
    assert_eq!(recognize(&server, &photo_path).0, person);
    let (status, _) = send(&server, "DELETE", "/people/nobody/rejected", None, true);
    assert_eq!(status, 404);

    // A deleted person takes their rejections along.
    send(&server, "POST", &reject_path, Some(&bytes), true);
    assert!(rejected_file.exists());
    let (status, _) = send(&server, "DELETE", &format!("/people/{person}"), None, true);
    assert_eq!(status, 200);
    assert!(!rejected_file.exists());
    server.shutdown();
}

#[test]
fn the_cli_rejects_and_forgets_through_the_library() {
    let data = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
            .args(args)
            .env("FACE_MODELS_DIR", common::models_dir())
            .env("FACE_DATA_DIR", data.path())
            .env("FACE_TOLERANCE", TOLERANCE.to_string())
            .env_remove("FACE_CROPS")
            .output()
            .expect("run face-attendance");
        let text = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(text.trim().lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"));
        (out.status.code().unwrap_or(-1), value)
    };
    // penny alone, and a photo of another BBT actor (a stranger) said not to be her.
    let mut args = vec!["enroll", "--id", "penny"];
    let photos = common::photos(&faces("known/penny"));
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    assert_eq!(run(&args).0, 0);
    let stranger = faces("strangers/stuart_1.jpg");
    let stranger = stranger.to_str().unwrap();
    let (status, answer) = run(&["people", "reject", "penny", stranger]);
    assert_eq!(
        (status, &answer["rejected"]),
        (0, &Value::from(1)),
        "{answer}"
    );
    assert!(answer["distance"].as_f64().unwrap() > 0.0);
    assert!(data.path().join("rejected/penny.npy").exists());
    let (_, shown) = run(&["people", "show", "penny"]);
    assert_eq!(shown["rejected"], 1);
    // The stranger is not penny, whatever the tolerance.
    let (_, recognized) = run(&["recognize", stranger]);
    assert_ne!(recognized["results"][0]["label"], "penny", "{recognized}");
    let (status, answer) = run(&["people", "reject", "nobody", stranger]);
    assert_eq!(status, 1, "{answer}");
    let (status, answer) = run(&["people", "reject", "penny", "--forget"]);
    assert_eq!(
        (status, &answer["forgotten"]),
        (0, &Value::from(1)),
        "{answer}"
    );
    assert!(!data.path().join("rejected/penny.npy").exists());
}
