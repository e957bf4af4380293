//! Replication between boxes, tested with real galleries in temporary folders and a broker of
//! retained messages in memory that delivers in order, as MQTT does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::keys::BoxKey;
use super::topics::{
    topic, topic_deleted, topic_deleted_filter, topic_deleted_id, topic_filter, topic_id,
};
use super::trust::{TrustList, Trusted};
use super::wire::{encode_message, encode_tombstone, parse_message, Change, MAX_FUTURE_MS};
use super::*;
use crate::clock;
use crate::gallery::tests::enc;
use crate::gallery::{Gallery, Rows, Sample, StudentId};
use crate::gallery::{NewSample, UNKNOWN};

fn id(s: &str) -> StudentId {
    StudentId::parse(s).unwrap()
}

/// The boxes of the tests' site: each has a key of a known seed, in every box's trust list as
/// an admin (unless a test writes another list).
const SITE: [&str; 12] = [
    "a", "b", "c", "d", "m", "n", "x", "z", "pull", "off", "gate-1", "e",
];

/// The key of a test box.
fn key_of(box_id: &str) -> BoxKey {
    use sha2::{Digest, Sha256};
    BoxKey::from_seed(Sha256::digest(format!("test key of {box_id}")).into())
}

/// A trust list of `boxes`, with their roles.
fn trust_list(boxes: &[(&str, Role)]) -> TrustList {
    let mut list = TrustList::empty();
    for (box_id, role) in boxes {
        list.add(Trusted {
            box_id: box_id.to_string(),
            key: key_of(box_id).public_key(),
            role: *role,
        });
    }
    list
}

