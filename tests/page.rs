//! The box's page (`GET /`) and the API reference (`/docs`) in a real browser: the real server
//! with a keys file of every role and a replayed camera of real photos, and a second one without
//! keys or camera, and a third without keys with two cameras (its live view switches between
//! them), driven by tests/browser/page.test.mjs (playwright-core and Debian's headless
//! Chromium, both installed by scripts/install-test-deps). It checks the pages run under the server's
//! Content-Security-Policy without a violation, that no key ever appears in a URL (the live view
//! and the WebSocket are opened with single-use tickets) and that each role's page shows only
//! what that role may do. Its screenshots and the CSV it downloaded are kept in
//! target/test-artifacts/page/.

mod common;

use std::path::Path;

use common::browser;
use common::http as h;
use face_attendance::recognizer::{EnrollRequest, Photo};
use face_attendance::settings::Settings;

const KEY: &str = "page-test-admin-key-0123456789";
const OPERATOR_KEY: &str = "page-test-operator-key-0123456789";
const VIEWER_KEY: &str = "page-test-viewer-key-0123456789";
const KIOSK_KEY: &str = "page-test-kiosk-key-0123456789";

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
    if !browser::available() {
        return common::skip_unless_required(
            "Chromium or tests/browser/node_modules missing (scripts/install-test-deps installs them)",
        );
    }
    let data = tempfile::tempdir().unwrap();
    let camera = data.path().join("camera");
    frames(&camera);
    common::recognizer_in(data.path())
        .enroll(
            "obama",
            Photo::Bytes(
                &std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap(),
            ),
            &EnrollRequest::default(),
        )
        .unwrap();
    let settings = Settings {
        data_dir: data.path().to_path_buf(),
        ..Settings::default()
    };
    // Keys file lines: label, role, key.
    let keys = data.path().join("api-keys");
    std::fs::write(
        &keys,
        format!(
            "admin admin {KEY}\ndesk operator {OPERATOR_KEY}\nhall viewer {VIEWER_KEY}\nlobby kiosk {KIOSK_KEY}\n"
        ),
    )
    .unwrap();
    let mut serve = h::serve_settings();
    serve.api_keys_file = Some(keys);
    serve.camera.frames = Some(camera);
    serve.camera.frames_loop = true;
    serve.camera.frames_fps = 4.0;
    let server = h::start_with(&settings, serve);
    // A box without keys (loopback only) and without camera: its page asks for no key, and opens
    // the WebSocket with a ticket all the same.
    let open_data = tempfile::tempdir().unwrap();
    let open = h::start(open_data.path(), h::serve_settings());
    // Two cameras, told apart by their pictures' shapes: the entrance replays a 1280x720 photo
    // (16:9 in the live view), the exit a 150x150 one (square).
    let two_data = tempfile::tempdir().unwrap();
    let (entrance, exit) = (
        two_data.path().join("entrance"),
        two_data.path().join("exit"),
    );
    for (dir, rel) in [
        (&entrance, "probe/obama/obama_3.jpg"),
        (&exit, "known/penny/penny_1.jpg"),
    ] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(common::faces_dir().join(rel), dir.join("0.jpg")).unwrap();
    }
    let mut two_settings = h::serve_settings();
    two_settings.camera.frames = Some(entrance);
    two_settings.camera.camera_name = "entrance".into();
    two_settings.camera.camera_direction = Some("in".into());
    two_settings.camera.numbered = vec![
        (
            "CAMERA_2_DEVICE".into(),
            format!("frames:{}", exit.display()),
        ),
        ("CAMERA_2_NAME".into(), "exit".into()),
        ("CAMERA_2_DIRECTION".into(), "out".into()),
    ];
    two_settings.camera.frames_loop = true;
    two_settings.camera.frames_fps = 4.0;
    let two = h::start(two_data.path(), two_settings);
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/page");
    let _ = std::fs::remove_dir_all(&artifacts);

    let (base, open_url, two_url) = (
        format!("http://{}", server.addr()),
        format!("http://{}", open.addr()),
        format!("http://{}", two.addr()),
    );
    let faces = common::faces_dir();
    let out = browser::run(
        "page.test.mjs",
        &[
            ("BASE_URL", base.as_ref()),
            ("OPEN_URL", open_url.as_ref()),
            ("TWO_URL", two_url.as_ref()),
            ("API_KEY", KEY.as_ref()),
            ("OPERATOR_KEY", OPERATOR_KEY.as_ref()),
            ("VIEWER_KEY", VIEWER_KEY.as_ref()),
            ("KIOSK_KEY", KIOSK_KEY.as_ref()),
            ("FACES_DIR", faces.as_ref()),
            ("ARTIFACTS", artifacts.as_ref()),
        ],
    );
    let (stdout, stderr) = (&out.stdout, &out.stderr);
    server.shutdown();
    open.shutdown();
    two.shutdown();
    println!("{stdout}");
    assert!(
        out.success && stdout.contains("PAGE OK"),
        "the page test failed; screenshots in {}\n{stdout}\n{stderr}",
        artifacts.display()
    );
    for shot in [
        "01-key",
        "02-live",
        "03-people",
        "04-unknowns",
        "05-today",
        "06-status",
        "07-viewer",
        "08-operator",
        "09-kiosk",
        "10-docs",
        "11-keyless",
        "12-two-cameras",
    ] {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "{shot}");
    }
}
