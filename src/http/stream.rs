//! `GET /stream.mjpg`: the camera's live view, boxes and names drawn, as
//! `multipart/x-mixed-replace` of JPEG parts (what `<img src>` shows as a moving picture).
//!
//! The request takes its connection over: each viewer has a thread of its own, which takes the
//! newest frame from [`crate::camera::live`] at most `STREAM_MAX_FPS` times a second and writes it
//! as one part. The recognition loop never waits for it. Writes block for at most
//! [`WRITE_SLICE`] at a time, so a viewer notices the service stopping at once, and one whose
//! client takes nothing for `HTTP_TIMEOUT_SECONDS` is dropped. While the camera sends nothing new,
//! the last frame (or a "waiting" picture) is sent again every [`KEEPALIVE`]: the picture stays up
//! and a client that left is noticed by the failing write.

use std::io::{ErrorKind, Write};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::json;
use tiny_http::{Method, Request};

use super::app::App;
use super::error::ApiError;
use super::respond::respond;
use crate::camera::live::{self, Live, Next, Viewer};

/// The multipart boundary between parts.
pub const BOUNDARY: &str = "frame";
/// How long one write may block before the viewer looks whether the service stops.
pub const WRITE_SLICE: Duration = Duration::from_millis(200);
/// The longest a viewer goes without a part.
pub const KEEPALIVE: Duration = Duration::from_secs(2);

/// A connection whose writes can be bounded in time.
pub trait TimedWrite: Write + Send + 'static {
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl TimedWrite for tiny_http::Upgraded {
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        tiny_http::Upgraded::set_write_timeout(self, timeout)
    }
}

impl TimedWrite for std::net::TcpStream {
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        std::net::TcpStream::set_write_timeout(self, timeout)
    }
}

/// Answers `GET /stream.mjpg`: 409 without a camera or with the live view off, 503 (with
/// `Retry-After`) when every viewer's place is taken, else the stream, on a thread of its own.
/// Returns the status answered.
pub fn serve(app: &App, request: Request) -> u16 {
    let query = request.url().split_once('?').map_or("", |(_, q)| q);
    let live = match app.camera_for(query).map(|c| c.live()) {
        Err(e) => return respond(request, Err(e)),
        Ok(live) if live.settings().max_viewers == 0 => {
            return respond(
                request,
                Err(ApiError::Conflict {
                    message: "the live view is off (STREAM_MAX_CLIENTS=0)".into(),
                    details: json!({}),
                }),
            )
        }
        Ok(live) => live,
    };
    let Some(viewer) = live.join() else {
        return respond(request, Err(ApiError::Busy("too many live viewers")));
    };
    let head_only = *request.method() == Method::Head;
    let stall_limit = app.limits.io_timeout;
    let stream = request.into_stream();
    let spawned = std::thread::Builder::new()
        .name("stream-viewer".into())
        .spawn(move || run(stream, viewer, stall_limit, head_only));
    if let Err(e) = spawned {
        // The stream and the place went down with the closure: the connection is closed.
        log::warn!("live viewer not served: {e}");
        return 500;
    }
    200
}

fn head() -> String {
    let content_type = format!("multipart/x-mixed-replace; boundary={BOUNDARY}");
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n");
    for (name, value) in super::headers::for_content(&content_type) {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Pragma: no-cache\r\nConnection: close\r\n\r\n");
    head
}

/// One part: the boundary, its head and the JPEG.
fn part(jpeg: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    out.extend_from_slice(jpeg);
    out.extend_from_slice(b"\r\n");
    out
}

/// Why a viewer's stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The client closed the connection (or it broke).
    Gone,
    /// The client took nothing for the stall limit.
    Stalled,
    /// The service is stopping.
    Closed,
}

/// Serves one viewer until its client leaves or stalls, or the service stops (`head_only`: a
/// HEAD request, answered by the head alone).
fn run<S: TimedWrite>(mut stream: S, mut viewer: Viewer, stall_limit: Duration, head_only: bool) {
    static WAITING: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let end = (|| {
        stream
            .set_write_timeout(Some(WRITE_SLICE))
            .map_err(|_| End::Gone)?;
        write_bounded(&mut stream, head().as_bytes(), stall_limit, &viewer)?;
        if head_only {
            return Ok(());
        }
        let live: Arc<Live> = viewer.live().clone();
        let interval = live.settings().interval();
        let mut not_before = Instant::now();
        loop {
            let deadline = not_before.max(Instant::now() + KEEPALIVE);
            let frame = match viewer.next(not_before, deadline) {
                Next::Closed => return Err(End::Closed),
                Next::Frame(frame) => Some(frame),
                Next::Timeout => viewer.last(),
            };
            let jpeg = match &frame {
                Some(frame) => frame.jpeg(&live),
                None => WAITING
                    .get_or_init(|| live::placeholder("waiting for the camera"))
                    .as_deref(),
            };
            // The rate counts from when a part starts, so writing it takes nothing off it.
            not_before = Instant::now() + interval;
            if let Some(jpeg) = jpeg {
                write_bounded(&mut stream, &part(jpeg), stall_limit, &viewer)?;
                viewer.sent();
            }
        }
    })();
    match end {
        Ok(()) | Err(End::Gone) | Err(End::Closed) => {}
        Err(End::Stalled) => {
            viewer.stalled();
            log::info!("dropping a live viewer that stopped reading");
        }
    }
}