/// Gives the data folder `dir` the key of `box_id` and the site's trust list (everyone admin),
/// and returns the policy that reads it (no duplicate check: the tests' encodings are close).
fn site_policy(dir: &Path, box_id: &str) -> Policy {
    use base64::Engine;
    let key_file = dir.join("box-key");
    if !key_file.exists() {
        // The key file's format (keys.rs): the seed of `key_of`.
        use sha2::{Digest, Sha256};
        let seed: [u8; 32] = Sha256::digest(format!("test key of {box_id}")).into();
        let text = format!(
            "ed25519-secret:{}\n",
            base64::engine::general_purpose::STANDARD.encode(seed)
        );
        std::fs::write(&key_file, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let trust = dir.join("gallery-trusted-keys");
    if !trust.exists() {
        let everyone: Vec<(&str, Role)> = SITE.iter().map(|b| (*b, Role::Admin)).collect();
        trust_list(&everyone).save(&trust).unwrap();
    }
    Policy::new(&trust, 0.6, None)
}

/// A person's message signed by `box_id`.
fn signed(student_id: &str, version: &Version, rows: &Rows, change: &Change) -> Vec<u8> {
    let unsigned = encode_message(&id(student_id), version, rows, change);
    super::envelope::seal(
        Kind::Person,
        &unsigned,
        version.box_id(),
        &key_of(version.box_id()),
    )
}

/// One box: its data folder, gallery and replicator.
struct TestBox {
    dir: tempfile::TempDir,
    gallery: Arc<Gallery>,
    replicator: Replicator,
    online: bool,
}

impl TestBox {
    fn new(box_id: &str, mode: ReplicationMode) -> TestBox {
        let dir = tempfile::tempdir().unwrap();
        let gallery = Arc::new(Gallery::open(dir.path()).unwrap().0);
        let policy = site_policy(dir.path(), box_id);
        let replicator = Replicator::new(gallery.clone(), box_id, mode, policy).unwrap();
        TestBox {
            dir,
            gallery,
            replicator,
            online: true,
        }
    }

    /// A box whose trust list is `list` (written before it starts) and whose duplicate check is
    /// at `duplicate` (none: off).
    fn with(
        box_id: &str,
        mode: ReplicationMode,
        list: &TrustList,
        duplicate: Option<f64>,
    ) -> TestBox {
        let dir = tempfile::tempdir().unwrap();
        list.save(&dir.path().join("gallery-trusted-keys")).unwrap();
        let gallery = Arc::new(Gallery::open(dir.path()).unwrap().0);
        let policy = site_policy(dir.path(), box_id);
        let policy = Policy::new(policy.trust_file(), 0.6, duplicate);
        let replicator = Replicator::new(gallery.clone(), box_id, mode, policy).unwrap();
        TestBox {
            dir,
            gallery,
            replicator,
            online: true,
        }
    }

    /// Writes a new trust list and lets the box see it (it looks every [`signers::RECHECK`]).
    fn trust(&self, list: &TrustList) {
        list.save(&self.dir.path().join("gallery-trusted-keys"))
            .unwrap();
        std::thread::sleep(super::signers::RECHECK + Duration::from_millis(100));
        self.replicator.tick();
    }

    /// The service restarted: a new gallery and replicator on the same folder.
    fn restart(&mut self, box_id: &str, mode: ReplicationMode) {
        self.gallery = Arc::new(Gallery::open(self.dir.path()).unwrap().0);
        let policy = site_policy(self.dir.path(), box_id);
        self.replicator = Replicator::new(self.gallery.clone(), box_id, mode, policy).unwrap();
    }

    fn label(&self, v: f64) -> String {
        self.gallery.best_match(&enc(v), 0.01).label
    }
}

/// The broker's side: retained messages, delivered in order to every box online
/// (the sender too, as MQTT does).
#[derive(Default)]
struct Broker {
    /// `gallery/<id>`.
    retained: BTreeMap<StudentId, Vec<u8>>,
    /// `gallery-deleted/<id>`.
    deleted: BTreeMap<StudentId, Vec<u8>>,
}

impl Broker {
    /// Publishes what each online box has to publish, and delivers it, until quiet.
    fn pump(&mut self, boxes: &[&TestBox]) {
        for _ in 0..10 {
            let mut any = false;
            for b in boxes.iter().filter(|b| b.online) {
                for Outgoing { kind, id, payload } in b.replicator.outgoing() {
                    any = true;
                    let store = match kind {
                        Kind::Person => &mut self.retained,
                        Kind::Deleted => &mut self.deleted,
                    };
                    match payload.is_empty() {
                        true => store.remove(&id),
                        false => store.insert(id.clone(), payload.clone()),
                    };
                    for to in boxes.iter().filter(|b| b.online) {
                        match kind {
                            Kind::Person => to.replicator.receive(id.as_str(), &payload),
                            Kind::Deleted => to.replicator.receive_deleted(id.as_str(), &payload),
                        }
                        .unwrap();
                    }
                }
            }
            if !any {
                return;
            }
        }
        panic!("the boxes never stop publishing");
    }

    /// A box (re)connects: session, retained messages, reconcile.
    fn connect(&mut self, b: &mut TestBox) -> Reconciled {
        b.online = true;
        b.replicator.connected();
        for (id, payload) in &self.retained {
            b.replicator.receive(id.as_str(), payload).unwrap();
        }
        for (id, payload) in &self.deleted {
            b.replicator.receive_deleted(id.as_str(), payload).unwrap();
        }
        b.replicator.reconcile().unwrap()
    }
}

/// The person messages of [`Replicator::outgoing`] (empty: deleted).
fn persons(out: Vec<Outgoing>) -> Vec<(StudentId, Vec<u8>)> {
    out.into_iter()
        .filter(|o| o.kind == Kind::Person)
        .map(|o| (o.id, o.payload))
        .collect()
}

fn published(b: &TestBox) -> u64 {
    b.replicator.stats().published.load(Ordering::Relaxed)
}

#[test]
fn enroll_rename_and_delete_reach_every_box_and_nothing_is_published_twice() {
    let (a, b, c) = (
        TestBox::new("a", ReplicationMode::Both),
        TestBox::new("b", ReplicationMode::Both),
        TestBox::new("c", ReplicationMode::Both),
    );
    let mut broker = Broker::default();
    a.gallery
        .enroll(
            &id("alip"),
            vec![NewSample::new(enc(0.5))
                .with_crop(b"jpeg".to_vec())
                .with_quality(json!({"face_px": 120}))],
            "k",
        )
        .unwrap();
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        assert_eq!(x.label(0.5), "alip");
    }
    let on_b = b.gallery.person_detail(&id("alip")).unwrap();
    assert_eq!(on_b.samples[0].quality, Some(json!({"face_px": 120})));
    assert_eq!(on_b.samples[0].crop, None, "crops stay on their box");
    assert_eq!(b.gallery.history(&id("alip"))[0].by, "sync:a");
    // Received, never published again.
    assert_eq!((published(&a), published(&b), published(&c)), (1, 0, 0));
    assert!(
        persons(b.replicator.outgoing()).is_empty() && persons(c.replicator.outgoing()).is_empty()
    );

    b.gallery.rename(&id("alip"), &id("alif"), "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        assert_eq!(x.label(0.5), "alif");
        assert_eq!(x.gallery.person(&id("alip")), None);
    }
    // A rename is a deletion and a new person: elsewhere than on b, the crop went with
    // the old id (crops are local, and never cross the broker).
    assert_eq!(a.gallery.sample_crop(&id("alif"), 0), None);

    c.gallery.remove(&id("alif"), "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        assert_eq!(x.label(0.5), UNKNOWN);
    }
    assert!(broker.retained.is_empty());
    // Samples appended and removed travel as the whole person.
    a.gallery
        .append(&id("yoga"), &[enc(1.0), enc(1.5)], "k")
        .unwrap();
    broker.pump(&[&a, &b, &c]);
    c.gallery.remove_sample(&id("yoga"), 0, "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        assert_eq!(x.gallery.people(), [("yoga".into(), 1)]);
        assert_eq!(x.label(1.5), "yoga");
    }
}

fn message(student_id: &str, ms: u64, box_id: &str, v: f64) -> Vec<u8> {
    let rows = vec![(enc(v), Sample::plain(&enc(v), 1_700_000_000))];
    signed(
        student_id,
        &Version::new(ms, box_id),
        &rows,
        &Change::default(),
    )
}

#[test]
fn the_last_writer_wins_with_ties_broken_by_box_id() {
    let b = TestBox::new("b", ReplicationMode::Both);
    let t = clock::unix_ms() - 60_000;
    let got = |ms, box_id, v| {
        b.replicator
            .receive("p", &message("p", ms, box_id, v))
            .unwrap()
    };
    assert_eq!(got(t, "m", 1.0), Applied::Updated);
    assert_eq!(b.label(1.0), "p");
    assert_eq!(got(t - 1, "z", 2.0), Applied::Older);
    assert_eq!(got(t, "m", 1.0), Applied::Unchanged);
    // Same time: the greater box id wins, either way round.
    assert_eq!(got(t, "n", 3.0), Applied::Updated);
    assert_eq!(b.label(3.0), "p");
    assert_eq!(got(t, "m", 4.0), Applied::Older);
    assert_eq!(b.label(3.0), "p");
    // The broker held a stale copy: b answers with the newest it has, signed by b (a newer
    // version of b's: a box signs only its own versions).
    let out = persons(b.replicator.outgoing());
    assert_eq!(out.len(), 1);
    let Ok(Incoming::Person { version, rows, .. }) =
        parse_message("p", &out[0].1, clock::unix_ms())
    else {
        panic!("{out:?}");
    };
    assert_eq!((version.box_id(), rows[0].0), ("b", enc(3.0)));
    assert!(version.updated_ms() > t);
    assert!(persons(b.replicator.outgoing()).is_empty());

    // A local change is newer than what it changed, and beats an older message.
    b.gallery.append(&id("p"), &[enc(5.0)], "k").unwrap();
    assert_eq!(got(t + 1, "z", 6.0), Applied::Older);
    assert_eq!(b.gallery.people(), [("p".into(), 2)]);
    let out = persons(b.replicator.outgoing());
    let Ok(Incoming::Person { version, rows, .. }) =
        parse_message("p", &out[0].1, clock::unix_ms())
    else {
        panic!("{out:?}");
    };
    assert_eq!((version.box_id(), rows.len()), ("b", 2));
    assert!(version.updated_ms() > t + 1);
    // A newer message replaces the local change.
    assert_eq!(got(version.updated_ms() + 1, "a", 7.0), Applied::Updated);
    assert_eq!(b.gallery.people(), [("p".into(), 1)]);
    assert!(persons(b.replicator.outgoing()).is_empty());
}

#[test]
fn versions_survive_a_restart_and_nothing_is_published_again() {
    let mut a = TestBox::new("a", ReplicationMode::Both);
    a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    let first = persons(a.replicator.outgoing());
    assert_eq!(first.len(), 1);
    a.replicator.receive("p", &first[0].1).unwrap();
    a.restart("a", ReplicationMode::Both);
    assert!(persons(a.replicator.outgoing()).is_empty());
    assert_eq!(
        a.replicator.receive("p", &first[0].1).unwrap(),
        Applied::Unchanged
    );
    assert!(state_path(a.dir.path()).exists());
    // The npy file is untouched by the sync: the Python service's format only.
    let npy = std::fs::read(a.dir.path().join("embeddings/p.npy")).unwrap();
    assert_eq!(
        crate::gallery::npy::read_encodings(&npy).unwrap(),
        [enc(1.0)]
    );
}

#[test]
fn changes_made_by_the_cli_are_published_running_or_not() {
    let mut a = TestBox::new("a", ReplicationMode::Both);
    assert!(persons(a.replicator.outgoing()).is_empty());
    // The CLI beside the running service: noticed by reload_if_changed.
    let (cli, _) = Gallery::open(a.dir.path()).unwrap();
    cli.append(&id("p"), &[enc(1.0)], "cli").unwrap();
    assert!(!a.replicator.wait_local_change(Duration::from_millis(10)));
    assert!(a.gallery.reload_if_changed().unwrap());
    assert!(a.replicator.wait_local_change(Duration::from_millis(10)));
    let out = persons(a.replicator.outgoing());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, id("p"));
    // While the service is off: noticed when it starts.
    drop(cli);
    let (cli, _) = Gallery::open(a.dir.path()).unwrap();
    cli.rename(&id("p"), &id("q"), "cli").unwrap();
    a.restart("a", ReplicationMode::Both);
    let out: Vec<(String, bool)> = a
        .replicator
        .outgoing()
        .into_iter()
        .filter(|o| o.kind == Kind::Person)
        .map(|o| (o.id, o.payload))
        .map(|(i, p)| (i.to_string(), p.is_empty()))
        .collect();
    assert_eq!(out, [("q".into(), false), ("p".into(), true)]);
    // Imports are changes like any other.
    let mut archive = Vec::new();
    a.gallery.export(&mut archive).unwrap();
    let b = TestBox::new("b", ReplicationMode::Both);
    b.gallery
        .import(&archive, crate::gallery::archive::ImportMode::Merge, "k")
        .unwrap();
    assert_eq!(persons(b.replicator.outgoing()).len(), 1);
}

