//! The real `face-attendance` binary, as a user runs it from a site folder.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use face_attendance::engine::blas;
use face_attendance::image_io;
use serde_json::Value;

fn run(dir: &Path, models: &Path, args: &[&str]) -> Output {
    run_binary(env!("CARGO_BIN_EXE_face-attendance"), dir, models, args)
}

/// `face-attendance-bench ARGS`, as [`run`] runs the service's binary.
fn bench(dir: &Path, models: &Path, args: &[&str]) -> Output {
    run_binary(
        env!("CARGO_BIN_EXE_face-attendance-bench"),
        dir,
        models,
        args,
    )
}

fn run_binary(binary: &str, dir: &Path, models: &Path, args: &[&str]) -> Output {
    Command::new(binary)
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

#[test]
fn cam_demo_prints_names_and_saves_annotated_frames() {
    let faces = common::faces_dir();
    let models = common::models_dir();
    let site = tempfile::tempdir().unwrap();
    copy_person(&faces, site.path(), "obama");
    assert!(run(site.path(), &models, &["enroll"]).status.success());
    // Camera frames: a probe photo of an enrolled person and one of a stranger, 640x480.
    let frames = site.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for (name, rel) in [
        ("1.jpg", "probe/obama/obama_3.jpg"),
        ("2.jpg", "strangers/stuart_2.jpg"),
    ] {
        let bytes = std::fs::read(faces.join(rel)).unwrap();
        let image = image_io::decode(&bytes, u64::MAX).unwrap();
        let frame = image_io::letterbox(&image, 640, 480);
        std::fs::write(frames.join(name), image_io::encode_jpeg(&frame).unwrap()).unwrap();
    }
    let out = run(
        site.path(),
        &models,
        &["cam-demo", "--frames", "frames", "--save-annotated", "seen"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = stdout(&out);
    assert!(lines.contains("frame 1: obama distance 0."), "{lines}");
    assert!(lines.contains("frame 2: Unknown distance"), "{lines}");
    assert!(lines.contains(" fps"), "{lines}");

    let saved = common::photos(&site.path().join("seen"));
    let names: Vec<_> = saved
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["frame-000001.jpg", "frame-000002.jpg"]);
    // The known face is outlined in green, the stranger in red.
    let greenish = |p: &[u8]| p[1] > 150 && p[0] < 100 && p[2] < 120;
    let reddish = |p: &[u8]| p[0] > 170 && p[1] < 90 && p[2] < 90;
    let count = |path: &Path, f: &dyn Fn(&[u8]) -> bool| {
        let image = image_io::decode(&std::fs::read(path).unwrap(), u64::MAX).unwrap();
        assert_eq!((image.width, image.height), (640, 480));
        image.pixels.chunks_exact(3).filter(|p| f(p)).count()
    };
    assert!(count(&saved[0], &greenish) > 500);
    assert!(count(&saved[1], &reddish) > 500);
    assert!(count(&saved[0], &reddish) < 50);
}

#[test]
fn bench_camera_measures_frames_with_zero_one_and_three_faces() {
    let faces = common::faces_dir();
    let models = common::models_dir();
    let site = tempfile::tempdir().unwrap();
    let photos: Vec<String> = [
        "probe/obama/obama_3.jpg",
        "probe/biden/biden_2.jpg",
        "probe/amy/amy_4.jpg",
    ]
    .iter()
    .map(|rel| faces.join(rel).display().to_string())
    .collect();
    let mut args = vec!["camera", "--frames", "2", "--scales", "0.5"];
    args.extend(photos.iter().map(String::as_str));
    let out = bench(site.path(), &models, &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // Rows: faces 0, 1, 3 with tracking, then 1 and 3 without; the last column is the number
    // of faces actually found per frame.
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 5, "{text}");
    for row in &rows {
        let (faces, found) = (row[2], row[row.len() - 1]);
        assert_eq!(
            found.parse::<f64>().unwrap(),
            faces.parse::<f64>().unwrap(),
            "{text}"
        );
        assert!(row[4].parse::<f64>().unwrap() > 0.0, "fps: {text}");
    }
    let bad = bench(
        site.path(),
        &models,
        &[
            "camera",
            "--upsample",
            "9",
            &photos[0],
            &photos[1],
            &photos[2],
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
}

/// The kernels OpenBLAS runs the encoder with, as the binary logs them at debug level.
fn blas_kernels(site: &Path, coretype: Option<&str>) -> String {
    let photo = common::faces_dir().join("probe/obama/obama_3.jpg");
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["recognize", "--data", "data", photo.to_str().unwrap()])
        .current_dir(site)
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("RUST_LOG", "face_attendance::engine=debug")
        .env_remove(blas::CORETYPE_VAR);
    if let Some(name) = coretype {
        command.env(blas::CORETYPE_VAR, name);
    }
    let out = command.output().expect("run face-attendance");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err
        .lines()
        .find_map(|l| l.split("OpenBLAS kernels: ").nth(1))
        .unwrap_or_else(|| panic!("no kernels line in: {err}"));
    line.trim().to_string()
}

/// Debian's OpenBLAS takes a CPU newer than itself for a "Prescott" (SSE3) and runs its slowest
/// kernels; the binary runs itself again with OPENBLAS_CORETYPE set (engine::blas). A kernel
/// choice the user made is kept.
#[test]
fn the_binary_runs_openblas_kernels_this_cpu_can_use() {
    let site = tempfile::tempdir().unwrap();
    let chosen = blas_kernels(site.path(), None);
    let cpu = blas::CpuFeatures::detect();
    if cpu.avx2_fma {
        assert_ne!(chosen.to_lowercase(), "prescott", "{cpu:?}");
    }
    if std::env::var_os(blas::CORETYPE_VAR).is_none() {
        // This test process loaded OpenBLAS as the binary first did.
        let first = blas::corename();
        assert_eq!(
            chosen,
            blas::better_kernels(&first, cpu).unwrap_or(&first),
            "{cpu:?}"
        );
    }
    if cpu.avx2_fma {
        assert_eq!(blas_kernels(site.path(), Some("Haswell")), "Haswell");
    }
}
