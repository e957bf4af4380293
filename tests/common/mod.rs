//! Shared helpers for the end-to-end tests: where the real photos and models are.
#![allow(dead_code)]

pub mod browser;
pub mod certificate;
pub mod faketime;
pub mod http;
pub mod mosquitto;
pub mod previous_release;
pub mod procfs;
pub mod rtsp;
pub mod serve_process;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use face_attendance::engine::{Engine, EngineConfig};
use face_attendance::gallery::Gallery;
use face_attendance::recognizer::Recognizer;

/// `../shared/faces` beside the repository (CI puts it there), or `FACES_DIR`.
pub fn faces_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FACES_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/faces")
}

/// Polls `done` every 50 ms until it holds; fails the test after `limit`. For states the server
/// reaches just after answering (a place freed once the response is written, a queue drained).
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test whose outside tool is missing: skipped when run by hand, failed under scripts/test
/// (which installed every tool first and sets FACE_TESTS_REQUIRE_TOOLS), so CI cannot pass a
/// test that did not run.
pub fn skip_unless_required(why: &str) {
    if std::env::var_os("FACE_TESTS_REQUIRE_TOOLS").is_some() {
        panic!("{why} (FACE_TESTS_REQUIRE_TOOLS is set: scripts/install-deps should have installed it)");
    }
    eprintln!("SKIPPED: {why}");
}

/// The previous release's binary (see [`previous_release`]: skip with
/// `previous_release::available()` first).
pub fn previous_release_binary() -> PathBuf {
    previous_release::binary()
}

/// `models/` of the repository, or `FACE_MODELS_DIR`.
pub fn models_dir() -> PathBuf {
    match std::env::var("FACE_MODELS_DIR") {
        Ok(dir) => PathBuf::from(dir),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join("models"),
    }
}

/// A command line of `binary` on the data folder `data`, models from the repository, and none of
/// the recognition settings the test runner's environment may hold (the defaults apply).
pub fn cli_on(binary: &Path, data: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .env("FACE_MODELS_DIR", models_dir())
        .env("FACE_DATA_DIR", data);
    for setting in [
        "FACE_TOLERANCE",
        "FACE_UPSAMPLE",
        "FACE_CROPS",
        "FACE_CROPS_MAX_AGE_DAYS",
        "GALLERY_TRUSTED_KEYS",
    ] {
        command.env_remove(setting);
    }
    command
}

pub fn engine_with(upsample: u32) -> Engine {
    Engine::load(EngineConfig::new(models_dir()).with_upsample(upsample))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// One engine per test binary at upsample 1 (loading the models takes a moment).
pub fn engine() -> Arc<Engine> {
    static ENGINE: OnceLock<Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| Arc::new(engine_with(1))).clone()
}

/// A port that was free a moment ago (for the real binary, which needs a fixed URL).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every `.jpg` under `dir`, sorted.
pub fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    out.sort();
    out
}

/// Everything below `dir`, as sorted relative paths: for "nothing was written" checks.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every file under `dir` with its bytes (folders with none): for "nothing changed" checks.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let bytes = if path.is_file() {
                std::fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            (rel, bytes)
        })
        .collect()
}

/// Sends SIGTERM to `child` (as systemd does to stop a service) and waits for it to exit.
pub fn sigterm_and_wait(child: &mut Child) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Spawns `serve` (stderr piped) and waits for its "serving on" line; stderr keeps being
/// echoed to the test's output afterwards.
pub fn spawn_until_serving(mut command: std::process::Command) -> std::process::Child {
    use std::io::{BufRead, BufReader};
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn face-attendance");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {line}");
            if line.contains("serving on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("server did not start");
    child
}

/// A recognizer with the default settings over a fresh gallery in `data`, on the shared engine.
pub fn recognizer_in(data: &Path) -> Recognizer {
    let (gallery, _) = Gallery::open(data).unwrap();
    Recognizer::new(engine(), Arc::new(gallery))
}

/// `jpeg` with an EXIF APP1 segment saying "rotate `orientation` to view" inserted after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one IFD entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// `image` box-blurred (horizontally then vertically) over `size` pixels.
pub fn box_blur(
    image: &face_attendance::image_io::RgbImage,
    size: usize,
) -> face_attendance::image_io::RgbImage {
    let (w, h) = (image.width, image.height);
    let half = size / 2;
    let pass = |src: &[u8], along_x: bool| -> Vec<u8> {
        let mut out = vec![0u8; src.len()];
        for y in 0..h {
            for x in 0..w {
                let (pos, len) = if along_x { (x, w) } else { (y, h) };
                let (from, to) = (pos.saturating_sub(half), (pos + half + 1).min(len));
                for c in 0..3 {
                    let sum: u32 = (from..to)
                        .map(|i| {
                            let (sx, sy) = if along_x { (i, y) } else { (x, i) };
                            u32::from(src[(sy * w + sx) * 3 + c])
                        })
                        .sum();
                    out[(y * w + x) * 3 + c] = (sum / (to - from) as u32) as u8;
                }
            }
        }
        out
    };
    let once = pass(&image.pixels, true);
    face_attendance::image_io::RgbImage::from_raw(w, h, pass(&once, false)).unwrap()
}

/// `image` scaled so that a face of `face_px` becomes `target` pixels.
pub fn shrunk(
    image: &face_attendance::image_io::RgbImage,
    face_px: u32,
    target: u32,
) -> face_attendance::image_io::RgbImage {
    let scale = f64::from(target) / f64::from(face_px);
    let pixels = (image.width * image.height) as f64 * scale * scale;
    face_attendance::image_io::downscale(image, pixels as u64)
}

/// Whether the tests run as root (mounting a tmpfs or a read-only view needs it).
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
