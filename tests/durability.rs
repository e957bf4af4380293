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

/// What the clients were told last about one id: its samples (0: gone).
type Acked = Arc<Mutex<HashMap<String, usize>>>;
/// The ids a client is changing now.
type InFlight = Arc<Mutex<Vec<String>>>;

/// A call of the test below.
enum Call<'a> {
    /// `/enroll` forced: the same face under many ids.
    Enroll(&'a str),
    Delete(&'a str),
    Rename {
        from: &'a str,
        to: &'a str,
    },
}

/// Makes `call`; `Some(answer)` on a 200, `None` on anything else (the server gone, say).
fn send(agent: &ureq::Agent, base: &str, call: Call) -> Option<Value> {
    let sent = match call {
        Call::Delete(path) => agent.delete(&format!("{base}{path}")).call(),
        Call::Enroll(id) => {
            let jpeg = std::fs::read(photo("known/obama/obama_1.jpg")).unwrap();
            let (content_type, body) = multipart(&[
                ("student_id", Part::Text(id)),
                ("force", Part::Text("true")),
                (
                    "image",
                    Part::File {
                        file_name: "face.jpg",
                        content_type: "image/jpeg",
                        data: &jpeg,
                    },
                ),
            ]);
            agent
                .post(&format!("{base}/enroll"))
                .header("Content-Type", &content_type)
                .send(&body[..])
        }
        Call::Rename { from, to } => agent
            .post(&format!("{base}/people/{from}/rename"))
            .header("Content-Type", "application/json")
            .send(serde_json::json!({ "student_id": to }).to_string()),
    };
    let mut response = sent.ok()?;
    let ok = response.status().as_u16() == 200;
    let text = response.body_mut().read_to_string().ok()?;
    ok.then(|| serde_json::from_str(&text).ok()).flatten()
}

#[test]
fn deletions_and_renames_cut_by_a_kill_9_leave_a_gallery_with_every_acknowledged_change() {
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let server = Server::start(site.path(), port, &[]);
    let base = format!("http://127.0.0.1:{port}");
    let acked: Acked = Arc::default();
    // The ids each client was changing when the process died: their state may be either side.
    let (renaming, deleting): (InFlight, InFlight) = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let renamer = {
        let (acked, in_flight, stop, base) =
            (acked.clone(), renaming.clone(), stop.clone(), base.clone());
        std::thread::spawn(move || {
            let agent = h::agent();
            for i in 0.. {
                let (from, to) = (format!("r{i}"), format!("s{i}"));
                *in_flight.lock().unwrap() = vec![from.clone(), to.clone()];
                if stop.load(Ordering::Relaxed)
                    || send(&agent, &base, Call::Enroll(&from)).is_none()
                {
                    return;
                }
                acked.lock().unwrap().insert(from.clone(), 1);
                let rename = Call::Rename {
                    from: &from,
                    to: &to,
                };
                if send(&agent, &base, rename).is_none() {
                    return;
                }
                let mut a = acked.lock().unwrap();
                a.insert(from, 0);
                a.insert(to, 1);
            }
        })
    };
    let deleter = {
        let (acked, in_flight, stop, base) =
            (acked.clone(), deleting.clone(), stop.clone(), base.clone());
        std::thread::spawn(move || {
            let agent = h::agent();
            for i in 0.. {
                let id = format!("d{i}");
                *in_flight.lock().unwrap() = vec![id.clone()];
                let steps = [
                    (Call::Enroll(&id), 1),
                    (Call::Enroll(&id), 2),
                    (Call::Delete(&format!("/people/{id}/samples/0")), 1),
                    (Call::Delete(&format!("/people/{id}")), 0),
                ];
                for (call, samples) in steps {
                    if stop.load(Ordering::Relaxed) || send(&agent, &base, call).is_none() {
                        return;
                    }
                    acked.lock().unwrap().insert(id.clone(), samples);
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().values().filter(|n| **n == 0).count() < 4 {
        assert!(Instant::now() < deadline, "changes too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(89));
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    for client in [renamer, deleter] {
        let _ = client.join();
    }

    let data = site.path().join("data");
    let (gallery, report) = Gallery::open(&data).unwrap();
    assert!(report.skipped.is_empty(), "damaged: {:?}", report.skipped);
    let on_disk: HashMap<String, usize> = gallery.people().into_iter().collect();
    let renaming = renaming.lock().unwrap().clone();
    let in_flight: Vec<String> = renaming
        .iter()
        .chain(deleting.lock().unwrap().iter())
        .cloned()
        .collect();
    let files = common::tree(&data);
    let mut checked = 0;
    for (id, samples) in acked.lock().unwrap().iter() {
        if in_flight.contains(id) {
            continue;
        }
        checked += 1;
        assert_eq!(on_disk.get(id).copied().unwrap_or(0), *samples, "{id}");
        let id_files: Vec<&String> = files
            .iter()
            .filter(|f| f.split(['/', '.']).any(|part| part == id))
            .collect();
        if *samples == 0 {
            assert!(id_files.is_empty(), "{id} was deleted, left {id_files:?}");
        } else {
            let detail = gallery
                .person_detail(&face_attendance::gallery::StudentId::parse(id).unwrap())
                .unwrap();
            assert!(
                detail.samples.iter().all(|s| s.crop.is_some()),
                "{id}: {detail:?}"
            );
        }
    }
    assert!(checked >= 4, "{checked} ids checked");
    // A rename cut half-way is finished: the person is under one id, whole.
    if let [from, to] = &renaming[..] {
        let whole = |id: &str| on_disk.get(id).copied().unwrap_or(0);
        assert!(whole(from) + whole(to) <= 1, "{from}/{to} twice");
    }
    let server = Server::start(site.path(), port, &[]);
    let (_, health) = h::get(&format!("{base}/health"));
    assert_eq!(health["ok"], true, "{health}");
    drop(server);
}
