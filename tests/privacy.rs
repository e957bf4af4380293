//! Faces kept only as long as needed, end to end with the real `face-attendance` binary, real
//! photos and real clients (curl, tar): `UNKNOWN_MAX=0` keeps no stranger the camera sees,
//! `UNKNOWN_MAX_AGE_DAYS` removes older unknown faces with their crops, `GET
//! /people/{id}/export` and `people export` hand over what the box holds about one person (and
//! only theirs, and only to an admin), and a deletion leaves no face-derived file of theirs.
//! Files on disk are checked, not only the answers.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::serve_process::{self, Running};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline::{self, Purpose};
use face_attendance::quality::sharpness;
use face_attendance::unknowns::{UnknownSettings, Unknowns};
use serde_json::Value;

const ADMIN: &str = "privacy-admin-key-0123456789abcdef";
const OPERATOR: &str = "privacy-operator-key-0123456789abc";
const VIEWER: &str = "privacy-viewer-key-0123456789abcde";

fn photo(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

/// Records the largest face of each photo in the unknown faces of `data`, as the camera would
/// (the photo is the frame); the ids given.
fn record_unknown(data: &Path, photos: &[&str]) -> Vec<u64> {
    let store = Unknowns::open(data, UnknownSettings::default()).unwrap();
    let engine = common::engine();
    photos
        .iter()
        .map(|rel| {
            let bytes = std::fs::read(photo(rel)).unwrap();
            let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).unwrap();
            let face = pipeline::analyze_image(&engine, &image, Purpose::Enroll { jitters: 1 })
                .faces
                .pop()
                .unwrap_or_else(|| panic!("no face in {rel}"));
            let b = face.bbox;
            let px = (b.right - b.left).min(b.bottom - b.top) as u32;
            store
                .record(&image, b, &face.encoding, px, sharpness(&image, &b))
                .unwrap()
        })
        .collect()
}

/// Every file under `dir` (not the folders), relative, sorted.
fn files(dir: &Path) -> BTreeSet<String> {
    common::tree(dir)
        .into_iter()
        .filter(|p| dir.join(p).is_file())
        .collect()
}

/// A running `serve` in `site` (data in `site/data`) on a free loopback port, with `env`.
struct Box {
    _running: Running,
    base: String,
}

fn serve(site: &Path, env: &[(&str, &str)]) -> Box {
    let bind = format!("127.0.0.1:{}", common::free_port());
    let mut all = vec![("FACE_BIND", bind.as_str())];
    all.extend_from_slice(env);
    let running = serve_process::start(site, &all);
    assert!(
        running.early.iter().any(|l| l.contains("serving on")),
        "{:?}",
        running.early
    );
    Box {
        _running: running,
        base: format!("http://{bind}"),
    }
}

