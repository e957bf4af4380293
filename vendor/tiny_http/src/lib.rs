//! # Simple usage
//!
//! ## Creating the server
//!
//! The easiest way to create a server is to call `Server::http()`.
//!
//! The `http()` function returns an `IoResult<Server>` which will return an error
//! in the case where the server creation fails (for example if the listening port is already
//! occupied).
//!
//! ```no_run
//! let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! ```
//!
//! A newly-created `Server` will immediately start listening for incoming connections and HTTP
//! requests.
//!
//! ## Receiving requests
//!
//! Calling `server.recv()` will block until the next request is available.
//! This function returns an `IoResult<Request>`, so you need to handle the possible errors.
//!
//! ```no_run
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//!
//! loop {
//!     // blocks until the next request is received
//!     let request = match server.recv() {
//!         Ok(rq) => rq,
//!         Err(e) => { println!("error: {}", e); break }
//!     };
//!
//!     // do something with the request
//!     // ...
//! }
//! ```
//!
//! In a real-case scenario, you will probably want to spawn multiple worker tasks and call
//! `server.recv()` on all of them. Like this:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use std::thread;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! let server = Arc::new(server);
//! let mut guards = Vec::with_capacity(4);
//!
//! for _ in (0 .. 4) {
//!     let server = server.clone();
//!
//!     let guard = thread::spawn(move || {
//!         loop {
//!             let rq = server.recv().unwrap();
//!
//!             // ...
//!         }
//!     });
//!
//!     guards.push(guard);
//! }
//! ```
//!
//! If you don't want to block, you can call `server.try_recv()` instead.
//!
//! ## Handling requests
//!
//! The `Request` object returned by `server.recv()` contains informations about the client's request.
//! The most useful methods are probably `request.method()` and `request.url()` which return
//! the requested method (`GET`, `POST`, etc.) and url.
//!
//! To handle a request, you need to create a `Response` object. See the docs of this object for
//! more infos. Here is an example of creating a `Response` from a file:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! ```
//!
//! All that remains to do is call `request.respond()`:
//!
//! ```no_run
//! # use std::fs::File;
//! # use std::path::Path;
//! # let server = tiny_http::Server::http("0.0.0.0:0").unwrap();
//! # let request = server.recv().unwrap();
//! # let response = tiny_http::Response::from_file(File::open(&Path::new("image.png")).unwrap());
//! let _ = request.respond(response);
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![allow(clippy::match_like_matches_macro)]

#[cfg(feature = "ssl-rustls")]
use zeroize::Zeroizing;

use std::error::Error;
use std::io::Error as IoError;
use std::io::ErrorKind as IoErrorKind;
use std::io::Result as IoResult;
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use client::ClientConnection;
use connection::Connection;
use util::refined_tcp_stream::ConnCtl;
use util::MessagesQueue;

pub use common::{HTTPVersion, Header, HeaderField, Method, StatusCode};
pub use connection::{ConfigListenAddr, ListenAddr, Listener};
pub use limits::Limits;
pub use request::{ReadWrite, Request, Upgraded};
pub use response::{Response, ResponseBox};
pub use test::TestRequest;

mod body;
mod client;
mod common;
mod connection;
mod head;
mod limits;
mod request;
mod response;
mod ssl;
mod test;
mod util;

/// The main class of this library.
///
/// Destroying this object will immediately close the listening socket and the reading
///  part of all the client's connections. Requests that have already been returned by
///  the `recv()` function will not close and the responses will be transferred to the client.
pub struct Server {
    // should be false as long as the server exists
    // when set to true, all the subtasks will close within a few hundreds ms
    close: Arc<AtomicBool>,

    // queue for messages received by child threads
    messages: Arc<MessagesQueue<Message>>,

    // result of TcpListener::local_addr()
    listening_addr: ListenAddr,

    // face-attendance patch: the connections open now (shared with sibling servers), and the
    // limits on clients.
    connections: Arc<limits::ConnCounter>,
    limits: Arc<Limits>,
}

enum Message {
    Error(IoError),
    NewRequest(Request),
}

impl From<IoError> for Message {
    fn from(e: IoError) -> Message {
        Message::Error(e)
    }
}

impl From<Request> for Message {
    fn from(rq: Request) -> Message {
        Message::NewRequest(rq)
    }
}

// this trait is to make sure that Server implements Share and Send
#[doc(hidden)]
trait MustBeShareDummy: Sync + Send {}
#[doc(hidden)]
impl MustBeShareDummy for Server {}

pub struct IncomingRequests<'a> {
    server: &'a Server,
}

/// Represents the parameters required to create a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The addresses to try to listen to.
    pub addr: ConfigListenAddr,

    /// If `Some`, then the server will use SSL to encode the communications.
    pub ssl: Option<SslConfig>,
}

