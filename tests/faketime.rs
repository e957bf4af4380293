//! The real `serve` binary under Debian's faketime (tests/common/faketime.rs), the way the
//! clock cases of several boxes run it: a box that starts with its clock in 2020 (a board
//! without RTC before NTP answers) and whose clock is then set to real time while it runs. What
//! the box stamps (the HTTP `Date` header, written on a server thread; the event log's records
//! and their day files, written by the dispatcher's thread) follows the moved clock, and the box
//! keeps serving and stops cleanly (its timers run on the real monotonic clock). A box in 2020
//! cannot reach a TLS broker (its certificate is not valid yet) until the clock is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::faketime::{self, Clock};
use common::http as h;
use serde_json::Value;

/// 2020-01-01 12:00:00 UTC, in Unix milliseconds.
const START_2020_MS: u64 = 1_577_880_000_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn photo(kind: &str, person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join(kind).join(person))[0].clone()
}

/// The `Date` header of `GET /health`.
fn date_header(url: &str) -> String {
    let response = common::http::agent()
        .get(&format!("{url}/health"))
        .call()
        .unwrap();
    assert_eq!(response.status(), 200);
    response
        .headers()
        .get("date")
        .expect("a Date header")
        .to_str()
        .unwrap()
        .to_string()
}

/// The event log's attendance records for obama, from the files on disk: (the day file's
/// name, at_ms), oldest first.
fn attendance_records(data: &Path) -> Vec<(String, u64)> {
    let mut records = Vec::new();
    let Ok(files) = std::fs::read_dir(data.join("events")) else {
        return records;
    };
    for entry in files {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        // A line being written (no newline yet) is read on the next poll.
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            let record: Value = serde_json::from_str(line).unwrap();
            if record["kind"] == "attendance" && record["student_id"] == "obama" {
                records.push((name.clone(), record["at_ms"].as_u64().unwrap()));
            }
        }
    }
    records.sort_by_key(|r| r.1);
    records
}

/// Recognizes obama's probe (`/recognize/realtime`, which makes events), then waits for the
/// dispatcher to log an attendance record stamped within `stamped`; returns it (day file, at_ms).
fn recognize_and_find_record(
    url: &str,
    data: &Path,
    stamped: std::ops::RangeInclusive<u64>,
) -> (String, u64) {
    let (status, body) = h::post_image(
        &format!("{url}/recognize/realtime"),
        &photo("probe", "obama"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dispatch"][0]["label"], "obama", "{body}");
    let mut found = None;
    common::wait_for(
        &format!("an attendance record stamped in {stamped:?}"),
        Duration::from_secs(30),
        || {
            found = attendance_records(data)
                .into_iter()
                .find(|(_, at)| stamped.contains(at));
            found.is_some()
        },
    );
    found.unwrap()
}

#[test]
fn a_running_box_follows_its_clock_from_2020_to_real_time_under_faketime() {
    if !faketime::available() {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let clock = Clock::starting_at(site.path(), "2020-01-01 12:00:00");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", &data)
        .env("EVENT_COOLDOWN_SECONDS", "0")
        .env_remove("ATTENDANCE_WEBHOOK_URL")
        .env_remove("MQTT_URL");
    clock.apply(&mut command);
    let mut child = common::spawn_until_serving(command);

    // 2020: the server's Date header and the event log (its day file, its at_ms).
    let date = date_header(&url);
    assert!(date.contains(" Jan 2020 "), "{date}");
    let (status, body) = h::post_image(
        &format!("{url}/enroll"),
        &photo("known", "obama"),
        &[("student_id", "obama")],
    );
    assert_eq!(status, 200, "{body}");
    // Started at 12:00:00 when the process started: minutes later at most, not years.
    let (file, _) =
        recognize_and_find_record(&url, &data, START_2020_MS..=START_2020_MS + 30 * 60_000);
    assert_eq!(file, "2020-01-01.jsonl");

    // The clock is set (NTP answered): the same process now stamps real time.
    clock.real();
    let from = now_ms();
    let date = date_header(&url);
    assert!(!date.contains("2020"), "{date}");
    let (file, _) = recognize_and_find_record(&url, &data, from - 1000..=from + 60_000);
    assert_ne!(file, "2020-01-01.jsonl");
    // The 2020 day file is gone by now: the first write after the jump swept it as older than
    // EVENTS_KEEP_DAYS (the product's rule, seen here, not this test's subject).
    eprintln!(
        "attendance records after the clock was set: {:?}",
        attendance_records(&data)
    );

    // Its timers and waits ran through the jump: it still stops cleanly on SIGTERM.
    let status = common::sigterm_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
}

/// A box whose clock is not set yet cannot reach a TLS broker: the broker's certificate (made
/// today) is not valid yet in 2020. Once the clock is set, the same process connects. (What
/// the clock rules of gallery sync build on: before NTP answers, such a box hears nothing.)
#[test]
fn a_box_in_2020_cannot_reach_a_tls_broker_until_its_clock_is_set() {
    if !faketime::available() || !common::mosquitto::available() {
        return;
    }
    let broker = common::mosquitto::Mosquitto::start_with(common::mosquitto::Options {
        tls: true,
        ..Default::default()
    });
    let site = tempfile::tempdir().unwrap();
    let clock = Clock::starting_at(site.path(), "2020-01-01 12:00:00");
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", site.path().join("data"))
        .env("BOX_ID", "box-2020")
        .env("MQTT_URL", broker.url())
        .env("MQTT_CA_FILE", broker.ca_file())
        .env_remove("ATTENDANCE_WEBHOOK_URL");
    clock.apply(&mut command);
    let mut child = common::spawn_until_serving(command);
    let mqtt = || h::get(&format!("{url}/health")).1["mqtt"].clone();

    common::wait_for("a refused TLS handshake", Duration::from_secs(60), || {
        mqtt()["connection_errors"].as_u64() >= Some(1)
    });
    let refused = mqtt();
    assert_eq!(refused["connected"], false, "{refused}");
    let error = refused["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("not valid yet"), "{refused}");

    clock.real();
    common::wait_for(
        "a connection once the clock is set",
        Duration::from_secs(90),
        || mqtt()["connected"] == true,
    );
    let status = common::sigterm_and_wait(&mut child);
    assert!(status.success(), "{status:?}");
}
