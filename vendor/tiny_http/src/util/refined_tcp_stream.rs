use std::io::Result as IoResult;
use std::io::{Error as IoError, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::connection::Connection;
use crate::limits::ConnGuard;
#[cfg(feature = "ssl-rustls")]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    // face-attendance patch: an `Arc` shared by both halves (one file descriptor), where
    // upstream `try_clone`d the socket (two descriptors, and a panic when out of them).
    Http(Arc<Connection>),
    #[cfg(feature = "ssl-rustls")]
    Https(SslStream),
}

impl Clone for Stream {
    fn clone(&self) -> Self {
        match self {
            Stream::Http(tcp_stream) => Stream::Http(tcp_stream.clone()),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => Stream::Https(ssl_stream.clone()),
        }
    }
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(Arc::new(tcp_stream))
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }

    fn set_read_timeout(&mut self, t: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(t),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.set_read_timeout(t),
        }
    }

    fn set_write_timeout(&mut self, t: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_write_timeout(t),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.set_write_timeout(t),
        }
    }

    /// face-attendance patch: at most one `read` of the socket. `Ok(None)`: the socket gave
    /// bytes but no data came of them yet (a TLS record, or the handshake, in progress): call
    /// again, after checking the deadline.
    fn read_step(&mut self, buf: &mut [u8]) -> IoResult<Option<usize>> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).read(buf).map(Some),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.read_step(buf),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).read(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).write(buf),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => (&**tcp_stream).flush(),
            #[cfg(feature = "ssl-rustls")]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

/// face-attendance patch (PATCHED.md, change 3): what the parts of one connection share. The
/// read half, the write half, the connection's own thread, the body reader of its current
/// request and an upgraded stream all hold it; the connection counts against the server's caps
/// until the last of them is gone (which is when the socket is closed).
pub(crate) struct ConnCtl {
    timeouts: Mutex<Timeouts>,
    // Set when a request body was left unread: the connection cannot be reused.
    must_close: AtomicBool,
    _guard: Option<ConnGuard>,
}

struct Timeouts {
    // Reads must be done by then (head and body deadlines), or fail with `TimedOut`.
    read_deadline: Option<Instant>,
    // `SO_RCVTIMEO` when there is no deadline (set by an upgraded stream's owner).
    read_timeout: Option<Duration>,
    // `SO_SNDTIMEO`.
    write_timeout: Option<Duration>,
}

impl ConnCtl {
    pub(crate) fn new(guard: Option<ConnGuard>, write_timeout: Option<Duration>) -> ConnCtl {
        ConnCtl {
            timeouts: Mutex::new(Timeouts {
                read_deadline: None,
                read_timeout: None,
                write_timeout,
            }),
            must_close: AtomicBool::new(false),
            _guard: guard,
        }
    }

    fn timeouts(&self) -> std::sync::MutexGuard<'_, Timeouts> {
        self.timeouts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads of this connection must be done by `deadline` (`None`: no deadline).
    pub(crate) fn set_read_deadline(&self, deadline: Option<Instant>) {
        self.timeouts().read_deadline = deadline;
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.timeouts().read_timeout = timeout;
    }

    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.timeouts().write_timeout = timeout;
    }

    /// The connection cannot be reused (a request body was left unread).
    pub(crate) fn set_must_close(&self) {
        self.must_close.store(true, Ordering::Release);
    }

    pub(crate) fn must_close(&self) -> bool {
        self.must_close.load(Ordering::Acquire)
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // face-attendance patch: the connection's shared state, and the socket timeout this half
    // last set (`None`: not set yet; the listener's own may have been inherited).
    ctl: Arc<ConnCtl>,
    applied_timeout: Option<Option<Duration>>,
}

impl RefinedTcpStream {
    pub(crate) fn new<S>(stream: S, ctl: Arc<ConnCtl>) -> (RefinedTcpStream, RefinedTcpStream)
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();

        let (read, write) = (stream.clone(), stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            ctl: ctl.clone(),
            applied_timeout: None,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            ctl,
            applied_timeout: None,
        };

        (read, write)
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// face-attendance patch: shuts down a direction of the whole connection now.
    pub(crate) fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        self.stream.shutdown(how)
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

fn deadline_passed() -> IoError {
    IoError::new(ErrorKind::TimedOut, "read deadline passed")
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        // face-attendance patch: a deadline is a real one. The socket's receive timeout is set
        // to the time left before each read of the socket, so a client that sends one byte now
        // and then cannot push it back; without a deadline, to what the stream's owner asked
        // for. Over TLS one read may take several reads of the socket (a record, the
        // handshake): the deadline is checked before each, and a timeout without a deadline
        // bounds them all together.
        let (deadline, timeout) = {
            let t = self.ctl.timeouts();
            (t.read_deadline, t.read_timeout)
        };
        let started = Instant::now();
        let mut first = true;
        loop {
            let wait = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(deadline_passed());
                    }
                    Some(left)
                }
                None => match timeout {
                    // The first read waits the timeout itself (no new system call each time).
                    Some(timeout) if first => Some(timeout),
                    Some(timeout) => {
                        let left = timeout.saturating_sub(started.elapsed());
                        if left.is_zero() {
                            return Err(IoError::new(ErrorKind::WouldBlock, "read timed out"));
                        }
                        Some(left)
                    }
                    None => None,
                },
            };
            if self.applied_timeout != Some(wait) {
                self.stream.set_read_timeout(wait)?;
                self.applied_timeout = Some(wait);
            }
            first = false;
            match self.stream.read_step(buf) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(e)
                    if deadline.is_some()
                        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Err(deadline_passed())
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        let timeout = self.ctl.timeouts().write_timeout;
        if self.applied_timeout != Some(timeout) {
            self.stream.set_write_timeout(timeout)?;
            self.applied_timeout = Some(timeout);
        }
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
