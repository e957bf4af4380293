//! Names and groups (issue 26), end to end with the real binary, real photos and curl: set at
//! enroll, listed and filtered, carried by every event (the webhook body on a real loopback
//! receiver, `/events`), changed with `PATCH /people/{id}` (the next event carries the new name),
//! refused with a 400 naming the field, closed to a viewer key, kept by a rename, and carried
//! by a gallery export imported on a second box; `people set` and `enroll --name` of the CLI.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::http as h;
use common::serve_process;
use common::wait_for;
use serde_json::Value;

const ADMIN: &str = "names-admin-key-0123456789abcdef";
const VIEWER: &str = "names-viewer-key-0123456789abcdef";

/// A box: `serve` in its own site folder on its own port, with an admin and a viewer key.
struct Site {
    dir: tempfile::TempDir,
    port: u16,
    _serve: serve_process::Running,
}

impl Site {
    fn start(webhook: Option<&str>) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("api-keys");
        std::fs::write(
            &keys,
            format!("admin admin {ADMIN}\nwatcher viewer {VIEWER}\n"),
        )
        .unwrap();
        let port = common::free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut env = vec![
            ("FACE_BIND", bind.as_str()),
            ("FACE_API_KEYS_FILE", keys.to_str().unwrap()),
            ("EVENT_COOLDOWN_SECONDS", "0"),
        ];
        if let Some(url) = webhook {
            env.push(("ATTENDANCE_WEBHOOK_URL", url));
        }
        let serve = serve_process::start(dir.path(), &env);
        Site {
            dir,
            port,
            _serve: serve,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// curl with `key`, `args` before the URL; (status, body as JSON, or as a JSON string).
    fn curl(&self, key: &str, args: &[&str], path: &str) -> (u16, Value) {
        let out = Command::new("curl")
            .args(["-sS", "-o", "-", "-w", "\n%{http_code}"])
            .args(["-H", &format!("Authorization: Bearer {key}")])
            .args(args)
            .arg(self.url(path))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        let json = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        (status.parse().unwrap(), json)
    }

    fn patch(&self, key: &str, id: &str, body: &str) -> (u16, Value) {
        self.curl(
            key,
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                body,
            ],
            &format!("/people/{id}"),
        )
    }

    fn enroll(&self, id: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let photo = format!("image=@{}", known(id).display());
        let student = format!("student_id={id}");
        let mut args = vec!["-F".to_string(), student, "-F".into(), photo];
        for (k, v) in fields {
            args.push("-F".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.curl(ADMIN, &args, "/enroll")
    }

    fn realtime(&self, photo: &Path) -> Value {
        let image = format!("image=@{}", photo.display());
        let (status, body) = self.curl(ADMIN, &["-F", &image], "/recognize/realtime");
        assert_eq!(status, 200, "{body}");
        body
    }

    fn person(&self, id: &str) -> Value {
        let (status, body) = self.curl(VIEWER, &[], &format!("/people/{id}"));
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn known(person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join("known").join(person))[0].clone()
}

fn probe(person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join("probe").join(person))[0].clone()
}

/// The webhook bodies of `student_id` so far.
fn hits_of(received: &h::Received, student_id: &str) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|hit| hit.body["student_id"] == student_id)
        .map(|hit| hit.body.clone())
        .collect()
}

fn cli(data: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(args)
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap_or_default();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(last).unwrap_or(Value::String(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )),
    )
}