#[test]
fn a_box_that_was_away_converges_when_it_comes_back() {
    let (a, b) = (
        TestBox::new("a", ReplicationMode::Both),
        TestBox::new("b", ReplicationMode::Both),
    );
    let mut c = TestBox::new("c", ReplicationMode::Both);
    let mut broker = Broker::default();
    for (p, v) in [("x", 1.0), ("y", 2.0), ("z", 3.0)] {
        a.gallery.append(&id(p), &[enc(v)], "k").unwrap();
    }
    broker.pump(&[&a, &b, &c]);
    assert_eq!(c.gallery.counts(), (3, 3));

    c.online = false;
    a.gallery.append(&id("new"), &[enc(4.0)], "k").unwrap();
    b.gallery.remove(&id("x"), "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    // Meanwhile on c, offline: an enrollment and a deletion, nowhere published.
    c.gallery.append(&id("local"), &[enc(5.0)], "k").unwrap();
    c.gallery.remove(&id("y"), "k").unwrap();
    // c restarts, and reconnects.
    c.restart("c", ReplicationMode::Both);
    let done = broker.connect(&mut c);
    // x went with its tombstone as it arrived, before reconcile; `local` is published.
    assert_eq!(
        done,
        Reconciled {
            removed: 0,
            to_publish: 1
        }
    );
    assert_eq!(c.gallery.person(&id("x")), None);
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        let ids: Vec<String> = x.gallery.people().into_iter().map(|(i, _)| i).collect();
        assert_eq!(ids, ["local", "new", "z"], "{}", x.replicator.box_id());
    }
    let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
    assert_eq!(on_broker, ["local", "new", "z"]);
    // Enrolled again elsewhere after c deleted them: the newer enrollment wins on c.
    a.gallery.append(&id("y"), &[enc(2.0)], "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    assert_eq!(c.label(2.0), "y");
}

#[test]
fn a_broker_without_retained_messages_is_refilled_not_obeyed() {
    let mut a = TestBox::new("a", ReplicationMode::Both);
    let mut broker = Broker::default();
    a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    broker.pump(&[&a]);
    broker.retained.clear();
    let done = broker.connect(&mut a);
    assert_eq!(
        done,
        Reconciled {
            removed: 0,
            to_publish: 1
        }
    );
    broker.pump(&[&a]);
    assert_eq!(broker.retained.len(), 1);
    assert_eq!(a.label(1.0), "p");
}

fn tombstone(student_id: &str, ms: u64, box_id: &str) -> Vec<u8> {
    let unsigned = encode_tombstone(&id(student_id), &Version::new(ms, box_id));
    super::envelope::seal(Kind::Deleted, &unsigned, box_id, &key_of(box_id))
}

fn ids(b: &TestBox) -> Vec<String> {
    b.gallery.people().into_iter().map(|(i, _)| i).collect()
}

#[test]
fn a_broker_that_lost_some_messages_is_refilled_and_nobody_is_removed() {
    let (a, b) = (
        TestBox::new("a", ReplicationMode::Both),
        TestBox::new("b", ReplicationMode::Both),
    );
    let mut pull = TestBox::new("p", ReplicationMode::Pull);
    let mut broker = Broker::default();
    for (p, v) in [("x", 1.0), ("y", 2.0), ("z", 3.0)] {
        a.gallery.append(&id(p), &[enc(v)], "k").unwrap();
    }
    broker.pump(&[&a, &b, &pull]);
    // A power cut before the broker's save: it comes back without y and z.
    broker.retained.remove(&id("y"));
    broker.retained.remove(&id("z"));
    let mut a = a;
    let mut b = b;
    let done = broker.connect(&mut pull);
    assert_eq!(done, Reconciled::default());
    assert_eq!(ids(&pull), ["x", "y", "z"]);
    for x in [&mut a, &mut b] {
        let done = broker.connect(x);
        assert_eq!(
            done,
            Reconciled {
                removed: 0,
                to_publish: 2
            }
        );
    }
    broker.pump(&[&a, &b, &pull]);
    for x in [&a, &b, &pull] {
        assert_eq!(ids(x), ["x", "y", "z"], "{}", x.replicator.box_id());
    }
    let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
    assert_eq!(on_broker, ["x", "y", "z"]);
    assert!(broker.deleted.is_empty());
    // Everything lost, tombstones too: the same.
    b.gallery.remove(&id("x"), "k").unwrap();
    broker.pump(&[&a, &b, &pull]);
    assert!(broker.deleted.contains_key(&id("x")));
    let mut broker = Broker::default();
    for x in [&mut a, &mut b] {
        broker.connect(x);
    }
    broker.pump(&[&a, &b]);
    let on_broker: Vec<&str> = broker.retained.keys().map(|i| i.as_str()).collect();
    assert_eq!(on_broker, ["y", "z"]);
    assert_eq!(broker.deleted.keys().collect::<Vec<_>>(), [&id("x")]);
    // The pull box, away meanwhile: the tombstone, not the absence, removes x.
    broker.connect(&mut pull);
    assert_eq!(ids(&pull), ["y", "z"]);
}

#[test]
fn a_tombstone_wins_over_an_older_person_and_loses_to_a_newer_one() {
    let b = TestBox::new("b", ReplicationMode::Both);
    let t = clock::unix_ms() - 60_000;
    let person = |ms, v| {
        b.replicator
            .receive("p", &message("p", ms, "a", v))
            .unwrap()
    };
    let deleted = |ms| {
        b.replicator
            .receive_deleted("p", &tombstone("p", ms, "c"))
            .unwrap()
    };
    assert_eq!(person(t, 1.0), Applied::Updated);
    // Older than the person: ignored, and the person goes again (with the tombstone
    // cleared).
    assert_eq!(deleted(t - 1), Applied::Older);
    assert_eq!(b.label(1.0), "p");
    let out = b.replicator.outgoing();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].kind, Kind::Person);
    assert!(
        matches!(parse_message("p", &out[0].payload, clock::unix_ms()),
            Ok(Incoming::Person { version, .. }) if version.box_id() == "b")
    );
    assert_eq!(
        (out[1].kind, out[1].payload.is_empty()),
        (Kind::Deleted, true)
    );
    assert_eq!(out[1].topic("fa"), "fa/gallery-deleted/p");
    // Newer (than b's version of p, now b's own): removed, and remembered (an older copy is
    // not added again but answered).
    let t = clock::unix_ms() + 10_000;
    assert_eq!(deleted(t + 10), Applied::Removed);
    assert_eq!(b.label(1.0), UNKNOWN);
    let history = b.gallery.history(&id("p"));
    assert!(history.iter().any(|e| e.by == "sync:c"), "{history:?}");
    assert_eq!(deleted(t + 10), Applied::Unchanged);
    assert!(b.replicator.outgoing().is_empty());
    assert_eq!(person(t + 5, 2.0), Applied::Older);
    assert_eq!(b.label(2.0), UNKNOWN);
    let out = b.replicator.outgoing();
    assert_eq!(out[0].kind, Kind::Deleted);
    assert!(matches!(
        super::wire::parse_tombstone("p", &out[0].payload, clock::unix_ms()),
        Ok(Incoming::Tombstone { version, .. }) if version.box_id() == "b"
            && version.updated_ms() > t + 10
    ));
    assert!(out[1].payload.is_empty());
    // The empty person message that goes with it changes nothing more.
    assert_eq!(b.replicator.receive("p", b"").unwrap(), Applied::Unchanged);
    // Enrolled again elsewhere after the deletion: the newer person wins.
    assert_eq!(person(t + 20, 3.0), Applied::Updated);
    assert_eq!(b.label(3.0), "p");
    // An empty person message alone now: it is not signed, the person stays and goes again.
    assert!(matches!(
        b.replicator.receive("p", b""),
        Err(ReplicationError::Refused {
            reason: Refused::Unsigned,
            ..
        })
    ));
    assert_eq!(b.label(3.0), "p");
    assert_eq!(persons(b.replicator.outgoing()).len(), 1);
    // A tombstone for someone this box never had: remembered.
    let t = t - 10_000;
    assert_eq!(
        b.replicator
            .receive_deleted("q", &tombstone("q", t, "c"))
            .unwrap(),
        Applied::Absent
    );
    assert_eq!(
        b.replicator
            .receive("q", &message("q", t - 1, "a", 4.0))
            .unwrap(),
        Applied::Older
    );
    assert_eq!(b.label(4.0), UNKNOWN);
}

