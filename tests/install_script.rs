//! `scripts/install` into a staging root (`--dest-root`): what lands where, with which modes; the
//! settings file is never overwritten; models that do not verify are refused. And the `--ssh`
//! path: the bundle it sends and the command it runs on the board, with `ssh` and `sudo`
//! replaced by stand-ins that run locally (this machine has no board to reach).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn install(args: &[&str], path_prefix: Option<&Path>) -> Output {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install"));
    cmd.args(args)
        .args(["--binary", env!("CARGO_BIN_EXE_face-attendance")])
        .env_remove("FACE_MODELS_DIR");
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd.output().expect("run scripts/install")
}

fn models() -> String {
    common::models_dir().display().to_string()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "scripts/install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The staged tree is what the unit expects.
fn assert_staged(root: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("usr/local/bin/face-attendance");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_face-attendance")).unwrap()
    );
    let unit = root.join("etc/systemd/system/face-attendance.service");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo.join("systemd/face-attendance.service")).unwrap()
    );
    assert_eq!(mode(&root.join("etc/face-attendance/env")), 0o600);
    assert_eq!(mode(&root.join("etc/face-attendance/env.example")), 0o600);
    // The installed binary starts from the installed models (their SHA-256 checked on start).
    let models = root.join("usr/share/face-attendance/models");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("FACE_MODELS_DIR=/usr/share/face-attendance/models"));
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .args(["recognize", "missing.jpg"])
        .current_dir(empty.path())
        .env("FACE_MODELS_DIR", &models)
        .env("FACE_DATA_DIR", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("missing.jpg"),
        "models did not load: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn staging_install_places_files_and_keeps_the_settings() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().display().to_string();
    assert_ok(&install(
        &["--dest-root", &dest, "--models", &models()],
        None,
    ));
    assert_staged(root.path());

    // A second install (an upgrade) keeps the site's settings.
    let env = root.path().join("etc/face-attendance/env");
    std::fs::write(&env, "FACE_BIND=0.0.0.0:9000\n").unwrap();
    assert_ok(&install(
        &["--dest-root", &dest, "--models", &models()],
        None,
    ));
    assert_eq!(
        std::fs::read_to_string(&env).unwrap(),
        "FACE_BIND=0.0.0.0:9000\n"
    );
}

#[test]
fn models_that_do_not_verify_are_refused() {
    let bad = tempfile::tempdir().unwrap();
    for name in [
        "shape_predictor_5_face_landmarks.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
    ] {
        std::fs::copy(common::models_dir().join(name), bad.path().join(name)).unwrap();
    }
    let encoder = bad.path().join("dlib_face_recognition_resnet_model_v1.dat");
    let mut bytes = std::fs::read(&encoder).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&encoder, bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let out = install(
        &[
            "--dest-root",
            &root.path().display().to_string(),
            "--models",
            &bad.path().display().to_string(),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dlib_face_recognition_resnet_model_v1.dat does not have the SHA-256"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "nothing may be installed"
    );
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn ssh_install_sends_a_bundle_and_installs_it_on_the_board() {
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("ssh.log");
    // ssh [-t] HOST COMMAND...: like ssh, joins COMMAND into one line for the remote shell.
    script(
        shims.path(),
        "ssh",
        &format!(
            r#"[ "$1" = -t ] && shift
host="$1"; shift
echo "$host: $*" >> {log}
exec bash -c "$*""#,
            log = log.display()
        ),
    );
    script(shims.path(), "sudo", r#"exec "$@""#);
    let root = tempfile::tempdir().unwrap();
    let out = install(
        &[
            "--ssh",
            "pi@board",
            "--target",
            "aarch64",
            "--dest-root",
            &root.path().display().to_string(),
            "--models",
            &models(),
        ],
        Some(shims.path()),
    );
    assert_ok(&out);
    assert_staged(root.path());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.lines().all(|l| l.starts_with("pi@board: ")), "{log}");
    assert!(log.contains("sudo "), "the install runs as root: {log}");
    // The board's temporary copy is removed afterwards.
    let remote = log
        .lines()
        .find_map(|l| l.strip_prefix("pi@board: rm -rf "))
        .unwrap_or_else(|| panic!("no clean-up: {log}"));
    assert!(!Path::new(remote.trim()).exists());
}
