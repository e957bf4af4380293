//! systemd's service notifications (sd_notify(3)), without libsystemd: one datagram per message
//! to the socket named by `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket). With
//! `Type=notify` the service says `READY=1` once it can answer and `STOPPING=1` when it begins
//! to stop; with `WatchdogSec=` it sends `WATCHDOG=1` every half period while it is alive, and
//! systemd restarts it when those stop. Outside systemd (no `NOTIFY_SOCKET`) all this is off.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::liveness::Stall;

/// Why systemd cannot be notified.
#[derive(Debug, Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is not a socket address.
    #[error("NOTIFY_SOCKET={0:?} is neither an absolute path nor an @abstract name")]
    BadAddress(String),
    /// The socket could not be made or written.
    #[error("NOTIFY_SOCKET: {0}")]
    Io(#[from] io::Error),
}

/// Sends notifications to systemd.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier systemd asked for, or `None` when not started by systemd with `Type=notify`.
    pub fn from_env() -> Result<Option<Notifier>, NotifyError> {
        match std::env::var_os("NOTIFY_SOCKET") {
            None => Ok(None),
            Some(name) => Notifier::new(&name.to_string_lossy()).map(Some),
        }
    }

    /// A notifier for the socket `name` (a path, or `@name` in the abstract namespace).
    pub fn new(name: &str) -> Result<Notifier, NotifyError> {
        let addr = if let Some(abstract_name) = name.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(abstract_name.as_bytes())?
        } else if name.starts_with('/') {
            SocketAddr::from_pathname(name)?
        } else {
            return Err(NotifyError::BadAddress(name.into()));
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends `state`: newline-separated `KEY=value` assignments, e.g. `READY=1`.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(drop)
    }
}

/// The watchdog period systemd set (`WATCHDOG_USEC`), when it is meant for this process
/// (`WATCHDOG_PID`, when set, is our pid).
pub fn watchdog_period() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID") {
        if pid.to_string_lossy().trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pets systemd's watchdog every half period, only while the service is alive.
pub struct Watchdog {
    every: Duration,
    next: Instant,
    /// The reason petting stopped, said once (not every tick).
    stalled: Option<Stall>,
    send_failed: bool,
}

impl Watchdog {
    /// A watchdog for systemd's `period` (`WATCHDOG_USEC`): it pets every half period.
    pub fn new(period: Duration) -> Watchdog {
        Watchdog {
            every: period / 2,
            next: Instant::now(),
            stalled: None,
            send_failed: false,
        }
    }

    /// Call often (more often than half the period): when a pet is due and `alive` says so,
    /// sends `WATCHDOG=1`.
    pub fn tick(&mut self, notifier: &Notifier, alive: impl FnOnce() -> Result<(), Stall>) {
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next = now + self.every;
        match alive() {
            Ok(()) => {
                if let Some(stall) = self.stalled.take() {
                    log::warn!("watchdog: alive again after: {stall}");
                }
                match notifier.notify("WATCHDOG=1") {
                    Ok(()) => self.send_failed = false,
                    Err(e) if !self.send_failed => {
                        log::warn!("watchdog: cannot notify systemd: {e}");
                        self.send_failed = true;
                    }
                    Err(_) => {}
                }
            }
            Err(stall) => {
                if self.stalled.as_ref() != Some(&stall) {
                    log::error!(
                        "watchdog: {stall}; no longer telling systemd that the service is \
                         alive (systemd restarts it when the watchdog period runs out)"
                    );
                }
                self.stalled = Some(stall);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver() -> (tempfile::TempDir, UnixDatagram, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (dir, socket, path.display().to_string())
    }

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let (_dir, socket, path) = receiver();
        Notifier::new(&path).unwrap().notify("READY=1").unwrap();
        assert_eq!(recv(&socket), "READY=1");

        let name = format!("face-attendance-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .notify("STOPPING=1")
            .unwrap();
        assert_eq!(recv(&socket), "STOPPING=1");
    }

    #[test]
    fn refuses_a_relative_socket_name() {
        assert!(matches!(
            Notifier::new("notify.sock"),
            Err(NotifyError::BadAddress(_))
        ));
    }

    #[test]
    fn pets_only_while_alive() {
        let (_dir, socket, path) = receiver();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier::new(&path).unwrap();
        let mut watchdog = Watchdog::new(Duration::from_millis(100));
        let count = |socket: &UnixDatagram| {
            let mut n = 0;
            let mut buf = [0u8; 64];
            while socket.recv(&mut buf).is_ok() {
                n += 1;
            }
            n
        };
        let run = |watchdog: &mut Watchdog, alive: bool| {
            for _ in 0..20 {
                watchdog.tick(&notifier, || {
                    if alive {
                        Ok(())
                    } else {
                        Err(Stall::Ended {
                            name: "http-0".into(),
                        })
                    }
                });
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        run(&mut watchdog, true);
        let pets = count(&socket);
        // At least 200 ms at one pet per 50 ms (more time, on a loaded machine, gives more).
        assert!(pets >= 3, "{pets} pets");
        run(&mut watchdog, false);
        assert_eq!(count(&socket), 0, "no pets while a thread is stalled");
        run(&mut watchdog, true);
        assert!(count(&socket) >= 3, "pets again once alive");
    }
}
