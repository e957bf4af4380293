//! The day's attendance report (`GET /reports/daily`, `face-attendance report daily`) with the
//! real binary under Debian's faketime (tests/common/faketime.rs): the box's clock is set to
//! chosen instants, a real photo goes through `/recognize/realtime` at each (an attendance
//! event, logged at that instant), and the report is checked against answers worked out by
//! hand: Europe/Berlin on its daylight-saving change days (2026-03-29: 23 hours, 2026-10-25:
//! 25 hours, 02:30 twice), and boxes at UTC+7 (Asia/Jakarta) and UTC-5 (America/Bogota) whose
//! local day spans two UTC day files. The command, run on the same files without the service,
//! prints the same bytes as the route. The process itself runs in UTC (`TZ=UTC`): only
//! `BOX_TIMEZONE` makes the local day.
//!
//! Records carry `punch` once the dispatcher decides it (first sighting of the local day `in`,
//! later ones `out`); without it the report applies that same rule, so the answers hold either
//! way.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::faketime::{self, Clock};
use common::serve_process::{self, Running};
use face_attendance::client::{multipart, Part};
use serde_json::{json, Value};

const ADMIN: &str = "office-admin-key-0123456789abcdef";
const VIEWER: &str = "hall-viewer-key-0123456789abcdef";
const KIOSK: &str = "lobby-kiosk-key-0123456789abcdef";

/// People enrolled on every box: `raj` is never seen.
const PEOPLE: [&str; 3] = ["obama", "biden", "raj"];

/// A box under a clock of its own, in `zone`, with an admin, a viewer and a kiosk key.
struct TestBox {
    _running: Running,
    url: String,
    clock: Clock,
    site: tempfile::TempDir,
}

/// An answer: status, Content-Type, Content-Disposition, body.
struct Answer {
    status: u16,
    content_type: String,
    disposition: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

fn photo(kind: &str, person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join(kind).join(person))[0].clone()
}

impl TestBox {
    fn start(zone: &str) -> TestBox {
        let site = tempfile::tempdir().unwrap();
        let keys = site.path().join("api-keys");
        std::fs::write(
            &keys,
            format!("office admin {ADMIN}\nhall viewer {VIEWER}\nlobby kiosk {KIOSK}\n"),
        )
        .unwrap();
        // A stopped clock: each event is logged at exactly the instant set.
        let clock = Clock::new(site.path(), "2026-01-01 00:00:00");
        let port = common::free_port();
        let bind = format!("127.0.0.1:{port}");
        let keys = keys.display().to_string();
        let mut command = serve_process::serve_command(
            site.path(),
            &[("FACE_BIND", &bind), ("FACE_API_KEYS_FILE", &keys)],
        );
        command
            .env("BOX_TIMEZONE", zone)
            .env("TZ", "UTC")
            .env("EVENT_COOLDOWN_SECONDS", "0")
            .env_remove("ATTENDANCE_WEBHOOK_URL")
            .env_remove("MQTT_URL")
            .env_remove("CAMERA_DEVICE")
            .env_remove("CAMERA_FRAMES");
        clock.apply(&mut command);
        let running = serve_process::start_command(command);
        assert!(
            running
                .early
                .last()
                .is_some_and(|l| l.contains("serving on")),
            "{:?}",
            running.early
        );
        let test_box = TestBox {
            _running: running,
            url: format!("http://{bind}"),
            clock,
            site,
        };
        for person in PEOPLE {
            let (status, body) = test_box.post_photo(
                "/enroll",
                &photo("known", person),
                &[("student_id", person)],
            );
            assert_eq!(status, 200, "{body}");
        }
        test_box
    }

    fn data(&self) -> PathBuf {
        self.site.path().join("data")
    }

    fn post_photo(&self, path: &str, photo: &Path, extra: &[(&str, &str)]) -> (u16, Value) {
        let data = std::fs::read(photo).unwrap();
        let mut fields: Vec<(&str, Part)> =
            extra.iter().map(|(k, v)| (*k, Part::Text(v))).collect();
        fields.push((
            "image",
            Part::File {
                file_name: "photo.jpg",
                content_type: "image/jpeg",
                data: &data,
            },
        ));
        let (content_type, body) = multipart(&fields);
        let mut response = common::http::agent()
            .post(&format!("{}{path}", self.url))
            .header("Content-Type", &content_type)
            .header("X-API-Key", ADMIN)
            .send(&body[..])
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = common::http::agent().get(&format!("{}{path}", self.url));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut response = request.call().unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let (content_type, disposition) = (header("Content-Type"), header("Content-Disposition"));
        Answer {
            status: response.status().as_u16(),
            content_type,
            disposition,
            body: response.body_mut().read_to_string().unwrap(),
        }
    }

