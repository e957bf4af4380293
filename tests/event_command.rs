//! `EVENT_COMMAND` with the real binary, real photos and real `sh` scripts: each event's
//! webhook body on the program's standard input and its `FACE_*` variables (from
//! `/recognize/realtime` and from a replayed camera; none of the service's secrets), a repeat
//! within the cooldown not run; a hanging program killed with what it started at the timeout
//! while a real loopback webhook gets every event in time; a full queue counted; nothing run
//! again after a restart that delivers the outbox to a webhook that was down; bad settings
//! stopping `serve` with status 2 and the setting named.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::http::{self as h, Behaviour};
use common::serve_process::{self, Running};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// `serve` on a free port over `site/data` with `env`; its base URL.
fn serve(site: &Path, env: &[(&str, String)]) -> (Running, String) {
    let port = common::free_port();
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let bind = format!("127.0.0.1:{port}");
    env.push(("FACE_BIND", &bind));
    let mut command = serve_process::serve_command(site, &env);
    for name in [
        "ATTENDANCE_WEBHOOK_URL",
        "CAMERA_DEVICE",
        "CAMERA_FRAMES",
        "MQTT_URL",
    ] {
        if !env.iter().any(|(k, _)| *k == name) {
            command.env_remove(name);
        }
    }
    let running = serve_process::start_command(command);
    assert!(
        running.early.iter().any(|l| l.contains("serving on")),
        "serve did not start: {:?}",
        running.early
    );
    (running, format!("http://{bind}"))
}

/// An executable `sh` script at `dir/name`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn photo(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

fn enroll(base: &str, id: &str, rel: &str) {
    let (status, answer) = h::post_image(
        &format!("{base}/enroll"),
        &photo(rel),
        &[("student_id", id)],
    );
    assert_eq!(status, 200, "{answer}");
}

/// `/recognize/realtime` with one face: its event's id and the webhook's report.
fn realtime(base: &str, rel: &str, query: &str) -> (String, Value) {
    let (status, answer) = h::post_image(
        &format!("{base}/recognize/realtime{query}"),
        &photo(rel),
        &[],
    );
    assert_eq!(status, 200, "{answer}");
    let dispatch = answer["dispatch"].as_array().unwrap();
    assert_eq!(dispatch.len(), 1, "{answer}");
    let id = dispatch[0]["event_id"].as_str().unwrap().to_string();
    (id, dispatch[0]["report"].clone())
}

fn command_health(base: &str) -> Value {
    let (status, health) = h::get(&format!("{base}/health"));
    assert_eq!(status, 200);
    health["event_command"].clone()
}

