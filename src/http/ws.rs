//! `/ws/recognitions`: the tiny_http request is upgraded and the stream handed to tungstenite.
//! One hub thread fans messages out; each client has a small bounded queue and a writer thread,
//! so a slow or dead client is dropped without slowing the others or the recognizer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use tungstenite::protocol::{Role, WebSocket};
use tungstenite::Message;

/// Messages a client may fall behind by before it is dropped.
const CLIENT_QUEUE: usize = 64;
/// Idle connections get a ping this often; a dead peer then fails the write and is dropped.
const PING_EVERY: Duration = Duration::from_secs(20);

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

    pub fn broadcast(&self, message: String) {
        let _ = self.tx.send(HubMsg::Broadcast(message));
    }

    /// Connected clients.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    pub fn is_full(&self) -> bool {
        self.clients() >= self.max_clients
    }

    /// Serves an upgraded connection until it fails or the hub drops it.
    pub fn attach<S>(&self, stream: S)
    where
        S: std::io::Read + std::io::Write + Send + 'static,
    {
        let (queue, messages) = mpsc::sync_channel(CLIENT_QUEUE);
        if self.tx.send(HubMsg::Join(queue)).is_err() {
            return;
        }
        let clients = self.clients.clone();
        clients.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("ws-client".into())
            .spawn(move || {
                serve_client(
                    WebSocket::from_raw_socket(stream, Role::Server, None),
                    messages,
                );
                clients.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            log::warn!("WebSocket client not served: {e}");
            self.clients.fetch_sub(1, Ordering::Relaxed);
        }
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

fn serve_client<S: std::io::Read + std::io::Write>(
    mut ws: WebSocket<S>,
    messages: Receiver<String>,
) {
    loop {
        let sent = match messages.recv_timeout(PING_EVERY) {
            Ok(text) => ws.send(Message::text(text)),
            Err(RecvTimeoutError::Timeout) => ws.send(Message::Ping(Vec::new().into())),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = ws.close(None);
                let _ = ws.flush();
                return;
            }
        };
        if sent.is_err() {
            // Closed by the peer, or the write timed out on a client that stopped reading.
            return;
        }
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    tungstenite::handshake::derive_accept_key(client_key.trim().as_bytes())
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_matches_rfc6455_example() {
        assert_eq!(
            super::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
