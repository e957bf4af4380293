//! The ACL of `systemd/mosquitto.conf.example`, as docs/src/several-boxes.md installs it (its
//! `#acl ` lines), loaded by a real Mosquitto with a password file made by `mosquitto_passwd`,
//! and tried with the real clients (`mosquitto_pub`, `mosquitto_sub`) as the site's users:
//! `gate-1` (a box that enrolls), `gate-2` (a box that does not), `school-api` (the main API).
//! What a box's stolen password still allows, and what it does not.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "a-long-broker-password";

struct Broker {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> PathBuf {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The ACL lines of the example, as `sed -n 's/^#acl //p'` gives them (and its bare `#acl`
/// lines as blank ones).
fn example_acl() -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/mosquitto.conf.example"),
    )
    .unwrap();
    let mut acl = String::new();
    for line in example.lines() {
        if let Some(rest) = line.strip_prefix("#acl ") {
            acl.push_str(rest);
            acl.push('\n');
        } else if line == "#acl" {
            acl.push('\n');
        }
    }
    acl
}

fn start() -> Option<Broker> {
    if !common::mosquitto::available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    for (i, user) in ["gate-1", "gate-2", "school-api"].iter().enumerate() {
        let mut command = Command::new(tool("mosquitto_passwd"));
        if i == 0 {
            command.arg("-c");
        }
        let made = command
            .arg("-b")
            .arg(&passwords)
            .args([user, PASSWORD])
            .status()
            .unwrap();
        assert!(made.success(), "mosquitto_passwd {user}");
    }
    let acl = dir.path().join("face-attendance.acl");
    std::fs::write(&acl, example_acl()).unwrap();
    let port = common::free_port();
    let log = dir.path().join("mosquitto.log");
    let mut config = format!(
        "per_listener_settings false\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
         persistence false\nlog_dest file {}\nlog_type error\nlog_type warning\n\
         listener {port} 127.0.0.1\n",
        passwords.display(),
        acl.display(),
        log.display()
    );
    if common::is_root() {
        // As root mosquitto would switch to its own user, who cannot read this folder.
        config.push_str("user root\n");
    }
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(&conf, config).unwrap();
    let mut child = Command::new(tool("mosquitto"))
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "mosquitto refused the example's ACL ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Broker { dir, port, child })
}

impl Broker {
    /// `mosquitto_pub` as `user` (QoS 1: it returns once the broker has the message, or has
    /// dropped it), retained. Whether the client was accepted.
    fn publish(&self, user: &str, password: &str, topic: &str, payload: &str) -> bool {
        let mut command = Command::new(tool("mosquitto_pub"));
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-r",
            ])
            .args(["-u", user, "-P", password, "-i", &format!("test-{user}")])
            .args(["-t", topic]);
        if payload.is_empty() {
            command.arg("-n");
        } else {
            command.args(["-m", payload]);
        }
        let out = command.output().unwrap();
        out.status.success()
    }

    /// The retained messages `user` gets on `filter`: `topic payload` lines, sorted.
    fn retained(&self, user: &str, filter: &str) -> Vec<String> {
        let out = Command::new(tool("mosquitto_sub"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-u", user, "-P", PASSWORD, "-i", &format!("reader-{user}")])
            .args(["-t", filter, "-v", "--retained-only", "-W", "1"])
            .output()
            .unwrap();
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        lines.sort();
        lines
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

#[test]
fn each_box_writes_only_its_own_topics_and_only_enrolling_boxes_the_gallery() {
    let Some(broker) = start() else {
        return;
    };
    // Each box its own topics; not another box's.
    assert!(broker.publish("gate-1", PASSWORD, "face-attendance/gate-1/health", "ok-1"));
    assert!(broker.publish("gate-2", PASSWORD, "face-attendance/gate-2/health", "ok-2"));
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gate-1/health",
        "forged"
    ));
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gate-1/events",
        "forged"
    ));
    assert_eq!(
        broker.retained("school-api", "face-attendance/+/+"),
        [
            "face-attendance/gate-1/health ok-1",
            "face-attendance/gate-2/health ok-2"
        ]
    );
    // The enrolling box writes the gallery and its tombstones; every box reads them.
    assert!(broker.publish("gate-1", PASSWORD, "face-attendance/gallery/alip", "person"));
    assert!(broker.publish(
        "gate-1",
        PASSWORD,
        "face-attendance/gallery-deleted/budi",
        "tomb"
    ));
    let gallery = [
        "face-attendance/gallery-deleted/budi tomb",
        "face-attendance/gallery/alip person",
    ];
    // Every box reads the gallery, and nothing of the other boxes (their events name people).
    for user in ["gate-1", "gate-2"] {
        assert_eq!(
            broker.retained(user, "face-attendance/#"),
            gallery,
            "{user}"
        );
    }
    // A box that does not enroll: no person replaced, added or deleted, no tombstone.
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gallery/alip",
        "stranger"
    ));
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gallery/eve",
        "invented"
    ));
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gallery-deleted/alip",
        "t"
    ));
    assert!(broker.publish(
        "gate-2",
        PASSWORD,
        "face-attendance/gallery-deleted/budi",
        ""
    ));
    assert!(broker.publish("gate-2", PASSWORD, "face-attendance/gallery/alip", ""));
    assert_eq!(
        broker.retained("gate-1", "face-attendance/gallery/#"),
        [gallery[1]]
    );
    assert_eq!(
        broker.retained("gate-1", "face-attendance/gallery-deleted/#"),
        [gallery[0]]
    );
    // The main API reads the boxes' topics, never the gallery, and writes nothing of theirs.
    assert!(broker
        .retained("school-api", "face-attendance/gallery/#")
        .is_empty());
    assert!(broker
        .retained("school-api", "face-attendance/gallery-deleted/#")
        .is_empty());
    assert!(broker.publish(
        "school-api",
        PASSWORD,
        "face-attendance/gallery/alip",
        "api"
    ));
    assert!(broker.publish(
        "school-api",
        PASSWORD,
        "face-attendance/gate-1/health",
        "api"
    ));
    assert_eq!(
        broker.retained("gate-2", "face-attendance/gallery/alip"),
        [gallery[1]]
    );
    assert_eq!(
        broker.retained("school-api", "face-attendance/gate-1/health"),
        ["face-attendance/gate-1/health ok-1"]
    );
    // Without the right password, nobody gets in.
    assert!(!broker.publish("gate-1", "wrong", "face-attendance/gate-1/health", "x"));
    assert!(!broker.publish("nobody", PASSWORD, "face-attendance/nobody/health", "x"));
    // The ACL loaded as written: no error in the broker's log.
    let log = broker.log();
    assert!(!log.to_lowercase().contains("error"), "{log}");
}
