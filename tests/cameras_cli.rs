//! `face-attendance cameras`, the real binary: on this machine without any camera (a clear
//! message and exit status 1), on replayed frames (reported with their size), with the
//! Camera Module's listing from a stand-in `rpicam-hello` on `PATH` (tests/fixtures), and with
//! credentials in a camera URL (never printed).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The camera settings `serve` reads, removed so that only what a test sets counts.
const CAMERA_SETTINGS: [&str; 13] = [
    "CAMERA_DEVICE",
    "CAMERA_NAME",
    "CAMERA_DIRECTION",
    "CAMERA_HTTP_KEY",
    "CAMERA_TLS_FINGERPRINT",
    "CAMERA_MAX_FRAME_KB",
    "CAMERA_FRAMES",
    "CAMERA_FPS",
    "CAMERA_LOOP",
    "CAMERA_WIDTH",
    "CAMERA_HEIGHT",
    "CAMERA_STALE_SECONDS",
    "RPICAM_STANDIN_CAMERAS",
];

/// Runs `cameras` with `path` as PATH and `env` as the only camera settings.
fn cameras(path: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command.arg("cameras").args(args).env("PATH", path);
    for name in CAMERA_SETTINGS {
        command.env_remove(name);
    }
    // And any further camera (CAMERA_<N>_...) the test's own environment may hold.
    for (name, _) in std::env::vars_os() {
        let numbered = name.to_str().and_then(|n| n.strip_prefix("CAMERA_"));
        if numbered.is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit())) {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run face-attendance cameras")
}

fn text(o: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// PATH without any libcamera program (this machine has none installed: checked).
const SYSTEM_PATH: &str = "/usr/bin:/bin";

fn no_libcamera_program_installed() {
    for dir in ["/usr/bin", "/bin", "/usr/local/bin"] {
        for name in ["rpicam-hello", "libcamera-hello"] {
            assert!(
                !Path::new(dir).join(name).exists(),
                "{dir}/{name} exists: these tests assume no libcamera here"
            );
        }
    }
}

fn video_nodes() -> Vec<PathBuf> {
    let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("video"))
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    nodes.sort();
    nodes
}

#[test]
fn no_camera_at_all_is_said_plainly_with_exit_status_1() {
    no_libcamera_program_installed();
    let out = cameras(SYSTEM_PATH, &[], &[]);
    let all = text(&out);
    let nodes = video_nodes();
    if !nodes.is_empty() {
        // A developer's machine with a webcam: each node is listed, with its verdict.
        for node in &nodes {
            assert!(all.contains(&node.display().to_string()), "{all}");
        }
        assert!(
            all.contains("    -> ") || all.contains(": cannot open"),
            "{all}"
        );
        return;
    }
    // This machine (and CI): nothing anywhere.
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("V4L2 devices: none (no /dev/video*)"), "{all}");
    assert!(
        all.contains("libcamera cameras: rpicam-hello is not installed"),
        "{all}"
    );
    assert!(
        all.contains(
            "Configured cameras: none (CAMERA_DEVICE, CAMERA_FRAMES and CAMERA_<N>_DEVICE unset)"
        ),
        "{all}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("No camera found: "), "{all}");
}

