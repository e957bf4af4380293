//! `face-attendance-bench camera-sources` runs every kind of source through the real camera loop
//! and prints a figure for each (no figure is judged here: it is a benchmark), and an RTSP
//! camera of one's own given with credentials is measured without the credentials showing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rtsp-server")
}

/// FFmpeg and GStreamer's RTSP server for Python (`/usr/bin/python3`: Debian's, with `gi`).
fn have_tools() -> bool {
    let ffmpeg = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    let rtsp = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); \
             from gi.repository import GstRtspServer",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(ffmpeg && rtsp) {
        common::skip_unless_required("ffmpeg or GStreamer's RTSP server for python3 is missing");
    }
    ffmpeg && rtsp
}

/// The fixture serving `clip` with a user and password, stopped on drop; its URL without them.
struct Camera {
    child: std::process::Child,
    url: String,
}

impl Drop for Camera {
    fn drop(&mut self) {
        common::sigterm_and_wait(&mut self.child);
    }
}

fn camera_with_password(dir: &Path, photo: &Path, user: &str, password: &str) -> Camera {
    let clip = dir.join("own.mp4");
    let made = Command::new(fixture())
        .args(["clip", "--out"])
        .arg(&clip)
        .args(["--size", "640x480", "--fps", "15"])
        .arg(format!("{}:40", photo.display()))
        .status()
        .unwrap();
    assert!(made.success());
    let mut child = Command::new(fixture())
        .args(["serve", "--port", "0", "--path", "/own", "--clip"])
        .arg(&clip)
        .args(["--user", user, "--password", password])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let url = common::rtsp::ready_url(&mut child);
    Camera { child, url }
}

#[test]
fn every_source_is_measured_through_the_camera_loop_and_credentials_do_not_show() {
    if !have_tools() {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let faces = common::faces_dir();
    let photos = [
        faces.join("probe/obama/obama_3.jpg"),
        faces.join("probe/biden/biden_2.jpg"),
    ];
    let password = "s3cret-Pw";
    let own = camera_with_password(site.path(), &photos[0], "viewer", password);
    let with_credentials = own
        .url
        .replacen("rtsp://", &format!("rtsp://viewer:{password}@"), 1);
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance-bench"))
        .args(["camera-sources", "--frames", "5", "--rtsp-server"])
        .arg(fixture())
        .args(["--rtsp", &with_credentials])
        .args(&photos)
        .current_dir(site.path())
        .env("FACE_MODELS_DIR", common::models_dir())
        .env_remove("FACE_DATA_DIR")
        .output()
        .unwrap();
    let (text, log) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{text}\n{log}");
    assert!(
        !text.contains(password) && !log.contains(password),
        "{text}\n{log}"
    );
    // Each row: SOURCE captured processed faces | this-ms %core | decoder-ms %core; the rows
    // by their source.
    let rows: Vec<(String, Vec<String>)> = text
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().filter(|f| *f != "|").collect();
            let at = fields.len().checked_sub(7)?;
            fields[at].parse::<f64>().ok()?;
            let figures = fields[at..].iter().map(|f| f.to_string()).collect();
            Some((fields[..at].join(" "), figures))
        })
        .collect();
    let number = |f: &str| f.parse::<f64>().unwrap_or_else(|_| panic!("{f}: {text}"));
    assert_eq!(rows.len(), 10, "{text}");
    // The user information is shown as *** (and the rest of the URL as it is).
    let redacted = own.url.replacen("rtsp://", "rtsp://***@", 1);
    for (label, decoder) in [
        ("frames: (replay)", false),
        ("exec: ffmpeg MJPEG", true),
        ("rtsp:// H.264 640x480 1M", true),
        ("rtsp:// H.264 1280x720 2M", true),
        (redacted.as_str(), true),
        ("frames: x2 [camera1]", false),
        ("frames: x2 [camera2]", false),
        ("frames: 1 photo, unpaced", false),
        ("frames: 1 photo, unpaced x2 [camera1]", false),
        ("frames: 1 photo, unpaced x2 [camera2]", false),
    ] {
        let fields = rows
            .iter()
            .find(|(source, _)| source == label)
            .map(|(_, f)| f)
            .unwrap_or_else(|| panic!("no row {label}: {text}"));
        // Frames were captured and processed, and each held the photo's one face.
        assert!(
            number(&fields[0]) > 0.0 && number(&fields[1]) > 0.0,
            "{text}"
        );
        assert_eq!(number(&fields[2]), 1.0, "{label}: {text}");
        if !label.contains("[camera2]") {
            assert!(number(&fields[3]) > 0.0, "{label}: {text}");
            // A decoder's CPU is read from its process group (it may round to 0 over 5 frames).
            assert_eq!(fields[5] != "-", decoder, "{label}: {text}");
            if decoder {
                number(&fields[5]);
            }
        }
    }
}
