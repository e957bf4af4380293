//! `/ws/recognitions`: the tiny_http request is upgraded and the stream handed to tungstenite.
//! One hub thread fans messages out; each client has a small bounded queue and a thread of its
//! own, so a slow or dead client is dropped without slowing the others or the recognizer.
//!
//! A client's thread reads what the client sends with a short timeout between sends, so a peer
//! that closes (with or without a close frame) frees its place within a fraction of a second, and
//! one that vanishes (power cut, cable pulled) is dropped once it has left
//! [`SILENT_LIMIT`] of pings unanswered: reconnecting dashboards are never locked out by the
//! ghosts of their earlier connections.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::{Header, Request, Response};
use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

use super::error::ApiError;
use super::headers::header;
use super::respond::respond;
use crate::events::{Outgoing, Report, Sink, Status};

/// Messages a client may fall behind by before it is dropped.
const CLIENT_QUEUE: usize = 64;
/// How long a client's thread waits for a message to send before it looks at what the client
/// sent: how soon a client that went away is noticed.
const POLL: Duration = Duration::from_millis(100);
/// Idle connections get a ping this often.
const PING_EVERY: Duration = Duration::from_secs(5);
/// A client that sends nothing (not even a pong) for this long is gone.
const SILENT_LIMIT: Duration = Duration::from_secs(15);

/// A stream whose reads can time out, so one thread can both read and write a WebSocket.
pub trait TimedStream: Read + Write + Send + 'static {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl TimedStream for tiny_http::Upgraded {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        tiny_http::Upgraded::set_read_timeout(self, timeout)
    }
}

impl TimedStream for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
}

enum HubMsg {
    Join(SyncSender<String>),
    Broadcast(String),
}

/// Handle to the hub thread; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    tx: Sender<HubMsg>,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
}

impl Hub {
    /// A hub for at most `max_clients` clients, with its thread started.
    pub fn start(max_clients: usize) -> Hub {
        let (tx, rx) = mpsc::channel();
        if let Err(e) = std::thread::Builder::new()
            .name("ws-hub".into())
            .spawn(move || run_hub(rx))
        {
            log::error!("could not start the WebSocket hub: {e}");
        }
        Hub {
            tx,
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients,
        }
    }