/// `curl` with `args` and the key (if any): the status and the body.
fn curl(key: Option<&str>, args: &[&str]) -> (u16, Vec<u8>) {
    let mut command = Command::new("curl");
    command.args(["-sS", "--max-time", "60", "-o", "-", "-w", "\n%{http_code}"]);
    if let Some(key) = key {
        command.args(["-H", &format!("X-API-Key: {key}")]);
    }
    let out = command.args(args).output().expect("curl");
    let mut body = out.stdout;
    let at = body
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl's status");
    let status = String::from_utf8_lossy(&body[at + 1..]).parse().unwrap();
    body.truncate(at);
    (status, body)
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// A camera frame of `rel` (640x480, letterboxed), JPEG.
fn frame_jpeg(rel: &str) -> Vec<u8> {
    let bytes = std::fs::read(photo(rel)).unwrap();
    let image = image_io::decode(&bytes, u64::MAX).unwrap();
    image_io::encode_jpeg(&image_io::letterbox(&image, 640, 480)).unwrap()
}

/// Frames of stuart walking up twice (six frames each, the scene empty between).
fn stuart_frames(dir: &Path) {
    let empty =
        image_io::encode_jpeg(&RgbImage::from_raw(640, 480, vec![40; 640 * 480 * 3]).unwrap())
            .unwrap();
    let mut n = 0;
    let mut put = |jpeg: &[u8]| {
        std::fs::write(dir.join(format!("{n:03}.jpg")), jpeg).unwrap();
        n += 1;
    };
    for visit in [1, 2] {
        let face = frame_jpeg(&format!("strangers/stuart_{visit}.jpg"));
        for _ in 0..6 {
            put(&face);
        }
        for _ in 0..3 {
            put(&empty);
        }
    }
}

/// Serves `site` with the camera replaying `frames` (4 fps) and `env`, until the camera
/// confirmed two strangers.
fn replay(site: &Path, frames: &Path, env: &[(&str, &str)]) -> Box {
    let frames = frames.display().to_string();
    let mut all = vec![("CAMERA_FRAMES", frames.as_str()), ("CAMERA_FPS", "4")];
    all.extend_from_slice(env);
    let server = serve(site, &all);
    common::wait_for("two strangers confirmed", Duration::from_secs(90), || {
        let (_, body) = curl(None, &[&format!("{}/health", server.base)]);
        json(&body)["camera"]["confirmed_unknown"].as_u64() >= Some(2)
    });
    server
}

#[test]
fn with_unknown_max_0_no_stranger_is_kept_and_what_was_kept_goes() {
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let frames = tempfile::tempdir().unwrap();
    stuart_frames(frames.path());

    // As configured before: the camera's strangers are kept, with their crops.
    let server = replay(site.path(), frames.path(), &[]);
    let (status, body) = curl(None, &[&format!("{}/unknowns", server.base)]);
    assert_eq!(status, 200);
    let listed = json(&body);
    assert_eq!(listed["collecting"], true, "{listed}");
    assert_eq!(listed["clusters"][0]["count"], 2, "{listed}");
    drop(server);
    let kept = files(&data.join("unknowns"));
    assert!(kept.contains("faces.jsonl"), "{kept:?}");
    assert_eq!(kept.iter().filter(|f| f.ends_with(".jpg")).count(), 2);
    std::fs::write(data.join("unknowns/faces.jsonl.damaged-1"), b"{}").unwrap();

    // UNKNOWN_MAX=0: what was kept goes at start, the same strangers are seen and not kept.
    let server = replay(site.path(), frames.path(), &[("UNKNOWN_MAX", "0")]);
    assert!(!data.join("unknowns").exists(), "{:?}", files(&data));
    let (status, body) = curl(None, &[&format!("{}/unknowns", server.base)]);
    assert_eq!(status, 200);
    let listed = json(&body);
    assert_eq!(listed["clusters"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["collecting"], false, "{listed}");
    assert!(listed["message"]
        .as_str()
        .unwrap()
        .contains("UNKNOWN_MAX=0"));
    let (_, body) = curl(None, &[&format!("{}/health", server.base)]);
    assert_eq!(json(&body)["unknown_clusters"], 0);
    let (_, body) = curl(None, &[&format!("{}/config", server.base)]);
    assert_eq!(json(&body)["unknown_max"], 0);
    // Nothing to enroll or reject from.
    let (status, _) = curl(
        None,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"student_id":"stuart"}"#,
            &format!("{}/unknowns/1/enroll", server.base),
        ],
    );
    assert_eq!(status, 404);
    drop(server);
    assert!(!data.join("unknowns").exists(), "{:?}", files(&data));

    // The command line says the same.
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["unknowns", "list"])
        .env("FACE_DATA_DIR", &data)
        .env("UNKNOWN_MAX", "0")
        .output()
        .unwrap();
    let listed = json(out.stdout.trim_ascii());
    assert_eq!(listed["collecting"], false, "{listed}");
}