#[test]
fn an_empty_message_removes_nobody_and_the_person_goes_back_to_the_broker() {
    let (a, b) = (
        TestBox::new("a", ReplicationMode::Both),
        TestBox::new("b", ReplicationMode::Both),
    );
    let mut c = TestBox::new("c", ReplicationMode::Both);
    let mut broker = Broker::default();
    a.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    broker.pump(&[&a, &b, &c]);
    c.online = false;
    // `mosquitto_pub -r -n -t fa/gallery/p`, or a box of an older release.
    broker.retained.remove(&id("p"));
    for x in [&a, &b] {
        assert!(matches!(
            x.replicator.receive("p", b""),
            Err(ReplicationError::Refused {
                reason: Refused::Unsigned,
                ..
            })
        ));
        assert_eq!(x.replicator.stats().refused("unsigned"), 1);
    }
    broker.pump(&[&a, &b]);
    // Both answered with their copy: the broker holds p again, and nobody lost them.
    assert!(broker.retained.contains_key(&id("p")));
    broker.connect(&mut c);
    broker.pump(&[&a, &b, &c]);
    for x in [&a, &b, &c] {
        assert_eq!(ids(x), ["p"], "{}", x.replicator.box_id());
    }
    assert!(broker.deleted.is_empty());
}

#[test]
fn a_deletion_the_broker_lost_is_published_again() {
    // c deletes p while d is away; then the broker loses everything. Whichever of them
    // reconnects first, p ends deleted on both: c publishes its tombstone again, and
    // answers d's copy (d cannot tell the broker lost p) with it.
    for c_first in [true, false] {
        let (mut c, mut d) = (
            TestBox::new("c", ReplicationMode::Both),
            TestBox::new("d", ReplicationMode::Both),
        );
        let mut broker = Broker::default();
        c.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
        broker.pump(&[&c, &d]);
        d.online = false;
        c.gallery.remove(&id("p"), "k").unwrap();
        broker.pump(&[&c, &d]);
        let mut broker = Broker::default();
        c.online = false;
        if c_first {
            let done = broker.connect(&mut c);
            assert_eq!(
                done,
                Reconciled {
                    removed: 0,
                    to_publish: 1
                }
            );
            broker.pump(&[&c]);
            assert!(broker.deleted.contains_key(&id("p")));
            broker.connect(&mut d);
        } else {
            let done = broker.connect(&mut d);
            assert_eq!(done.to_publish, 1);
            broker.pump(&[&d]);
            assert!(broker.retained.contains_key(&id("p")));
            broker.connect(&mut c);
        }
        broker.pump(&[&c, &d]);
        for x in [&c, &d] {
            assert!(ids(x).is_empty(), "{c_first}: {}", x.replicator.box_id());
        }
        assert!(broker.retained.is_empty(), "{c_first}");
        assert!(broker.deleted.contains_key(&id("p")), "{c_first}");
    }
}

