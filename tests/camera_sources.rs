//! The cameras people have, end to end: the real `serve` binary reads frames from real programs
//! and servers through `CAMERA_DEVICE`, and the person in them fires exactly one event.
//!
//! - `exec:` — FFmpeg writing MJPEG of a real photo to its standard output;
//! - `rtsp://` — an IP camera: GStreamer's RTSP server (tests/fixtures/rtsp-server, through
//!   python3-gi) serving H.264 that FFmpeg's libx264 made from a real photo, at 640x480 and
//!   1280x720 (scaled down to `CAMERA_WIDTH` by the box); stopped and started again 10 times
//!   while the box runs under a stand-in for systemd: it reconnects each time, its threads and
//!   memory (/proc/PID/status) do not grow, `/health` says `retrying` while the camera is away and
//!   `running` when it is back, and the watchdog is never missed;
//! - a stream with garbage between frames, a truncated JPEG and a frame above
//!   `CAMERA_MAX_FRAME_KB`: each skipped and counted in `/health`, and the stream goes on;
//! - `libcamera` — a stand-in `rpicam-vid` (tests/fixtures/rpicam-vid) that refuses any option
//!   rpicam-vid's documentation does not list: there is no camera module on this machine;
//! - credentials in an `rtsp://` URL (user:password and `?pwd=`) never appear in the log,
//!   `/health`, `/config`, `/metrics` or the retained MQTT health message, even when the camera
//!   refuses them or is away and FFmpeg's errors name the URL.
//!
//! Tools: FFmpeg (Debian's, with libx264), /usr/bin/python3 with GStreamer's RTSP server, and
//! mosquitto: scripts/install-test-deps installs them; without them a test is skipped, or fails under
//! `FACE_TESTS_REQUIRE_TOOLS` (CI).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::procfs::{processes, status_number};
use common::serve_process;
use common::wait_for;
use face_attendance::image_io;
use serde_json::Value;

/// Generous: a loaded CI machine loads models and starts FFmpeg slowly.
const LIMIT: Duration = Duration::from_secs(90);
const PROBE: &str = "probe/obama/obama_3.jpg";

// ---------------------------------------------------------------------------------------------
// Tools and fixtures

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ffmpeg_available() -> bool {
    let ok = Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        common::skip_unless_required("ffmpeg is not installed");
    }
    ok
}

/// FFmpeg, and GStreamer's RTSP server for /usr/bin/python3 (the fixture's interpreter).
fn rtsp_server_available() -> bool {
    if !ffmpeg_available() {
        return false;
    }
    let ok = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); \
             from gi.repository import GstRtspServer",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        common::skip_unless_required(
            "GStreamer's RTSP server for /usr/bin/python3 (python3-gi, \
             gir1.2-gst-rtsp-server-1.0) is not installed",
        );
    }
    ok
}

