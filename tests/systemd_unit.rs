//! `systemd/face-attendance.service` passes `systemd-analyze verify` without a single warning
//! (alone and with the event command's drop-in, `systemd/event-command.conf`), and every
//! variable of `systemd/env.example` is one the service reads.

mod common;

use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn systemd_analyze() -> Option<std::path::PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
}

#[test]
fn unit_file_verifies() {
    if let Some(said) = verify_unit(None) {
        // Unknown keys and bad values are only warnings for verify: none may appear.
        assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
    }
}

/// The unit with the event command's drop-in (docs/src/event-command.md).
#[test]
fn unit_file_verifies_with_the_event_command_drop_in() {
    let drop_in = std::fs::read_to_string(repo("systemd/event-command.conf")).unwrap();
    for line in [
        "SupplementaryGroups=gpio audio",
        "DeviceAllow=char-gpiochip rw",
        "DeviceAllow=char-alsa rw",
    ] {
        assert!(
            drop_in.lines().any(|l| l == line),
            "{line} not in the drop-in"
        );
    }
    if let Some(said) = verify_unit(Some(&drop_in)) {
        assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
        // The drop-in is read: a wrong key in it is named.
        let said = verify_unit(Some(&format!("{drop_in}DeviceAlow=char-alsa rw\n"))).unwrap();
        assert!(said.contains("DeviceAlow"), "{said}");
    }
}

/// What `systemd-analyze verify` of the unit (with `drop_in` in its `.d` folder) says, once it
/// succeeded (`None`: no systemd-analyze here).
fn verify_unit(drop_in: Option<&str>) -> Option<String> {
    let Some(analyze) = systemd_analyze() else {
        common::skip_unless_required("systemd-analyze is not installed (Debian package systemd)");
        return None;
    };
    let unit = std::fs::read_to_string(repo("systemd/face-attendance.service")).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let installed = "ExecStart=/usr/local/bin/face-attendance serve";
    assert!(
        unit.contains(installed),
        "ExecStart changed: update scripts/install and this test"
    );
    let unit = unit.replace(
        installed,
        &format!("ExecStart={} serve", env!("CARGO_BIN_EXE_face-attendance")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("face-attendance.service");
    std::fs::write(&path, unit).unwrap();
    if let Some(drop_in) = drop_in {
        let folder = dir.path().join("face-attendance.service.d");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("event-command.conf"), drop_in).unwrap();
    }

    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    Some(stderr.into_owned())
}

#[test]
fn env_example_names_only_settings_the_service_reads() {
    let help = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let example = std::fs::read_to_string(repo("systemd/env.example")).unwrap();
    let mut names = 0;
    for line in example.lines() {
        // Settings, set or commented out: `NAME=value` or `#NAME=value`.
        let line = line.strip_prefix('#').unwrap_or(line);
        let Some((name, _)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            continue;
        }
        names += 1;
        // Read by libraries, not by the binary's flags.
        if ["OPENBLAS_NUM_THREADS", "RUST_LOG"].contains(&name) {
            continue;
        }
        // `[env: NAME=value]`, or `[env: NAME]` for a secret whose value clap hides.
        assert!(
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]")),
            "env.example sets {name}, which `serve` does not read"
        );
        assert!(
            !["FACE_DATA_DIR", "FACE_MODELS_DIR"].contains(&name),
            "{name} is fixed by the unit (the sandbox allows writes only to the state dir)"
        );
    }
    assert!(names >= 5, "parsed only {names} settings from env.example");
}

/// The unit's device rights are exactly what the cameras need (a USB webcam: V4L2; the Camera
/// Module through libcamera: V4L2, the media controller and the DMA heaps) and its groups
/// exactly `video` and `render`; each of those lines is explained by the comment above it.
#[test]
fn devices_and_groups_are_the_cameras_and_nothing_more() {
    let unit = std::fs::read_to_string(repo("systemd/face-attendance.service")).unwrap();
    let lines: Vec<&str> = unit.lines().collect();
    let values = |key: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().to_string())
            .collect()
    };
    assert_eq!(values("DevicePolicy"), ["closed"]);
    assert_eq!(
        values("DeviceAllow"),
        ["char-video4linux rw", "char-media rw", "char-dma_heap rw"]
    );
    assert_eq!(values("SupplementaryGroups"), ["video render"]);
    // No other way to a device or a privilege.
    for key in [
        "PrivateDevices",
        "AmbientCapabilities",
        "CapabilityBoundingSet",
        "BindPaths",
    ] {
        assert!(values(key).is_empty(), "{key} set in the unit");
    }
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("DeviceAllow=") || line.starts_with("SupplementaryGroups=") {
            assert!(
                i > 0 && lines[i - 1].starts_with('#'),
                "no comment explains {line:?}"
            );
        }
    }
    // The comments name what each class is for.
    for words in ["/dev/video*", "/dev/media*", "/dev/dma_heap/*", "render"] {
        assert!(
            unit.contains(words),
            "the unit's comments do not mention {words}"
        );
    }
}