#[test]
fn replayed_frames_are_reported_with_their_size() {
    let faces = common::faces_dir();
    let photo = faces.join("probe/obama").join("obama_3.jpg");
    let photo = if photo.is_file() {
        photo
    } else {
        common::photos(&faces.join("probe/obama"))[0].clone()
    };
    let bytes = std::fs::read(&photo).unwrap();
    let image = face_attendance::image_io::decode(&bytes, 1 << 26).unwrap();
    let size = format!("{}x{}", image.width, image.height);

    // CAMERA_FRAMES, as serve reads it.
    let out = cameras(
        SYSTEM_PATH,
        &[("CAMERA_FRAMES", photo.to_str().unwrap())],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let line = format!(
        "  camera1, frames:{}: first frame {size} after ",
        photo.display()
    );
    assert!(all.contains(&line), "{all}");
    assert!(!all.contains("No camera found"), "{all}");

    // CAMERA_DEVICE=frames:FOLDER: the first file in name order is the first frame; a folder
    // with no frame is a camera that gives none (exit status 1).
    let dir = tempfile::tempdir().unwrap();
    let small = faces.join("known/penny");
    let first = common::photos(&small)[0].clone();
    std::fs::copy(&first, dir.path().join("a.jpg")).unwrap();
    std::fs::copy(&photo, dir.path().join("b.jpg")).unwrap();
    let first =
        face_attendance::image_io::decode(&std::fs::read(&first).unwrap(), 1 << 26).unwrap();
    let spec = format!("frames:{}", dir.path().display());
    let out = cameras(SYSTEM_PATH, &[("CAMERA_DEVICE", &spec)], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!(
            "  camera1, {spec}: first frame {}x{} after ",
            first.width, first.height
        )),
        "{all}"
    );
    let empty = tempfile::tempdir().unwrap();
    let spec = format!("frames:{}", empty.path().display());
    let out = cameras(SYSTEM_PATH, &[("CAMERA_DEVICE", &spec)], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("  camera1, {spec}: no frame: ")),
        "{all}"
    );
    assert!(all.contains("no frames"), "{all}");
}