fn photo(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

/// `text` quoted for `sh`.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The filter that letterboxes a photo to `w`x`h` on grey, as the fixtures do.
fn letterbox_filter(w: u32, h: u32) -> String {
    format!(
        "scale={w}:{h}:force_original_aspect_ratio=decrease,\
         pad={w}:{h}:(ow-iw)/2:(oh-ih)/2:color=0x505050,setsar=1,format=yuvj420p"
    )
}

/// An H.264 clip made by the fixture (FFmpeg, libx264) from `scenes` (`PHOTO:SECONDS` or
/// `empty:SECONDS`).
fn make_clip(dir: &Path, name: &str, size: &str, fps: u32, scenes: &[String]) -> PathBuf {
    let out = dir.join(name);
    let status = Command::new(fixture("rtsp-server"))
        .args(["clip", "--size", size, "--fps", &fps.to_string(), "--out"])
        .arg(&out)
        .args(scenes)
        .status()
        .expect("tests/fixtures/rtsp-server");
    assert!(status.success(), "making {name} failed");
    out
}

/// Two minutes of an empty scene at 320x240: for tests of connections, not faces. 25 fps as IP
/// cameras send (the boxes here take 5): FFmpeg's RTSP probing waits for about 25 frames before
/// the first one comes out (1 s here; 5 s at 5 fps, longer than a short stale time).
fn empty_clip(dir: &Path) -> PathBuf {
    make_clip(dir, "empty.mp4", "320x240", 25, &["empty:120".into()])
}

/// The RTSP server fixture serving one clip, killed when dropped.
struct RtspServer {
    child: Child,
    url: String,
}

impl RtspServer {
    /// Starts `tests/fixtures/rtsp-server serve` with `extra` arguments and waits for its ready
    /// line (it may have to wait for the port: a stopped server's port is taken again at once,
    /// but allow for a slow start).
    fn start(port: u16, clip: &Path, extra: &[&str]) -> RtspServer {
        let mut child = Command::new(fixture("rtsp-server"))
            .args(["serve", "--port", &port.to_string(), "--path", "/cam"])
            .arg("--clip")
            .arg(clip)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tests/fixtures/rtsp-server");
        let url = common::rtsp::ready_url(&mut child);
        RtspServer { child, url }
    }

    /// Stops it as a camera losing power or rebooting would look: SIGTERM, the connection
    /// closed; waits for the process to end.
    fn stop(mut self) {
        let status = common::sigterm_and_wait(&mut self.child);
        assert!(status.success(), "rtsp-server: {status}");
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The box

/// A site with obama enrolled (two photos; the camera sees a third).
fn site_with_obama() -> tempfile::TempDir {
    let site = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .args(["enroll", "--id", "obama"])
        .arg(photo("known/obama/obama_1.jpg"))
        .arg(photo("known/obama/obama_2.jpg"))
        .current_dir(site.path())
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_DATA_DIR", site.path().join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "enroll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    site
}

/// [`site_with_obama`] when FFmpeg is installed (else the test is skipped, or fails in CI).
fn obama_site_with_ffmpeg() -> Option<tempfile::TempDir> {
    ffmpeg_available().then(site_with_obama)
}

/// A running `serve` whose whole log is kept (the credentials test reads all of it).
struct Box {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Box {
    /// `serve` in `site` on a free loopback port with `env` (and `command`'s own changes).
    fn start(site: &Path, env: &[(&str, &str)]) -> Box {
        Box::start_with(site, env, |_| {})
    }

    fn start_with(site: &Path, env: &[(&str, &str)], adjust: impl FnOnce(&mut Command)) -> Box {
        let bind = format!("127.0.0.1:{}", common::free_port());
        let mut all = vec![("FACE_BIND", bind.as_str())];
        all.extend_from_slice(env);
        let mut command = serve_process::serve_command(site, &all);
        adjust(&mut command);
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[serve] {line}");
                if line.contains("serving on") {
                    let _ = tx.send(());
                }
                kept.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(LIMIT).expect("serve did not start");
        Box {
            child,
            base: format!("http://{bind}"),
            log,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = common::http::agent()
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    fn health(&self) -> Value {
        let (status, body) = self.get("/health");
        assert!(status == 200 || status == 503, "/health {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
    }

    fn camera(&self) -> Value {
        self.health()["camera"].clone()
    }

    fn state(&self) -> String {
        self.camera()["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn captured(&self) -> u64 {
        self.camera()["frames_captured"].as_u64().unwrap_or(0)
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// One frame of the live view (`/stream.mjpg`), decoded: what the camera delivered, with
    /// boxes drawn, at its size.
    fn live_frame(&self) -> image_io::RgbImage {
        let addr = self.base.strip_prefix("http://").unwrap();
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(
            stream,
            "GET /stream.mjpg HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65536];
        // Skip the first part (it may be the picture shown before any frame), take the second.
        loop {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "/stream.mjpg ended");
            got.extend_from_slice(&buf[..n]);
            assert!(
                got.len() < 16 << 20,
                "no whole frame in 16 MB of /stream.mjpg"
            );
            let soi: Vec<usize> = find_all(&got, &[0xFF, 0xD8, 0xFF]);
            if soi.len() >= 3 {
                let (start, end) = (soi[1], soi[2]);
                let part = &got[start..end];
                let eoi = part
                    .windows(2)
                    .rposition(|w| w == [0xFF, 0xD9])
                    .expect("a JPEG part without its end");
                return image_io::decode(&part[..eoi + 2], u64::MAX).unwrap();
            }
        }
    }

    /// Stops the box as systemd does (SIGTERM) and checks it ended everything it started: no
    /// program it ran (FFmpeg, the shell of `exec:`, rpicam-vid) is left behind.
    fn stop(mut self) {
        let started = descendants(self.pid());
        let status = common::sigterm_and_wait(&mut self.child);
        assert!(status.success(), "serve: {status}");
        let left: Vec<String> = started
            .iter()
            .filter(|pid| alive(**pid))
            .map(|pid| format!("{pid}: {}", cmdline(*pid)))
            .collect();
        assert!(
            left.is_empty(),
            "left running after serve stopped: {left:?}"
        );
    }
}

impl Drop for Box {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// /proc

/// Every process below `pid` (children, their children, ...).
fn descendants(pid: u32) -> Vec<u32> {
    let all = processes();
    let mut found = vec![];
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for p in all.iter().filter(|p| p.parent == parent) {
            found.push(p.pid);
            parents.push(p.pid);
        }
    }
    found
}

/// Whether `pid` still runs (a zombie has ended).
fn alive(pid: u32) -> bool {
    processes().iter().any(|p| p.pid == pid && p.state != 'Z')
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Events

/// The attendance events of the box's event log (every day file), oldest first.
fn attendance(site: &Path) -> Vec<Value> {
    let dir = site.join("data/events");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return vec![];
    };
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect::<Vec<_>>()
        })
        .filter(|e| e["kind"] == "attendance")
        .collect()
}

/// Waits for the first event, then until the box has taken `more` frames after it (the person
/// has left the scene, or stayed, and anything that would repeat the event has had its
/// chance), and checks there is exactly one, for obama, from `camera`.
fn exactly_one_event(site: &Path, server: &Box, camera: &str, more: u64) -> Value {
    wait_for("obama's event", LIMIT, || !attendance(site).is_empty());
    let at = server.captured();
    wait_for("frames after the event", LIMIT, || {
        server.captured() >= at + more
    });
    let events = attendance(site);
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = events[0].clone();
    assert_eq!(event["student_id"], "obama", "{event}");
    assert_eq!(event["camera"], camera, "{event}");
    event
}

/// Settings every box here shares: a one-second cooldown, so that a repeated event (a track
/// lost and found again, a source restarted) is not hidden by it.
const QUICK: [(&str, &str); 1] = [("EVENT_COOLDOWN_SECONDS", "1")];

fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut all = QUICK.to_vec();
    all.extend_from_slice(extra);
    all
}

// ---------------------------------------------------------------------------------------------
// exec:

#[test]
fn exec_ffmpeg_writing_mjpeg_of_a_real_photo_fires_exactly_one_event() {
    let Some(site) = obama_site_with_ffmpeg() else {
        return;
    };
    // Obama for 4 s, then an empty scene for as long as the box reads (5 frames a second).
    let command = format!(
        "exec ffmpeg -hide_banner -loglevel error -nostdin -re -loop 1 -framerate 5 -t 4 -i {} \
         -re -f lavfi -i color=c=0x505050:s=640x480:r=5 \
         -filter_complex '[0:v]{}[a];[1:v]format=yuvj420p,setsar=1[b];[a][b]concat=n=2:v=1[v]' \
         -map '[v]' -c:v mjpeg -q:v 5 -f mjpeg -",
        sh_quote(photo(PROBE).to_str().unwrap()),
        letterbox_filter(640, 480)
    );
    let device = format!("exec:{command}");
    let server = Box::start(
        site.path(),
        &env(&[("CAMERA_DEVICE", &device), ("CAMERA_NAME", "front-door")]),
    );
    // 4 s of obama at 5 fps are 20 frames: 25 more after the event are past him.
    exactly_one_event(site.path(), &server, "front-door", 25);
    let camera = server.camera();
    assert_eq!(camera["state"], "running", "{camera}");
    assert!(
        camera["source"].as_str().unwrap().starts_with("exec:"),
        "{camera}"
    );
    // FFmpeg's MJPEG is clean: nothing skipped, nothing restarted.
    for counter in [
        "frames_oversize",
        "frames_truncated",
        "stream_garbage_bytes",
        "source_errors",
    ] {
        assert_eq!(camera[counter], 0, "{counter}: {camera}");
    }
    server.stop();
}

/// A JPEG segment: marker, big-endian length (itself included), payload.
fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0xFF, marker];
    s.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
    s.extend_from_slice(payload);
    s
}

#[test]
fn garbage_a_truncated_jpeg_and_an_oversize_frame_are_skipped_counted_and_the_stream_goes_on() {
    let site = site_with_obama();
    let dir = site.path();
    let image = image_io::decode(&std::fs::read(photo(PROBE)).unwrap(), u64::MAX).unwrap();
    let good = image_io::encode_jpeg(&image_io::letterbox(&image, 640, 480)).unwrap();
    let cap_kb = good.len() / 1024 + 32;
    // Above the cap: the same frame with comment segments (still a valid JPEG), twice the cap.
    let mut big = good[..2].to_vec();
    while big.len() < 2 * cap_kb * 1024 {
        big.extend(segment(0xFE, &[b'x'; 60_000]));
    }
    big.extend_from_slice(&good[2..]);
    assert!(image_io::decode(&big, u64::MAX).is_ok());
    // Cut short in its scan data: the next frame's SOI comes before its EOI.
    let sos = find_all(&good, &[0xFF, 0xDA])[0];
    let mut cut = sos + (good.len() - sos) / 2;
    while good[cut - 1] == 0xFF {
        cut += 1;
    }
    let truncated = &good[..cut];
    // Between frames: text and bytes that are no marker.
    let garbage: Vec<u8> = b"--myboundary\r\nContent-Type: text/plain\r\n\r\nnot a picture\r\n"
        .iter()
        .copied()
        .chain((0u8..=0xFE).cycle().take(1000))
        .collect();
    let mut prefix = Vec::new();
    for _ in 0..3 {
        prefix.extend_from_slice(&good);
    }
    prefix.extend_from_slice(&garbage);
    prefix.extend_from_slice(truncated);
    prefix.extend_from_slice(&good);
    prefix.extend_from_slice(&big);
    prefix.extend_from_slice(&good);
    std::fs::write(dir.join("prefix.mjpeg"), &prefix).unwrap();
    std::fs::write(dir.join("good.jpg"), &good).unwrap();
    // The bad stretch once, then good frames for as long as the box reads (the loop ends when
    // the box closes the pipe).
    let device = format!(
        "exec:cd {} && cat prefix.mjpeg && while cat good.jpg; do sleep 0.2; done",
        sh_quote(dir.to_str().unwrap())
    );
    let cap = cap_kb.to_string();
    let server = Box::start(
        dir,
        &env(&[("CAMERA_DEVICE", &device), ("CAMERA_MAX_FRAME_KB", &cap)]),
    );
    exactly_one_event(dir, &server, "camera1", 10);
    let camera = server.camera();
    assert_eq!(camera["state"], "running", "{camera}");
    assert_eq!(camera["frames_oversize"], 1, "{camera}");
    assert_eq!(camera["frames_truncated"], 1, "{camera}");
    assert_eq!(camera["stream_garbage_bytes"], garbage.len(), "{camera}");
    // The program was never restarted: the stream went on past each bad stretch.
    assert_eq!(camera["source_errors"], 0, "{camera}");
    assert_eq!(camera["frame_errors"], 0, "{camera}");
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// rtsp://

/// An IP camera at `size` showing obama for 4 s after 1 s of empty scene, read by the box at
/// 640x480 at most: exactly one event, and frames that fit in 640 wide with the clip's aspect.
fn rtsp_fires_exactly_one_event(size: &str, expect: (usize, usize)) {
    if !rtsp_server_available() {
        return;
    }
    let site = site_with_obama();
    let clip = make_clip(
        site.path(),
        "clip.mp4",
        size,
        10,
        &[
            "empty:1".into(),
            format!("{}:4", photo(PROBE).display()),
            "empty:60".into(),
        ],
    );
    let camera = RtspServer::start(common::free_port(), &clip, &[]);
    let server = Box::start(
        site.path(),
        &env(&[("CAMERA_DEVICE", &camera.url), ("CAMERA_NAME", "gate")]),
    );
    // Obama is in frames 10 to 50 (10 fps): 50 more after the event are past him.
    exactly_one_event(site.path(), &server, "gate", 50);
    let health = server.camera();
    assert_eq!(health["state"], "running", "{health}");
    assert_eq!(health["source_errors"], 0, "{health}");
    let frame = server.live_frame();
    assert_eq!((frame.width, frame.height), expect, "{size}");
    server.stop();
    camera.stop();
}

#[test]
fn rtsp_h264_640x480_from_an_ip_camera_fires_exactly_one_event() {
    rtsp_fires_exactly_one_event("640x480", (640, 480));
}

#[test]
fn rtsp_h264_1280x720_is_scaled_to_the_camera_width_and_fires_exactly_one_event() {
    rtsp_fires_exactly_one_event("1280x720", (640, 360));
}

/// A stand-in systemd: the datagrams on `NOTIFY_SOCKET`, each with when it came.
struct Notifications {
    path: PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notifications {
    fn listen(dir: &Path) -> Notifications {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        let got: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let kept = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                kept.lock().unwrap().push((Instant::now(), message));
            }
        });
        Notifications { path, got }
    }

    fn pets(&self) -> Vec<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, m)| m == "WATCHDOG=1")
            .map(|(t, _)| *t)
            .collect()
    }
}

