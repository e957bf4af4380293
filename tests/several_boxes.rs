//! Several boxes, one broker (issue 15): real `serve` processes with their own data folders on
//! one real Mosquitto. The gallery follows every change on any box (enroll, delete, rename, a
//! box that was off converges through the deletion's tombstone, the CLI beside a box); hostile
//! retained messages are counted and change nothing; a broker that lost its retained messages
//! deletes nobody (the boxes publish everyone again); a broker outage loses no event while the
//! webhook keeps delivering.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::http as h;
use common::mosquitto::{Mosquitto, Options};
use common::wait_for;
use serde_json::Value;

/// Long enough for a retained message to cross the broker and be applied on a loaded machine.
const SPREAD: Duration = Duration::from_secs(60);

/// A `serve` process: its own data folder, port and box id; killed if the test fails.
struct Box {
    id: String,
    data: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// The binary it runs (the current build's, or another release's: set it, then
    /// `start_again`, to upgrade a stopped box in place).
    binary: PathBuf,
}

impl Box {
    fn start(id: &str, data: &Path, env: &[(&str, &str)]) -> Box {
        Box::start_with_binary(
            Path::new(env!("CARGO_BIN_EXE_face-attendance")),
            id,
            data,
            env,
        )
    }

    /// A box running `binary`, e.g. `common::previous_release_binary()` for a fleet of mixed
    /// versions (check `common::previous_release::available()` first).
    fn start_with_binary(binary: &Path, id: &str, data: &Path, env: &[(&str, &str)]) -> Box {
        let mut b = Box {
            binary: binary.to_path_buf(),
            id: id.to_string(),
            data: data.to_path_buf(),
            port: common::free_port(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        b.start_again();
        b
    }

    fn start_again(&mut self) {
        let mut command = Command::new(&self.binary);
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{}", self.port)])
            .env("FACE_MODELS_DIR", common::models_dir())
            .env("FACE_DATA_DIR", &self.data)
            .env("BOX_ID", &self.id)
            .env("EVENT_COOLDOWN_SECONDS", "0")
            .env_remove("ATTENDANCE_WEBHOOK_URL")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        self.child = Some(common::spawn_until_serving(command));
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            assert!(common::sigterm_and_wait(&mut child).success());
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn health(&self) -> Value {
        h::get(&self.url("/health")).1
    }

    /// Everyone enrolled, by id.
    fn people(&self) -> Vec<String> {
        h::get(&self.url("/people")).1["people"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["student_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn has(&self, person: &str) -> bool {
        h::get(&self.url(&format!("/people/{person}"))).0 == 200
    }

    /// The label of the one face in `photo`.
    fn recognize(&self, photo: &Path) -> String {
        let (status, body) = h::post_image(&self.url("/recognize"), photo, &[]);
        assert_eq!(status, 200, "{body}");
        body["results"][0]["label"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn enroll(&self, person: &str) {
        let photo = known(person);
        let (status, body) = h::post_image(&self.url("/enroll"), &photo, &[("student_id", person)]);
        assert_eq!(status, 200, "{body}");
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `face-attendance` run as the IT admin would, beside the boxes; its stdout, or a failure.
fn cli(args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, *v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The public key of the box `box_id` whose data folder is `data` (made if it has none):
/// `face-attendance box key` on that box.
fn box_key(data: &Path, box_id: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["box", "key"])
        .env("FACE_DATA_DIR", data)
        .env("BOX_ID", box_id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .unwrap_or_else(|| panic!("no key in {text:?}"))
        .to_string()
}

/// The site's trust list at `file`: `box trust add` of each box (its data folder is
/// `site/<box id>`) with its role.
fn trust(file: &Path, site: &Path, boxes: &[(&str, &str)]) {
    for (box_id, role) in boxes {
        let key = box_key(&site.join(box_id), box_id);
        cli(
            &["box", "trust", "add", box_id, &key, role],
            &[("GALLERY_TRUSTED_KEYS", file)],
        );
    }
}

fn known(person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join("known").join(person))[0].clone()
}

fn probe(person: &str) -> PathBuf {
    common::photos(&common::faces_dir().join("probe").join(person))[0].clone()
}

fn counter(health: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(health, |v, k| &v[*k])
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn the_gallery_follows_every_change_on_any_box_and_ignores_hostile_messages() {
    if !common::mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let dirs: Vec<PathBuf> = ["box-a", "box-b", "box-c"]
        .map(|x| site.path().join(x))
        .to_vec();
    let keys = site.path().join("gallery-trusted-keys");
    trust(
        &keys,
        site.path(),
        &[("box-a", "admin"), ("box-b", "admin"), ("box-c", "admin")],
    );
    let keys = keys.to_str().unwrap();
    let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
    let a = Box::start("box-a", &dirs[0], &env);
    let b = Box::start("box-b", &dirs[1], &env);
    let mut c = Box::start("box-c", &dirs[2], &env);

    // Enrolled on A: recognized on B and C.
    a.enroll("obama");
    for other in [&b, &c] {
        wait_for(&format!("obama on {}", other.id), SPREAD, || {
            other.has("obama")
        });
        assert_eq!(other.recognize(&probe("obama")), "obama");
    }
    // What a box received it does not publish again: A published once, nobody else did.
    let published = |x: &Box| counter(&x.health(), &["gallery_sync", "published"]);
    assert_eq!(published(&a), 1);
    assert_eq!((published(&b), published(&c)), (0, 0));

    // Deleted on C: gone from A and B.
    assert_eq!(h::delete(&c.url("/people/obama")).0, 200);
    for other in [&a, &b] {
        wait_for(&format!("obama gone from {}", other.id), SPREAD, || {
            !other.has("obama")
        });
        assert_eq!(other.recognize(&probe("obama")), "Unknown");
    }

    // Renamed on B: the new name everywhere, the old one nowhere.
    a.enroll("biden");
    wait_for("biden on B", SPREAD, || b.has("biden"));
    let (status, body) = h::post(
        &b.url("/people/biden/rename"),
        "application/json",
        br#"{"student_id": "joe"}"#.to_vec(),
    );
    assert_eq!(status, 200, "{body}");
    for other in [&a, &c] {
        wait_for(&format!("joe on {}", other.id), SPREAD, || {
            other.has("joe") && !other.has("biden")
        });
    }
    assert_eq!(c.recognize(&probe("biden")), "joe");

    // C is off while A enrolls amy and B deletes joe; when it comes back it converges.
    c.stop();
    a.enroll("amy");
    assert_eq!(h::delete(&b.url("/people/joe")).0, 200);
    wait_for("amy on B", SPREAD, || b.has("amy"));
    wait_for("joe gone from A", SPREAD, || !a.has("joe"));

    // Hostile retained messages: wrong shape, a number past f64 (infinite), 10 MB, an id
    // that is a path. Counted and ignored by every box, also by C when it comes back.
    let evil = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = evil.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let before: Vec<u64> = [&a, &b]
        .iter()
        .map(|x| counter(&x.health(), &["gallery_sync", "outcomes", "malformed"]))
        .collect();
    let shape = write(
        "shape",
        br#"{"format":1,"student_id":"eve","samples":"all"}"#,
    );
    let encoding: Vec<String> = (0..128)
        .map(|i| {
            if i == 7 {
                "1e999".into()
            } else {
                "0.01".into()
            }
        })
        .collect();
    let infinite = format!(
        r#"{{"format":1,"student_id":"mallory","version":{{"updated_ms":1,"box_id":"x"}},"samples":[{{"encoding":[{}]}}]}}"#,
        encoding.join(",")
    );
    let infinite = write("infinite", infinite.as_bytes());
    let huge = write("huge", &vec![b'7'; 10 * 1024 * 1024]);
    let path = write(
        "path",
        br#"{"format":1,"student_id":"../x","version":{"updated_ms":1,"box_id":"x"},"samples":[]}"#,
    );
    broker.publish_file("face-attendance/gallery/eve", &shape, true);
    broker.publish_file("face-attendance/gallery/mallory", &infinite, true);
    broker.publish_file("face-attendance/gallery/trudy", &huge, true);
    broker.publish_file("face-attendance/gallery/..", &path, true);
    for (x, before) in [&a, &b].into_iter().zip(before) {
        wait_for(
            &format!("{} to count the bad messages", x.id),
            SPREAD,
            || {
                let health = x.health();
                counter(&health, &["gallery_sync", "outcomes", "malformed"]) >= before + 3
                    && counter(&health, &["mqtt", "oversize"]) >= 1
            },
        );
        assert!(!x.has("eve") && !x.has("mallory") && !x.has("trudy"));
        assert_eq!(x.health()["mqtt"]["connected"], true);
    }

    c.start_again();
    wait_for("C to converge", SPREAD, || c.has("amy") && !c.has("joe"));
    wait_for("C to count the bad messages", SPREAD, || {
        counter(&c.health(), &["gallery_sync", "outcomes", "malformed"]) >= 3
    });
    assert_eq!(c.recognize(&probe("amy")), "amy");
    // The CLI beside a running box (its data folder): published like any other change.
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["enroll", "--id", "raj"])
        .arg(known("raj"))
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", &b.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for other in [&a, &c] {
        wait_for(&format!("raj on {}", other.id), SPREAD, || other.has("raj"));
    }
    for x in [&a, &b, &c] {
        let people = x.people();
        assert_eq!(people, ["amy", "raj"], "{}", x.id);
    }
    // Nothing was written for the id that is a path, inside the data folders or beside them.
    assert!(!site.path().join("x").exists());
    for dir in &dirs {
        let files = common::tree(dir);
        assert!(
            files.iter().all(|f| !f.ends_with("/x") && f != "x"),
            "{files:?}"
        );
    }
}

#[test]
fn a_broker_that_loses_its_retained_messages_deletes_nobody() {
    if !common::mosquitto::available() {
        return;
    }
    // No persistence: a restart is a broker that lost every retained message (a power cut
    // before its save, or a reinstall).
    let mut broker = Mosquitto::start();
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let keys = site.path().join("gallery-trusted-keys");
    trust(
        &keys,
        site.path(),
        &[("box-a", "admin"), ("box-b", "admin"), ("box-d", "enroll")],
    );
    let keys = keys.to_str().unwrap();
    let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
    let a = Box::start("box-a", &site.path().join("box-a"), &env);
    let b = Box::start("box-b", &site.path().join("box-b"), &env);
    a.enroll("obama");
    b.enroll("amy");
    a.enroll("biden");
    wait_for("everyone on both", SPREAD, || {
        a.has("amy") && b.has("obama") && b.has("biden")
    });
    assert_eq!(h::delete(&b.url("/people/biden")).0, 200);
    wait_for("biden gone from A", SPREAD, || !a.has("biden"));

    broker.stop();
    for x in [&a, &b] {
        wait_for(&format!("{} to see the broker gone", x.id), SPREAD, || {
            x.health()["mqtt"]["connected"] == false
        });
    }
    broker.start_again();
    for x in [&a, &b] {
        wait_for(&format!("{} to reconnect", x.id), SPREAD, || {
            x.health()["mqtt"]["connected"] == true
        });
    }
    // A box started now gets everyone from the broker again, and the deletion with them.
    let d = Box::start("box-d", &site.path().join("box-d"), &env);
    wait_for("everyone on D", SPREAD, || d.has("obama") && d.has("amy"));
    assert_eq!(d.recognize(&probe("obama")), "obama");
    wait_for("the tombstone of biden on D", SPREAD, || {
        counter(&d.health(), &["gallery_sync", "outcomes", "absent"]) >= 1
    });
    for x in [&a, &b, &d] {
        let people = x.people();
        assert_eq!(people, ["amy", "obama"], "{}", x.id);
        assert_eq!(
            counter(&x.health(), &["gallery_sync", "outcomes", "removed"]),
            if x.id == "box-a" { 1 } else { 0 },
            "{}: only biden, by the deletion",
            x.id
        );
    }
}

/// A persistent MQTT subscriber (`mosquitto_sub -c`): the broker keeps its QoS 1 messages while
/// it is away, across a broker restart (persistence). Lines go to a file, appended.
struct Subscriber {
    port: u16,
    out: PathBuf,
    child: Option<Child>,
}

impl Subscriber {
    fn start(port: u16, out: &Path) -> Subscriber {
        let mut s = Subscriber {
            port,
            out: out.to_path_buf(),
            child: None,
        };
        s.restart();
        s
    }

    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out)
            .unwrap();
        let child = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "-i", "main-api", "-q", "1"])
            .args(["-t", "face-attendance/+/events"])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The event ids received, in order (with repeats).
    fn event_ids(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| v["event_id"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_broker_outage_loses_no_event_and_never_holds_up_the_webhook() {
    if !common::mosquitto::available() {
        return;
    }
    let mut broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let out = tempfile::tempdir().unwrap();
    let sub = Subscriber::start(broker.port(), &out.path().join("events.jsonl"));
    let (webhook, hits) = h::receiver(h::Behaviour::Ok);
    let data = tempfile::tempdir().unwrap();
    let url = broker.url();
    let a = Box::start(
        "box-a",
        data.path(),
        &[
            ("MQTT_URL", url.as_str()),
            ("ATTENDANCE_WEBHOOK_URL", &webhook),
        ],
    );
    a.enroll("obama");
    let realtime = || {
        let (status, body) = h::post_image(&a.url("/recognize/realtime"), &probe("obama"), &[]);
        assert_eq!(status, 200, "{body}");
        body["dispatch"][0].clone()
    };

    // Both sinks take the first event; the subscriber's session is on the broker.
    let first = realtime();
    assert_eq!(first["report"]["status"], "sent", "{first}");
    assert_eq!(first["sinks"]["webhook"]["status"], "sent", "{first}");
    let mut sent = vec![first["event_id"].as_str().unwrap().to_string()];
    wait_for("the first event on the broker", SPREAD, || {
        sub.event_ids() == sent
    });
    let message = &sub.messages()[0];
    assert_eq!(message["box_id"], "box-a");
    assert_eq!(message["student_id"], "obama");
    assert_eq!(message["event"], "attendance.recognized");

    // The broker goes down; events go on, and the webhook takes each one meanwhile.
    broker.stop();
    wait_for("the box to see the broker gone", SPREAD, || {
        a.health()["mqtt"]["connected"] == false
    });
    for _ in 0..5 {
        let d = realtime();
        assert_eq!(d["report"]["status"], "sent", "{d}");
        assert_eq!(d["sinks"]["mqtt"]["status"], "queued", "{d}");
        sent.push(d["event_id"].as_str().unwrap().to_string());
    }
    let keys: Vec<String> = hits
        .lock()
        .unwrap()
        .iter()
        .filter_map(|hit| hit.idempotency_key.clone())
        .collect();
    assert_eq!(keys, sent, "the webhook got every event, in order, once");
    let health = a.health();
    assert_eq!(health["outbox"]["sinks"]["mqtt"]["waiting"], 5, "{health}");
    assert_eq!(
        health["outbox"]["sinks"]["webhook"]["waiting"], 0,
        "{health}"
    );
    assert_eq!(health["outbox"]["pending"], 5, "{health}");

    // Back: every event arrives, in order; repeats (at least once) carry the same event_id.
    broker.start_again();
    let mut sub = sub;
    sub.restart();
    wait_for("every event on the broker", SPREAD, || {
        sub.event_ids().into_iter().collect::<HashSet<_>>().len() == sent.len()
    });
    let mut seen = HashSet::new();
    let arrived: Vec<String> = sub
        .event_ids()
        .into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect();
    assert_eq!(arrived, sent);
    wait_for("the outbox to empty", SPREAD, || {
        a.health()["outbox"]["pending"] == 0
    });
    let metrics = h::get_bytes(&a.url("/metrics")).2;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("face_sink_delivered_total{sink=\"mqtt\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("face_mqtt_connected 1"), "{metrics}");
    assert_eq!(hits.lock().unwrap().len(), 6);
}

// ---- Trust between boxes (issue 24): signed gallery changes, roles, a stolen box, an
// ---- upgrading fleet, a clock that is not set.

/// Publishes `payload` retained on `topic` (QoS 1) as anyone with the broker's password can.
fn publish(broker: &Mosquitto, topic: &str, payload: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("payload");
    std::fs::write(&file, payload).unwrap();
    broker.publish_file(topic, &file, true);
}

/// The retained message on `topic` (none within 5 s: empty).
fn retained(broker: &Mosquitto, topic: &str) -> Vec<u8> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-t", topic, "-C", "1", "-W", "5"])
        .output()
        .unwrap();
    let mut bytes = out.stdout;
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    bytes
}

/// A message of `person` with `samples` (as the broker carries them) at `ms` by `box_id`, not
/// signed.
fn forged(person: &str, ms: u64, box_id: &str, samples: &Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": 1,
        "student_id": person,
        "version": {"updated_ms": ms, "box_id": box_id},
        "samples": samples,
    }))
    .unwrap()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn refused(x: &Box, reason: &str) -> u64 {
    counter(&x.health(), &["gallery_sync", "refused", reason])
}

fn stranger() -> PathBuf {
    common::faces_dir().join("strangers/stranger_angry.jpg")
}

#[test]
fn broker_credentials_or_a_stolen_enrolling_box_cannot_change_who_is_who() {
    use face_attendance::replication::{envelope, keys::BoxKey, Kind};
    if !common::mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let list = site.path().join("site-keys");
    trust(
        &list,
        site.path(),
        &[("box-a", "admin"), ("box-b", "admin"), ("box-e", "enroll")],
    );
    // Each box its own copy of the site's list (as /etc/face-attendance on each box).
    let copy = |box_id: &str| {
        let path = site.path().join(format!("{box_id}.keys"));
        std::fs::copy(&list, &path).unwrap();
        path
    };
    let files = ["box-a", "box-b", "box-e"].map(copy);
    let start = |i: usize, box_id: &str| {
        let keys = files[i].to_str().unwrap();
        let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
        Box::start(box_id, &site.path().join(box_id), &env)
    };
    let (a, b, e) = (start(0, "box-a"), start(1, "box-b"), start(2, "box-e"));
    let boxes = [&a, &b, &e];
    a.enroll("obama");
    a.enroll("biden");
    for x in boxes {
        wait_for(&format!("obama and biden on {}", x.id), SPREAD, || {
            x.has("obama") && x.has("biden")
        });
        assert_eq!(x.health()["gallery_sync"]["state"], "ok");
    }
    let crops_of_obama = common::tree(&a.data.join("faces/obama"));
    assert!(!crops_of_obama.is_empty());

    // 1. Anyone with the broker's password, no trusted key: biden's face under obama's id with
    // a version 58 minutes ahead; the same signed with a key of their own, claiming box-b's id
    // and their own; an empty retained message on biden; a tombstone of obama 58 minutes
    // ahead; 40 invented ids with 256 samples each.
    let biden_message: Value =
        serde_json::from_slice(&retained(&broker, "face-attendance/gallery/biden")).unwrap();
    let faces = biden_message["samples"].clone();
    let ahead = now_ms() + 58 * 60 * 1000;
    let swap = forged("obama", ahead, "boxb", &faces);
    publish(&broker, "face-attendance/gallery/obama", &swap);
    let rogue = BoxKey::from_seed([9; 32]);
    let claimed = forged("obama", ahead, "box-b", &faces);
    let claimed = envelope::seal(Kind::Person, &claimed, "box-b", &rogue);
    publish(&broker, "face-attendance/gallery/obama", &claimed);
    let own = forged("obama", ahead, "rogue", &faces);
    let own = envelope::seal(Kind::Person, &own, "rogue", &rogue);
    publish(&broker, "face-attendance/gallery/obama", &own);
    publish(&broker, "face-attendance/gallery/biden", b"");
    let tombstone = serde_json::to_vec(&serde_json::json!({
        "format": 1, "student_id": "obama",
        "version": {"updated_ms": ahead, "box_id": "box-a"},
    }))
    .unwrap();
    publish(&broker, "face-attendance/gallery-deleted/obama", &tombstone);
    let many: Vec<Value> = (0..256).map(|_| faces[0].clone()).collect();
    let many = Value::Array(many);
    for i in 0..40 {
        let id = format!("invented{i}");
        let message = forged(&id, now_ms(), "boxb", &many);
        publish(&broker, &format!("face-attendance/gallery/{id}"), &message);
    }
    for x in boxes {
        wait_for(&format!("{} to refuse them all", x.id), SPREAD, || {
            refused(x, "unsigned") >= 43
                && refused(x, "bad_signature") >= 1
                && refused(x, "untrusted") >= 1
        });
        assert_eq!(x.people(), ["biden", "obama"], "{}", x.id);
        assert_eq!(x.recognize(&probe("obama")), "obama", "{}", x.id);
        assert_eq!(x.recognize(&probe("biden")), "biden", "{}", x.id);
    }
    assert_eq!(common::tree(&a.data.join("faces/obama")), crops_of_obama);
    // The boxes put obama's and biden's good copies back on the broker.
    wait_for(
        "the broker to hold obama's signed copy again",
        SPREAD,
        || {
            let m = retained(&broker, "face-attendance/gallery/obama");
            serde_json::from_slice::<Value>(&m)
                .is_ok_and(|v| v["signed_by"].is_string() && v["samples"] != faces)
        },
    );

    // 2. A stolen enrolling box: a stranger's face added to obama is refused elsewhere; a new
    // person still reaches every box; it cannot delete, force a duplicate or rename.
    let (status, body) = h::post_image(&e.url("/enroll"), &stranger(), &[("student_id", "obama")]);
    assert_eq!(status, 200, "{body}");
    e.enroll("amy");
    for x in [&a, &b] {
        wait_for(&format!("amy on {}", x.id), SPREAD, || x.has("amy"));
        wait_for(
            &format!("{} to refuse obama's new face", x.id),
            SPREAD,
            || refused(x, "not_this_person") >= 1,
        );
        assert_eq!(x.recognize(&stranger()), "Unknown", "{}", x.id);
    }
    let (status, body) = h::post_image(
        &e.url("/enroll"),
        &known("biden"),
        &[("student_id", "joe"), ("force", "true")],
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(h::delete(&e.url("/people/amy")).0, 200);
    // An admin's forced twin reaches everyone.
    let (status, body) = h::post_image(
        &a.url("/enroll"),
        &known("obama"),
        &[("student_id", "barack"), ("force", "true")],
    );
    assert_eq!(status, 200, "{body}");
    for x in [&b, &e] {
        wait_for(&format!("barack on {}", x.id), SPREAD, || x.has("barack"));
    }
    assert!(!a.has("joe") && !b.has("joe"));
    assert!(
        a.has("amy") && b.has("amy"),
        "an enrolling box cannot delete"
    );
    assert!(refused(&a, "not_allowed") >= 1);

    // 3. A replayed old message and a forged box id change nothing.
    let old = retained(&broker, "face-attendance/gallery/amy");
    let (status, body) = h::post_image(&a.url("/enroll"), &probe("amy"), &[("student_id", "amy")]);
    assert_eq!(status, 200, "{body}");
    wait_for("amy's second face on B", SPREAD, || {
        h::get(&b.url("/people/amy")).1["samples"]
            .as_array()
            .map(Vec::len)
            == Some(2)
    });
    let newer = retained(&broker, "face-attendance/gallery/amy");
    publish(&broker, "face-attendance/gallery/amy", &old);
    let moved = String::from_utf8(newer.clone()).unwrap().replacen(
        r#""box_id":"box-a""#,
        r#""box_id":"box-b""#,
        1,
    );
    publish(&broker, "face-attendance/gallery/amy", moved.as_bytes());
    for x in [&a, &b] {
        wait_for(&format!("{} to refuse the forged id", x.id), SPREAD, || {
            refused(x, "bad_signature") >= 2
        });
        let samples = h::get(&x.url("/people/amy")).1["samples"]
            .as_array()
            .map(Vec::len);
        assert_eq!(samples, Some(2), "{}", x.id);
    }

    // 4. The stolen box's key removed from the site's lists (it keeps its own copy): what it
    // publishes from then on changes nothing; what it did before stays, and the audit log
    // names it.
    for file in &files[..2] {
        cli(
            &["box", "trust", "remove", "box-e"],
            &[("GALLERY_TRUSTED_KEYS", file)],
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    e.enroll("raj");
    for x in [&a, &b] {
        wait_for(&format!("{} to refuse box-e", x.id), SPREAD, || {
            refused(x, "untrusted") >= 2
        });
        assert!(!x.has("raj") && x.has("amy"), "{}", x.id);
    }
    let history = h::get(&b.url("/people/amy")).1;
    assert!(history.to_string().contains("sync:box-e"), "{history}");
}

#[test]
fn a_fleet_of_mixed_versions_upgrades_without_losing_people() {
    if !common::mosquitto::available() || !common::previous_release::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let list = site.path().join("gallery-trusted-keys");
    trust(
        &list,
        site.path(),
        &[("box-a", "admin"), ("box-b", "admin")],
    );
    let keys = list.to_str().unwrap();
    let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
    let a = Box::start("box-a", &site.path().join("box-a"), &env);
    let b = Box::start("box-b", &site.path().join("box-b"), &env);
    // Today's release, not upgraded yet.
    let old = common::previous_release_binary();
    let mut o = Box::start_with_binary(&old, "box-o", &site.path().join("box-o"), &env);

    // The new boxes' signed changes reach the old one (it reads format 1 and ignores the
    // signature's fields).
    a.enroll("obama");
    for x in [&b, &o] {
        wait_for(&format!("obama on {}", x.id), SPREAD, || x.has("obama"));
    }
    assert_eq!(o.recognize(&probe("obama")), "obama");
    // The old box's unsigned changes are refused by the new ones, counted, and delete nobody.
    o.enroll("amy");
    assert_eq!(h::delete(&o.url("/people/obama")).0, 200);
    for x in [&a, &b] {
        wait_for(&format!("{} to refuse box-o", x.id), SPREAD, || {
            refused(x, "unsigned") >= 2
        });
        assert_eq!(x.people(), ["obama"], "{}", x.id);
    }
    // Upgraded: its key in the list, the new binary on the same data folder. It publishes
    // what it has, signed; the deletion it made before the upgrade was never accepted, so
    // obama comes back to it from the others.
    let key = box_key(&o.data, "box-o");
    cli(
        &["box", "trust", "add", "box-o", &key, "enroll"],
        &[("GALLERY_TRUSTED_KEYS", &list)],
    );
    o.stop();
    o.binary = PathBuf::from(env!("CARGO_BIN_EXE_face-attendance"));
    o.start_again();
    for x in [&a, &b, &o] {
        wait_for(&format!("everyone on {}", x.id), SPREAD, || {
            x.people() == ["amy", "obama"]
        });
        assert_eq!(x.health()["gallery_sync"]["state"], "ok", "{}", x.id);
    }
    assert_eq!(a.recognize(&probe("amy")), "amy");
}

#[test]
fn a_box_whose_clock_is_not_set_neither_publishes_nor_applies_until_it_is() {
    use common::faketime::{self, Clock};
    if !common::mosquitto::available() || !faketime::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let list = site.path().join("gallery-trusted-keys");
    trust(
        &list,
        site.path(),
        &[("box-a", "admin"), ("box-f", "admin")],
    );
    let keys = list.to_str().unwrap();
    let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
    let a = Box::start("box-a", &site.path().join("box-a"), &env);
    // A board without a real-time clock, before NTP answers: its clock reads 2020.
    let clock = Clock::starting_at(site.path(), "2020-01-01 12:00:00");
    let fake: Vec<(String, String)> = clock.env();
    let mut env_f: Vec<(&str, &str)> = env.to_vec();
    env_f.extend(fake.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let f = Box::start("box-f", &site.path().join("box-f"), &env_f);
    wait_for("F to say its clock is not set", SPREAD, || {
        f.health()["gallery_sync"]["state"] == "clock_not_set"
    });
    a.enroll("obama");
    f.enroll("amy");
    wait_for("F to hold obama's message back", SPREAD, || {
        counter(&f.health(), &["gallery_sync", "waiting"]) >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(!f.has("obama"), "applied before the clock was set");
    assert!(!a.has("amy"), "published before the clock was set");
    // NTP answers.
    clock.real();
    wait_for("obama on F", SPREAD, || f.has("obama"));
    wait_for("amy on A", SPREAD, || a.has("amy"));
    // What arrived meanwhile for a person waiting queues behind it: applied within a second.
    wait_for("nothing left waiting on F", SPREAD, || {
        let health = f.health();
        health["gallery_sync"]["state"] == "ok" && health["gallery_sync"]["waiting"] == 0
    });
}

/// `PATCH /people/{id}` on box `x`; its answer.
fn set_label(x: &Box, person: &str, body: &str) -> Value {
    let (status, answer) = h::patch(
        &x.url(&format!("/people/{person}")),
        "application/json",
        body.as_bytes().to_vec(),
    );
    assert_eq!(status, 200, "{answer}");
    answer
}

/// A person's name and group as box `x` shows them (`null`: none).
fn label_on(x: &Box, person: &str) -> (Value, Value) {
    let (status, detail) = h::get(&x.url(&format!("/people/{person}")));
    if status != 200 {
        return (Value::Null, Value::Null);
    }
    (detail["name"].clone(), detail["group"].clone())
}

#[test]
fn names_and_groups_travel_inside_the_signed_message_and_older_boxes_keep_working() {
    if !common::mosquitto::available() {
        return;
    }
    let broker = Mosquitto::start_with(Options {
        persistence: true,
        ..Options::default()
    });
    let url = broker.url();
    let site = tempfile::tempdir().unwrap();
    let list = site.path().join("gallery-trusted-keys");
    trust(
        &list,
        site.path(),
        &[("box-a", "admin"), ("box-b", "admin"), ("box-o", "admin")],
    );
    let keys = list.to_str().unwrap();
    let env = [("MQTT_URL", url.as_str()), ("GALLERY_TRUSTED_KEYS", keys)];
    let a = Box::start("box-a", &site.path().join("box-a"), &env);
    let b = Box::start("box-b", &site.path().join("box-b"), &env);
    // A box of the previous release, when it is built: it reads the message and ignores the
    // names.
    let old = common::previous_release::available().then(|| {
        let binary = common::previous_release_binary();
        Box::start_with_binary(&binary, "box-o", &site.path().join("box-o"), &env)
    });

    // Enrolled with a name on A: the name arrives on B.
    let (status, body) = h::post_image(
        &a.url("/enroll"),
        &known("obama"),
        &[
            ("student_id", "obama"),
            ("name", "Barack Obama"),
            ("group", "7A"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let named = (Value::from("Barack Obama"), Value::from("7A"));
    wait_for("obama's name on B", SPREAD, || {
        label_on(&b, "obama") == named
    });
    // It is inside what is signed: the retained message carries it before the signature.
    let message = retained(&broker, "face-attendance/gallery/obama");
    let text = String::from_utf8_lossy(&message);
    let name_at = text
        .find(r#""name":"Barack Obama""#)
        .expect("name in the message");
    assert!(name_at < text.find(r#","signature":"#).unwrap(), "{text}");

    // Changed on A (a label-only change): a new version, and B follows.
    set_label(&a, "obama", r#"{"name": "Barack H. Obama", "group": null}"#);
    let renamed = (Value::from("Barack H. Obama"), Value::Null);
    wait_for("the new name on B", SPREAD, || {
        label_on(&b, "obama") == renamed
    });
    // And the other way: changed on B, A follows; B published only that change.
    set_label(&b, "obama", r#"{"group": "8A"}"#);
    let regrouped = (Value::from("Barack H. Obama"), Value::from("8A"));
    wait_for("the new group on A", SPREAD, || {
        label_on(&a, "obama") == regrouped
    });
    assert_eq!(counter(&b.health(), &["gallery_sync", "published"]), 1);
    // The events on B name them.
    let (status, answer) = h::post_image(&b.url("/recognize/realtime"), &probe("obama"), &[]);
    assert_eq!(status, 200, "{answer}");
    let (_, events) = h::get(&b.url("/events?student_id=obama"));
    assert_eq!(events["events"][0]["name"], "Barack H. Obama", "{events}");

    if let Some(o) = &old {
        // The older box got the person and their changes (it recognizes them) without the
        // names. (It checks no signature: the forgery below would fool it, so it goes first.)
        wait_for("obama on the older box", SPREAD, || o.has("obama"));
        assert_eq!(o.recognize(&probe("obama")), "obama");
        let (_, detail) = h::get(&o.url("/people/obama"));
        assert!(detail.get("name").is_none(), "{detail}");
    }

    // A forged name (not signed by a trusted box) changes nothing.
    let forged_name = serde_json::to_vec(&serde_json::json!({
        "format": 1, "student_id": "obama", "name": "Mallory",
        "version": {"updated_ms": now_ms(), "box_id": "box-a"},
        "samples": [{"encoding": vec![0.01; 128], "enrolled_at": 1}],
    }))
    .unwrap();
    publish(&broker, "face-attendance/gallery/obama", &forged_name);
    wait_for("the forgery to be refused", SPREAD, || {
        refused(&a, "unsigned") >= 1
    });
    assert_eq!(label_on(&a, "obama"), regrouped);
}