#[test]
fn every_configured_camera_is_opened_with_its_name_and_direction() {
    let faces = common::faces_dir();
    let entrance = common::photos(&faces.join("probe/obama"))[0].clone();
    let exit = common::photos(&faces.join("known/penny"))[0].clone();
    let size = |p: &Path| {
        let image = face_attendance::image_io::decode(&std::fs::read(p).unwrap(), 1 << 26).unwrap();
        format!("{}x{}", image.width, image.height)
    };
    let (entrance_spec, exit_spec) = (
        format!("frames:{}", entrance.display()),
        format!("frames:{}", exit.display()),
    );
    let out = cameras(
        SYSTEM_PATH,
        &[
            ("CAMERA_DEVICE", &entrance_spec),
            ("CAMERA_NAME", "entrance"),
            ("CAMERA_DIRECTION", "in"),
            ("CAMERA_2_DEVICE", &exit_spec),
            ("CAMERA_2_NAME", "exit"),
            ("CAMERA_2_DIRECTION", "out"),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let first = format!(
        "  entrance (in), {entrance_spec}: first frame {} after ",
        size(&entrance)
    );
    let second = format!(
        "  exit (out), {exit_spec}: first frame {} after ",
        size(&exit)
    );
    let (a, b) = (all.find(&first), all.find(&second));
    assert!(a.is_some() && b.is_some() && a < b, "{all}");

    // One camera that gives nothing fails the check (exit 1), the other is still reported.
    let out = cameras(
        SYSTEM_PATH,
        &[
            ("CAMERA_DEVICE", &entrance_spec),
            ("CAMERA_2_DEVICE", "frames:/nonexistent/frames"),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains(&format!("  camera1, {entrance_spec}: first frame ")),
        "{all}"
    );
    assert!(
        all.contains("  camera2, frames:/nonexistent/frames: no frame: "),
        "{all}"
    );

    // A misspelt numbered setting is a settings error, not a camera silently off.
    let out = cameras(SYSTEM_PATH, &[("CAMERA_9_DEVICE", &exit_spec)], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("CAMERA_9_DEVICE"), "{all}");
}

#[test]
fn camera_credentials_are_never_printed_and_bad_settings_refused() {
    // An IP camera on a port where nothing answers, with a password in the user part and
    // another in the query (as many cameras take them).
    let url = "rtsp://admin:s3cret-pass@127.0.0.1:9/live?user=admin&pwd=hunter22";
    let out = cameras(
        SYSTEM_PATH,
        &[("CAMERA_DEVICE", url), ("CAMERA_STALE_SECONDS", "3")],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("  camera1, rtsp://"), "{all}");
    assert!(all.contains("***"), "{all}");
    for secret in ["s3cret-pass", "hunter22"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
    // The same URL as a flag.
    let out = cameras(
        SYSTEM_PATH,
        &[("CAMERA_STALE_SECONDS", "3")],
        &["--camera", url],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        !all.contains("s3cret-pass") && !all.contains("hunter22"),
        "{all}"
    );

    // A form the setting does not take: refused as a settings error (2), with what it takes.
    let out = cameras(SYSTEM_PATH, &[("CAMERA_DEVICE", "ftp://cam/x")], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("ftp://cam/x: not a camera this box knows"),
        "{all}"
    );
    assert!(all.contains("libcamera"), "{all}");

    // A refused value is not repeated as given: its password would reach the journal.
    let out = cameras(
        SYSTEM_PATH,
        &[("CAMERA_DEVICE", "rtsp://u:s3cret-pass@cam/x y?pwd=hunter22")],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("a URL with spaces in it"), "{all}");
    for secret in ["s3cret-pass", "hunter22"] {
        assert!(!all.contains(secret), "{secret} printed: {all}");
    }
}

/// A folder holding the stand-in listing program under `name`, first on PATH.
fn standin_path(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rpicam-hello");
    std::os::unix::fs::symlink(&fixture, dir.path().join(name)).unwrap();
    let path = format!("{}:{SYSTEM_PATH}", dir.path().display());
    (dir, path)
}

#[test]
fn libcamera_cameras_are_listed_from_rpicam_hello() {
    no_libcamera_program_installed();
    let (_dir, path) = standin_path("rpicam-hello");
    let out = cameras(&path, &[], &[]);
    let all = text(&out);
    // Cameras found, none configured: success.
    assert_eq!(out.status.code(), Some(0), "{all}");
    for expected in [
        "libcamera cameras (rpicam-hello):\n",
        "  libcamera:0  imx219 [3280x2464]  /base/soc/i2c0mux/i2c@1/imx219@10\n",
        "    sensor modes: 640x480 1640x1232 1920x1080 3280x2464\n",
        "    -> CAMERA_DEVICE=libcamera\n",
        "  libcamera:1  imx477 [4056x3040]  /base/soc/i2c0mux/i2c@1/imx477@1a\n",
        "    sensor modes: 1332x990 2028x1080 2028x1520 4056x3040\n",
        "    -> CAMERA_DEVICE=libcamera:1\n",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    // libcamera's log line on standard error is not a camera, nor shown.
    assert!(!all.contains("camera_manager.cpp"), "{all}");

    // Installed, no camera connected.
    let out = cameras(&path, &[("RPICAM_STANDIN_CAMERAS", "none")], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("libcamera cameras (rpicam-hello): none\n"),
        "{all}"
    );
    assert!(all.contains("No camera found"), "{all}");

    // Bullseye's older name, when rpicam-hello is not there.
    let (_old, path) = standin_path("libcamera-hello");
    let out = cameras(&path, &[], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(
        all.contains("libcamera cameras (libcamera-hello):\n"),
        "{all}"
    );
    assert!(all.contains("    -> CAMERA_DEVICE=libcamera:1\n"), "{all}");
}

#[test]
fn a_failing_listing_program_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("rpicam-hello");
    // How rpicam-hello ends when libcamera could not register the camera (e.g. no access to
    // the DMA heaps: a missing group).
    std::fs::write(
        &program,
        "#!/bin/sh\necho 'ERROR: *** no cameras available ***' >&2\nexit 255\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{SYSTEM_PATH}", dir.path().display());
    let out = cameras(&path, &[], &[]);
    let all = text(&out);
    assert!(
        all.contains(
            "libcamera cameras: rpicam-hello --list-cameras failed: exit status: 255: \
             ERROR: *** no cameras available ***"
        ),
        "{all}"
    );
    if video_nodes().is_empty() {
        assert_eq!(out.status.code(), Some(1), "{all}");
    }
}
