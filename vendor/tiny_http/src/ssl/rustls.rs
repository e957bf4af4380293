//! TLS with rustls 0.23 (face-attendance patch, PATCHED.md change 5; upstream used rustls 0.20,
//! RUSTSEC-2024-0336).
//!
//! The handshake is not done by the accept thread: [`RustlsContext::accept`] only wraps the
//! socket, and the handshake runs inside the first reads of the connection's own thread, under
//! the deadline the connection has then (`Limits::idle_timeout` for a new one).
//!
//! [`RustlsStream`] is shared by the two halves of a connection (and an upgraded stream may
//! read and write it from two threads). No lock is held while the socket blocks: the rustls
//! state is locked only to feed it bytes read, to take plaintext out, or to take TLS records
//! to send; records are sent under a second lock, taken before the first, so they leave in the
//! order rustls made them. A read makes at most one `read` of the socket
//! ([`RustlsStream::read_step`]), so the caller can check its deadline between two (a
//! ClientHello trickled a byte at a time cannot push the deadline back), and a peer that closes
//! or sends garbage ends the stream with an error at once.

use crate::connection::Connection;
use crate::util::refined_tcp_stream::Stream as RefinedStream;
use std::error::Error;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

/// Bytes read from the socket at a time: plaintext out of them always fits in rustls's
/// received-plaintext buffer (16 KiB), which is empty when the socket is read.
const RAW_READ: usize = 8 * 1024;

/// One TLS connection, shared (cheaply cloned) by the parts of a connection.
#[derive(Clone)]
pub(crate) struct RustlsStream(Arc<Shared>);

struct Shared {
    sock: Connection,
    tls: Mutex<rustls::ServerConnection>,
    // Held while TLS records are taken from `tls` and written to `sock`.
    send: Mutex<()>,
    // The peer closed its sending side (read returned 0).
    eof: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl RustlsStream {
    pub(crate) fn peer_addr(&mut self) -> io::Result<Option<SocketAddr>> {
        self.0.sock.peer_addr()
    }

    /// Shuts a direction of the socket down; before its sending side, a `close_notify` alert
    /// is sent (best effort, bounded by the write timeout).
    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            let handshaking = {
                let mut tls = lock(&self.0.tls);
                let handshaking = tls.is_handshaking();
                if !handshaking {
                    tls.send_close_notify();
                }
                handshaking
            };
            if !handshaking {
                self.0.send_pending().ok();
            }
        }
        self.0.sock.shutdown(how)
    }

    // face-attendance patch: the socket timeouts (see util/refined_tcp_stream.rs).
    pub(crate) fn set_read_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.0.sock.set_read_timeout(t)
    }

    pub(crate) fn set_write_timeout(&mut self, t: Option<Duration>) -> io::Result<()> {
        self.0.sock.set_write_timeout(t)
    }

    /// One step of a read: plaintext already decrypted (`Ok(Some(n))`, `Ok(Some(0))` once the
    /// peer sent `close_notify`); else one `read` of the socket, whose bytes are fed to rustls
    /// (handshake messages answered, alerts sent), then `Ok(None)`: call again. A peer gone
    /// without `close_notify` is `UnexpectedEof`, a TLS error `InvalidData`; socket errors
    /// (the receive timeout) are returned as they are.
    pub(crate) fn read_step(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let shared = &*self.0;
        {
            let mut tls = lock(&shared.tls);
            match tls.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if shared.eof.load(Ordering::Acquire) {
                return Err(ErrorKind::UnexpectedEof.into());
            }
        }

        let mut raw = [0u8; RAW_READ];
        let n = (&shared.sock).read(&mut raw)?;

        let failed = {
            let mut tls = lock(&shared.tls);
            let mut rest = &raw[..n];
            let mut failed = None;
            if n == 0 {
                shared.eof.store(true, Ordering::Release);
                // Tells rustls of the end of the stream.
                tls.read_tls(&mut rest)?;
                if let Err(e) = tls.process_new_packets() {
                    failed = Some(e);
                }
            }
            while failed.is_none() && !rest.is_empty() {
                // Reads only what its buffers take; the loop feeds the rest.
                tls.read_tls(&mut rest)?;
                if let Err(e) = tls.process_new_packets() {
                    failed = Some(e);
                }
            }
            failed
        };
        // Handshake messages, or the alert that tells the peer what went wrong.
        let sent = shared.send_pending();
        if let Some(e) = failed {
            return Err(tls_error(e));
        }
        sent?;
        Ok(None)
    }
}

impl Shared {
    /// Writes the TLS records rustls has ready, in order.
    fn send_pending(&self) -> io::Result<()> {
        let _turn = lock(&self.send);
        loop {
            let mut out = Vec::new();
            {
                let mut tls = lock(&self.tls);
                while tls.wants_write() {
                    tls.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            (&self.sock).write_all(&out)?;
        }
    }
}

impl Read for RustlsStream {
    /// Reads until there is plaintext (or an error): for callers without a deadline.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(n) = self.read_step(buf)? {
                return Ok(n);
            }
        }
    }
}

impl Write for RustlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // rustls takes plaintext up to its buffer limit; once the records are sent, it takes
        // more. Twice nothing (a handshake that never completed) is an error, never a loop.
        for _ in 0..2 {
            let n = {
                let mut tls = lock(&self.0.tls);
                tls.writer().write(buf)?
            };
            self.0.send_pending()?;
            if n > 0 {
                return Ok(n);
            }
        }
        Err(io::Error::new(
            ErrorKind::WriteZero,
            "TLS connection takes no more data (handshake not complete)",
        ))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.send_pending()
    }
}

/// The server side of TLS for every connection of a server.
pub(crate) struct RustlsContext(Arc<rustls::ServerConfig>);

impl RustlsContext {
    /// A context for `config` (built by the application: certificates, provider, versions).
    pub(crate) fn from_config(config: Arc<rustls::ServerConfig>) -> Self {
        Self(config)
    }

    /// A context for a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1),
    /// with the ring provider and its default protocol versions.
    pub(crate) fn from_pem(
        certificates: Vec<u8>,
        private_key: Zeroizing<Vec<u8>>,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        let certificate_chain = rustls_pemfile::certs(&mut certificates.as_slice())
            .collect::<Result<Vec<_>, _>>()?;
        if certificate_chain.is_empty() {
            return Err("no certificate in the PEM data".into());
        }
        let private_key = rustls_pemfile::private_key(&mut private_key.as_slice())?
            .ok_or("no private key in the PEM data (encrypted keys are not supported)")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls_conf = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certificate_chain, private_key)?;
        Ok(Self(Arc::new(tls_conf)))
    }

    /// Wraps an accepted socket; no I/O (the handshake happens in the first reads).
    pub(crate) fn accept(
        &self,
        stream: Connection,
    ) -> Result<RustlsStream, Box<dyn Error + Send + Sync + 'static>> {
        let connection = rustls::ServerConnection::new(self.0.clone())?;
        Ok(RustlsStream(Arc::new(Shared {
            sock: stream,
            tls: Mutex::new(connection),
            send: Mutex::new(()),
            eof: AtomicBool::new(false),
        })))
    }
}

impl From<RustlsStream> for RefinedStream {
    fn from(stream: RustlsStream) -> Self {
        Self::Https(stream)
    }
}
