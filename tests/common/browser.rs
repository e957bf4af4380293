//! The browser tests' runner: a script of tests/browser/ (playwright-core driving Debian's
//! headless Chromium, both installed by scripts/install-deps) run by node against a real server.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The longest a browser script may run: one that hangs must not hang the suite.
const DEADLINE: Duration = Duration::from_secs(300);

/// tests/browser/.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// Whether Chromium and tests/browser/node_modules are installed.
pub fn available() -> bool {
    Path::new(CHROMIUM).exists() && dir().join("node_modules/playwright-core").exists()
}

/// What the script said: whether it exited 0, its stdout and stderr.
pub struct Outcome {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `node tests/browser/SCRIPT` there with `env` (and `CHROMIUM`), killed past the deadline.
pub fn run(script: &str, env: &[(&str, &OsStr)]) -> Outcome {
    let mut child = Command::new("node")
        .arg(dir().join(script))
        .current_dir(dir())
        .envs(env.iter().copied())
        .env("CHROMIUM", CHROMIUM)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (scripts/install-test-deps installs it)");
    let deadline = Instant::now() + DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    Outcome {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
