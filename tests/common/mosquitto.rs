//! A real Mosquitto broker for the MQTT tests: its own config in a temporary folder, a listener
//! on 127.0.0.1 and a free port, killed when dropped. Variants: persistence (retained messages
//! survive `stop` + `start_again`), a user and password, TLS (a CA and a server certificate made
//! with the openssl CLI). [`Proxy`] sits between a client and the broker and can cut the
//! connections without a DISCONNECT (what a box that loses power looks like to the broker).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `true` when the mosquitto broker and clients are installed; else the test is skipped (or
/// fails under FACE_TESTS_REQUIRE_TOOLS).
pub fn available() -> bool {
    let found = ["mosquitto", "mosquitto_pub", "mosquitto_passwd", "openssl"]
        .iter()
        .all(|tool| which(tool).is_some());
    if !found {
        super::skip_unless_required("mosquitto, mosquitto-clients or openssl is not installed");
    }
    found
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Retained messages saved at shutdown (SIGTERM) and loaded at start.
    pub persistence: bool,
    /// Only this user, with this password.
    pub user: Option<(String, String)>,
    /// TLS with a CA of its own ([`Mosquitto::ca_file`]).
    pub tls: bool,
}

pub struct Mosquitto {
    dir: tempfile::TempDir,
    port: u16,
    options: Options,
    child: Option<Child>,
}

impl Mosquitto {
    /// A plain broker: anonymous, no persistence.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let mut config = format!(
            "listener {port} 127.0.0.1\nlog_dest file {}\nlog_type error\nlog_type warning\n\
             log_type notice\n",
            dir.path().join("mosquitto.log").display()
        );
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            // As root mosquitto would switch to its own user, who cannot read this folder.
            config.push_str("user root\n");
        }
        if options.persistence {
            config.push_str(&format!(
                "persistence true\npersistence_location {}/\n",
                dir.path().display()
            ));
        } else {
            config.push_str("persistence false\n");
        }
        match &options.user {
            Some((user, password)) => {
                let file = dir.path().join("passwords");
                let made = Command::new(which("mosquitto_passwd").unwrap())
                    .arg("-c")
                    .arg("-b")
                    .arg(&file)
                    .args([user, password])
                    .status()
                    .unwrap();
                assert!(made.success(), "mosquitto_passwd failed");
                config.push_str(&format!(
                    "allow_anonymous false\npassword_file {}\n",
                    file.display()
                ));
            }
            None => config.push_str("allow_anonymous true\n"),
        }
        if options.tls {
            make_certificates(dir.path());
            let p = |name: &str| dir.path().join(name).display().to_string();
            config.push_str(&format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                p("ca.pem"),
                p("server.pem"),
                p("server.key")
            ));
        }
        std::fs::write(dir.path().join("mosquitto.conf"), config).unwrap();
        let mut broker = Mosquitto {
            dir,
            port,
            options,
            child: None,
        };
        broker.start_again();
        broker
    }

    /// (Re)starts the broker on the same port and config; returns once the port accepts.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut child = Command::new(which("mosquitto").unwrap())
                .arg("-c")
                .arg(self.dir.path().join("mosquitto.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            loop {
                if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return;
                }
                if child.try_wait().unwrap().is_some() {
                    break; // the port may still be held by the last run: try again
                }
                assert!(
                    Instant::now() < deadline,
                    "mosquitto did not start: {}",
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the broker with SIGTERM (it saves its retained messages with persistence) and
    /// waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill with a pid of a child this struct started and has not reaped yet.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mqtt://127.0.0.1:<port>` (`mqtts://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA of the TLS variant.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    /// Publishes `file` on `topic` with mosquitto_pub (QoS 1), retained or not.
    pub fn publish_file(&self, topic: &str, file: &Path, retain: bool) {
        let mut cmd = Command::new(which("mosquitto_pub").unwrap());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q", "1"])
            .args(["-t", topic, "-f"])
            .arg(file);
        if retain {
            cmd.arg("-r");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "mosquitto_pub failed");
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(which("openssl").unwrap())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (ca.pem) and a server certificate for 127.0.0.1 and localhost (server.pem, server.key).
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=face-attendance test CA",
    ];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new", "-subj", "/CN=localhost"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A TCP forwarder on 127.0.0.1 to a port; [`Proxy::cut`] closes every connection through it
/// at once, without anything said, and later connections go through again.
pub struct Proxy {
    port: u16,
    open: Arc<Mutex<Vec<TcpStream>>>,
    done: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (accepted, stop) = (open.clone(), done.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut list = accepted.lock().unwrap();
                for s in [&client, &upstream] {
                    list.push(s.try_clone().unwrap());
                }
                drop(list);
                pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                pipe(upstream, client);
            }
        });
        Proxy { port, open, done }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy (both ends), as a pulled cable would look
    /// to the broker once noticed: no DISCONNECT.
    pub fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees `done`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        self.cut();
    }
}
