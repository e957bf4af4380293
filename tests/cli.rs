//! The real `face-attendance` binary, as a user runs it from a site folder.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn run(dir: &Path, models: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(args)
        .current_dir(dir)
        .env("FACE_MODELS_DIR", models)
        .env_remove("FACE_DATA_DIR")
        .env_remove("FACE_TOLERANCE")
        .env_remove("FACE_UPSAMPLE")
        .output()
        .expect("run face-attendance")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_person(faces: &Path, site: &Path, person: &str) {
    let to = site.join("known_faces").join(person);
    std::fs::create_dir_all(&to).unwrap();
    for photo in common::photos(&faces.join("known").join(person)) {
        std::fs::copy(&photo, to.join(photo.file_name().unwrap())).unwrap();
    }
}

#[test]
fn bulk_enroll_then_recognize() {
    let faces = common::faces_dir();
    let models = common::models_dir();
    let site = tempfile::tempdir().unwrap();
    for person in ["obama", "biden", "penny"] {
        copy_person(&faces, site.path(), person);
    }
    // A file that only looks like a photo is skipped with its reason, not fatal.
    std::fs::write(
        site.path().join("known_faces/penny/notes.jpg"),
        b"meeting notes",
    )
    .unwrap();

    let out = run(site.path(), &models, &["enroll"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("obama: 2 photos, 2 faces saved, 0 skipped"),
        "{text}"
    );
    assert!(
        text.contains("biden: 1 photos, 1 faces saved, 0 skipped"),
        "{text}"
    );
    assert!(
        text.contains("penny: 4 photos, 3 faces saved, 1 skipped"),
        "{text}"
    );
    assert!(text.contains("notes.jpg: not an image"), "{text}");
    for person in ["obama", "biden", "penny"] {
        assert!(site
            .path()
            .join(format!("data/embeddings/{person}.npy"))
            .is_file());
        assert!(
            site.path()
                .join(format!("data/faces/{person}"))
                .read_dir()
                .unwrap()
                .count()
                > 0
        );
    }

    let probe = faces.join("probe/obama/obama_3.jpg");
    let out = run(
        site.path(),
        &models,
        &["recognize", probe.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(
        line.starts_with(r#"{"ok":true,"results":[{"box":["#),
        "{line}"
    );
    let answer: Value = serde_json::from_str(&line).unwrap();
    let face = &answer["results"][0];
    assert_eq!(face["label"], "obama");
    assert!(face["distance"].as_f64().unwrap() < 0.45);
    assert_eq!(face["box"].as_array().unwrap().len(), 4);

    // Several files: one object per line, each naming its file; a stranger is Unknown.
    let stranger = faces.join("strangers/stuart_1.jpg");
    let out = run(
        site.path(),
        &models,
        &[
            "recognize",
            probe.to_str().unwrap(),
            stranger.to_str().unwrap(),
        ],
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["results"][0]["label"], "Unknown");
    assert_eq!(lines[1]["file"], stranger.to_str().unwrap());
}

#[test]
fn enroll_one_person_and_refuse_bad_ids() {
    let faces = common::faces_dir();
    let models = common::models_dir();
    let site = tempfile::tempdir().unwrap();
    let photo = faces.join("group/two_people.jpg");
    let out = run(
        site.path(),
        &models,
        &["enroll", "--id", "alip", photo.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        r#"{"ok":true,"saved":1,"msg":{"faces_found":2,"saved":1}}"#
    );

    for bad in ["../x", "a/b", ".hidden", "../../etc"] {
        let out = run(
            site.path(),
            &models,
            &["enroll", "--id", bad, photo.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        assert_eq!(answer["ok"], false);
        assert!(answer["error"]
            .as_str()
            .unwrap()
            .contains("invalid student_id"));
    }
    let written: Vec<_> = std::fs::read_dir(site.path().join("data/embeddings"))
        .unwrap()
        .collect();
    assert_eq!(written.len(), 1);
    assert!(!site.path().join("x").exists() && !site.path().join("data/x.npy").exists());
}

#[test]
fn missing_or_corrupt_models_give_one_clear_line() {
    let site = tempfile::tempdir().unwrap();
    let empty = site.path().join("no-models");
    std::fs::create_dir_all(&empty).unwrap();
    let out = run(site.path(), &empty, &["recognize", "x.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("shape_predictor_5_face_landmarks.dat")
            && err.contains("scripts/fetch-models"),
        "{err}"
    );

    // A model file cut short (an interrupted copy) is caught by its checksum.
    let real = common::models_dir();
    for name in [
        "shape_predictor_5_face_landmarks.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
    ] {
        std::fs::copy(real.join(name), empty.join(name)).unwrap();
    }
    let enc = empty.join("dlib_face_recognition_resnet_model_v1.dat");
    let bytes = std::fs::read(&enc).unwrap();
    std::fs::write(&enc, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(site.path(), &empty, &["recognize", "x.jpg"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("dlib_face_recognition_resnet_model_v1.dat is corrupt"),
        "{err}"
    );
}

#[test]
fn a_damaged_embeddings_file_is_reported_and_skipped() {
    let faces = common::faces_dir();
    let site = tempfile::tempdir().unwrap();
    let emb = site.path().join("data/embeddings");
    std::fs::create_dir_all(&emb).unwrap();
    std::fs::write(emb.join("broken.npy"), b"\x93NUMPY garbage").unwrap();
    let probe = faces.join("probe/biden/biden_2.jpg");
    let out = run(
        site.path(),
        &common::models_dir(),
        &["recognize", probe.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("broken.npy"), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(answer["results"][0]["label"], "Unknown");
    assert!(answer["results"][0]["distance"].is_null());
}
