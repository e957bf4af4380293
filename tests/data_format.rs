//! The data folder's format marker (`<data>/data-format`, `src/data_format.rs`) with the real
//! binary: a fresh folder gets `1\n`; a folder from before the marker (the previous release's,
//! and the original Python service's layout: only `embeddings/<id>.npy`) keeps its files and is
//! served as before, the marker added; read-only commands add no marker; a newer marker (a
//! downgrade) and a garbled one stop every command with exit status 2 and one line naming the
//! file, the folder left untouched.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::serve_process::{serve_command, start};
use common::snapshot;
use serde_json::Value;

const MARKER: &str = "data-format";

/// The current binary (or `binary`) on the data folder `data`, models from the repository.
fn run_with(binary: &Path, data: &Path, args: &[&str]) -> Output {
    common::cli_on(binary, data)
        .args(args)
        .env("BOX_TIMEZONE", "UTC")
        .output()
        .expect("run face-attendance")
}

const CURRENT: &str = env!("CARGO_BIN_EXE_face-attendance");

fn run(data: &Path, args: &[&str]) -> Output {
    run_with(Path::new(CURRENT), data, args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn photo(dir: &str, person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join(dir).join(person))
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no photo of {person} in {dir}"))
}

fn enroll_with(binary: &Path, data: &Path, person: &str) {
    let known = photo("known", person);
    let out = run_with(
        binary,
        data,
        &["enroll", "--id", person, known.to_str().unwrap()],
    );
    assert!(out.status.success(), "enroll {person}: {}", stderr(&out));
}

/// Who `recognize` sees in `photo` with the current binary.
fn labels(data: &Path, photo: &Path) -> Vec<String> {
    let out = run(data, &["recognize", photo.to_str().unwrap()]);
    assert!(out.status.success(), "recognize: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("recognize: not JSON ({e}): {text}"));
    value["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["label"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `serve` on `site/data` until it answers; its /health and /people, then stopped.
fn served(site: &Path) -> (Value, Value) {
    let bind = format!("127.0.0.1:{}", common::free_port());
    let mut server = start(site, &[("FACE_BIND", &bind)]);
    assert!(
        server.early.iter().any(|l| l.contains("serving on")),
        "{:?}",
        server.early
    );
    let (status, health) = common::http::get(&format!("http://{bind}/health"));
    assert_eq!(status, 200, "{health}");
    let (status, people) = common::http::get(&format!("http://{bind}/people"));
    assert_eq!(status, 200, "{people}");
    common::sigterm_and_wait(&mut server.child);
    (health, people)
}

fn ids(people: &Value) -> Vec<String> {
    let list = people["people"]
        .as_array()
        .unwrap_or_else(|| panic!("{people}"));
    list.iter()
        .map(|p| p["student_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_fresh_folder_gets_the_marker() {
    // serve on a data folder that does not exist yet.
    let site = tempfile::tempdir().unwrap();
    let (health, _) = served(site.path());
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(
        std::fs::read(site.path().join("data").join(MARKER)).unwrap(),
        b"1\n"
    );
    // enroll into a new one.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enroll_with(Path::new(CURRENT), &data, "amy");
    assert_eq!(std::fs::read(data.join(MARKER)).unwrap(), b"1\n");
    // The constant scripts/package reads is that number.
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data_format.rs"))
            .unwrap();
    assert!(source.contains("\npub const DATA_FORMAT: u32 = 1;\n"));
    assert_eq!(face_attendance::data_format::DATA_FORMAT, 1);
}

#[test]
fn a_previous_release_folder_is_kept_and_served() {
    if !common::previous_release::available() {
        return;
    }
    let old = common::previous_release_binary();
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    enroll_with(&old, &data, "amy");
    enroll_with(&old, &data, "bernadette");
    assert!(
        !data.join(MARKER).exists(),
        "the previous release wrote no marker"
    );
    let before = snapshot(&data);
    // Read-only commands leave the folder without a marker.
    assert_eq!(labels(&data, &photo("probe", "amy")), ["amy"]);
    for args in [
        &["people", "list"][..],
        &[
            "report",
            "daily",
            "--date",
            "2026-01-05",
            "--format",
            "json",
        ],
        &["unknowns", "list"],
        &["box", "trust", "list"],
    ] {
        let out = run(&data, args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(!data.join(MARKER).exists(), "{args:?} wrote the marker");
    }
    // serve: the marker written, every file the old binary wrote kept as it was, both served.
    let (_, people) = served(site.path());
    assert_eq!(std::fs::read(data.join(MARKER)).unwrap(), b"1\n");
    let after = snapshot(&data);
    for (path, bytes) in &before {
        let now = after.iter().find(|(p, _)| p == path);
        assert!(
            now.is_some_and(|(_, b)| b == bytes) || path.ends_with(".generation"),
            "{path} changed or went"
        );
    }
    let mut seen = ids(&people);
    seen.sort();
    assert_eq!(seen, ["amy", "bernadette"]);
    assert_eq!(labels(&data, &photo("probe", "bernadette")), ["bernadette"]);
    // And the previous release still serves the folder with the marker in it (a rollback
    // before any format change works).
    let out = run_with(&old, &data, &["people", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn the_original_service_s_folder_is_kept_and_served() {
    // What the Python service writes: embeddings/<id>.npy (float64 rows), nothing else. Made
    // here by this binary's enroll, then everything else removed.
    let made = tempfile::tempdir().unwrap();
    enroll_with(Path::new(CURRENT), made.path(), "amy");
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    std::fs::create_dir_all(data.join("embeddings")).unwrap();
    let npy = std::fs::read(made.path().join("embeddings/amy.npy")).unwrap();
    std::fs::write(data.join("embeddings/amy.npy"), &npy).unwrap();
    let (_, people) = served(site.path());
    assert_eq!(ids(&people), ["amy"]);
    assert_eq!(std::fs::read(data.join(MARKER)).unwrap(), b"1\n");
    assert_eq!(std::fs::read(data.join("embeddings/amy.npy")).unwrap(), npy);
    assert_eq!(labels(&data, &photo("probe", "amy")), ["amy"]);
}

/// Every command that uses the data folder, writing or reading it.
fn commands(import: &Path) -> Vec<Vec<String>> {
    let probe = photo("probe", "amy");
    let known = photo("known", "amy");
    [
        &["serve", "--bind", "127.0.0.1:0"][..],
        &["enroll", "--id", "amy", known.to_str().unwrap()],
        &["recognize", probe.to_str().unwrap()],
        &["people", "list"],
        &["people", "set", "amy", "--name", "Amy"],
        &["people", "delete", "amy"],
        &["gallery", "import", import.to_str().unwrap()],
        &["gallery", "export", "/dev/null"],
        &["unknowns", "list"],
        &["report", "daily", "--date", "2026-01-05"],
        &["box", "key"],
        &["box", "trust", "list"],
        &["cam-demo", "--frames", probe.to_str().unwrap()],
    ]
    .iter()
    .map(|args| args.iter().map(|a| a.to_string()).collect())
    .collect()
}

/// With `marker` in the folder, every command exits 2 with one line starting with `expect`,
/// and nothing in the folder changes.
fn refused_by(marker: &[u8], expect: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    enroll_with(Path::new(CURRENT), &data, "amy");
    let archive = dir.path().join("gallery.tar");
    let out = run(&data, &["gallery", "export", archive.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(data.join(MARKER), marker).unwrap();
    let before = snapshot(&data);
    for args in commands(&archive) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&data, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with(&format!("error: {}: {expect}", data.join(MARKER).display())),
            "{args:?}: {err}"
        );
        assert_eq!(snapshot(&data), before, "{args:?} changed the folder");
    }
}

#[test]
fn a_newer_marker_stops_every_command() {
    refused_by(
        b"2\n",
        "the data folder is in format 2, newer than this version's 1: a newer face-attendance \
         wrote it; install that version (or a newer one) again, or restore the backup of the data \
         folder made before that upgrade",
    );
}

#[test]
fn a_garbled_marker_stops_every_command() {
    refused_by(
        b"one\n",
        "not a data format number (\"one\" is not a number)",
    );
    refused_by(b"", "not a data format number (empty)");
}

#[test]
fn serve_with_a_newer_marker_exits_2() {
    // As systemd starts it: the exit status and the one line in the journal.
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(MARKER), "7\n").unwrap();
    let out = serve_command(site.path(), &[("FACE_BIND", "127.0.0.1:0")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("data-format: the data folder is in format 7, newer than this version's 1"),
        "{err}"
    );
    assert_eq!(common::tree(&data), [MARKER]);
}