#[test]
fn hostile_tombstones_are_refused_counted_and_change_nothing() {
    let b = TestBox::new("b", ReplicationMode::Both);
    b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    b.replicator.outgoing();
    let before = snapshot(b.dir.path());
    let t = clock::unix_ms();
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("p", b"{not json".to_vec(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        ("p", br#"{"format":1,"student_id":"p"}"#.to_vec(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        ("p", tombstone("q", t, "a"), |e| {
            matches!(e, Malformed::IdMismatch { .. })
        }),
        ("../x", tombstone("p", t, "a"), |e| {
            matches!(e, Malformed::BadId(_))
        }),
        ("p", tombstone("p", t + 2 * MAX_FUTURE_MS, "a"), |e| {
            matches!(e, Malformed::FromTheFuture { .. })
        }),
        ("p", tombstone("p", t, "a/#"), |e| {
            matches!(e, Malformed::BadBoxId(_))
        }),
        (
            "p",
            br#"{"format":2,"student_id":"p","version":{"updated_ms":1,"box_id":"a"}}"#.to_vec(),
            |e| matches!(e, Malformed::UnsupportedFormat(2)),
        ),
        ("p", vec![b' '; 2 << 20], |e| {
            matches!(e, Malformed::TooLarge(_))
        }),
    ];
    let n = cases.len() as u64;
    for (topic_id, payload, expected) in cases {
        match b.replicator.receive_deleted(topic_id, &payload) {
            Err(ReplicationError::Malformed { reason, .. }) => {
                assert!(expected(&reason), "{topic_id}: {reason}")
            }
            other => panic!("{topic_id}: {other:?}"),
        }
    }
    assert!(b.replicator.receive_deleted("../x", b"").is_err());
    assert_eq!(b.replicator.stats().malformed(), n + 1);
    assert_eq!(snapshot(b.dir.path()), before);
    assert_eq!(b.label(1.0), "p");
    assert!(b.replicator.outgoing().is_empty());
    // The good one passes.
    assert_eq!(
        b.replicator
            .receive_deleted("p", &tombstone("p", t + 1000, "a"))
            .unwrap(),
        Applied::Removed
    );
}

#[test]
fn pull_applies_and_never_publishes_and_off_does_nothing() {
    let a = TestBox::new("a", ReplicationMode::Both);
    let pull = TestBox::new("p", ReplicationMode::Pull);
    let off = TestBox::new("o", ReplicationMode::Off);
    let mut broker = Broker::default();
    a.gallery.append(&id("x"), &[enc(1.0)], "k").unwrap();
    broker.pump(&[&a, &pull, &off]);
    assert_eq!(pull.label(1.0), "x");
    assert_eq!(off.label(1.0), UNKNOWN);
    pull.gallery.append(&id("x"), &[enc(1.5)], "k").unwrap();
    pull.gallery.append(&id("mine"), &[enc(2.0)], "k").unwrap();
    off.gallery.append(&id("theirs"), &[enc(3.0)], "k").unwrap();
    assert!(
        persons(pull.replicator.outgoing()).is_empty()
            && persons(off.replicator.outgoing()).is_empty()
    );
    // A deletion from the broker wins over a pull box's local change.
    let t = clock::unix_ms() + 1000;
    assert_eq!(
        pull.replicator
            .receive_deleted("x", &tombstone("x", t, "a"))
            .unwrap(),
        Applied::Removed
    );
    assert_eq!(off.replicator.receive("x", b"").unwrap(), Applied::Off);
    assert_eq!(pull.gallery.people(), [("mine".into(), 1)]);
    assert!(!state_path(off.dir.path()).exists());
}