    /// Sends `message` to every connected client; a client whose queue is full (it stopped reading)
    /// is dropped.
    pub fn broadcast(&self, message: String) {
        let _ = self.tx.send(HubMsg::Broadcast(message));
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// Whether no more clients may connect (503).
    pub fn is_full(&self) -> bool {
        self.clients() >= self.max_clients
    }

    /// Serves an upgraded connection until it fails or the hub drops it.
    pub fn attach<S: TimedStream>(&self, stream: S) {
        let (queue, messages) = mpsc::sync_channel(CLIENT_QUEUE);
        if self.tx.send(HubMsg::Join(queue)).is_err() {
            return;
        }
        let clients = self.clients.clone();
        clients.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("ws-client".into())
            .spawn(move || {
                serve_client(stream, messages);
                clients.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            log::warn!("WebSocket client not served: {e}");
            self.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The hub is a live sink: each event's message goes to whoever is connected then.
impl Sink for Hub {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn durable(&self) -> bool {
        false
    }

    fn deliver(&mut self, event: &Outgoing<'_>) -> Report {
        self.broadcast(event.payload.to_string());
        Report::status(Status::Sent)
    }

    fn timeout(&self) -> Duration {
        Duration::ZERO
    }
}

fn run_hub(rx: Receiver<HubMsg>) {
    let mut clients: Vec<SyncSender<String>> = Vec::new();
    while let Ok(msg) = rx.recv() {
        match msg {
            HubMsg::Join(client) => clients.push(client),
            HubMsg::Broadcast(text) => clients.retain(|c| match c.try_send(text.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    log::warn!("dropping a WebSocket client that stopped reading");
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            }),
        }
    }
}

fn serve_client<S: TimedStream>(stream: S, messages: Receiver<String>) {
    // Reads only look at what the client has already sent: the wait is on the queue.
    if let Err(e) = stream.set_read_timeout(Some(Duration::from_millis(1))) {
        log::warn!("WebSocket client not served: {e}");
        return;
    }
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, None);
    let (mut heard, mut pinged) = (Instant::now(), Instant::now());
    loop {
        let mut sent = match messages.recv_timeout(POLL) {
            Ok(text) => ws.send(Message::text(text)),
            Err(RecvTimeoutError::Timeout) => Ok(()),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                return;
            }
        };
        while let Ok(text) = messages.try_recv() {
            sent = sent.and_then(|()| ws.send(Message::text(text)));
        }
        if pinged.elapsed() >= PING_EVERY {
            pinged = Instant::now();
            sent = sent.and_then(|()| ws.send(Message::Ping(Vec::new().into())));
        }
        if sent.is_err() {
            // Closed by the peer, or the write timed out on a client that stopped reading.
            return;
        }
        match read_client(&mut ws) {
            Heard::Something => heard = Instant::now(),
            Heard::Nothing => {}
            Heard::Gone => return,
        }
        if heard.elapsed() > SILENT_LIMIT {
            log::info!("dropping a WebSocket client that stopped answering pings");
            return;
        }
    }
}

enum Heard {
    Something,
    Nothing,
    Gone,
}

/// Takes in what the client has sent so far (a few frames at most per turn): pongs and other
/// frames say it is alive; a close, an end of stream or garbage says it is gone.
fn read_client<S: TimedStream>(ws: &mut WebSocket<S>) -> Heard {
    let mut heard = Heard::Nothing;
    for _ in 0..16 {
        match ws.read() {
            // tungstenite answers a close (and a ping) by itself on the next write or flush.
            Ok(Message::Close(_)) => {
                let _ = ws.flush();
                return Heard::Gone;
            }
            Ok(_) => heard = Heard::Something,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break
            }
            Err(_) => return Heard::Gone,
        }
    }
    heard
}

/// Answers a WebSocket handshake: 400 unless it is a valid RFC 6455 upgrade, 503 when the hub
/// is full, else 101 and the connection goes to the hub.
/// Returns the status answered (101: switched to the WebSocket).
pub fn upgrade(hub: &Hub, request: Request) -> u16 {
    let key = match handshake_key(&request) {
        Ok(key) => key,
        Err(e) => return respond(request, Err(e)),
    };
    if hub.is_full() {
        return respond(request, Err(ApiError::Busy("too many WebSocket clients")));
    }
    let mut response = Response::empty(101);
    for (name, value) in [
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Accept", accept_key(&key)),
    ] {
        if let Ok(h) = Header::from_bytes(name, value) {
            response.add_header(h);
        }
    }
    hub.attach(request.upgrade_stream("websocket", response));
    101
}

/// The client's `Sec-WebSocket-Key`, when the request is a valid upgrade.
fn handshake_key(request: &Request) -> Result<String, ApiError> {
    let bad = |why: &str| {
        Err(ApiError::BadRequest(format!(
            "not a valid WebSocket upgrade: {why}"
        )))
    };
    if !header(request, "Upgrade").is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket")) {
        return bad("this endpoint needs `Upgrade: websocket`");
    }
    if header(request, "Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return bad("Sec-WebSocket-Version must be 13");
    }
    match header(request, "Sec-WebSocket-Key").map(str::trim) {
        Some(key) if is_valid_key(key) => Ok(key.to_string()),
        _ => bad("Sec-WebSocket-Key must be 16 random bytes in base64"),
    }
}

/// RFC 6455: the key is 16 bytes in base64, so 22 significant characters and `==`; the last
/// significant one carries 2 bits and four zero bits.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b.ends_with(b"==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && matches!(b[21], b'A' | b'Q' | b'g' | b'w')
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn only_16_byte_base64_keys_are_valid() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            "",
            "x",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25j*Q==",
            "dGhlIHNhbXBsZSBub25jZQ==AAAA",
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
        }
    }

    /// A WebSocket pair over loopback TCP: the server side runs `serve_client`.
    fn pair() -> (
        WebSocket<std::net::TcpStream>,
        SyncSender<String>,
        std::thread::JoinHandle<()>,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let (tx, rx) = mpsc::sync_channel(CLIENT_QUEUE);
        let thread = std::thread::spawn(move || serve_client(server, rx));
        (
            WebSocket::from_raw_socket(client, Role::Client, None),
            tx,
            thread,
        )
    }

    #[test]
    fn messages_reach_the_client_and_a_close_ends_the_thread_at_once() {
        let (mut client, tx, thread) = pair();
        tx.send("hello".into()).unwrap();
        assert_eq!(client.read().unwrap(), Message::text("hello"));
        client.close(None).unwrap();
        let started = Instant::now();
        while !thread.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "close not noticed"
            );
            let _ = client.read();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_peer_that_hangs_up_without_a_close_frame_is_noticed_at_once() {
        let (client, _tx, thread) = pair();
        drop(client);
        let started = Instant::now();
        while !thread.is_finished() {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "hang-up not noticed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