#[test]
fn an_rtsp_camera_stopped_and_started_10_times_is_reconnected_without_growth_or_a_missed_watchdog()
{
    if !rtsp_server_available() {
        return;
    }
    let started = Instant::now();
    let site = tempfile::tempdir().unwrap();
    // Small frames, and a short stale time: the proof needs reconnections, not pixels.
    let clip = empty_clip(site.path());
    let port = common::free_port();
    let systemd = Notifications::listen(site.path());
    const WATCHDOG: Duration = Duration::from_secs(3);
    let watchdog_usec = WATCHDOG.as_micros().to_string();
    let url = format!("rtsp://127.0.0.1:{port}/cam");
    let mut camera = Some(RtspServer::start(port, &clip, &[]));
    let server = Box::start_with(
        site.path(),
        &env(&[
            ("CAMERA_DEVICE", &url),
            ("CAMERA_WIDTH", "320"),
            ("CAMERA_HEIGHT", "240"),
            ("CAMERA_CAPTURE_FPS", "5"),
            ("CAMERA_STALE_SECONDS", "3"),
            ("WATCHDOG_USEC", &watchdog_usec),
        ]),
        |c| {
            c.env("NOTIFY_SOCKET", &systemd.path)
                .env_remove("WATCHDOG_PID");
        },
    );
    let pid = server.pid();

    // Running, and frames come after `since` frames.
    let running_past = |since: u64| {
        wait_for("the camera running", LIMIT, || {
            let camera = server.camera();
            let state = camera["state"].as_str().unwrap_or_default().to_string();
            assert!(
                state == "running" || state == "starting" || state.starts_with("retrying: "),
                "{camera}"
            );
            state == "running" && camera["frames_captured"].as_u64().unwrap_or(0) > since
        });
    };
    running_past(0);
    let mut samples = vec![(status_number(pid, "Threads:"), status_number(pid, "VmRSS:"))];
    for cycle in 1..=10 {
        camera.take().unwrap().stop();
        // Away: `retrying` once the box has noticed, and it stays so while the camera is away.
        wait_for("retrying", LIMIT, || {
            let state = server.state();
            assert!(
                state == "running" || state.starts_with("retrying: "),
                "cycle {cycle}: {state}"
            );
            state.starts_with("retrying: ")
        });
        let away = Instant::now() + Duration::from_millis(if cycle == 1 { 3500 } else { 300 });
        let mut said_unhealthy = false;
        while Instant::now() < away {
            let health = server.health();
            let state = health["camera"]["state"].as_str().unwrap_or_default();
            assert!(state.starts_with("retrying: "), "cycle {cycle}: {health}");
            said_unhealthy |= health["ok"] == false;
            std::thread::sleep(Duration::from_millis(100));
        }
        if cycle == 1 {
            // Away longer than CAMERA_STALE_SECONDS: /health says so.
            assert!(said_unhealthy, "ok stayed true with the camera away 3.5 s");
        }
        let captured = server.captured();
        camera = Some(RtspServer::start(port, &clip, &[]));
        running_past(captured);
        assert_eq!(server.health()["ok"], true);
        samples.push((status_number(pid, "Threads:"), status_number(pid, "VmRSS:")));
    }
    eprintln!("threads, VmRSS kB at the start and after each reconnection: {samples:?}");
    let (threads_first, rss_first) = samples[0];
    let (threads_last, rss_last) = samples[samples.len() - 1];
    assert!(
        threads_last <= threads_first + 2,
        "threads grew from {threads_first} to {threads_last}: {samples:?}"
    );
    assert!(
        rss_last <= rss_first + 4 * 1024,
        "VmRSS grew from {rss_first} kB to {rss_last} kB: {samples:?}"
    );
    // One decoder runs (the last connection's), and none is left unreaped.
    let children: Vec<_> = processes()
        .into_iter()
        .filter(|p| p.parent == pid)
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");
    assert_ne!(children[0].state, 'Z', "{children:?}");
    let camera_stats = server.camera();
    assert!(
        camera_stats["source_errors"].as_u64().unwrap() >= 10,
        "{camera_stats}"
    );

    // The watchdog: petted all along, never a gap of a whole period.
    let end = Instant::now();
    let pets = systemd.pets();
    assert!(!pets.is_empty(), "no WATCHDOG=1");
    let gaps = pets
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain([end - *pets.last().unwrap()]);
    let longest = gaps.max().unwrap();
    assert!(
        longest < WATCHDOG,
        "{longest:?} without a watchdog pet (WATCHDOG_USEC {WATCHDOG:?})"
    );
    assert!(
        !server.log_text().contains("watchdog:"),
        "the watchdog complained"
    );
    server.stop();
    camera.take().unwrap().stop();
    eprintln!(
        "10 RTSP restarts: {:.1} s in all, longest watchdog gap {longest:?}",
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// libcamera

/// The value given to `--name` (or its alias) in one logged run of the stand-in.
fn option_value<'a>(args: &'a [&'a str], long: &str, short: Option<&str>) -> Option<&'a str> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(v) = arg.strip_prefix(&format!("--{long}=")) {
            return Some(v);
        }
        if *arg == format!("--{long}") || short.is_some_and(|s| *arg == format!("-{s}")) {
            return it.next().copied();
        }
    }
    None
}

#[test]
fn libcamera_runs_rpicam_vid_with_documented_options_only_and_fires_exactly_one_event() {
    let Some(site) = obama_site_with_ffmpeg() else {
        return;
    };
    let bin = site.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(fixture("rpicam-vid"), bin.join("rpicam-vid")).unwrap();
    let path = std::env::join_paths(std::iter::once(bin.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let args_log = site.path().join("rpicam-vid.args");
    let server = Box::start_with(
        site.path(),
        &env(&[
            ("CAMERA_DEVICE", "libcamera"),
            ("CAMERA_NAME", "pi-camera"),
            ("CAMERA_CAPTURE_FPS", "5"),
            // The second camera names a camera index the Pi does not have.
            ("CAMERA_2_DEVICE", "libcamera:1"),
            ("CAMERA_2_NAME", "missing"),
        ]),
        |c| {
            c.env("PATH", &path)
                .env("RPICAM_STANDIN_PHOTO", photo(PROBE))
                .env("RPICAM_STANDIN_CAMERAS", "1")
                .env("RPICAM_STANDIN_ARGS", &args_log);
        },
    );
    // Obama stays in view: still one event (one track) after 6 s more (past rpicam-vid's
    // default 5 s timeout, which the box must turn off).
    exactly_one_event(site.path(), &server, "pi-camera", 30);
    let health = server.health();
    let first = &health["camera"];
    assert_eq!(first["state"], "running", "{first}");
    assert_eq!(first["source_errors"], 0, "{first}");
    let missing = health["cameras"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "missing"))
        .unwrap_or_else(|| panic!("no camera 'missing': {health}"));
    let state = missing["state"].as_str().unwrap_or_default();
    assert!(
        state.starts_with("retrying: ") && state.contains("camera 1 not found"),
        "{missing}"
    );

    // What the box asked of rpicam-vid: the stand-in refused anything undocumented (the camera
    // would not run otherwise), and these are what a camera module needs.
    let runs = std::fs::read_to_string(&args_log).unwrap();
    let first_run: Vec<&str> = runs
        .lines()
        .map(|l| l.split('\0').collect::<Vec<_>>())
        .find(|a| option_value(a, "camera", None) != Some("1"))
        .unwrap_or_else(|| panic!("no run for camera 0: {runs:?}"));
    let want = [
        ("codec", None, "mjpeg"),
        ("width", None, "640"),
        ("height", None, "480"),
        ("timeout", Some("t"), "0"),
        ("output", Some("o"), "-"),
    ];
    for (long, short, value) in want {
        assert_eq!(
            option_value(&first_run, long, short),
            Some(value),
            "--{long} in {first_run:?}"
        );
    }
    let fps: f64 = option_value(&first_run, "framerate", None)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("--framerate in {first_run:?}"));
    assert_eq!(fps, 5.0);
    assert!(
        first_run.contains(&"--nopreview") || first_run.contains(&"-n"),
        "{first_run:?}"
    );
    server.stop();
}

// ---------------------------------------------------------------------------------------------
// Credentials

#[test]
fn credentials_in_an_rtsp_url_never_reach_the_log_health_config_metrics_or_mqtt() {
    if !rtsp_server_available() || !common::mosquitto::available() {
        return;
    }
    let site = tempfile::tempdir().unwrap();
    let clip = empty_clip(site.path());
    let broker = common::mosquitto::Mosquitto::start();
    // Everything the box publishes on its health topic, from the start.
    let mut watcher = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &broker.port().to_string()])
        .args(["-t", "face-attendance/cam-box/health"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let published: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = published.clone();
    let out = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });

    // The password has a character that must be %-encoded in the URL: neither form may show.
    let (user, password, pwd) = ("camuser7", "hunter2@x", "qsecret77");
    let secrets = ["camuser7", "hunter2", "qsecret77"];
    let port = common::free_port();
    let url = format!("rtsp://{user}:hunter2%40x@127.0.0.1:{port}/cam?pwd={pwd}");
    let broker_url = broker.url();
    let server = Box::start(
        site.path(),
        &env(&[
            ("CAMERA_DEVICE", &url),
            ("CAMERA_WIDTH", "320"),
            ("CAMERA_HEIGHT", "240"),
            ("CAMERA_STALE_SECONDS", "3"),
            ("MQTT_URL", &broker_url),
            ("BOX_ID", "cam-box"),
            ("MQTT_STATUS_SECONDS", "1"),
        ]),
    );
    let mut seen = Vec::new();
    let look = |server: &Box, seen: &mut Vec<String>| {
        for path in ["/health", "/config", "/metrics"] {
            let (status, body) = server.get(path);
            assert!(status == 200 || status == 503, "{path}: {status} {body}");
            seen.push(format!("{path}: {body}"));
        }
    };
    // Waits until the box failed once more and says `retrying: ...` with `why` in it, then
    // lets a health summary or two go to the broker.
    let failed_again = |why: &str| {
        let errors = server.camera()["source_errors"].as_u64().unwrap_or(0);
        wait_for(why, LIMIT, || {
            let camera = server.camera();
            let state = camera["state"].as_str().unwrap_or_default();
            camera["source_errors"].as_u64().unwrap_or(0) > errors
                && state.starts_with("retrying: ")
                && state.contains(why)
        });
        std::thread::sleep(Duration::from_millis(2500));
    };

    // 1. The camera is away: FFmpeg's "connection refused" names the URL.
    failed_again("refused");
    look(&server, &mut seen);
    // 2. The camera refuses the credentials (it knows another password): 401, the URL again.
    let camera = RtspServer::start(port, &clip, &["--user", user, "--password", "other"]);
    failed_again("401");
    look(&server, &mut seen);
    camera.stop();
    // 3. The right ones (Digest, then Basic): the box runs.
    for auth in ["digest", "basic"] {
        let camera = RtspServer::start(
            port,
            &clip,
            &["--user", user, "--password", password, "--auth", auth],
        );
        let captured = server.captured();
        wait_for("running with the credentials", LIMIT, || {
            server.state() == "running" && server.captured() > captured
        });
        std::thread::sleep(Duration::from_millis(1500));
        look(&server, &mut seen);
        camera.stop();
        wait_for("retrying", LIMIT, || {
            server.state().starts_with("retrying: ")
        });
    }

    // The redacted form is what shows.
    let health = server.health();
    let source = health["camera"]["source"].as_str().unwrap_or_default();
    assert!(source.contains("***@127.0.0.1"), "{health}");
    let (_, config) = server.get("/config");
    let config: Value = serde_json::from_str(&config).unwrap();
    let listed = config["cameras"][0]["source"].as_str().unwrap_or_default();
    assert!(listed.contains("***@127.0.0.1"), "{config}");

    let log = server.log_text();
    server.stop();
    let _ = watcher.kill();
    let _ = watcher.wait();
    let mqtt = published.lock().unwrap().join("\n");
    assert!(
        mqtt.contains("\"camera\""),
        "no health summary with the camera on the broker: {mqtt}"
    );
    assert!(
        log.contains("camera camera1: rtsp://***@127.0.0.1"),
        "the log says nothing of the camera: {log}"
    );
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
        assert!(!mqtt.contains(secret), "{secret} on the broker:\n{mqtt}");
        for answer in &seen {
            assert!(!answer.contains(secret), "{secret} in {answer}");
        }
    }
}