fn metrics(base: &str) -> String {
    let (status, _, bytes) = h::get_bytes(&format!("{base}/metrics"));
    assert_eq!(status, 200);
    String::from_utf8(bytes).unwrap()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `KEY=value` lines (as `env` prints them) as a map.
fn env_of(path: &Path) -> HashMap<String, String> {
    lines(path)
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet: it runs no more).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn each_event_reaches_the_program_with_its_json_and_variables_but_no_secret() {
    let site = tempfile::tempdir().unwrap();
    let runs = site.path().join("runs");
    std::fs::create_dir(&runs).unwrap();
    let program = script(
        site.path(),
        "record",
        &format!(
            "set -e\ncd '{}'\ncat > \"$FACE_EVENT_ID.part\"\nenv > \"$FACE_EVENT_ID.env\"\n\
             mv \"$FACE_EVENT_ID.part\" \"$FACE_EVENT_ID.json\"\n",
            runs.display()
        ),
    );
    // A replayed camera at the entrance, showing Obama once he is enrolled.
    let frames = site.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::copy(photo("probe/obama/obama_3.jpg"), frames.join("0001.jpg")).unwrap();
    let (hook, received) = h::receiver(Behaviour::Ok);
    let (_serve, base) = serve(
        site.path(),
        &[
            ("EVENT_COMMAND", program.display().to_string()),
            ("ATTENDANCE_WEBHOOK_URL", hook),
            ("ATTENDANCE_API_KEY", "main-api-secret-7".into()),
            ("EVENT_COOLDOWN_SECONDS", "3600".into()),
            ("CAMERA_FRAMES", frames.display().to_string()),
            ("CAMERA_FPS", "4".into()),
            ("CAMERA_LOOP", "true".into()),
            ("CAMERA_NAME", "gate".into()),
            ("CAMERA_DIRECTION", "in".into()),
        ],
    );
    enroll(&base, "biden", "known/biden/biden_1.jpg");
    let (biden, report) = realtime(&base, "probe/biden/biden_2.jpg", "");
    assert_eq!(report["status"], "sent", "{report}");
    let (stranger, _) = realtime(
        &base,
        "strangers/lin_manuel_miranda.jpg",
        "?send_unknown=true",
    );
    // A repeat within the cooldown: answered `skipped`, not run.
    let (repeat, report) = realtime(&base, "probe/biden/biden_2.jpg", "");
    assert_eq!(report["status"], "skipped", "{report}");
    enroll(&base, "obama", "known/obama/obama_1.jpg");
    common::wait_for("the camera's event", LIMIT, || {
        received.lock().unwrap().len() == 3
    });
    common::wait_for("three runs", LIMIT, || command_health(&base)["runs"] == 3);
    let hits = received.lock().unwrap().clone();
    let camera = hits
        .iter()
        .find(|hit| hit.body["student_id"] == "obama")
        .expect("the camera's event at the webhook");
    assert_eq!(camera.body["camera"], "gate", "{}", camera.body);
    let ids: Vec<String> = hits
        .iter()
        .map(|hit| hit.body["event_id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&biden) && ids.contains(&stranger), "{ids:?}");
    for hit in &hits {
        let id = hit.body["event_id"].as_str().unwrap();
        // Standard input: the webhook's body, one line.
        let stdin = std::fs::read_to_string(runs.join(format!("{id}.json"))).unwrap();
        assert!(
            stdin.ends_with('\n') && stdin.lines().count() == 1,
            "{stdin:?}"
        );
        let body: Value = serde_json::from_str(&stdin).unwrap();
        assert_eq!(body, hit.body);
        let env = env_of(&runs.join(format!("{id}.env")));
        assert_eq!(env["FACE_EVENT_ID"], id);
        assert_eq!(env["FACE_EVENT_KIND"], "attendance.recognized");
        assert_eq!(env["FACE_STUDENT_ID"], body["student_id"].as_str().unwrap());
        assert_eq!(env["FACE_PUNCH"], body["punch"].as_str().unwrap_or(""));
        assert!(env.contains_key("PATH"), "{env:?}");
        // Only what a program needs: no key, no setting of the service.
        let text = std::fs::read_to_string(runs.join(format!("{id}.env"))).unwrap();
        for secret in [
            "main-api-secret-7",
            "ATTENDANCE",
            "EVENT_COMMAND",
            "FACE_MODELS_DIR",
        ] {
            assert!(
                !text.contains(secret),
                "{secret} in the program's environment: {text}"
            );
        }
    }
    let env = env_of(&runs.join(format!("{stranger}.env")));
    assert_eq!(env["FACE_STUDENT_ID"], "Unknown");
    // Nothing else ran: the repeat (and the camera's next sightings) are not events.
    assert!(!ids.contains(&repeat), "{ids:?}");
    let mut files: Vec<String> = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".json"))
        .collect();
    files.sort();
    let mut want: Vec<String> = hits
        .iter()
        .map(|hit| format!("{}.json", hit.body["event_id"].as_str().unwrap()))
        .collect();
    want.sort();
    assert_eq!(files, want);
    let health = command_health(&base);
    for (counter, value) in [
        ("runs", 3),
        ("ok", 3),
        ("failed", 0),
        ("timed_out", 0),
        ("dropped", 0),
        ("queued", 0),
    ] {
        assert_eq!(health[counter], value, "{counter}: {health}");
    }
    let text = metrics(&base);
    assert!(
        text.contains("face_event_command_runs_total{outcome=\"ok\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("face_event_command_dropped_total 0"),
        "{text}"
    );
}

#[test]
fn a_hanging_program_and_what_it_started_are_killed_at_the_timeout_and_failures_counted() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path().display().to_string();
    let program = script(
        site.path(),
        "relay",
        &format!(
            "cd '{dir}'\ncase \"$FACE_STUDENT_ID\" in\n\
             biden)\n  sleep 300 &\n  echo $! > background.pid\n  echo $$ > program.pid\n\
             \x20 echo 'relay stuck' >&2\n  sleep 300\n  ;;\n\
             *)\n  echo \"no relay for $FACE_STUDENT_ID\" >&2\n  exit 3\n  ;;\nesac\n"
        ),
    );
    let (hook, received) = h::receiver(Behaviour::Ok);
    let (_serve, base) = serve(
        site.path(),
        &[
            ("EVENT_COMMAND", program.display().to_string()),
            ("EVENT_COMMAND_TIMEOUT_SECONDS", "1".into()),
            ("ATTENDANCE_WEBHOOK_URL", hook),
            ("EVENT_COOLDOWN_SECONDS", "0".into()),
        ],
    );
    enroll(&base, "biden", "known/biden/biden_1.jpg");
    let (hung, report) = realtime(&base, "probe/biden/biden_2.jpg", "");
    // The webhook had it within the caller's wait, the program hanging or not.
    assert_eq!(report["status"], "sent", "{report}");
    let (failing, report) = realtime(
        &base,
        "strangers/lin_manuel_miranda.jpg",
        "?send_unknown=true",
    );
    assert_eq!(report["status"], "sent", "{report}");
    common::wait_for("the timeout", LIMIT, || {
        command_health(&base)["timed_out"] == 1
    });
    // The program and what it left in the background are gone with its process group.
    for file in ["program.pid", "background.pid"] {
        let pid = std::fs::read_to_string(site.path().join(file)).unwrap();
        assert!(gone(pid.trim()), "{file}: {pid} still runs");
    }
    common::wait_for("the second run", LIMIT, || {
        command_health(&base)["runs"] == 2
    });
    let health = command_health(&base);
    assert_eq!(health["ok"], 0, "{health}");
    assert_eq!(health["failed"], 1, "{health}");
    let error = health["last_error"].as_str().unwrap();
    assert!(error.starts_with(&failing), "{error}");
    assert!(error.contains("exited with status 3"), "{error}");
    assert!(error.contains("no relay for Unknown"), "{error}");
    let text = metrics(&base);
    assert!(
        text.contains("face_event_command_runs_total{outcome=\"timed_out\"} 1"),
        "{text}"
    );
    let got: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| hit.body["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, [hung, failing]);
}

#[test]
fn past_a_full_queue_events_are_dropped_and_counted_while_the_webhook_gets_them_all() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path().display().to_string();
    // Each run waits for the test to let it go.
    let program = script(
        site.path(),
        "gate",
        &format!(
            "cd '{dir}'\necho \"$FACE_EVENT_ID\" >> started\n\
             while [ ! -e release ]; do sleep 0.05; done\n"
        ),
    );
    let (hook, received) = h::receiver(Behaviour::Ok);
    let (_serve, base) = serve(
        site.path(),
        &[
            ("EVENT_COMMAND", program.display().to_string()),
            ("EVENT_COMMAND_QUEUE", "1".into()),
            ("EVENT_COMMAND_TIMEOUT_SECONDS", "120".into()),
            ("ATTENDANCE_WEBHOOK_URL", hook),
            ("EVENT_COOLDOWN_SECONDS", "0".into()),
        ],
    );
    enroll(&base, "biden", "known/biden/biden_1.jpg");
    let started = site.path().join("started");
    let mut ids = Vec::new();
    for n in 0..4 {
        let (id, report) = realtime(&base, "probe/biden/biden_2.jpg", "");
        assert_eq!(report["status"], "sent", "{report}");
        ids.push(id);
        if n == 0 {
            common::wait_for("the first run", LIMIT, || lines(&started).len() == 1);
        }
    }
    // One runs, one waits, two were dropped; the webhook took all four meanwhile.
    let health = command_health(&base);
    assert_eq!(
        (&health["runs"], &health["queued"], &health["dropped"]),
        (&0.into(), &1.into(), &2.into()),
        "{health}"
    );
    let (_, all) = h::get(&format!("{base}/health"));
    let sink = &all["outbox"]["sinks"]["command"];
    assert_eq!(sink["failed_attempts"], 2, "{all}");
    let why = sink["last_error"].as_str().unwrap();
    assert!(why.contains("EVENT_COMMAND_QUEUE"), "{why}");
    assert_eq!(received.lock().unwrap().len(), 4);
    assert!(metrics(&base).contains("face_event_command_dropped_total 2"));
    std::fs::write(site.path().join("release"), "").unwrap();
    common::wait_for("the queued run", LIMIT, || command_health(&base)["ok"] == 2);
    assert_eq!(lines(&started), ids[..2]);
    let health = command_health(&base);
    assert_eq!((&health["runs"], &health["queued"]), (&2.into(), &0.into()));
}

#[test]
fn after_a_restart_the_webhook_gets_what_was_pending_and_the_program_runs_nothing_again() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path().display().to_string();
    let program = script(
        site.path(),
        "door",
        &format!("echo \"$FACE_EVENT_ID\" >> '{dir}/opened'\n"),
    );
    let opened = site.path().join("opened");
    // Nothing listens on the webhook's port yet: the main API is down.
    let hook_port = common::free_port();
    let env = [
        ("EVENT_COMMAND", program.display().to_string()),
        (
            "ATTENDANCE_WEBHOOK_URL",
            format!("http://127.0.0.1:{hook_port}/events"),
        ),
        ("EVENT_COOLDOWN_SECONDS", "0".into()),
        ("WEBHOOK_RETRY_MAX_SECONDS", "0.5".into()),
    ];
    let (mut first, base) = serve(site.path(), &env);
    enroll(&base, "biden", "known/biden/biden_1.jpg");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (id, report) = realtime(&base, "probe/biden/biden_2.jpg", "");
        assert_eq!(report["status"], "queued", "{report}");
        ids.push(id);
    }
    common::wait_for("both runs", LIMIT, || lines(&opened).len() == 2);
    assert_eq!(lines(&opened), ids);
    let status = common::sigterm_and_wait(&mut first.child);
    assert!(status.success(), "{status:?}");
    drop(first);

    // The main API comes up; the box restarts with both events in its outbox.
    let received = h::receiver_at(&format!("127.0.0.1:{hook_port}"), Behaviour::Ok);
    let (_second, base) = serve(site.path(), &env);
    common::wait_for("the pending events", LIMIT, || {
        received.lock().unwrap().len() == 2
    });
    let got: Vec<Value> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| hit.body["event_id"].clone())
        .collect();
    assert_eq!(got, [ids[0].as_str(), ids[1].as_str()]);
    // A new event runs the program; the two old ones did not run again.
    let (new, _) = realtime(&base, "probe/biden/biden_2.jpg", "");
    common::wait_for("the new run", LIMIT, || lines(&opened).len() >= 3);
    assert_eq!(lines(&opened), [ids[0].clone(), ids[1].clone(), new]);
    assert_eq!(command_health(&base)["runs"], 1);
}