    /// `/reports/daily?QUERY` with the viewer key.
    fn report(&self, query: &str) -> Answer {
        self.get(&format!("/reports/daily?{query}"), &[("X-API-Key", VIEWER)])
    }

    /// Sets the clock to `utc` (`2026-03-29 01:30:00`), shows `person`'s probe photo to
    /// `/recognize/realtime` and waits until the event log holds the record stamped then.
    fn sighting(&self, utc: &str, person: &str) {
        self.clock.set(utc);
        let at_ms = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", utc)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .unwrap()
            .timestamp()
            .as_millisecond() as u64;
        let (status, body) = self.post_photo("/recognize/realtime", &photo("probe", person), &[]);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["dispatch"][0]["label"], person, "{body}");
        common::wait_for(
            &format!("{person}'s record at {utc}"),
            Duration::from_secs(30),
            || {
                records(&self.data())
                    .iter()
                    .any(|r| r["student_id"] == person && r["at_ms"] == at_ms)
            },
        );
    }

    /// `face-attendance report daily ARGS` on this box's files (its clock, so "today" is the
    /// box's); stdout, checked to succeed.
    fn command(&self, args: &[&str]) -> String {
        let out = self.command_output(args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn command_output(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
        command
            .args(["report", "daily", "--data"])
            .arg(self.data())
            .args(args)
            .env("TZ", "UTC")
            .env_remove("BOX_TIMEZONE")
            .env_remove("FACE_DATA_DIR");
        self.clock.apply(&mut command);
        command.output().unwrap()
    }
}

/// Every record of the event log on disk (whole lines only).
fn records(data: &Path) -> Vec<Value> {
    let mut records = Vec::new();
    let Ok(files) = std::fs::read_dir(data.join("events")) else {
        return records;
    };
    for entry in files {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
            records.push(serde_json::from_str(line).unwrap());
        }
    }
    records
}

/// The day files of the event log, sorted.
fn day_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

/// A person's line as worked out by hand: (first in, last out, first seen, last seen,
/// sightings).
fn person(
    id: &str,
    first_in: Option<&str>,
    last_out: Option<&str>,
    last_seen: Option<&str>,
    sightings: u64,
) -> Value {
    json!({
        "student_id": id,
        "name": null,
        "group": null,
        "present": sightings > 0,
        "first_in": first_in,
        "last_out": last_out,
        "first_seen": first_in,
        "last_seen": last_seen,
        "sightings": sightings,
    })
}