#[test]
fn names_and_groups_go_from_enrollment_to_every_event_and_change_with_patch() {
    let (hook, received) = h::receiver(h::Behaviour::Ok);
    let site = Site::start(Some(&hook));

    // Set at enroll; a person without them has neither key.
    let (status, body) = site.enroll("obama", &[("name", " Barack Obama "), ("group", "7A")]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(site.enroll("biden", &[("group", "7B")]).0, 200);
    assert_eq!(site.enroll("amy", &[]).0, 200);
    let (status, people) = site.curl(VIEWER, &[], "/people");
    assert_eq!(status, 200);
    let people = people["people"].as_array().unwrap().clone();
    let of = |id: &str| {
        people
            .iter()
            .find(|p| p["student_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (of("obama")["name"].as_str(), of("obama")["group"].as_str()),
        (Some("Barack Obama"), Some("7A"))
    );
    assert_eq!(of("biden")["group"], "7B");
    let amy = of("amy");
    assert!(
        amy.get("name").is_none() && amy.get("group").is_none(),
        "{amy}"
    );
    let (_, in_7a) = site.curl(VIEWER, &[], "/people?group=7A");
    assert_eq!(in_7a["total"], 1, "{in_7a}");
    assert_eq!(in_7a["people"][0]["student_id"], "obama");
    let (status, body) = site.curl(VIEWER, &[], "/people?group=%E2%80%AE7A");
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().starts_with("group:"),
        "{body}"
    );
    let detail = site.person("obama");
    assert_eq!(
        (&detail["name"], &detail["group"]),
        (&"Barack Obama".into(), &"7A".into())
    );

    // Every event names them: the webhook body (original fields unchanged), /events.
    let answer = site.realtime(&probe("obama"));
    assert_eq!(answer["results"][0]["label"], "obama", "{answer}");
    wait_for("the webhook", Duration::from_secs(30), || {
        !hits_of(&received, "obama").is_empty()
    });
    let hit = hits_of(&received, "obama")[0].clone();
    assert_eq!(hit["event"], "attendance.recognized");
    assert_eq!(
        (&hit["name"], &hit["group"]),
        (&"Barack Obama".into(), &"7A".into())
    );
    assert!(
        hit["distance"].is_number() && hit["event_id"].is_string(),
        "{hit}"
    );
    site.realtime(&probe("amy"));
    wait_for("amy's event", Duration::from_secs(30), || {
        !hits_of(&received, "amy").is_empty()
    });
    let amy_hit = hits_of(&received, "amy")[0].clone();
    assert!(
        amy_hit.get("name").is_none() && amy_hit.get("group").is_none(),
        "{amy_hit}"
    );
    let (_, events) = site.curl(VIEWER, &[], "/events?student_id=obama");
    let logged = &events["events"][0];
    assert_eq!(
        (&logged["name"], &logged["group"]),
        (&"Barack Obama".into(), &"7A".into())
    );

    // PATCH: renamed, group kept; the next event carries the new name.
    let (status, body) = site.patch(ADMIN, "obama", r#"{"name": "Barack H. Obama"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["name"], &body["group"]),
        (&"Barack H. Obama".into(), &"7A".into())
    );
    site.realtime(&probe("obama"));
    wait_for("the second event", Duration::from_secs(30), || {
        hits_of(&received, "obama").len() >= 2
    });
    assert_eq!(hits_of(&received, "obama")[1]["name"], "Barack H. Obama");
    // null clears; the change is in the person's history.
    let (status, body) = site.patch(ADMIN, "obama", r#"{"group": null}"#);
    assert_eq!((status, &body["group"]), (200, &Value::Null), "{body}");
    let history = site.person("obama")["history"].clone();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (&last["action"], &last["by"]),
        (&"label".into(), &"admin".into())
    );
    assert_eq!(last["label"]["name"], "Barack H. Obama");

    // Refusals name the field; nothing changes.
    let long = format!(r#"{{"name": "{}"}}"#, "x".repeat(101));
    let bad: [(&str, &str); 7] = [
        (long.as_str(), "name:"),
        (r#"{"name": "Bar\u202Eack"}"#, "name:"),
        (r#"{"name": "Bar\nack"}"#, "name:"),
        (r#"{"group": 7}"#, "group:"),
        (r#"{"name": ""}"#, "name:"),
        (r#"{"nmae": "x"}"#, "unknown field \"nmae\""),
        (r#"{}"#, "nothing to change"),
    ];
    for (body, starts) in bad {
        let (status, answer) = site.patch(ADMIN, "obama", body);
        assert_eq!(status, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(starts), "{body}: {error}");
    }
    let (status, answer) = site.enroll("howard", &[("group", &"g".repeat(65))]);
    assert_eq!(status, 400, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("group:"));
    assert_eq!(site.curl(VIEWER, &[], "/people/howard").0, 404);
    assert_eq!(site.person("obama")["name"], "Barack H. Obama");
    // Not enrolled: 404; a viewer may read but not change.
    assert_eq!(site.patch(ADMIN, "nobody", r#"{"name": "N"}"#).0, 404);
    let (status, answer) = site.patch(VIEWER, "obama", r#"{"name": "Mallory"}"#);
    assert_eq!(status, 403, "{answer}");
    assert_eq!(site.person("obama")["name"], "Barack H. Obama");

    // A rename keeps them (the file moves, and matching's map with it).
    let (status, _) = site.curl(
        ADMIN,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            r#"{"student_id": "joe"}"#,
        ],
        "/people/biden/rename",
    );
    assert_eq!(status, 200);
    assert_eq!(site.person("joe")["group"], "7B");
    site.realtime(&probe("biden"));
    wait_for("joe's event", Duration::from_secs(30), || {
        !hits_of(&received, "joe").is_empty()
    });
    assert_eq!(hits_of(&received, "joe")[0]["group"], "7B");

    // The file on disk: beside the samples, and the `.npy` still the original's format.
    let file: Value =
        serde_json::from_slice(&std::fs::read(site.data().join("people/obama.json")).unwrap())
            .unwrap();
    assert_eq!(file["name"], "Barack H. Obama");
    assert!(
        file.get("group").is_none() && file["samples"].is_array(),
        "{file}"
    );

    // Export, then import on a second box: the names come along.
    let archive = site.dir.path().join("gallery.tar");
    let out = Command::new("curl")
        .args(["-sS", "-f", "-o"])
        .arg(&archive)
        .args(["-H", &format!("Authorization: Bearer {ADMIN}")])
        .arg(site.url("/gallery/export"))
        .status()
        .unwrap();
    assert!(out.success());
    let second = Site::start(None);
    let upload = format!("@{}", archive.display());
    let (status, body) = second.curl(
        ADMIN,
        &[
            "-H",
            "Content-Type: application/x-tar",
            "--data-binary",
            &upload,
        ],
        "/gallery/import",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(second.person("obama")["name"], "Barack H. Obama");
    assert_eq!(second.person("joe")["group"], "7B");
    let (_, in_7b) = second.curl(VIEWER, &[], "/people?group=7B");
    assert_eq!(in_7b["total"], 1, "{in_7b}");
}

#[test]
fn the_cli_sets_names_at_enroll_and_with_people_set() {
    let data = tempfile::tempdir().unwrap();
    let data = data.path();
    let photo = known("penny");
    let (status, body) = cli(
        data,
        &[
            "enroll",
            "--id",
            "penny",
            "--name",
            "Penny Hofstadter",
            "--group",
            "Cheesecake Factory",
            photo.to_str().unwrap(),
        ],
    );
    assert_eq!(status, 0, "{body}");
    let (_, list) = cli(data, &["people", "list"]);
    assert_eq!(list["people"][0]["name"], "Penny Hofstadter", "{list}");
    let (status, body) = cli(
        data,
        &["people", "set", "penny", "--clear-group", "--name", "Penny"],
    );
    assert_eq!(status, 0, "{body}");
    assert_eq!(
        (&body["name"], &body["group"]),
        (&"Penny".into(), &Value::Null)
    );
    let (_, list) = cli(data, &["people", "list", "--group", "Cheesecake Factory"]);
    assert_eq!(list["total"], 0, "{list}");
    // Bad values are refused naming the flag, and change nothing.
    let (status, _) = cli(data, &["people", "set", "penny", "--name", "Pen\u{202E}ny"]);
    assert_eq!(status, 2);
    let (status, body) = cli(data, &["people", "set", "nobody", "--name", "N"]);
    assert_eq!(status, 1, "{body}");
    let (_, shown) = cli(data, &["people", "show", "penny"]);
    assert_eq!(shown["name"], "Penny");
    assert_eq!(
        shown["history"].as_array().unwrap().last().unwrap()["action"],
        "label"
    );

    // Bulk enroll reads person.json; a bad one skips its folder with the reason.
    let known_dir = tempfile::tempdir().unwrap();
    for (id, json) in [
        ("raj", r#"{"name": "Raj Koothrappali", "group": "physics"}"#),
        ("howard", r#"{"name": "How\u202Eard"}"#),
    ] {
        let folder = known_dir.path().join(id);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::copy(known(id), folder.join("1.jpg")).unwrap();
        std::fs::write(folder.join("person.json"), json).unwrap();
    }
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["enroll", "--known"])
        .arg(known_dir.path())
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("howard") && stderr.contains("person.json: name:"),
        "{stderr}"
    );
    let (_, raj) = cli(data, &["people", "show", "raj"]);
    assert_eq!(
        (&raj["name"], &raj["group"]),
        (&"Raj Koothrappali".into(), &"physics".into())
    );
    let (status, _) = cli(data, &["people", "show", "howard"]);
    assert_eq!(status, 1);
}