/// Writes all of `bytes` and flushes, each write blocking at most the stream's write timeout
/// ([`WRITE_SLICE`]): gives up when the client took nothing for `stall_limit`, when it is gone,
/// or when the service stops.
fn write_bounded<S: Write>(
    stream: &mut S,
    mut bytes: &[u8],
    stall_limit: Duration,
    viewer: &Viewer,
) -> Result<(), End> {
    let mut progress = Instant::now();
    let mut pending = |stream: &mut S, bytes: &mut &[u8]| -> Result<bool, End> {
        let step = if bytes.is_empty() {
            stream.flush().map(|()| 0)
        } else {
            stream.write(bytes)
        };
        match step {
            Ok(0) if !bytes.is_empty() => Err(End::Gone),
            Ok(0) => Ok(false),
            Ok(n) => {
                *bytes = &bytes[n..];
                progress = Instant::now();
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if viewer.live().is_closed() {
                    Err(End::Closed)
                } else if progress.elapsed() >= stall_limit {
                    Err(End::Stalled)
                } else {
                    Ok(true)
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(true),
            Err(_) => Err(End::Gone),
        }
    };
    while pending(stream, &mut bytes)? {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::camera::live::LiveSettings;
    use std::io::Read;

    fn viewer() -> (Arc<Live>, Viewer) {
        let live = Arc::new(Live::new(LiveSettings::default()));
        let viewer = live.join().unwrap();
        (live, viewer)
    }

    /// A loopback pair: (server side, client side).
    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    #[test]
    fn parts_are_framed_by_the_boundary_and_their_length() {
        let p = part(b"\xff\xd8jpeg\xff\xd9");
        assert_eq!(
            p,
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 8\r\n\r\n\xff\xd8jpeg\xff\xd9\r\n"
        );
        assert!(head().contains("multipart/x-mixed-replace; boundary=frame\r\n"));
    }

    #[test]
    fn a_client_that_reads_gets_everything() {
        let (server, mut client) = pair();
        let (_live, viewer) = viewer();
        server.set_write_timeout(Some(WRITE_SLICE)).unwrap();
        let bytes = vec![7u8; 4 << 20];
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            client.read_to_end(&mut got).unwrap();
            got.len()
        });
        let mut server = server;
        write_bounded(&mut server, &bytes, Duration::from_secs(5), &viewer).unwrap();
        drop(server);
        assert_eq!(reader.join().unwrap(), 4 << 20);
    }

    #[test]
    fn a_client_that_stops_reading_is_given_up_after_the_stall_limit_or_at_the_close() {
        let (mut server, _client) = pair();
        let (live, viewer) = viewer();
        server.set_write_timeout(Some(WRITE_SLICE)).unwrap();
        // More than loopback's buffers hold.
        let bytes = vec![7u8; 64 << 20];
        let started = Instant::now();
        let stall = Duration::from_millis(600);
        assert_eq!(
            write_bounded(&mut server, &bytes, stall, &viewer),
            Err(End::Stalled)
        );
        assert!(started.elapsed() >= stall);
        live.close();
        let started = Instant::now();
        assert_eq!(
            write_bounded(&mut server, &bytes, Duration::from_secs(60), &viewer),
            Err(End::Closed)
        );
        assert!(started.elapsed() < Duration::from_secs(5), "at once");
    }

    #[test]
    fn a_client_that_left_ends_the_stream() {
        let (mut server, client) = pair();
        let (_live, viewer) = viewer();
        drop(client);
        let bytes = vec![7u8; 1 << 20];
        let mut end = Ok(());
        for _ in 0..10 {
            end = write_bounded(&mut server, &bytes, Duration::from_secs(5), &viewer);
            if end.is_err() {
                break;
            }
        }
        assert_eq!(end, Err(End::Gone));
    }
}
