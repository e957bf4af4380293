//! In and out (`punch`), end to end with the real binary and real photos: the camera's
//! direction wins over the schedule; `PUNCH_SCHEDULE` around its boundary; a person's first
//! sighting of the local day is `in` and later ones `out`, across a restart (read back from the
//! event log) and into a new local day at UTC+7 (Asia/Jakarta), whose midnight is 17:00 UTC and
//! whose day goes on across UTC midnight (the day files keep their UTC names). The clock is
//! Debian's faketime, frozen at chosen instants (the monotonic clock runs: timers and waits are
//! real). Bad settings stop `serve` with exit status 2 and one line naming them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::faketime::{self, Clock};
use common::http::{self as h, Behaviour};
use common::serve_process::{self, Running};
use face_attendance::image_io;
use serde_json::Value;

/// Settings the test's own environment may hold, removed from every child's.
const CLEARED: &[&str] = &[
    "ATTENDANCE_WEBHOOK_URL",
    "MQTT_URL",
    "CAMERA_DEVICE",
    "CAMERA_FRAMES",
    "CAMERA_DIRECTION",
    "BOX_TIMEZONE",
    "PUNCH_SCHEDULE",
    "EVENT_COOLDOWN_SECONDS",
    "FAKETIME",
    "TZ",
];

fn photo(kind: &str, person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join(kind).join(person))[0].clone()
}

/// A box in `site` on `port` with `env`, under `clock` when given.
struct Site {
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(String, String)>,
}

impl Site {
    fn new(env: &[(&str, &str)]) -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
            port: common::free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, clock: Option<&Clock>) -> Command {
        let mut command = serve_process::serve_command(self.dir.path(), &[]);
        for name in CLEARED {
            command.env_remove(name);
        }
        command
            .env("FACE_BIND", format!("127.0.0.1:{}", self.port))
            // faketime reads its specs in the process's zone: UTC here. BOX_TIMEZONE is the
            // box's own.
            .env("TZ", "UTC")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some(clock) = clock {
            clock.apply(&mut command);
        }
        command
    }

    /// Starts `serve`, which must come up.
    fn start(&self, clock: Option<&Clock>) -> Running {
        let running = serve_process::start_command(self.command(clock));
        assert!(
            running.early.iter().any(|l| l.contains("serving on")),
            "serve did not start: {:?}",
            running.early
        );
        running
    }

    fn enroll(&self, id: &str) {
        let (status, body) = h::post_image(
            &format!("{}/enroll", self.url()),
            &photo("known", id),
            &[("student_id", id)],
        );
        assert_eq!(status, 200, "{body}");
    }

    /// `/recognize/realtime` of `person`'s probe photo; returns the event's record in `/events`.
    fn sighting(&self, person: &str) -> Value {
        let (status, body) = h::post_image(
            &format!("{}/recognize/realtime", self.url()),
            &photo("probe", person),
            &[],
        );
        assert_eq!(status, 200, "{body}");
        let dispatch = &body["dispatch"][0];
        assert_eq!(dispatch["label"], person, "{body}");
        let id = dispatch["event_id"].as_str().unwrap();
        // Logged before the answer: there at once.
        let (_, events) = h::get(&format!("{}/events?student_id={person}", self.url()));
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == id)
            .unwrap_or_else(|| panic!("event {id} not in /events: {events}"))
            .clone()
    }

    /// The punch of `person`'s next sighting.
    fn punch(&self, person: &str) -> String {
        self.sighting(person)["punch"]
            .as_str()
            .unwrap_or("(none)")
            .to_string()
    }
}

/// Stops a box as systemd does; it must exit cleanly.
fn stop(mut running: Running) {
    let status = common::sigterm_and_wait(&mut running.child);
    assert!(status.success(), "{status:?}");
}

/// The attendance records of the event log's day files: (file name, student_id, punch).
fn logged(data: &Path) -> Vec<(String, String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("events"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            let record: Value = serde_json::from_str(line).unwrap();
            if record["kind"] == "attendance" {
                let s = |k: &str| record[k].as_str().unwrap_or("(none)").to_string();
                out.push((name.clone(), s("student_id"), s("punch")));
            }
        }
    }
    out
}