#[test]
fn unknown_faces_past_the_age_limit_go_at_start_and_the_limits_are_checked() {
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let ids = record_unknown(
        &data,
        &["strangers/lin_manuel_miranda.jpg", "strangers/stuart_1.jpg"],
    );
    // The first was seen ten days ago.
    let journal = data.join("unknowns/faces.jsonl");
    let ten_days_ago = face_attendance::events::unix_now_ms() - 10 * 86_400_000;
    let aged: Vec<String> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if v["id"] == ids[0] {
                v["time_ms"] = ten_days_ago.into();
            }
            v.to_string()
        })
        .collect();
    std::fs::write(&journal, aged.join("\n") + "\n").unwrap();
    let crop = |id: u64| data.join(format!("unknowns/crops/{id}.jpg"));
    assert!(crop(ids[0]).exists() && crop(ids[1]).exists());

    let count = |server: &Box| {
        let (_, body) = curl(None, &[&format!("{}/unknowns", server.base)]);
        let listed = json(&body);
        let clusters = listed["clusters"].as_array().unwrap();
        clusters
            .iter()
            .map(|c| c["count"].as_u64().unwrap())
            .sum::<u64>()
    };
    // 0: no age limit, both kept.
    let server = serve(site.path(), &[("UNKNOWN_MAX_AGE_DAYS", "0")]);
    assert_eq!(count(&server), 2);
    drop(server);
    assert!(crop(ids[0]).exists());
    // 30 days: both kept still.
    let server = serve(site.path(), &[("UNKNOWN_MAX_AGE_DAYS", "30")]);
    assert_eq!(count(&server), 2);
    drop(server);
    // The default (7 days): the old face goes at start, with its crop, from the journal too.
    let server = serve(site.path(), &[]);
    assert_eq!(count(&server), 1);
    let (_, body) = curl(None, &[&format!("{}/config", server.base)]);
    assert_eq!(json(&body)["unknown_max_age_days"], 7);
    drop(server);
    assert!(!crop(ids[0]).exists());
    assert!(crop(ids[1]).exists());
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        !text.contains(&format!("\"id\":{},", ids[0])),
        "rewritten without it: {text}"
    );

    // Nonsense is refused before anything is touched.
    for (name, value) in [
        ("UNKNOWN_MAX_AGE_DAYS", "36501"),
        ("UNKNOWN_MAX_AGE_DAYS", "-1"),
        ("UNKNOWN_MAX", "1001"),
    ] {
        let out = serve_process::serve_command(site.path(), &[(name, value)])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(name), "{name}={value}: {err}");
    }
    assert!(crop(ids[1]).exists());
}

/// `site` with keys of three roles; obama (two photos) and biden enrolled through the API, a
/// stranger rejected as not obama, events of both, and unknown faces kept before: one of
/// obama's photos and a stranger.
fn box_with_obama(site: &Path) -> (Box, Vec<u64>) {
    let data = site.join("data");
    let unknown = record_unknown(
        &data,
        &[
            "known/obama/obama_2.jpg",
            "strangers/lin_manuel_miranda.jpg",
        ],
    );
    let keys = site.join("api-keys");
    std::fs::write(
        &keys,
        format!("office admin {ADMIN}\ndesk operator {OPERATOR}\nhall viewer {VIEWER}\n"),
    )
    .unwrap();
    let server = serve(site, &[("FACE_API_KEYS_FILE", keys.to_str().unwrap())]);
    let post = |path: &str, form: &[String]| {
        let mut args: Vec<String> = vec!["-X".into(), "POST".into()];
        for f in form {
            args.push("-F".into());
            args.push(f.clone());
        }
        args.push(format!("{}{path}", server.base));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, body) = curl(Some(ADMIN), &args);
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
    };
    for (id, rel) in [
        ("obama", "known/obama/obama_1.jpg"),
        ("obama", "known/obama/obama_2.jpg"),
        ("biden", "known/biden/biden_1.jpg"),
    ] {
        let image = format!("image=@{}", photo(rel).display());
        post("/enroll", &[format!("student_id={id}"), image]);
    }
    let stranger = format!("image=@{}", photo("strangers/stranger_angry.jpg").display());
    post("/people/obama/reject", &[stranger]);
    for rel in ["probe/obama/obama_3.jpg", "probe/biden/biden_2.jpg"] {
        let image = format!("image=@{}", photo(rel).display());
        post("/recognize/realtime", &[image]);
    }
    (server, unknown)
}

/// Unpacks the tar `bytes` with the real `tar` into a new folder.
fn untar(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("archive.tar");
    std::fs::write(&file, bytes).unwrap();
    let out_dir = dir.path().join("x");
    std::fs::create_dir(&out_dir).unwrap();
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&out_dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_file(&file).unwrap();
    dir
}

fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_persons_export_holds_what_the_box_holds_about_them_and_only_that() {
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let (server, unknown) = box_with_obama(site.path());
    let url = |path: &str| format!("{}{path}", server.base);
    std::thread::sleep(Duration::from_millis(500)); // the event log's write of the last batch

    let (status, tar) = curl(Some(ADMIN), &[&url("/people/obama/export")]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let unpacked = untar(&tar);
    let x = unpacked.path().join("x");
    let manifest = json(&std::fs::read(x.join("manifest.json")).unwrap());
    assert_eq!(manifest["format"], "face-attendance-person");
    assert_eq!(manifest["student_id"], "obama");
    assert_eq!(manifest["enrolled"], true);
    assert_eq!(manifest["samples"], 2, "{manifest}");
    assert_eq!(manifest["rejected"], 1, "{manifest}");
    // Every file is listed in the manifest with its size, and nothing else is in the archive.
    let listed: BTreeSet<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let len = std::fs::metadata(x.join(path)).unwrap().len();
            assert_eq!(f["bytes"], len, "{path}");
            path.to_string()
        })
        .collect();
    let mut got = files(&x);
    got.remove("manifest.json");
    assert_eq!(got, listed);

    // The person's files, as the data folder holds them.
    let same = |rel: &str| {
        assert_eq!(
            std::fs::read(x.join(rel)).unwrap(),
            std::fs::read(data.join(rel)).unwrap(),
            "{rel}"
        );
    };
    same("embeddings/obama.npy");
    same("rejected/obama.npy");
    let crops = files(&data.join("faces/obama"));
    assert_eq!(crops.len(), 2, "{crops:?}");
    for crop in &crops {
        same(&format!("faces/obama/{crop}"));
    }
    let samples = json(&std::fs::read(x.join("people/obama.json")).unwrap());
    let samples = samples["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert!(
        samples.iter().all(|s| s["quality"]["face_px"].is_number()),
        "{samples:?}"
    );

    // The unknown face kept of obama, not the stranger's.
    let faces = json(&std::fs::read(x.join("unknowns/faces.json")).unwrap());
    let ids: Vec<u64> = faces
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [unknown[0]], "{faces}");
    assert_eq!(
        std::fs::read(x.join(format!("unknowns/crops/{}.jpg", unknown[0]))).unwrap(),
        std::fs::read(data.join(format!("unknowns/crops/{}.jpg", unknown[0]))).unwrap()
    );

    // Their event, not biden's; their audit lines, not biden's.
    let days = files(&x.join("events"));
    assert_eq!(days.len(), 1, "{days:?}");
    let events = read_lines(&x.join("events").join(days.first().unwrap()));
    assert!(!events.is_empty());
    assert!(events
        .iter()
        .filter(|e| e.get("kind").is_some())
        .all(|e| e["student_id"] == "obama"));
    assert_eq!(manifest["events"], 1, "{manifest}");
    let all_events =
        std::fs::read_to_string(data.join("events").join(days.first().unwrap())).unwrap();
    assert!(
        all_events.contains("\"biden\""),
        "the log holds biden's too"
    );
    let audit = read_lines(&x.join("audit.jsonl"));
    let actions: Vec<&str> = audit
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["enroll", "enroll", "reject"], "{audit:?}");
    assert!(audit.iter().all(|a| a["student_id"] == "obama"));

    // The command line writes the same archive (but its time).
    let out_file = site.path().join("obama.tar");
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["people", "export", "obama", "--output"])
        .arg(&out_file)
        .env("FACE_DATA_DIR", &data)
        .env("FACE_MODELS_DIR", common::models_dir())
        .output()
        .unwrap();
    let answer = json(out.stdout.trim_ascii());
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["exported"]["unknown_faces"], 1, "{answer}");
    let cli = untar(&std::fs::read(&out_file).unwrap());
    assert_eq!(files(&cli.path().join("x")), files(&x));
    for rel in files(&x) {
        if rel != "manifest.json" {
            assert_eq!(
                std::fs::read(cli.path().join("x").join(&rel)).unwrap(),
                std::fs::read(x.join(&rel)).unwrap(),
                "{rel}"
            );
        }
    }
    drop(server);
}

