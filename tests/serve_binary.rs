//! The real binary: `serve` answers docs/src/http-api.md's curl recipes verbatim, `rt-client`
//! prints the WebSocket stream, and SIGTERM stops the server cleanly (systemd relies on it).

mod common;

use std::process::{Child, Command};

use serde_json::Value;

fn spawn_serve(site: &std::path::Path, port: u16) -> Child {
    spawn_serve_with(site, port, &[])
}

fn spawn_serve_with(site: &std::path::Path, port: u16, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(site)
        .env("FACE_MODELS_DIR", common::models_dir())
        .env(
            "ATTENDANCE_WEBHOOK_URL",
            format!("http://127.0.0.1:{port}/mock/webhook"),
        )
        .env_remove("FACE_DATA_DIR")
        .env_remove("FACE_API_KEY")
        .env_remove("FACE_API_KEYS_FILE")
        .envs(env.iter().copied());
    common::spawn_until_serving(command)
}

/// A site folder as those recipes expect it: one photo of `alip` under known_faces/.
fn readme_site() -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    let photos = site.path().join("known_faces/alip");
    std::fs::create_dir_all(&photos).unwrap();
    std::fs::copy(
        common::faces_dir().join("known/obama/obama_1.jpg"),
        photos.join("IMG_20230927_203408.jpg"),
    )
    .unwrap();
    site
}

#[test]
fn readme_recipes_on_a_keyed_box_given_the_key() {
    const KEY: &str = "readme-key-0123456789abcdef";
    let site = readme_site();
    let port = common::free_port();
    // The box's own /mock/webhook needs the key too: ATTENDANCE_API_KEY carries it.
    let env = [("FACE_API_KEY", KEY), ("ATTENDANCE_API_KEY", KEY)];
    let _server = Running(spawn_serve_with(site.path(), port, &env));
    let dir = site.path();
    let base = format!("http://127.0.0.1:{port}");
    let key = format!("X-API-Key: {KEY}");
    let photo = "image=@known_faces/alip/IMG_20230927_203408.jpg";
    let enroll = format!("{base}/enroll");
    // Without the key: refused, nothing enrolled.
    let refused = curl(
        dir,
        &["-X", "POST", &enroll, "-F", "student_id=alip", "-F", photo],
    );
    assert_eq!(refused["ok"], false, "{refused}");
    // The recipes of docs/src/http-api.md, with the one header added.
    let enrolled = curl(
        dir,
        &[
            "-X",
            "POST",
            &enroll,
            "-H",
            &key,
            "-F",
            "student_id=alip",
            "-F",
            photo,
        ],
    );
    assert_eq!(
        enrolled,
        serde_json::json!({"ok": true, "saved": 1, "msg": {"faces_found": 1, "saved": 1}})
    );
    let recognized = curl(
        dir,
        &[
            "-X",
            "POST",
            &format!("{base}/recognize"),
            "-H",
            &key,
            "-F",
            photo,
        ],
    );
    assert_eq!(recognized["results"][0]["label"], "alip");
    let realtime = curl(
        dir,
        &[
            "-X",
            "POST",
            &format!("{base}/recognize/realtime?min_conf=0.45&send_unknown=false"),
            "-H",
            &key,
            "-F",
            photo,
        ],
    );
    let report = &realtime["dispatch"][0]["report"];
    assert_eq!(report["status"], "sent", "{realtime}");
    assert_eq!(report["http_status"], 200, "{realtime}");
    // /health, as the original's monitoring asks it, without a key.
    let health = curl(dir, &[&format!("{base}/health")]);
    assert_eq!(
        health,
        serde_json::json!({"ok": true, "encodings": 1, "labels": 1,
                           "version": env!("CARGO_PKG_VERSION")})
    );
}

/// Kills the server if the test fails before it is stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn curl(site: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new("curl")
        .arg("-sS")
        .args(args)
        .current_dir(site)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn readme_recipes_rt_client_and_sigterm() {
    let site = readme_site();
    let port = common::free_port();
    let mut server = Running(spawn_serve(site.path(), port));
    let dir = site.path();
    let base = format!("http://127.0.0.1:{port}");

    // The recipes of docs/src/http-api.md, as written there.
    let enrolled = curl(
        dir,
        &[
            "-X",
            "POST",
            &format!("{base}/enroll"),
            "-F",
            "student_id=alip",
            "-F",
            "image=@known_faces/alip/IMG_20230927_203408.jpg",
        ],
    );
    assert_eq!(
        enrolled,
        serde_json::json!({"ok": true, "saved": 1, "msg": {"faces_found": 1, "saved": 1}})
    );
    let recognized = curl(
        dir,
        &[
            "-X",
            "POST",
            &format!("{base}/recognize"),
            "-F",
            "image=@known_faces/alip/IMG_20230927_203408.jpg",
        ],
    );
    assert_eq!(recognized["results"][0]["label"], "alip");
    let realtime = curl(
        dir,
        &[
            "-X",
            "POST",
            &format!("{base}/recognize/realtime?min_conf=0.45&send_unknown=false"),
            "-F",
            "image=@known_faces/alip/IMG_20230927_203408.jpg",
        ],
    );
    assert_eq!(realtime["webhook_enabled"], true);
    let report = &realtime["dispatch"][0]["report"];
    assert_eq!(report["status"], "sent", "{realtime}");
    assert_eq!(report["http_status"], 200);
    let echoed: Value = serde_json::from_str(report["message"].as_str().unwrap()).unwrap();
    assert_eq!(echoed["token"], "dummy-token");
    assert_eq!(echoed["echo"]["student_id"], "alip");
    let health = curl(dir, &[&format!("{base}/health")]);
    assert_eq!(
        (&health["ok"], &health["encodings"], &health["labels"]),
        (&Value::Bool(true), &Value::from(1), &Value::from(1))
    );
    // The webhook is on (/mock/webhook), so the outbox is shown: the one event went out.
    assert_eq!(health["outbox"]["pending"], 0, "{health}");
    assert_eq!(health["outbox"]["delivered"], 1, "{health}");

    // rt-client posts a probe of the same person and prints the WebSocket message.
    let probe = common::faces_dir().join("probe/obama/obama_4.jpg");
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args([
            "rt-client",
            "--server",
            &base,
            "--rate",
            "5",
            probe.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http_line = text
        .lines()
        .find(|l| l.starts_with("http "))
        .expect("http line");
    assert!(http_line.contains("\"label\":\"alip\""), "{text}");
    let ws_line = text
        .lines()
        .find(|l| l.starts_with("ws "))
        .expect("ws line");
    let message: Value = serde_json::from_str(ws_line.trim_start_matches("ws").trim()).unwrap();
    assert_eq!(message["type"], "recognized");
    assert_eq!(message["student_id"], "alip");
    // Within the cooldown of the curl call above.
    assert_eq!(message["dispatch"]["status"], "skipped");

    // SIGTERM: stop accepting, finish, exit 0.
    assert_eq!(common::sigterm_and_wait(&mut server.0).code(), Some(0));
}
