//! The real binary under a stand-in for systemd: the test binds its own `NOTIFY_SOCKET` and
//! sees `READY=1` once the server listens, `WATCHDOG=1` every half `WATCHDOG_USEC` while the HTTP
//! workers and the camera loop turn, and `STOPPING=1` on SIGTERM. (A wedged thread stopping the
//! pets is tested on the liveness logic itself, in src/liveness.rs and src/systemd.rs.)

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn listen(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (socket, path)
}

fn serve(site: &Path, socket: &Path, extra_env: &[(&str, &str)], args: &[&str]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .current_dir(site)
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("FACE_UPSAMPLE", "0")
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("FACE_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Server(cmd.spawn().unwrap())
}

/// The datagrams received until `until`, each as a string.
fn receive_until(socket: &UnixDatagram, until: Instant) -> Vec<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// Waits (up to a minute: models load first) for the message starting with `READY=1`.
fn wait_ready(socket: &UnixDatagram) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(
                !message.contains("WATCHDOG=1"),
                "a watchdog pet came before READY=1"
            );
            if message.starts_with("READY=1") {
                return message;
            }
        }
    }
    panic!("no READY=1 within a minute");
}

fn sigterm(server: &mut Server) -> Option<i32> {
    common::sigterm_and_wait(&mut server.0).code()
}

#[test]
fn ready_then_watchdog_pets_then_stopping() {
    let site = tempfile::tempdir().unwrap();
    let (socket, path) = listen(site.path());
    // With the camera loop running too (a replayed photo, again and again), so its threads are
    // among those checked.
    let frame = common::faces_dir().join("probe/obama/obama_3.jpg");
    let mut server = serve(
        site.path(),
        &path,
        &[],
        &[
            "--frames",
            frame.to_str().unwrap(),
            "--frames-fps",
            "5",
            "--frames-loop",
        ],
    );

    let ready = wait_ready(&socket);
    assert!(
        ready.contains("STATUS=serving on http://127.0.0.1:"),
        "{ready}"
    );

    // 2 s at a pet per 200 ms: about 10, fewer if this machine is busy.
    let got = receive_until(&socket, Instant::now() + Duration::from_secs(2));
    let pets = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pets >= 5, "{pets} WATCHDOG=1 in 2 s: {got:?}");
    assert_eq!(pets, got.len(), "only pets expected: {got:?}");

    assert_eq!(sigterm(&mut server), Some(0));
    let after = receive_until(&socket, Instant::now() + Duration::from_millis(300));
    assert!(
        after.iter().any(|m| m.starts_with("STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {after:?}"
    );
}

#[test]
fn no_watchdog_pets_when_the_watchdog_is_meant_for_another_process() {
    let site = tempfile::tempdir().unwrap();
    let (socket, path) = listen(site.path());
    // systemd sets WATCHDOG_PID to the main process; here it names another one (pid 1).
    let mut server = serve(site.path(), &path, &[("WATCHDOG_PID", "1")], &[]);
    wait_ready(&socket);
    let got = receive_until(&socket, Instant::now() + Duration::from_secs(1));
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(sigterm(&mut server), Some(0));
}
