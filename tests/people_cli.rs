//! The real `face-attendance` binary's `people` and `gallery` commands on real photos: the
//! gallery managed without a server, and moved between data folders as one archive.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::snapshot;
use serde_json::Value;

/// Runs the binary on the data folder `data` (models from the repository, for `enroll` and
/// `recognize`; the other commands do not load them).
fn run(data: &Path, args: &[&str]) -> Output {
    common::cli_on(Path::new(env!("CARGO_BIN_EXE_face-attendance")), data)
        .args(args)
        .output()
        .expect("run face-attendance")
}

/// The one JSON line a command printed, with its exit status.
fn answer(data: &Path, args: &[&str]) -> (i32, Value) {
    let out = run(data, args);
    let text = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not one JSON line ({e}): {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), value)
}

fn ok(data: &Path, args: &[&str]) -> Value {
    let (status, value) = answer(data, args);
    assert_eq!(status, 0, "{args:?}: {value}");
    assert_eq!(value["ok"], true, "{args:?}: {value}");
    value
}

fn known(person: &str) -> Vec<PathBuf> {
    common::photos(&common::faces_dir().join("known").join(person))
}

fn probes(person: &str) -> Vec<PathBuf> {
    common::photos(&common::faces_dir().join("probe").join(person))
}

fn enroll(data: &Path, person: &str) {
    let photos = known(person);
    let mut args = vec!["enroll", "--id", person];
    args.extend(photos.iter().map(|p| p.to_str().unwrap()));
    let out = run(data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The names `recognize` gives the faces of `photo`.
fn names(data: &Path, photo: &Path) -> Vec<String> {
    let value = ok(data, &["recognize", photo.to_str().unwrap()]);
    value["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn ids(list: &Value) -> Vec<String> {
    list["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["student_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn people_are_listed_shown_renamed_and_deleted_without_a_server() {
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    enroll(&data, "obama");
    enroll(&data, "biden");

    let list = ok(&data, &["people", "list"]);
    assert_eq!(list["total"], 2);
    assert_eq!(ids(&list), ["biden", "obama"]);
    assert_eq!(list["people"][1]["samples"], 2);
    let page = ok(&data, &["people", "list", "--q", "ob", "--limit", "5"]);
    assert_eq!(
        (page["total"].as_u64(), ids(&page)),
        (Some(1), vec!["obama".to_string()])
    );
    assert_eq!(
        ids(&ok(&data, &["people", "list", "--offset", "1"])),
        ["obama"]
    );

    let show = ok(&data, &["people", "show", "obama"]);
    assert_eq!(show["student_id"], "obama");
    let samples = show["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1]["crop"], "/people/obama/samples/1.jpg");
    let history = show["history"].as_array().unwrap();
    assert!(!history.is_empty());
    assert!(
        history
            .iter()
            .all(|h| h["action"] == "enroll" && h["by"] == "cli"),
        "{show}"
    );

    for bad in [
        vec!["people", "show", "nobody"],
        vec!["people", "show", "../etc"],
        vec!["people", "delete", "nobody"],
        vec!["people", "delete", "obama", "--sample", "7"],
        vec!["people", "rename", "nobody", "somebody"],
    ] {
        let (status, value) = answer(&data, &bad);
        assert_eq!(
            (status, &value["ok"]),
            (1, &Value::Bool(false)),
            "{bad:?}: {value}"
        );
        assert!(value["error"].as_str().is_some_and(|e| !e.is_empty()));
    }

    // Onto an enrolled id: refused, nothing changed.
    let before = snapshot(&data);
    let (status, value) = answer(&data, &["people", "rename", "obama", "biden"]);
    assert_eq!(status, 1, "{value}");
    assert!(
        value["error"].as_str().unwrap().contains("biden"),
        "{value}"
    );
    assert_eq!(snapshot(&data), before);

    let renamed = ok(&data, &["people", "rename", "obama", "barack"]);
    assert_eq!(
        (
            &renamed["student_id"],
            &renamed["from"],
            &renamed["samples"]
        ),
        (
            &Value::from("barack"),
            &Value::from("obama"),
            &Value::from(2)
        )
    );
    for probe in probes("obama") {
        assert_eq!(names(&data, &probe), ["barack"], "{}", probe.display());
    }
    let show = ok(&data, &["people", "show", "barack"]);
    let last = show["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["action"], &last["from"]),
        (&Value::from("rename"), &Value::from("obama"))
    );

    let left = ok(&data, &["people", "delete", "barack", "--sample", "0"]);
    assert_eq!(
        (&left["student_id"], &left["samples"]),
        (&Value::from("barack"), &Value::from(1))
    );
    let deleted = ok(&data, &["people", "delete", "barack"]);
    assert_eq!(
        deleted,
        serde_json::json!({"ok": true, "deleted": "barack", "samples": 1})
    );
    // Every file of theirs is gone; only the audit log still names them.
    let files = common::tree(&data);
    assert!(
        files
            .iter()
            .all(|p| !p.contains("barack") && !p.contains("obama")),
        "{files:?}"
    );
    let audit = std::fs::read_to_string(data.join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"delete\"") && audit.contains("barack"));
    assert_eq!(ids(&ok(&data, &["people", "list"])), ["biden"]);
    assert_eq!(names(&data, &probes("obama")[0]), ["Unknown"]);
}

#[test]
fn an_exported_gallery_imports_into_another_folder_with_the_same_answers() {
    let site = tempfile::tempdir().unwrap();
    let (a, b) = (site.path().join("a"), site.path().join("b"));
    enroll(&a, "obama");
    enroll(&a, "biden");
    let archive = site.path().join("gallery.tar");
    let exported = ok(&a, &["gallery", "export", archive.to_str().unwrap()]);
    assert_eq!(
        (
            &exported["exported"]["people"],
            &exported["exported"]["samples"]
        ),
        (&Value::from(2), &Value::from(3))
    );
    assert!(!site.path().join("gallery.tar.tmp").exists());
    // To standard output: the archive alone, byte for byte what a file gets (but its time).
    let out = run(&a, &["gallery", "export", "-"]);
    assert!(out.status.success());
    assert_eq!(
        out.stdout.len() as u64,
        std::fs::metadata(&archive).unwrap().len()
    );

    let imported = ok(&b, &["gallery", "import", archive.to_str().unwrap()]);
    assert_eq!(
        (
            &imported["imported"]["people_added"],
            &imported["imported"]["samples"]
        ),
        (&Value::from(2), &Value::from(3))
    );
    let probe_photos: Vec<PathBuf> = ["obama", "biden", "penny"]
        .iter()
        .flat_map(|p| probes(p))
        .collect();
    for photo in &probe_photos {
        let (from_a, from_b) = (names(&a, photo), names(&b, photo));
        assert_eq!(from_a, from_b, "{}", photo.display());
    }
    assert_eq!(names(&b, &probes("biden")[0]), ["biden"]);
    let show_a = ok(&a, &["people", "show", "obama"]);
    let show_b = ok(&b, &["people", "show", "obama"]);
    assert_eq!(show_a["samples"], show_b["samples"]);

    // Merging again adds nothing.
    let again = ok(&b, &["gallery", "import", archive.to_str().unwrap()]);
    assert_eq!(
        (
            &again["imported"]["samples"],
            &again["imported"]["people_unchanged"]
        ),
        (&Value::from(0), &Value::from(2))
    );

    // A cut export and a text file: refused (exit 1), the folder byte for byte as it was.
    let bytes = std::fs::read(&archive).unwrap();
    let cut = site.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let text = site.path().join("notes.txt");
    std::fs::write(&text, "obama,biden\n").unwrap();
    let before = snapshot(&b);
    for bad in [&cut, &text] {
        for mode in [None, Some("--replace")] {
            let mut args = vec!["gallery", "import", bad.to_str().unwrap()];
            args.extend(mode);
            let (status, value) = answer(&b, &args);
            assert_eq!(
                (status, &value["ok"]),
                (1, &Value::Bool(false)),
                "{args:?}: {value}"
            );
            assert!(
                value["error"]
                    .as_str()
                    .unwrap()
                    .contains("not a gallery archive"),
                "{value}"
            );
            assert_eq!(snapshot(&b), before, "{args:?} changed the data folder");
        }
    }
    let (status, _) = answer(&b, &["gallery", "import", "/no/such/archive.tar"]);
    assert_eq!(status, 1);

    // Replace: the folder becomes the archive (here, without biden).
    ok(&a, &["people", "delete", "biden"]);
    let smaller = site.path().join("smaller.tar");
    ok(&a, &["gallery", "export", smaller.to_str().unwrap()]);
    let replaced = ok(
        &b,
        &["gallery", "import", "--replace", smaller.to_str().unwrap()],
    );
    assert_eq!(replaced["imported"]["people_removed"], 1);
    assert_eq!(ids(&ok(&b, &["people", "list"])), ["obama"]);
    assert!(common::tree(&b).iter().all(|p| !p.contains("biden")));
    assert_eq!(names(&b, &probes("biden")[0]), ["Unknown"]);
}

#[test]
fn a_running_service_sees_what_the_cli_changed_beside_it() {
    let data = tempfile::tempdir().unwrap();
    enroll(data.path(), "obama");
    enroll(data.path(), "biden");
    let port = common::free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", data.path())
        .env_remove("FACE_API_KEY");
    /// Kills the service however the test ends.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Killed(common::spawn_until_serving(command));
    let get = |path: &str| common::http::get(&format!("http://127.0.0.1:{port}{path}"));
    assert_eq!(get("/people/obama").0, 200);
    // The CLI deletes one person and renames the other while the service runs.
    ok(data.path(), &["people", "delete", "obama"]);
    ok(data.path(), &["people", "rename", "biden", "joe"]);
    common::wait_for(
        "the service to reload",
        std::time::Duration::from_secs(20),
        || get("/people/obama").0 == 404 && get("/people/joe").0 == 200,
    );
    assert_eq!(get("/people/biden").0, 404);
    assert_eq!(get("/health").1["labels"], 1);
}

#[test]
fn bulk_enroll_skips_duplicates_and_poor_faces_unless_forced() {
    use face_attendance::image_io;
    let data = tempfile::tempdir().unwrap();
    let known = tempfile::tempdir().unwrap();
    let put = |folder: &str, name: &str, bytes: &[u8]| {
        std::fs::create_dir_all(known.path().join(folder)).unwrap();
        std::fs::write(known.path().join(folder).join(name), bytes).unwrap();
    };
    let read = |rel: &str| std::fs::read(common::faces_dir().join(rel)).unwrap();
    put("biden", "1.jpg", &read("known/biden/biden_1.jpg"));
    // Another photo of Biden under a second id: "two records for one student".
    put("joe", "1.jpg", &read("probe/biden/biden_2.jpg"));
    let obama = image_io::decode(
        &read("known/obama/obama_1.jpg"),
        image_io::DEFAULT_MAX_PIXELS,
    )
    .unwrap();
    put(
        "obama",
        "blurred.jpg",
        &image_io::encode_jpeg(&common::box_blur(&obama, 40)).unwrap(),
    );
    put("obama", "sharp.jpg", &read("known/obama/obama_1.jpg"));
    let known_dir = known.path().to_str().unwrap();
    let out = run(data.path(), &["enroll", "--known", known_dir]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("joe: 1 photos, 0 faces saved, 1 skipped"),
        "{text}"
    );
    assert!(text.contains("already enrolled as biden"), "{text}");
    assert!(
        text.contains("obama: 2 photos, 1 faces saved, 1 skipped"),
        "{text}"
    );
    assert!(text.contains("ENROLL_MIN_SHARPNESS"), "{text}");
    assert_eq!(
        ids(&ok(data.path(), &["people", "list"])),
        ["biden", "obama"]
    );
    // --force enrolls the duplicate (the blurred photo is still refused: quality is not forced).
    let out = run(data.path(), &["enroll", "--known", known_dir, "--force"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains("joe: 1 photos, 1 faces saved, 0 skipped"),
        "{text}"
    );
    assert_eq!(
        ids(&ok(data.path(), &["people", "list"])),
        ["biden", "joe", "obama"]
    );
    let history = &ok(data.path(), &["people", "show", "joe"])["history"];
    assert_eq!(
        (&history[0]["action"], &history[0]["by"]),
        (&Value::from("enroll"), &Value::from("cli"))
    );
}

#[test]
fn with_face_crops_none_no_photo_is_kept() {
    let data = tempfile::tempdir().unwrap();
    enroll(data.path(), "obama");
    assert_eq!(common::photos(&data.path().join("faces/obama")).len(), 2);
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["enroll", "--id", "biden"])
        .arg(&known("biden")[0])
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", data.path())
        .env("FACE_CROPS", "none")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The crops there were removed at start, and none was written.
    let jpegs: Vec<String> = common::tree(data.path())
        .into_iter()
        .filter(|p| p.ends_with(".jpg"))
        .collect();
    assert!(jpegs.is_empty(), "{jpegs:?}");
    let biden = ok(data.path(), &["people", "show", "biden"]);
    assert_eq!(biden["samples"][0]["crop"], Value::Null, "{biden}");
    assert!(biden["samples"][0]["quality"]["face_px"].as_u64().unwrap() > 80);
    assert_eq!(
        ok(data.path(), &["people", "show", "obama"])["samples"][1]["crop"],
        Value::Null
    );
}

/// `recognize` and `people list` by a user who may only read the data folder (here: a read-only
/// bind mount of it, which needs root) work; a change is refused with exit status 2.
#[test]
fn a_data_folder_that_may_only_be_read_still_recognizes() {
    if !common::is_root() {
        return common::skip_unless_required("a read-only bind mount needs root");
    }
    let data = tempfile::tempdir().unwrap();
    enroll(data.path(), "obama");
    let view = tempfile::tempdir().unwrap();
    let mount = |args: &[&str]| Command::new("mount").args(args).status().unwrap().success();
    let (from, to) = (data.path().to_str().unwrap(), view.path().to_str().unwrap());
    assert!(mount(&["--bind", from, to]), "mount --bind");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(view.path().to_path_buf());
    assert!(mount(&["-o", "remount,bind,ro", to]), "remount read-only");
    let before = snapshot(data.path());
    assert_eq!(names(view.path(), &probes("obama")[0]), ["obama"]);
    assert_eq!(ids(&ok(view.path(), &["people", "list"])), ["obama"]);
    let (status, refused) = answer(view.path(), &["people", "delete", "obama"]);
    assert_eq!(status, 2, "{refused}");
    assert_eq!(refused["ok"], false);
    assert_eq!(snapshot(data.path()), before);
}