#[test]
fn a_bad_event_command_stops_serve_with_status_2_naming_it() {
    let site = tempfile::tempdir().unwrap();
    let not_executable = site.path().join("beep");
    std::fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let shared = script(site.path(), "shared", "exit 0\n");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = |p: &Path| p.display().to_string();
    for (env, named) in [
        (
            ("EVENT_COMMAND", "beep.sh".to_string()),
            "EVENT_COMMAND must",
        ),
        (("EVENT_COMMAND", path(&not_executable)), "not executable"),
        (("EVENT_COMMAND", path(&shared)), "writable by every user"),
        (("EVENT_COMMAND", path(site.path())), "not a file"),
        (
            ("EVENT_COMMAND_TIMEOUT_SECONDS", "0.01".to_string()),
            "EVENT_COMMAND_TIMEOUT_SECONDS",
        ),
        (
            ("EVENT_COMMAND_QUEUE", "5000".to_string()),
            "EVENT_COMMAND_QUEUE",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .current_dir(site.path())
            .env("FACE_MODELS_DIR", common::models_dir())
            .env("FACE_DATA_DIR", site.path().join("data"))
            .env_remove("EVENT_COMMAND")
            .env_remove("EVENT_COMMAND_TIMEOUT_SECONDS")
            .env_remove("EVENT_COMMAND_QUEUE")
            .env(env.0, &env.1)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        let said: Vec<&str> = stderr.lines().filter(|l| l.contains(named)).collect();
        assert_eq!(said.len(), 1, "{env:?}: {stderr}");
    }
}
