//! The real `face-attendance` binary's `box key` and `box trust add|remove|list`: a box's signing
//! key on disk (mode, owner, damage) and the site's trust list as the service reads it.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

use face_attendance::replication::keys::{BoxKey, PublicKey};
use face_attendance::replication::trust::{Role, TrustList};
use serde_json::Value;

/// Runs the binary with `env` as the only settings.
fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    for name in [
        "FACE_DATA_DIR",
        "BOX_ID",
        "GALLERY_TRUSTED_KEYS",
        "RUST_LOG",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.args(args).output().expect("run face-attendance")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `box key` on `data` as `box_id`: the printed line, split.
fn box_key(data: &Path, box_id: &str) -> (String, String) {
    let out = run(
        &["box", "key", "--box-id", box_id],
        &[("FACE_DATA_DIR", data)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.strip_suffix('\n').expect("one line");
    assert!(!line.contains('\n'), "{text}");
    let (id, key) = line.split_once(' ').expect("BOX_ID KEY");
    (id.to_string(), key.to_string())
}

/// A `box trust` command on the list `file`: exit status and its one JSON answer.
fn trust(file: &Path, data: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["box", "trust"];
    all.extend_from_slice(args);
    let out = run(
        &all,
        &[("GALLERY_TRUSTED_KEYS", file), ("FACE_DATA_DIR", data)],
    );
    let text = stdout(&out);
    let value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text} {}", stderr(&out)));
    (out.status.code().unwrap_or(-1), value)
}

#[test]
fn box_key_makes_the_key_once_private_and_prints_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A box id that cannot be one refuses before anything is written.
    for bad in ["a/b", "gate 1", "#", "a+b"] {
        let out = run(
            &["box", "key"],
            &[("FACE_DATA_DIR", &data), ("BOX_ID", Path::new(bad))],
        );
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stdout(&out));
        assert!(stderr(&out).contains("BOX_ID"), "{}", stderr(&out));
        assert!(!data.exists());
    }
    let (id, key) = box_key(&data, "gate-1");
    assert_eq!(id, "gate-1");
    let public: PublicKey = key.parse().unwrap();
    let file = data.join("box-key");
    let meta = fs::metadata(&file).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let secret = fs::read_to_string(&file).unwrap();
    assert!(secret.starts_with("ed25519-secret:"), "{secret}");
    // Asked again (the environment's BOX_ID, or the host name): the same key, file untouched.
    let out = run(
        &["box", "key"],
        &[("FACE_DATA_DIR", &data), ("BOX_ID", Path::new("office"))],
    );
    assert_eq!(stdout(&out), format!("office {key}\n"));
    let out = run(&["box", "key", "--data", data.to_str().unwrap()], &[]);
    let host = stdout(&out);
    let (host_id, host_key) = host.trim().split_once(' ').unwrap();
    assert_eq!(host_key, key);
    assert!(
        !host_id.is_empty() && !host_id.contains(['/', '+', '#']),
        "{host}"
    );
    assert_eq!(fs::read_to_string(&file).unwrap(), secret);
    // The secret is nowhere in what was printed.
    let seed = secret.trim().strip_prefix("ed25519-secret:").unwrap();
    assert!(!stdout(&out).contains(seed) && !stderr(&out).contains(seed));
    // What the file signs, the printed key verifies (as the other boxes will).
    let signer = BoxKey::load(&data).unwrap().unwrap();
    let signature = signer.sign(b"a message");
    assert!(public.verify(b"a message", &signature));
    assert!(!public.verify(b"another message", &signature));
    // Another data folder, another key.
    let (_, other) = box_key(&dir.path().join("other"), "gate-2");
    assert_ne!(other, key);
}

#[test]
fn a_key_file_that_others_can_read_or_that_is_damaged_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let file = data.join("box-key");
    box_key(data, "gate-1");
    let secret = fs::read(&file).unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let out = run(
            &["box", "key", "--box-id", "gate-1"],
            &[("FACE_DATA_DIR", data)],
        );
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(stdout(&out), "");
        let err = stderr(&out);
        assert!(
            err.contains(&file.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
        assert_eq!(fs::read(&file).unwrap(), secret);
    }
    for damaged in [
        &b""[..],
        b"ed25519-secret:AAAA\n",
        b"-----BEGIN PRIVATE KEY-----\n",
    ] {
        fs::write(&file, damaged).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let out = run(
            &["box", "key", "--box-id", "gate-1"],
            &[("FACE_DATA_DIR", data)],
        );
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.contains(&file.display().to_string()) && err.contains("not a box key"),
            "{err}"
        );
        assert_eq!(
            fs::read(&file).unwrap(),
            damaged,
            "the damaged key was replaced"
        );
    }
}

