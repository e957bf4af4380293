//! The real `serve` binary as a child process: its settings cleared of anything the test's
//! environment may hold, its stderr collected until it serves (or fails to), killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `face-attendance serve` in `site` (data in `site/data`) with only `env` of the settings that
/// decide who may call it (keys, binds, TLS).
pub fn serve_command(site: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .arg("serve")
        .current_dir(site)
        .env("FACE_MODELS_DIR", super::models_dir())
        .env("FACE_DATA_DIR", site.join("data"))
        .env("RUST_LOG", "info");
    for name in [
        "FACE_BIND",
        "FACE_API_KEY",
        "FACE_API_KEYS_FILE",
        "FACE_ALLOW_OPEN_LAN",
        "FACE_TLS_BIND",
        "FACE_TLS_CERT",
        "FACE_TLS_KEY",
        "FACE_PLAIN_HTTP",
    ] {
        command.env_remove(name);
    }
    command
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A started `serve`, killed when dropped.
pub struct Running {
    pub child: Child,
    /// Its stderr up to and including the line that ended the wait.
    pub early: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` and collects its stderr until it serves, cannot bind, or stops on an error.
pub fn start(site: &Path, env: &[(&str, &str)]) -> Running {
    start_command(serve_command(site, env))
}

/// Starts a `serve` command (as [`serve_command`] makes it) and collects its stderr until it
/// serves, cannot bind, or stops on an error.
pub fn start_command(mut command: Command) -> Running {
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[serve] {line}");
            let _ = tx.send(line);
        }
    });
    let mut early = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let done = line.contains("serving on")
            || line.contains("cannot serve on")
            || line.starts_with("error");
        early.push(line);
        if done {
            break;
        }
    }
    Running { child, early }
}