/// Configuration of the server for SSL.
#[derive(Debug, Clone)]
pub struct SslConfig {
    /// Contains the public certificate to send to clients.
    pub certificate: Vec<u8>,
    /// Contains the ultra-secret private key used to decode communications.
    pub private_key: Vec<u8>,
}

impl Server {
    /// Shortcut for a simple server on a specific address.
    #[inline]
    pub fn http<A>(addr: A) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: None,
        })
    }

    /// Shortcut for an HTTPS server on a specific address.
    #[cfg(feature = "ssl-rustls")]
    #[inline]
    pub fn https<A>(
        addr: A,
        config: SslConfig,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>>
    where
        A: ToSocketAddrs,
    {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::from_socket_addrs(addr)?,
            ssl: Some(config),
        })
    }

    #[cfg(unix)]
    #[inline]
    /// Shortcut for a UNIX socket server at a specific path
    pub fn http_unix(
        path: &std::path::Path,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Server::new(ServerConfig {
            addr: ConfigListenAddr::unix_from_path(path),
            ssl: None,
        })
    }

    /// Builds a new server that listens on the specified address.
    pub fn new(config: ServerConfig) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        let listener = config.addr.bind()?;
        Self::from_listener(listener, config.ssl)
    }

    /// Builds a new server using the specified TCP listener.
    ///
    /// This is useful if you've constructed TcpListener using some less usual method
    /// such as from systemd. For other cases, you probably want the `new()` function.
    ///
    /// The server puts `Limits::default()` on its clients.
    pub fn from_listener<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::from_listener_with_limits(listener, ssl_config, Limits::default())
    }

    /// Same as [`from_listener`](Server::from_listener), with the given [`Limits`] on clients
    /// (face-attendance patch).
    ///
    /// The server sets the timeouts of accepted sockets itself: a receive timeout set on the
    /// listener (which accepted sockets inherit on Linux) is not needed, and is overridden.
    pub fn from_listener_with_limits<L: Into<Listener>>(
        listener: L,
        ssl_config: Option<SslConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        #[cfg(not(feature = "ssl-rustls"))]
        type SslContext = ();
        #[cfg(feature = "ssl-rustls")]
        type SslContext = crate::ssl::SslContextImpl;
        let ssl: Option<SslContext> = match ssl_config {
            #[cfg(feature = "ssl-rustls")]
            Some(config) => Some(SslContext::from_pem(
                config.certificate,
                Zeroizing::new(config.private_key),
            )?),
            #[cfg(not(feature = "ssl-rustls"))]
            Some(_) => {
                return Err(
                    "Building a server with SSL requires enabling the `ssl` feature in tiny-http"
                        .into(),
                )
            }
            None => None,
        };
        Self::build(
            listener.into(),
            ssl,
            Arc::new(limits),
            Arc::new(limits::ConnCounter::default()),
        )
    }

    /// An HTTPS server on `listener` with a rustls configuration the application built
    /// (certificates, protocol versions), with `limits` on its clients (face-attendance
    /// patch). The TLS handshake of a connection runs on that connection's own thread, within
    /// `limits.idle_timeout` of its accept, and the connection counts against the caps from its
    /// accept: a client that never completes a handshake holds one place for that long at
    /// most.
    #[cfg(feature = "ssl-rustls")]
    pub fn from_listener_with_tls<L: Into<Listener>>(
        listener: L,
        tls: Arc<rustls::ServerConfig>,
        limits: Limits,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        Self::build(
            listener.into(),
            Some(crate::ssl::SslContextImpl::from_config(tls)),
            Arc::new(limits),
            Arc::new(limits::ConnCounter::default()),
        )
    }

    /// A second server on `listener`, over TLS with `tls` (`None`: plain HTTP), with the
    /// limits of this one and whose connections count against the same caps
    /// (`max_connections`, `max_connections_per_ip`): [`open_connections`](Server::open_connections)
    /// of either counts both (face-attendance patch). Its requests come from its own
    /// [`recv`](Server::recv).
    pub fn sibling<L: Into<Listener>>(
        &self,
        listener: L,
        #[cfg(feature = "ssl-rustls")] tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        #[cfg(feature = "ssl-rustls")]
        let ssl = tls.map(crate::ssl::SslContextImpl::from_config);
        #[cfg(not(feature = "ssl-rustls"))]
        let ssl: Option<()> = None;
        Self::build(
            listener.into(),
            ssl,
            self.limits.clone(),
            self.connections.clone(),
        )
    }

    fn build(
        listener: Listener,
        #[cfg(feature = "ssl-rustls")] ssl: Option<crate::ssl::SslContextImpl>,
        #[cfg(not(feature = "ssl-rustls"))] ssl: Option<()>,
        limits: Arc<Limits>,
        connections: Arc<limits::ConnCounter>,
    ) -> Result<Server, Box<dyn Error + Send + Sync + 'static>> {
        // building the "close" variable
        let close_trigger = Arc::new(AtomicBool::new(false));

        // building the TcpListener
        let (server, local_addr) = {
            let local_addr = listener.local_addr()?;
            log::debug!("Server listening on {}", local_addr);
            (listener, local_addr)
        };

        // creating a task where server.accept() is continuously called
        // and ClientConnection objects are pushed in the messages queue
        let messages = MessagesQueue::with_capacity(8);

        let inside_close_trigger = close_trigger.clone();
        let inside_messages = messages.clone();
        let inside_connections = connections.clone();
        let inside_limits = limits.clone();
        thread::spawn(move || {
            let limits = inside_limits;
            // a tasks pool is used to dispatch the connections into threads
            let tasks_pool = util::TaskPool::new();

            log::debug!("Running accept thread");
            while !inside_close_trigger.load(Relaxed) {
                let new_client = match server.accept() {
                    Ok((sock, addr)) => {
                        // face-attendance patch (PATCHED.md, change 3): counted before any
                        // thread is spent on it, and refused by this thread over a cap.
                        let guard = match inside_connections.open(addr.map(|a| a.ip()), &limits) {
                            Ok(guard) => guard,
                            Err(refusal) => {
                                log::debug!(
                                    "Refusing a connection from {:?}: {}",
                                    addr,
                                    refusal.message()
                                );
                                refuse_connection(sock, refusal, ssl.is_some());
                                continue;
                            }
                        };
                        let ctl = Arc::new(ConnCtl::new(Some(guard), Some(limits.write_timeout)));

                        use util::RefinedTcpStream;
                        let (read_closable, write_closable) = match ssl {
                            None => RefinedTcpStream::new(sock, ctl.clone()),
                            #[cfg(feature = "ssl-rustls")]
                            Some(ref ssl) => {
                                // face-attendance patch: no handshake here (it is done by the
                                // connection's thread, under its deadline): only the wrapping,
                                // and the write timeout its handshake messages are sent with.
                                sock.set_write_timeout(Some(limits.write_timeout)).ok();
                                let sock = match ssl.accept(sock) {
                                    Ok(s) => s,
                                    Err(_) => continue,
                                };

                                RefinedTcpStream::new(sock, ctl.clone())
                            }
                            #[cfg(not(feature = "ssl-rustls"))]
                            Some(()) => unreachable!(),
                        };

                        Ok(ClientConnection::new(
                            write_closable,
                            read_closable,
                            ctl,
                            limits.clone(),
                        ))
                    }
                    Err(e) => Err(e),
                };

                match new_client {
                    Ok(client) => {
                        let messages = inside_messages.clone();
                        let mut client = Some(client);
                        tasks_pool.spawn(Box::new(move || {
                            if let Some(client) = client.take() {
                                // face-attendance patch: once the server is dropped, its queue
                                // is closed: the request is dropped (answered 500) and the
                                // connection ends, where it waited for ever for an answer.
                                // HTTPS connections no longer wait here for each answer (the
                                // TLS stream holds no lock while it blocks), and the client
                                // reads a next request only once the answers are out.
                                for rq in client {
                                    if messages.try_push(rq.into()).is_some() {
                                        break;
                                    }
                                }
                            }
                        }));
                    }

                    // PATCHED (face-attendance): errors that concern one connection, or that
                    // pass, must not stop the server from listening. A receive timeout on the
                    // listener (inherited by accepted sockets, to time out slow clients) makes
                    // accept() return WouldBlock when no one connects; running out of file
                    // descriptors passes when connections close.
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        continue;
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(23) | Some(24)) => {
                        log::error!("Error accepting new client: {}; retrying", e);
                        thread::sleep(std::time::Duration::from_millis(100));
                        continue;
                    }
                    Err(e) => {
                        log::error!("Error accepting new client: {}", e);
                        inside_messages.push(e.into());
                        break;
                    }
                }
            }
            log::debug!("Terminating accept thread");
        });

        // result
        Ok(Server {
            messages,
            close: close_trigger,
            listening_addr: local_addr,
            connections,
            limits,
        })
    }

    /// Returns an iterator for all the incoming requests.
    ///
    /// The iterator will return `None` if the server socket is shutdown.
    #[inline]
    pub fn incoming_requests(&self) -> IncomingRequests<'_> {
        IncomingRequests { server: self }
    }

    /// Returns the address the server is listening to.
    #[inline]
    pub fn server_addr(&self) -> ListenAddr {
        self.listening_addr.clone()
    }

    /// Returns the number of clients currently connected to the server.
    pub fn num_connections(&self) -> usize {
        self.open_connections()
    }

    /// The connections open now (face-attendance patch): each counts from its accept until
    /// its socket is closed, including while an upgraded stream has it, and is checked
    /// against `Limits::max_connections` and `Limits::max_connections_per_ip`.
    pub fn open_connections(&self) -> usize {
        self.connections.total()
    }

    /// Blocks until an HTTP request has been submitted and returns it.
    pub fn recv(&self) -> IoResult<Request> {
        match self.messages.pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(rq),
            None => Err(IoError::new(IoErrorKind::Other, "thread unblocked")),
        }
    }

    /// Same as `recv()` but doesn't block longer than timeout
    pub fn recv_timeout(&self, timeout: Duration) -> IoResult<Option<Request>> {
        match self.messages.pop_timeout(timeout) {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Same as `recv()` but doesn't block.
    pub fn try_recv(&self) -> IoResult<Option<Request>> {
        match self.messages.try_pop() {
            Some(Message::Error(err)) => Err(err),
            Some(Message::NewRequest(rq)) => Ok(Some(rq)),
            None => Ok(None),
        }
    }

    /// Unblock thread stuck in recv() or incoming_requests().
    /// If there are several such threads, only one is unblocked.
    /// This method allows graceful shutdown of server.
    pub fn unblock(&self) {
        self.messages.unblock();
    }
}

/// face-attendance patch: answers a connection over a cap `503` and closes it, from the accept
/// thread, which must never wait for a client: the socket is made non-blocking, the answer
/// written once (it fits in any socket buffer), and what the client already sent is read away
/// (a socket closed with unread data sends a reset, which could destroy the answer).
fn refuse_connection(sock: Connection, refusal: limits::Refusal, tls: bool) {
    use std::io::{Read, Write};
    if sock.set_nonblocking(true).is_err() {
        return;
    }
    if !tls {
        let mut answer = Vec::with_capacity(256);
        if head::write_refusal(&mut answer, 503, refusal.message(), "Retry-After: 1\r\n").is_ok() {
            // Non-blocking: a part, or nothing, is all a client gets that cannot take it.
            let _ = (&sock).write_all(&answer);
        }
    }
    sock.shutdown(Shutdown::Write).ok();
    let mut buf = [0; 4096];
    for _ in 0..4 {
        match (&sock).read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Runs the request head reader and the body framing checks over `data`, then reads the body
/// that follows (for the fuzz targets; not part of the API). The head limits are small (a
/// 256-byte line, 16 headers, a 1 KiB head) so that inputs of a few KiB reach all of them.
#[doc(hidden)]
pub fn fuzz_request_head(data: &[u8]) {
    use std::io::Read;
    let limits = Limits {
        max_request_line: 256,
        max_header_line: 256,
        max_headers: 16,
        max_head_bytes: 1024,
        ..Limits::default()
    };
    let mut input = data;
    let head = match head::read_head(&mut input, &limits) {
        Ok(head) => head,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 414 | 431 | 501 | 505));
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(data.len() - input.len() <= limits.max_head_bytes);
    assert!(head.headers.len() <= limits.max_headers);
    assert!(head.version == (1, 0) || head.version == (1, 1));
    let framing = match head::body_framing(&head.headers) {
        Ok(framing) => framing,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 501));
            return;
        }
    };
    let before = input.len();
    let mut body = body::Body::new(&mut input, framing, None, &limits);
    let mut out = Vec::new();
    let result = body.by_ref().take(1 << 20).read_to_end(&mut out);
    let complete = body.is_complete();
    drop(body);
    // The body never reads past its end, nor gives more than it read.
    assert!(out.len() <= before - input.len());
    if let head::Framing::Length(n) = framing {
        assert!(out.len() <= n);
        assert_eq!(complete, result.is_ok() && out.len() == n);
    }
}

impl Iterator for IncomingRequests<'_> {
    type Item = Request;
    fn next(&mut self) -> Option<Request> {
        self.server.recv().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.close.store(true, Relaxed);
        // face-attendance patch: requests no one will take any more are answered (500, as any
        // dropped request) and let go of their connection now.
        drop(self.messages.close());
        // Connect briefly to ourselves to unblock the accept thread
        let maybe_stream = match &self.listening_addr {
            ListenAddr::IP(addr) => TcpStream::connect(addr).map(Connection::from),
            #[cfg(unix)]
            ListenAddr::Unix(addr) => {
                // TODO: use connect_addr when its stabilized.
                let path = addr.as_pathname().unwrap();
                std::os::unix::net::UnixStream::connect(path).map(Connection::from)
            }
        };
        if let Ok(stream) = maybe_stream {
            let _ = stream.shutdown(Shutdown::Both);
        }

        #[cfg(unix)]
        if let ListenAddr::Unix(addr) = &self.listening_addr {
            if let Some(path) = addr.as_pathname() {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