#[test]
fn a_key_made_by_root_belongs_to_the_data_folders_owner() {
    if !common::is_root() {
        common::skip_unless_required("making a key for another user needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fs::create_dir(&data).unwrap();
    // nobody:nogroup, as a service user would be.
    std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
    box_key(&data, "gate-1");
    let meta = fs::metadata(data.join("box-key")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    // No temp file left beside it; the data format marker (src/data_format.rs) is theirs too.
    let mut names: Vec<_> = fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["box-key", "data-format"]);
    let marker = fs::metadata(data.join("data-format")).unwrap();
    assert_eq!((marker.uid(), marker.gid()), (65534, 65534));
    // That user can read it (the service would).
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(data.join("box-key"))
        .output();
    if let Ok(out) = out {
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stdout(&out).starts_with("ed25519-secret:"));
    }
}

#[test]
fn the_trust_list_is_managed_and_read_back_as_the_service_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let (gate, office) = (dir.path().join("gate"), dir.path().join("office"));
    let file = dir.path().join("site").join("trusted");
    fs::create_dir(file.parent().unwrap()).unwrap();
    let (_, gate_key) = box_key(&gate, "gate-1");
    let (_, office_key) = box_key(&office, "office");
    // No file yet: nobody trusted.
    let (status, list) = trust(&file, &gate, &["list"]);
    assert_eq!((status, list["total"].as_u64()), (0, Some(0)), "{list}");
    assert!(!file.exists());
    // Added as `box key` prints it, plus a role.
    let (status, added) = trust(&file, &gate, &["add", "office", &office_key, "admin"]);
    assert_eq!(status, 0, "{added}");
    assert_eq!(added["added"]["role"], "admin");
    assert_eq!(added["replaced"], Value::Null);
    let (status, _) = trust(&file, &gate, &["add", "gate-1", &gate_key, "admin"]);
    assert_eq!(status, 0);
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    // Its line replaced: the role lowered.
    let (status, added) = trust(&file, &gate, &["add", "gate-1", &gate_key, "enroll"]);
    assert_eq!(status, 0);
    assert_eq!(added["replaced"]["role"], "admin");
    assert_eq!(added["total"], 2);
    // Listed sorted by id, this box's line marked.
    let (_, list) = trust(&file, &gate, &["list"]);
    let ids: Vec<&str> = list["boxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["box_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gate-1", "office"]);
    assert_eq!(list["boxes"][0]["this_box"], true);
    assert_eq!(list["boxes"][1]["this_box"], false);
    assert_eq!(list["this_box_key"], gate_key.as_str());
    let (_, seen_from_office) = trust(&file, &office, &["list"]);
    assert_eq!(seen_from_office["boxes"][1]["this_box"], true);
    // The file is what the service reads.
    let read = TrustList::load(&file).unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read.get("gate-1").unwrap().role, Role::Enroll);
    assert_eq!(read.get("office").unwrap().key.to_string(), office_key);
    assert_eq!(
        read.get("office").unwrap().key.fingerprint(),
        list["boxes"][1]["fingerprint"].as_str().unwrap()
    );
    // Wrong input changes nothing: exit 1, the file as it was.
    let before = fs::read(&file).unwrap();
    let stranger = BoxKey::from_seed([9; 32]).public_key().to_string();
    let truncated = &office_key[..office_key.len() - 4];
    for args in [
        &["add", "gate/2", &stranger, "enroll"][..],
        &["add", "gate-2", truncated, "enroll"],
        &["add", "gate-2", &office_key[8..], "enroll"],
        &["add", "gate-2", &stranger, "root"],
        &["add", "gate-2", &stranger, "Admin"],
        // One key per box: office's key under another id.
        &["add", "gate-2", &office_key, "enroll"],
        &["remove", "gate-9"],
    ] {
        let (status, answer) = trust(&file, &gate, args);
        assert_eq!(status, 1, "{args:?}: {answer}");
        assert_eq!(answer["ok"], false);
        assert_eq!(fs::read(&file).unwrap(), before, "{args:?}");
    }
    // Removed: gone from the file.
    let (status, removed) = trust(&file, &gate, &["remove", "office"]);
    assert_eq!(
        (status, removed["total"].as_u64()),
        (0, Some(1)),
        "{removed}"
    );
    assert!(TrustList::load(&file).unwrap().get("office").is_none());
    // A file that is not a trust list: exit 2, named, never overwritten.
    fs::write(&file, "gate-1 not-a-key enroll\n").unwrap();
    for args in [
        &["list"][..],
        &["add", "gate-2", &stranger, "enroll"],
        &["remove", "gate-1"],
    ] {
        let (status, answer) = trust(&file, &gate, args);
        assert_eq!(status, 2, "{args:?}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains(&file.display().to_string()) && error.contains("line 1"),
            "{error}"
        );
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            "gate-1 not-a-key enroll\n"
        );
    }
}

#[test]
fn the_default_trust_file_is_in_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let (_, key) = box_key(data, "gate-1");
    let out = run(
        &["box", "trust", "add", "gate-1", &key, "enroll"],
        &[("FACE_DATA_DIR", data)],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let list = TrustList::load(&data.join("gallery-trusted-keys")).unwrap();
    assert_eq!(list.get("gate-1").unwrap().key.to_string(), key);
}

#[test]
fn the_box_commands_name_the_settings_they_take() {
    let env_names = |command: &[&str]| {
        let out = run(&[command, &["--help"]].concat(), &[]);
        let text = stdout(&out);
        let mut names: Vec<String> = text
            .split("[env: ")
            .skip(1)
            .map(|s| s.split(['=', ']']).next().unwrap().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(env_names(&["box", "key"]), ["BOX_ID", "FACE_DATA_DIR"]);
    for command in ["list", "add", "remove"] {
        assert_eq!(
            env_names(&["box", "trust", command]),
            ["FACE_DATA_DIR", "GALLERY_TRUSTED_KEYS"],
            "{command}"
        );
    }
}