fn triples(want: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    want.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[test]
fn first_sighting_is_in_then_out_across_a_restart_and_a_new_local_day_at_utc_plus_7() {
    if !faketime::available() {
        return;
    }
    let site = Site::new(&[
        ("BOX_TIMEZONE", "Asia/Jakarta"),
        ("EVENT_COOLDOWN_SECONDS", "0"),
    ]);
    // 23:58 on 7 December in Jakarta.
    let clock = Clock::new(site.dir.path(), "2026-12-07 16:58:00");
    let running = site.start(Some(&clock));
    site.enroll("obama");
    site.enroll("biden");
    let first = site.sighting("obama");
    assert_eq!(first["punch"], "in", "{first}");
    assert_eq!(first["at_ms"], 1_796_662_680_000u64, "the frozen clock");
    assert_eq!(site.punch("obama"), "out");

    // A restart the same evening: obama was seen today, read back from the event log.
    stop(running);
    let running = site.start(Some(&clock));
    assert_eq!(site.punch("obama"), "out");

    // 00:00:30 on 8 December in Jakarta, still 7 December in UTC: a new local day.
    clock.set("2026-12-07 17:00:30");
    assert_eq!(site.punch("obama"), "in");
    assert_eq!(site.punch("biden"), "in");
    assert_eq!(site.punch("obama"), "out");
    stop(running);

    // 07:00:30 in Jakarta, past UTC midnight: the same local day, a new UTC day file; the
    // restart reads the local day back from both files.
    clock.set("2026-12-08 00:00:30");
    let running = site.start(Some(&clock));
    assert_eq!(site.punch("biden"), "out");
    assert_eq!(site.punch("obama"), "out");
    stop(running);

    assert_eq!(
        logged(&site.data()),
        triples(&[
            ("2026-12-07.jsonl", "obama", "in"),
            ("2026-12-07.jsonl", "obama", "out"),
            ("2026-12-07.jsonl", "obama", "out"),
            ("2026-12-07.jsonl", "obama", "in"),
            ("2026-12-07.jsonl", "biden", "in"),
            ("2026-12-07.jsonl", "obama", "out"),
            ("2026-12-08.jsonl", "biden", "out"),
            ("2026-12-08.jsonl", "obama", "out"),
        ])
    );
}

#[test]
fn the_schedule_decides_around_its_boundary_in_the_box_zone() {
    if !faketime::available() {
        return;
    }
    let (hook, received) = h::receiver(Behaviour::Ok);
    let site = Site::new(&[
        ("BOX_TIMEZONE", "Asia/Jakarta"),
        ("EVENT_COOLDOWN_SECONDS", "0"),
        ("PUNCH_SCHEDULE", "00:00-10:30 in, 10:30-24:00 out"),
        ("ATTENDANCE_WEBHOOK_URL", &hook),
    ]);
    // 10:29:59 in Jakarta.
    let clock = Clock::new(site.dir.path(), "2026-12-07 03:29:59");
    let running = site.start(Some(&clock));
    let (_, config) = h::get(&format!("{}/config", site.url()));
    assert_eq!(
        config["punch_schedule"], "00:00-10:30 in, 10:30-24:00 out",
        "{config}"
    );
    site.enroll("obama");
    site.enroll("biden");
    assert_eq!(site.punch("obama"), "in");
    // Not the first sighting, but the schedule says in.
    assert_eq!(site.punch("obama"), "in");
    // 10:30:00: out, for a first sighting too.
    clock.set("2026-12-07 03:30:00");
    assert_eq!(site.punch("obama"), "out");
    assert_eq!(site.punch("biden"), "out");
    // The main API got the punch in every event's body.
    common::wait_for("four webhook calls", Duration::from_secs(30), || {
        received.lock().unwrap().len() == 4
    });
    let punches: Vec<(String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| {
            let s = |k: &str| hit.body[k].as_str().unwrap_or("(none)").to_string();
            (s("student_id"), s("punch"))
        })
        .collect();
    assert_eq!(
        punches,
        [
            ("obama", "in"),
            ("obama", "in"),
            ("obama", "out"),
            ("biden", "out")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    stop(running);
}

/// A folder of five 640x480 frames of `rel` (under the test photos).
fn frames_of(dir: &Path, rel: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    let image = image_io::decode(&bytes, u64::MAX).unwrap();
    let jpeg = image_io::encode_jpeg(&image_io::letterbox(&image, 640, 480)).unwrap();
    for n in 0..5 {
        std::fs::write(dir.join(format!("{n:03}.jpg")), &jpeg).unwrap();
    }
}

#[test]
fn the_camera_direction_wins_over_the_schedule_and_the_first_sighting() {
    let frames = tempfile::tempdir().unwrap();
    frames_of(frames.path(), "probe/obama/obama_3.jpg");
    let (hook, received) = h::receiver(Behaviour::Ok);
    let site = Site::new(&[
        ("BOX_TIMEZONE", "Asia/Jakarta"),
        ("PUNCH_SCHEDULE", "00:00-24:00 in"),
        ("ATTENDANCE_WEBHOOK_URL", &hook),
        ("CAMERA_NAME", "exit"),
        ("CAMERA_DIRECTION", "out"),
        ("CAMERA_FPS", "4"),
    ]);
    // The gallery is ready before the camera starts (the command line's enroll).
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["enroll", "--id", "obama"])
        .arg(photo("known", "obama"))
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", site.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut command = site.command(None);
    command.env(
        "CAMERA_DEVICE",
        format!("frames:{}", frames.path().display()),
    );
    let running = serve_process::start_command(command);
    assert!(
        running.early.iter().any(|l| l.contains("serving on")),
        "{:?}",
        running.early
    );
    // obama's first sighting of the day, at the exit camera: out.
    common::wait_for("the exit camera's event", Duration::from_secs(120), || {
        !received.lock().unwrap().is_empty()
    });
    let hit = received.lock().unwrap()[0].body.clone();
    assert_eq!(
        (
            &hit["student_id"],
            &hit["camera"],
            &hit["direction"],
            &hit["punch"]
        ),
        (
            &Value::from("obama"),
            &Value::from("exit"),
            &Value::from("out"),
            &Value::from("out")
        ),
        "{hit}"
    );
    // Without a camera the schedule decides: his next sighting through /recognize/realtime,
    // past the cooldown of the camera's events (the replay of five frames is long over).
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(site.punch("obama"), "in");
    let (_, events) = h::get(&format!("{}/events?student_id=obama", site.url()));
    for e in events["events"].as_array().unwrap() {
        let want = if e["camera"] == "exit" { "out" } else { "in" };
        assert_eq!(e["punch"], want, "{e}");
    }
    stop(running);
}

/// `serve` with `env` must stop at once: exit status 2 and one line naming the setting.
fn refused(env: &[(&str, &str)], names: &str, says: &str) {
    use std::io::Read;
    let site = Site::new(env);
    let mut child = site.command(None).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{env:?}: serve did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{env:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{env:?}: {err}");
    assert!(
        lines[0].contains(names) && lines[0].contains(says),
        "{env:?}: {err}"
    );
}

#[test]
fn a_bad_schedule_or_zone_stops_serve_with_one_line_naming_it() {
    for (schedule, says) in [
        ("00:00-10:30 in, 11:00-24:00 out", "from 10:30 to 11:00"),
        ("00:00-10:30 in, 10:00-24:00 out", "overlaps"),
        ("00:00-10:30 in", "from 10:30 to 24:00"),
        ("00:00-25:00 in", "\"25:00\" is not a time of day"),
        ("00:00-24:00 maybe", "not in or out"),
    ] {
        refused(&[("PUNCH_SCHEDULE", schedule)], "PUNCH_SCHEDULE", says);
    }
    refused(
        &[("BOX_TIMEZONE", "Asia/Atlantis")],
        "BOX_TIMEZONE",
        "unknown time zone",
    );
    refused(
        &[("BOX_TIMEZONE", "../../../etc/passwd")],
        "BOX_TIMEZONE",
        "time zone",
    );
}
