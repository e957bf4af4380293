//! The real binary killed with SIGKILL: events pending for a main API that is down are
//! delivered after the restart, once each and in order; enrollments being written when the
//! process dies leave every `.npy` whole, and none that was acknowledged is lost.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::{self as h, Behaviour};
use face_attendance::client::{multipart, Part};
use face_attendance::gallery::Gallery;
use serde_json::Value;

/// `face-attendance serve` on `port` over `site/data`, started and ready.
struct Server(Child);

impl Server {
    fn start(site: &Path, port: u16, env: &[(&str, String)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .current_dir(site)
            .env("FACE_MODELS_DIR", common::models_dir())
            .env_remove("FACE_DATA_DIR")
            .env_remove("FACE_API_KEY")
            .envs(env.iter().map(|(k, v)| (k, v)));
        Server(common::spawn_until_serving(command))
    }

    /// SIGKILL: no clean-up of any kind.
    fn kill_9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn photo(rel: &str) -> std::path::PathBuf {
    common::faces_dir().join(rel)
}

#[test]
fn events_pending_at_a_kill_9_are_delivered_after_the_restart_once_each_in_order() {
    let site = tempfile::tempdir().unwrap();
    let (port, hook_port) = (common::free_port(), common::free_port());
    // Nothing listens on hook_port yet: the main API is down.
    let env = [
        (
            "ATTENDANCE_WEBHOOK_URL",
            format!("http://127.0.0.1:{hook_port}/events"),
        ),
        ("EVENT_COOLDOWN_SECONDS", "0".to_string()),
        ("WEBHOOK_RETRY_MAX_SECONDS", "0.5".to_string()),
    ];
    let server = Server::start(site.path(), port, &env);
    let base = format!("http://127.0.0.1:{port}");
    for person in ["obama", "biden"] {
        let (status, _) = h::post_image(
            &format!("{base}/enroll"),
            &photo(&format!("known/{person}/{person}_1.jpg")),
            &[("student_id", person)],
        );
        assert_eq!(status, 200);
    }
    let mut expected = Vec::new();
    for n in 0..4 {
        let rel = ["probe/obama/obama_3.jpg", "probe/biden/biden_2.jpg"][n % 2];
        let (status, answer) =
            h::post_image(&format!("{base}/recognize/realtime"), &photo(rel), &[]);
        assert_eq!(status, 200);
        let entry = &answer["dispatch"][0];
        assert_eq!(entry["report"]["status"], "queued", "{answer}");
        expected.push((
            entry["event_id"].as_str().unwrap().to_string(),
            entry["label"].as_str().unwrap().to_string(),
        ));
    }
    server.kill_9();

    // The main API comes up where it was expected; then the box restarts.
    let received = h::receiver_at(&format!("127.0.0.1:{hook_port}"), Behaviour::Ok);
    let server = Server::start(site.path(), port, &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.lock().unwrap().len() < expected.len() {
        assert!(Instant::now() < deadline, "pending events not delivered");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500)); // nothing more may come
    let got: Vec<(String, String)> = received
        .lock()
        .unwrap()
        .iter()
        .map(|hit| {
            let id = hit.idempotency_key.clone().unwrap();
            assert_eq!(hit.body["event_id"], id.as_str());
            (id, hit.body["student_id"].as_str().unwrap().to_string())
        })
        .collect();
    assert_eq!(got, expected);
    let (_, health) = h::get(&format!("{base}/health"));
    assert_eq!(health["outbox"]["pending"], 0, "{health}");
    drop(server);
}

#[test]
fn enrollments_cut_by_a_kill_9_leave_whole_files_and_keep_every_acknowledged_sample() {
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = Server::start(site.path(), port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let acknowledged: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients enroll the same person and one another, concurrently, until the kill.
    let clients: Vec<_> = [("alip", "obama"), ("alip", "biden"), ("budi", "penny")]
        .into_iter()
        .map(|(id, person)| {
            let (acknowledged, stop, base) = (acknowledged.clone(), stop.clone(), base.clone());
            std::thread::spawn(move || {
                let file = photo(&format!("known/{person}/{person}_1.jpg"));
                let jpeg = std::fs::read(&file).unwrap();
                let (content_type, body) = multipart(&[
                    ("student_id", Part::Text(id)),
                    (
                        "image",
                        Part::File {
                            file_name: "face.jpg",
                            content_type: "image/jpeg",
                            data: &jpeg,
                        },
                    ),
                ]);
                let agent = h::agent();
                while !stop.load(Ordering::Relaxed) {
                    let sent = agent
                        .post(&format!("{base}/enroll"))
                        .header("Content-Type", &content_type)
                        .send(&body[..]);
                    // An error: the server is gone.
                    let Ok(mut response) = sent else { break };
                    let status = response.status().as_u16();
                    let Ok(text) = response.body_mut().read_to_string() else {
                        break;
                    };
                    let answer: Value = serde_json::from_str(&text).unwrap_or_default();
                    if status == 200 && answer["saved"] == 1 {
                        *acknowledged.lock().unwrap().entry(id.into()).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.lock().unwrap().values().sum::<usize>() < 6 {
        assert!(Instant::now() < deadline, "enrollments too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Mid-write, most likely: the clients keep posting while the process dies.
    std::thread::sleep(Duration::from_millis(137));
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.join();
    }

    let data = site.path().join("data");
    let (gallery, report) = Gallery::open(&data).unwrap();
    assert!(
        report.skipped.is_empty(),
        "damaged files: {:?}",
        report.skipped
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    let on_disk: HashMap<String, usize> = gallery.people().into_iter().collect();
    for (id, acked) in &acknowledged {
        let rows = on_disk.get(id).copied().unwrap_or(0);
        assert!(
            rows >= *acked,
            "{id}: {rows} encodings on disk, {acked} acknowledged"
        );
    }
    // And the service starts again on that data.
    let server = Server::start(site.path(), port, &[]);
    let (_, health) = h::get(&format!("{base}/health"));
    assert_eq!(health["ok"], true);
    assert_eq!(health["labels"], 2, "{health}");
    drop(server);
}