/// Every file of the data folder with its bytes (but replication's state, which notes what
/// to publish again).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|n| n != ".lock" && n != "gallery-sync.json")
            {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Whether a refusal is the one a case expects.
type Check = fn(&Malformed) -> bool;

#[test]
fn hostile_messages_are_refused_counted_and_change_nothing() {
    let b = TestBox::new("b", ReplicationMode::Both);
    b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    persons(b.replicator.outgoing());
    let before = snapshot(b.dir.path());
    let t = clock::unix_ms();
    let good: Value = serde_json::from_slice(&message("p", t, "a", 2.0)).unwrap();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        serde_json::to_vec(&m).unwrap()
    };
    let nan = String::from_utf8(with(&|_| {}))
        .unwrap()
        .replacen("0.0", "NaN", 1);
    // JSON has no infinity: a number beyond f64 is as close as a message can get.
    let inf = String::from_utf8(with(&|_| {}))
        .unwrap()
        .replacen("0.0", "1e400", 1);
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("p", nan.into_bytes(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        ("p", inf.into_bytes(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        (
            "p",
            with(&|m| m["samples"][0]["encoding"][3] = json!(11.0)),
            |e| matches!(e, Malformed::BadValue { index: 0, .. }),
        ),
        (
            "p",
            with(&|m| {
                m["samples"][0]["encoding"].as_array_mut().unwrap().pop();
            }),
            |e| matches!(e, Malformed::EncodingLength { values: 127, .. }),
        ),
        ("p", vec![b' '; 10 << 20], |e| {
            matches!(e, Malformed::TooLarge(_))
        }),
        ("../x", message("p", t, "a", 2.0), |e| {
            matches!(e, Malformed::BadId(_))
        }),
        ("q", message("p", t, "a", 2.0), |e| {
            matches!(e, Malformed::IdMismatch { .. })
        }),
        ("p", b"{not json".to_vec(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        ("p", b"[1,2]".to_vec(), |e| {
            matches!(e, Malformed::BadJson(_))
        }),
        ("p", message("p", t + 2 * MAX_FUTURE_MS, "a", 2.0), |e| {
            matches!(e, Malformed::FromTheFuture { .. })
        }),
        ("p", with(&|m| m["format"] = json!(2)), |e| {
            matches!(e, Malformed::UnsupportedFormat(2))
        }),
        ("p", with(&|m| m["samples"] = json!([])), |e| {
            matches!(e, Malformed::SampleCount(0))
        }),
        ("p", with(&|m| m["version"]["box_id"] = json!("a/#")), |e| {
            matches!(e, Malformed::BadBoxId(_))
        }),
        (
            "p",
            with(&|m| m["samples"][0]["quality"] = json!("x".repeat(2000))),
            |e| matches!(e, Malformed::BadQuality { index: 0 }),
        ),
        (
            "p",
            with(&|m| m["samples"][0]["enrolled_at"] = json!(u64::MAX)),
            |e| matches!(e, Malformed::BadTime { .. }),
        ),
    ];
    let n = cases.len() as u64;
    for (topic_id, payload, expected) in cases {
        match b.replicator.receive(topic_id, &payload) {
            Err(ReplicationError::Malformed { reason, .. }) => {
                assert!(expected(&reason), "{topic_id}: {reason}")
            }
            other => panic!("{topic_id}: {other:?}"),
        }
    }
    // A deletion under a bad id is refused too.
    assert!(b.replicator.receive("../x", b"").is_err());
    assert_eq!(b.replicator.stats().malformed(), n + 1);
    assert_eq!(snapshot(b.dir.path()), before);
    assert_eq!(b.label(1.0), "p");
    assert!(persons(b.replicator.outgoing()).is_empty());
    // The good one passes, so the cases above each failed for their own reason.
    assert_eq!(
        b.replicator
            .receive("p", &serde_json::to_vec(&good).unwrap())
            .unwrap(),
        Applied::Updated
    );
    let json = b.replicator.stats().to_json();
    assert_eq!(json["outcomes"]["malformed"], n + 1);
    assert_eq!(b.replicator.stats().families().len(), 7);
}

#[test]
fn the_fuzz_target_survives_cut_and_flipped_messages() {
    let good = message("p", clock::unix_ms(), "a", 0.25);
    let mut input = b"p\n".to_vec();
    input.extend_from_slice(&good);
    crate::fuzzing::gallery_sync(&input);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut data = input.clone();
        let at = (state as usize) % data.len();
        match i % 3 {
            0 => data.truncate(at),
            1 => data[at] ^= 1 << ((state >> 40) % 8),
            _ => data.insert(at, b"0-e.,9"[(state >> 32) as usize % 6]),
        }
        crate::fuzzing::gallery_sync(&data);
    }
}

#[test]
fn box_ids_are_checked() {
    for bad in ["", "a/b", "a+b", "#", &"x".repeat(65)] {
        let dir = tempfile::tempdir().unwrap();
        let g = Arc::new(Gallery::open(dir.path()).unwrap().0);
        assert!(matches!(
            Replicator::new(g, bad, ReplicationMode::Both, site_policy(dir.path(), "a")),
            Err(ReplicationError::BoxId(..))
        ));
    }
    assert_eq!(topic_id("fa", &topic("fa", &id("p"))), Some("p"));
    assert_eq!(topic_id("fa", "fa/box/events"), None);
    assert_eq!(topic_filter("fa"), "fa/gallery/+");
    assert_eq!(topic_deleted_filter("fa"), "fa/gallery-deleted/+");
    assert_eq!(
        topic_deleted_id("fa", &topic_deleted("fa", &id("p"))),
        Some("p")
    );
    assert_eq!(topic_deleted_id("fa", &topic("fa", &id("p"))), None);
    assert_eq!(topic_id("fa", &topic_deleted("fa", &id("p"))), None);
}

/// The person `student_id` with the faces `values`, signed by `box_id` at `ms`.
fn person(student_id: &str, ms: u64, box_id: &str, values: &[f64], change: &Change) -> Vec<u8> {
    let rows: Rows = values
        .iter()
        .map(|v| (enc(*v), Sample::plain(&enc(*v), 1_700_000_000)))
        .collect();
    signed(student_id, &Version::new(ms, box_id), &rows, change)
}

fn refusal(result: Result<Applied, ReplicationError>) -> String {
    match result {
        Err(ReplicationError::Refused { reason, .. }) => reason.reason().to_string(),
        other => format!("not refused: {other:?}"),
    }
}

#[test]
fn an_enrolling_box_adds_people_but_cannot_change_who_is_who() {
    let list = trust_list(&[("a", Role::Admin), ("b", Role::Admin), ("e", Role::Enroll)]);
    let b = TestBox::with("b", ReplicationMode::Both, &list, Some(0.3));
    b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    persons(b.replicator.outgoing());
    let t = clock::unix_ms() + 1000;
    let none = Change::default();
    // A new person: yes.
    let got = b
        .replicator
        .receive("q", &person("q", t, "e", &[5.0], &none));
    assert_eq!(got.unwrap(), Applied::Updated);
    // Someone else's face under p (a stolen enrolling box putting its own face there): no.
    let got = b
        .replicator
        .receive("p", &person("p", t, "e", &[1.0, 2.0], &none));
    assert_eq!(refusal(got), "not_this_person");
    // p's samples replaced, or one removed: no.
    let got = b
        .replicator
        .receive("p", &person("p", t, "e", &[1.1], &none));
    assert_eq!(refusal(got), "not_allowed");
    // A deletion: no.
    let got = b.replicator.receive_deleted("p", &tombstone("p", t, "e"));
    assert_eq!(refusal(got), "not_allowed");
    // A rename, a forced duplicate: no.
    let renamed = Change {
        renamed_from: Some(id("p")),
        ..Change::default()
    };
    let got = b
        .replicator
        .receive("r", &person("r", t, "e", &[1.0], &renamed));
    assert_eq!(refusal(got), "not_allowed");
    let forced = Change {
        force: true,
        ..Change::default()
    };
    let got = b
        .replicator
        .receive("s", &person("s", t, "e", &[5.1], &forced));
    assert_eq!(refusal(got), "not_allowed");
    assert_eq!(b.gallery.people(), [("p".into(), 1), ("q".into(), 1)]);
    // A face of p's that matches them (within the tolerance): yes.
    let got = b
        .replicator
        .receive("p", &person("p", t, "e", &[1.0, 1.2], &none));
    assert_eq!(got.unwrap(), Applied::Updated);
    assert_eq!(b.gallery.people(), [("p".into(), 2), ("q".into(), 1)]);
    // An admin may replace and delete.
    let got = b
        .replicator
        .receive("p", &person("p", t + 1, "a", &[1.5], &none));
    assert_eq!(got.unwrap(), Applied::Updated);
    let got = b
        .replicator
        .receive_deleted("p", &tombstone("p", t + 2, "a"));
    assert_eq!(got.unwrap(), Applied::Removed);
    assert_eq!(b.gallery.people(), [("q".into(), 1)]);
    assert_eq!(b.replicator.stats().refused("not_allowed"), 4);
    let health = b.replicator.stats().to_json();
    assert_eq!(health["refused"]["not_this_person"], 1, "{health}");
}

#[test]
fn a_synced_duplicate_or_rejected_face_is_refused_unless_an_admin_forced_it() {
    let list = trust_list(&[("a", Role::Admin), ("b", Role::Admin), ("e", Role::Enroll)]);
    let b = TestBox::with("b", ReplicationMode::Both, &list, Some(0.3));
    b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    b.gallery.append(&id("q"), &[enc(3.0)], "k").unwrap();
    b.gallery.reject(&id("q"), &[enc(3.5)], "k").unwrap();
    persons(b.replicator.outgoing());
    let t = clock::unix_ms() + 1000;
    let none = Change::default();
    // Within 0.3 of p, under another id: a duplicate, from an admin too.
    for signer in ["a", "e"] {
        let got = b
            .replicator
            .receive("twin", &person("twin", t, signer, &[1.2], &none));
        assert_eq!(refusal(got), "duplicate", "{signer}");
    }
    // A face this box was told is not q, added to q by an admin: refused.
    let got = b
        .replicator
        .receive("q", &person("q", t, "a", &[3.0, 3.4], &none));
    assert_eq!(refusal(got), "rejected_face");
    // Twins, forced by an admin: accepted.
    let forced = Change {
        force: true,
        ..Change::default()
    };
    let got = b
        .replicator
        .receive("twin", &person("twin", t, "a", &[1.2], &forced));
    assert_eq!(got.unwrap(), Applied::Updated);
    assert_eq!(b.gallery.people().len(), 3);
    // What this box publishes of a duplicate says it was forced.
    b.gallery.append(&id("twin2"), &[enc(3.1)], "k").unwrap();
    let out = persons(b.replicator.outgoing());
    let text = String::from_utf8(out[0].1.clone()).unwrap();
    assert!(text.contains(r#""force":true"#), "{text}");
}

#[test]
fn a_rename_is_applied_as_one_change() {
    let list = trust_list(&[("a", Role::Admin), ("b", Role::Admin)]);
    let a = TestBox::with("a", ReplicationMode::Both, &list, Some(0.3));
    let b = TestBox::with("b", ReplicationMode::Both, &list, Some(0.3));
    let mut broker = Broker::default();
    a.gallery.append(&id("alip"), &[enc(1.0)], "k").unwrap();
    broker.pump(&[&a, &b]);
    a.gallery.rename(&id("alip"), &id("alif"), "k").unwrap();
    let out = a.replicator.outgoing();
    let text = String::from_utf8(out[0].payload.clone()).unwrap();
    assert!(text.contains(r#""renamed_from":"alip""#), "{text}");
    // The new id first: not a duplicate of the old one, which goes with it.
    assert_eq!(
        b.replicator.receive("alif", &out[0].payload).unwrap(),
        Applied::Updated
    );
    assert_eq!(b.gallery.people(), [("alif".into(), 1)]);
    for o in &out[1..] {
        match o.kind {
            Kind::Person => b.replicator.receive(o.id.as_str(), &o.payload),
            Kind::Deleted => b.replicator.receive_deleted(o.id.as_str(), &o.payload),
        }
        .unwrap();
    }
    assert_eq!(b.gallery.people(), [("alif".into(), 1)]);
    assert_eq!(b.replicator.stats().refused("duplicate"), 0);
}

#[test]
fn unsigned_untrusted_forged_and_tampered_messages_change_nothing() {
    let b = TestBox::new("b", ReplicationMode::Both);
    b.gallery.append(&id("p"), &[enc(1.0)], "k").unwrap();
    persons(b.replicator.outgoing());
    let before = snapshot(b.dir.path());
    let t = clock::unix_ms() + 1000;
    let rows: Rows = vec![(enc(7.0), Sample::plain(&enc(7.0), 1_700_000_000))];
    let unsigned = encode_message(&id("p"), &Version::new(t, "a"), &rows, &Change::default());
    assert_eq!(refusal(b.replicator.receive("p", &unsigned)), "unsigned");
    // A key the list does not hold, under a listed box id and under its own.
    let stranger = BoxKey::from_seed([7; 32]);
    let forged = super::envelope::seal(Kind::Person, &unsigned, "a", &stranger);
    assert_eq!(refusal(b.replicator.receive("p", &forged)), "bad_signature");
    let other = encode_message(&id("p"), &Version::new(t, "zz"), &rows, &Change::default());
    let other = super::envelope::seal(Kind::Person, &other, "zz", &stranger);
    assert_eq!(refusal(b.replicator.receive("p", &other)), "untrusted");
    // Signed by a listed box, its version naming another.
    let claimed = super::envelope::seal(Kind::Person, &unsigned, "c", &key_of("c"));
    assert_eq!(
        refusal(b.replicator.receive("p", &claimed)),
        "forged_box_id"
    );
    // Tampered after signing.
    let good = person("p", t, "a", &[7.0], &Change::default());
    let tampered = String::from_utf8(good.clone())
        .unwrap()
        .replacen("7.0", "7.5", 1);
    assert_eq!(
        refusal(b.replicator.receive("p", tampered.as_bytes())),
        "bad_signature"
    );
    // A tombstone forged from a person's message (the same bytes on the deletion topic).
    assert!(b.replicator.receive_deleted("p", &good).is_err());
    assert_eq!(snapshot(b.dir.path()), before);
    assert_eq!(b.label(1.0), "p");
    // The good one passes; replayed later, it changes nothing.
    assert_eq!(b.replicator.receive("p", &good).unwrap(), Applied::Updated);
    let newer = person("p", t + 5, "a", &[8.0], &Change::default());
    assert_eq!(b.replicator.receive("p", &newer).unwrap(), Applied::Updated);
    assert_eq!(b.replicator.receive("p", &good).unwrap(), Applied::Older);
    assert_eq!(b.label(8.0), "p");
    let stats = b.replicator.stats();
    assert_eq!(
        ["unsigned", "untrusted", "bad_signature", "forged_box_id"].map(|r| stats.refused(r)),
        [1, 1, 3, 1]
    );
}

#[test]
fn a_removed_key_is_ignored_from_then_on_and_what_it_did_stays() {
    let b = TestBox::new("b", ReplicationMode::Both);
    let t = clock::unix_ms() + 1000;
    let none = Change::default();
    let got = b
        .replicator
        .receive("p", &person("p", t, "a", &[1.0], &none));
    assert_eq!(got.unwrap(), Applied::Updated);
    let everyone_but_a: Vec<(&str, Role)> = SITE
        .iter()
        .filter(|x| **x != "a")
        .map(|x| (*x, Role::Admin))
        .collect();
    b.trust(&trust_list(&everyone_but_a));
    let got = b
        .replicator
        .receive("q", &person("q", t, "a", &[5.0], &none));
    assert_eq!(refusal(got), "untrusted");
    let got = b
        .replicator
        .receive_deleted("p", &tombstone("p", t + 1, "a"));
    assert_eq!(refusal(got), "untrusted");
    assert_eq!(b.gallery.people(), [("p".into(), 1)]);
    // The audit log names who made p.
    assert_eq!(b.gallery.history(&id("p"))[0].by, "sync:a");
}

#[test]
fn an_untrusted_box_keeps_its_gallery_and_waits_until_it_is_trusted() {
    let list = trust_list(&[("a", Role::Admin)]);
    let u = TestBox::with("u", ReplicationMode::Both, &list, None);
    u.gallery.append(&id("mine"), &[enc(2.0)], "k").unwrap();
    assert!(u.replicator.outgoing().is_empty());
    let t = clock::unix_ms() + 1000;
    let got = u
        .replicator
        .receive("p", &person("p", t, "a", &[1.0], &Change::default()));
    assert_eq!(got.unwrap(), Applied::Waiting);
    assert_eq!(u.gallery.people(), [("mine".into(), 1)]);
    let health = u.replicator.stats().to_json();
    assert_eq!(health["state"], "not_trusted", "{health}");
    assert_eq!(health["waiting"], 1, "{health}");
    assert!(health["trust"]["key"]
        .as_str()
        .unwrap()
        .starts_with("ed25519:"));
    // Trusted: the message waiting is applied, and what it has is published, signed.
    u.trust(&trust_list(&[("a", Role::Admin), ("u", Role::Enroll)]));
    assert_eq!(u.gallery.people(), [("mine".into(), 1), ("p".into(), 1)]);
    let out = persons(u.replicator.outgoing());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, id("mine"));
    let health = u.replicator.stats().to_json();
    assert_eq!(
        (health["state"].as_str(), health["waiting"].as_u64()),
        (Some("ok"), Some(0))
    );
    assert_eq!(health["trust"]["role"], "enroll");
}

#[test]
fn over_its_bounds_a_publisher_waits_and_beyond_the_cap_is_refused() {
    let b = TestBox::new("b", ReplicationMode::Both);
    let policy =
        Policy::new(&b.dir.path().join("gallery-trusted-keys"), 0.6, None).with_bounds(2, 1000, 2);
    let b = TestBox {
        replicator: Replicator::new(b.gallery.clone(), "b", ReplicationMode::Both, policy).unwrap(),
        ..b
    };
    let t = clock::unix_ms() + 1000;
    let none = Change::default();
    let mut got = Vec::new();
    for (i, name) in ["p1", "p2", "p3", "p4", "p5"].iter().enumerate() {
        let message = person(name, t, "a", &[i as f64], &none);
        got.push(match b.replicator.receive(name, &message) {
            Ok(applied) => format!("{applied:?}"),
            Err(e) => refusal(Err(e)),
        });
    }
    assert_eq!(
        got,
        ["Updated", "Updated", "Waiting", "Waiting", "over_cap"]
    );
    // Another publisher is not held up by a's bounds.
    let got = b
        .replicator
        .receive("q", &person("q", t, "c", &[9.0], &none));
    assert_eq!(got.unwrap(), Applied::Updated);
    assert_eq!(b.replicator.stats().to_json()["waiting"], 2);
    // A newer message of a person waiting replaces theirs (as the broker retains the newest).
    let got = b
        .replicator
        .receive("p3", &person("p3", t + 1, "a", &[3.5], &none));
    assert_eq!(got.unwrap(), Applied::Waiting);
    assert_eq!(b.replicator.stats().to_json()["waiting"], 2);
}

#[test]
fn a_person_deleted_through_replication_takes_the_unknown_faces_like_theirs() {
    use crate::engine::FaceBox;
    use crate::image_io::RgbImage;
    use crate::unknowns::{UnknownSettings, Unknowns};
    let b = TestBox::new("b", ReplicationMode::Both);
    let unknowns =
        Arc::new(Unknowns::open(b.dir.path(), UnknownSettings::new(10, false, 0.5)).unwrap());
    let b = TestBox {
        replicator: Replicator::new(
            b.gallery.clone(),
            "b",
            ReplicationMode::Both,
            site_policy(b.dir.path(), "b"),
        )
        .unwrap()
        .with_unknowns(unknowns.clone()),
        ..b
    };
    let t = clock::unix_ms() + 1000;
    let got = b
        .replicator
        .receive("p", &person("p", t, "a", &[1.0], &Change::default()));
    assert_eq!(got.unwrap(), Applied::Updated);
    let image = RgbImage::from_raw(60, 60, vec![128; 60 * 60 * 3]).unwrap();
    let bbox = FaceBox {
        top: 10,
        right: 50,
        bottom: 50,
        left: 10,
    };
    // One face like p's (seen by the camera before p was enrolled), one of someone else.
    unknowns.record(&image, bbox, &enc(1.1), 40, 500.0).unwrap();
    unknowns.record(&image, bbox, &enc(5.0), 40, 500.0).unwrap();
    let got = b
        .replicator
        .receive_deleted("p", &tombstone("p", t + 1, "a"));
    assert_eq!(got.unwrap(), Applied::Removed);
    assert_eq!(unknowns.len(), 1);
}