#[test]
fn the_export_is_an_admins_and_takes_only_a_persons_id() {
    let site = tempfile::tempdir().unwrap();
    let (server, _) = box_with_obama(site.path());
    let url = |path: &str| format!("{}{path}", server.base);
    let before = files(&site.path().join("data"));
    for (key, status) in [
        (None, 401),
        (Some("not-a-key-at-all-0123456789"), 401),
        (Some(VIEWER), 403),
        (Some(OPERATOR), 403),
    ] {
        let (got, body) = curl(key, &[&url("/people/obama/export")]);
        assert_eq!(got, status, "{key:?}: {}", String::from_utf8_lossy(&body));
        assert!(!body.starts_with(b"manifest.json"), "no archive");
    }
    for (path, status) in [
        ("/people/..%2F..%2Fetc%2Fpasswd/export", 400),
        ("/people/%2Fetc%2Fpasswd/export", 400),
        ("/people/.hidden/export", 400),
        ("/people/Unknown/export", 400),
        ("/people/unknown/export", 400),
        ("/people/nobody/export", 404),
        ("/people/obama/export/x", 404),
    ] {
        let (got, body) = curl(Some(ADMIN), &["--path-as-is", &url(path)]);
        assert_eq!(got, status, "{path}: {}", String::from_utf8_lossy(&body));
    }
    let (got, _) = curl(Some(ADMIN), &["-X", "POST", &url("/people/obama/export")]);
    assert_eq!(got, 405);
    // Nothing was left behind (the archives are unlinked temp files).
    assert_eq!(files(&site.path().join("data")), before);
}

#[test]
fn a_deletion_leaves_no_face_of_theirs_and_the_logs_are_what_stays() {
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let (server, unknown) = box_with_obama(site.path());
    let url = |path: &str| format!("{}{path}", server.base);
    std::thread::sleep(Duration::from_millis(500));
    let before = files(&data);
    for rel in [
        "embeddings/obama.npy",
        "people/obama.json",
        "rejected/obama.npy",
    ] {
        assert!(before.contains(rel), "{rel}: {before:?}");
    }
    assert!(before.iter().any(|f| f.starts_with("faces/obama/")));

    let (status, body) = curl(Some(ADMIN), &["-X", "DELETE", &url("/people/obama")]);
    assert_eq!(status, 200);
    let answer = json(&body);
    assert_eq!(answer["samples"], 2, "{answer}");
    assert_eq!(answer["unknown_faces"], 1, "{answer}");

    let after = files(&data);
    let theirs: Vec<&String> = after.iter().filter(|f| f.contains("obama")).collect();
    assert!(theirs.is_empty(), "{theirs:?}");
    assert!(!data.join("faces/obama").exists());
    // Their unknown face and its crop went; the stranger's stayed.
    assert!(!data
        .join(format!("unknowns/crops/{}.jpg", unknown[0]))
        .exists());
    assert!(data
        .join(format!("unknowns/crops/{}.jpg", unknown[1]))
        .exists());
    let (_, body) = curl(Some(VIEWER), &[&url("/unknowns")]);
    let listed = json(&body);
    assert_eq!(listed["clusters"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["clusters"][0]["count"], 1, "{listed}");
    // biden is untouched.
    assert!(after.contains("embeddings/biden.npy"));

    // What stays, as docs/src/privacy.md says: the events naming them and the audit lines (the
    // deletion's among them); the export hands those over.
    let (status, tar) = curl(Some(ADMIN), &[&url("/people/obama/export")]);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&tar));
    let unpacked = untar(&tar);
    let x = unpacked.path().join("x");
    let manifest = json(&std::fs::read(x.join("manifest.json")).unwrap());
    assert_eq!(manifest["enrolled"], false, "{manifest}");
    assert_eq!(manifest["events"], 1, "{manifest}");
    let got = files(&x);
    assert!(
        got.iter()
            .all(|f| f == "manifest.json" || f == "audit.jsonl" || f.starts_with("events/")),
        "{got:?}"
    );
    let audit = read_lines(&x.join("audit.jsonl"));
    assert_eq!(audit.last().unwrap()["action"], "delete", "{audit:?}");
    drop(server);
}
