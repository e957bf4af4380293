//! The box's page (`GET /`) in a real browser: the real server with an API key and a replayed
//! camera of real photos, driven by tests/browser/page.test.mjs (playwright-core and Debian's
//! headless Chromium, both installed by scripts/install-deps). Its screenshots and the CSV it
//! downloaded are kept in target/test-artifacts/page/.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::http as h;
use face_attendance::config::Settings;

const CHROMIUM: &str = "/usr/bin/chromium";
const KEY: &str = "page-test-key-0123456789";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// The camera's frames: a known face and a stranger, one after the other, looping.
fn frames(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let faces = common::faces_dir();
    for (n, rel) in [
        (0, "probe/obama/obama_3.jpg"),
        (1, "strangers/stuart_2.jpg"),
    ] {
        for i in 0..6 {
            let to = dir.join(format!("{n}{i:02}.jpg"));
            std::fs::copy(faces.join(rel), to).unwrap();
        }
    }
}

#[test]
fn the_page_drives_the_box_in_a_real_browser() {
    let runner = browser_dir().join("node_modules/playwright-core");
    if !Path::new(CHROMIUM).exists() || !runner.exists() {
        return common::skip_unless_required(
            "Chromium or tests/browser/node_modules missing (scripts/install-deps installs them)",
        );
    }
    let data = tempfile::tempdir().unwrap();
    let camera = data.path().join("camera");
    frames(&camera);
    common::recognizer_in(data.path())
        .enroll_bytes(
            "obama",
            &std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap(),
        )
        .unwrap();
    let settings = Settings {
        data_dir: data.path().to_path_buf(),
        ..Settings::default()
    };
    let mut serve = h::serve_settings();
    serve.api_key = Some(KEY.into());
    serve.camera.frames = Some(camera);
    serve.camera.frames_loop = true;
    serve.camera.frames_fps = 4.0;
    let server = h::start_with(&settings, serve);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/page");
    let _ = std::fs::remove_dir_all(&artifacts);

    let mut child = Command::new("node")
        .arg(browser_dir().join("page.test.mjs"))
        .current_dir(browser_dir())
        .env("BASE_URL", format!("http://{}", server.addr()))
        .env("API_KEY", KEY)
        .env("FACES_DIR", common::faces_dir())
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (scripts/install-deps installs it)");
    // A browser that hangs must not hang the suite.
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    server.shutdown();
    assert!(
        out.status.success() && stdout.contains("PAGE OK"),
        "the page test failed ({}); screenshots in {}\n{stdout}\n{stderr}",
        out.status,
        artifacts.display()
    );
    for shot in [
        "01-key",
        "02-live",
        "03-people",
        "04-unknowns",
        "05-today",
        "06-status",
    ] {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "{shot}");
    }
}