/// Checks the route's report of `date` against `people` (obama, biden, raj in that order;
/// first seen is always the first `in` here), and that the command prints the same JSON and
/// CSV from the files.
fn check_day(test_box: &TestBox, zone: &str, date: &str, day: (&str, &str), people: [Value; 3]) {
    let answer = test_box.report(&format!("date={date}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.content_type, "application/json");
    let report = answer.json();
    let present = people.iter().filter(|p| p["present"] == true).count();
    let mut by_id = people.to_vec();
    by_id.sort_by_key(|p| p["student_id"].as_str().unwrap().to_string());
    let not_seen: Vec<&Value> = by_id
        .iter()
        .filter(|p| p["present"] == false)
        .map(|p| &p["student_id"])
        .collect();
    assert_eq!(
        report,
        json!({
            "ok": true,
            "date": date,
            "timezone": zone,
            "group": null,
            "day": {"start": day.0, "end": day.1},
            "total": 3,
            "present": present,
            "absent": 3 - present,
            "people": by_id,
            "not_seen": not_seen,
            "unreadable_lines": 0,
        }),
        "{date} in {zone}"
    );

    // The command, from the files, prints the same bytes as the route.
    let printed = test_box.command(&["--timezone", zone, "--date", date, "--format", "json"]);
    assert_eq!(printed, format!("{}\n", answer.body));
    let csv = test_box.report(&format!("date={date}&format=csv"));
    assert_eq!(csv.status, 200);
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    assert_eq!(
        csv.disposition,
        format!("attachment; filename=\"attendance-{date}.csv\"")
    );
    let printed = test_box.command(&["--timezone", zone, "--date", date, "--format", "csv"]);
    assert_eq!(printed, csv.body);
    let mut rows = csv.body.split("\r\n");
    assert_eq!(
        rows.next(),
        Some("date,student_id,name,group,present,first_in,last_out,sightings")
    );
    for (row, p) in rows.zip(&by_id) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let want = [
            date.to_string(),
            text(&p["student_id"]),
            String::new(),
            String::new(),
            if p["present"] == true { "yes" } else { "no" }.to_string(),
            text(&p["first_in"]),
            text(&p["last_out"]),
            p["sightings"].to_string(),
        ];
        assert_eq!(row, want.join(","));
    }
}

#[test]
fn berlin_on_its_23_and_25_hour_days() {
    if !faketime::available() {
        return;
    }
    let zone = "Europe/Berlin";
    let b = TestBox::start(zone);
    // 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; the day is 23:00Z to 22:00Z.
    b.sighting("2026-03-28 22:59:59", "obama"); // 23:59:59+01:00 on the 28th
    b.sighting("2026-03-28 23:00:00", "obama"); // 00:00:00+01:00: in
    b.sighting("2026-03-29 01:30:00", "obama"); // 03:30:00+02:00: out
    b.sighting("2026-03-29 21:59:59", "biden"); // 23:59:59+02:00: in, the day's last second
    b.sighting("2026-03-29 22:00:00", "obama"); // 00:00:00+02:00 on the 30th
    check_day(
        &b,
        zone,
        "2026-03-29",
        ("2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
        [
            person(
                "obama",
                Some("2026-03-29T00:00:00+01:00"),
                Some("2026-03-29T03:30:00+02:00"),
                Some("2026-03-29T03:30:00+02:00"),
                2,
            ),
            person(
                "biden",
                Some("2026-03-29T23:59:59+02:00"),
                None,
                Some("2026-03-29T23:59:59+02:00"),
                1,
            ),
            person("raj", None, None, None, 0),
        ],
    );
    check_day(
        &b,
        zone,
        "2026-03-28",
        ("2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"),
        [
            person(
                "obama",
                Some("2026-03-28T23:59:59+01:00"),
                None,
                Some("2026-03-28T23:59:59+01:00"),
                1,
            ),
            person("biden", None, None, None, 0),
            person("raj", None, None, None, 0),
        ],
    );

    // 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 comes twice and the day
    // is 22:00Z to 23:00Z.
    b.sighting("2026-10-25 00:30:00", "obama"); // 02:30:00+02:00: in
    b.sighting("2026-10-25 01:30:00", "obama"); // 02:30:00+01:00: out
    b.sighting("2026-10-25 22:59:59", "biden"); // 23:59:59+01:00: in
    b.sighting("2026-10-25 23:00:00", "biden"); // 00:00:00+01:00 on the 26th
    check_day(
        &b,
        zone,
        "2026-10-25",
        ("2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"),
        [
            person(
                "obama",
                Some("2026-10-25T02:30:00+02:00"),
                Some("2026-10-25T02:30:00+01:00"),
                Some("2026-10-25T02:30:00+01:00"),
                2,
            ),
            person(
                "biden",
                Some("2026-10-25T23:59:59+01:00"),
                None,
                Some("2026-10-25T23:59:59+01:00"),
                1,
            ),
            person("raj", None, None, None, 0),
        ],
    );

    // Without a date: today in the box's zone (its clock: 00:00 on the 26th, Berlin).
    let today = b.report("").json();
    assert_eq!(today["date"], "2026-10-26", "{today}");
    assert_eq!(today["present"], 1, "{today}");
    // The command's today is the same, in text for a terminal.
    let text = b.command(&["--timezone", zone]);
    assert!(
        text.starts_with("2026-10-26 (Europe/Berlin, 2026-10-26T00:00:00+01:00 to 2026-10-27T00:00:00+01:00): 1 present, 2 absent of 3\n"),
        "{text}"
    );
    assert!(text.contains("\nbiden "), "{text}");
    assert!(text.contains("not seen"), "{text}");
}

#[test]
fn a_box_at_utc_plus_7_has_its_day_across_utc_midnight() {
    if !faketime::available() {
        return;
    }
    let zone = "Asia/Jakarta";
    let b = TestBox::start(zone);
    // Jakarta's 2026-12-07 is 2026-12-06T17:00Z to 2026-12-07T17:00Z: two UTC day files.
    b.sighting("2026-12-06 16:59:59", "obama"); // 23:59:59 on the 6th
    b.sighting("2026-12-06 23:30:00", "obama"); // 06:30: in (UTC file of the 6th)
    b.sighting("2026-12-07 00:15:00", "biden"); // 07:15: in (UTC file of the 7th)
    b.sighting("2026-12-07 09:00:00", "obama"); // 16:00: out
    b.sighting("2026-12-07 16:59:59", "obama"); // 23:59:59: the last out
    b.sighting("2026-12-07 17:00:00", "biden"); // 00:00 on the 8th
    assert_eq!(
        day_files(&b.data()),
        ["2026-12-06.jsonl", "2026-12-07.jsonl"]
    );
    check_day(
        &b,
        zone,
        "2026-12-07",
        ("2026-12-07T00:00:00+07:00", "2026-12-08T00:00:00+07:00"),
        [
            person(
                "obama",
                Some("2026-12-07T06:30:00+07:00"),
                Some("2026-12-07T23:59:59+07:00"),
                Some("2026-12-07T23:59:59+07:00"),
                3,
            ),
            person(
                "biden",
                Some("2026-12-07T07:15:00+07:00"),
                None,
                Some("2026-12-07T07:15:00+07:00"),
                1,
            ),
            person("raj", None, None, None, 0),
        ],
    );
    // The same files read as a UTC box would: its 7th holds 00:15, 09:00 and 16:59:59.
    let utc: Value = serde_json::from_str(&b.command(&[
        "--timezone",
        "UTC",
        "--date",
        "2026-12-07",
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(utc["people"][1]["student_id"], "obama");
    assert_eq!(utc["people"][1]["sightings"], 2, "{utc}");
    assert_eq!(
        utc["people"][1]["first_seen"], "2026-12-07T09:00:00+00:00",
        "{utc}"
    );
}

#[test]
fn a_box_at_utc_minus_5_has_its_day_across_utc_midnight() {
    if !faketime::available() {
        return;
    }
    let zone = "America/Bogota";
    let b = TestBox::start(zone);
    // Bogota's 2026-12-06 is 2026-12-06T05:00Z to 2026-12-07T05:00Z.
    b.sighting("2026-12-06 04:59:59", "obama"); // 23:59:59 on the 5th
    b.sighting("2026-12-06 13:00:00", "obama"); // 08:00: in
    b.sighting("2026-12-07 01:00:00", "biden"); // 20:00: in (UTC file of the 7th)
    b.sighting("2026-12-07 03:00:00", "obama"); // 22:00: out (UTC file of the 7th)
    b.sighting("2026-12-07 05:00:00", "obama"); // 00:00 on the 7th
    check_day(
        &b,
        zone,
        "2026-12-06",
        ("2026-12-06T00:00:00-05:00", "2026-12-07T00:00:00-05:00"),
        [
            person(
                "obama",
                Some("2026-12-06T08:00:00-05:00"),
                Some("2026-12-06T22:00:00-05:00"),
                Some("2026-12-06T22:00:00-05:00"),
                2,
            ),
            person(
                "biden",
                Some("2026-12-06T20:00:00-05:00"),
                None,
                Some("2026-12-06T20:00:00-05:00"),
                1,
            ),
            person("raj", None, None, None, 0),
        ],
    );

    // Accept: text/csv asks for the CSV; format wins over it.
    let csv = b.get(
        "/reports/daily?date=2026-12-06",
        &[("X-API-Key", VIEWER), ("Accept", "text/csv")],
    );
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    assert!(csv.body.starts_with("date,student_id,"), "{}", csv.body);
    let json = b.get(
        "/reports/daily?date=2026-12-06&format=json",
        &[("X-API-Key", VIEWER), ("Accept", "text/csv")],
    );
    assert_eq!(json.content_type, "application/json");

    // A group nobody is in (names and groups come from the gallery): an empty report.
    let group = b.report("date=2026-12-06&group=Class+7A").json();
    assert_eq!(
        (&group["group"], &group["total"], &group["people"]),
        (&json!("Class 7A"), &json!(0), &json!([]))
    );

    // Who may ask: a viewer (above), not a kiosk key, not without a key.
    let kiosk = b.get("/reports/daily", &[("X-API-Key", KIOSK)]);
    assert_eq!(kiosk.status, 403, "{}", kiosk.body);
    let nobody = b.get("/reports/daily", &[]);
    assert_eq!(nobody.status, 401, "{}", nobody.body);

    // Bad input: a 400 naming the parameter, for the route and the command alike.
    for (query, name) in [
        ("date=2026-02-30", "date"),
        ("date=..%2F..%2Fetc%2Fpasswd", "date"),
        ("date=2026-12-06T00:00:00Z", "date"),
        ("date=%ff", "date"),
        ("group=%E2%80%AE7A", "group"),
        ("group=", "group"),
        ("format=xlsx", "format"),
    ] {
        let answer = b.report(query);
        assert_eq!(answer.status, 400, "{query}: {}", answer.body);
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.starts_with(name), "{query}: {error}");
    }
    let long = format!("group={}", "x".repeat(65));
    assert_eq!(b.report(&long).status, 400);
    for (args, status, says) in [
        (vec!["--date", "2026-02-30"], 1, "date"),
        (vec!["--group", "7\u{202e}A"], 1, "group"),
        (vec!["--timezone", "Mars/Base"], 2, "BOX_TIMEZONE"),
    ] {
        let out = b.command_output(&args);
        assert_eq!(out.status.code(), Some(status), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("error: {says}")), "{stderr}");
    }
}
