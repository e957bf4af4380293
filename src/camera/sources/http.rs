//! `http://` and `https://` cameras: an MJPEG stream (`multipart/x-mixed-replace`, what many IP
//! cameras and another box's `/stream.mjpg` send) or a JPEG snapshot URL polled at the capture
//! rate, told apart by the content type of the answer.
//!
//! Contract:
//! - one worker thread per source (named `camera-http`) does all the network I/O with a ureq 3
//!   agent and hands the newest frame over; [`FrameSource::next_frame`] waits at most
//!   [`POLL`], and a source that gave no frame for `options.stale` answers
//!   `Unavailable("... no frame for N s")`;
//! - every request carries `X-API-Key` when [`HttpAccess::key`] is set (and HTTP Basic
//!   credentials when the URL has `user:password@`, as ureq sends them);
//! - `https://` with [`HttpAccess::tls_fingerprint`] accepts exactly the certificate whose
//!   SHA-256 that is ([`crate::client_tls`]), whatever its names and issuer; without one, the
//!   system's CA certificates; a fingerprint given for an `http://` URL is refused (it would
//!   protect nothing);
//! - 401 and 403 answer `Unavailable` saying the key (or the URL's user and password) was
//!   refused or is missing; redirects are not followed (`Unavailable` naming the status: give the
//!   final URL); any other status outside 2xx is `Unavailable` naming it;
//! - `multipart/x-mixed-replace`: the body goes through
//!   [`MjpegScanner::expecting_gaps`] (part headers are not parsed: the scanner finds the JPEGs,
//!   holds at most `options.max_frame_bytes` and counts what it skips); `image/jpeg`: one request
//!   per frame at `options.fps` over a kept-alive connection, each body read up to
//!   `options.max_frame_bytes` (a larger one is counted oversize and skipped); any other content
//!   type is `Unavailable` naming it;
//! - no thread is blocked much longer than `options.stale`: the name lookup, the connect, every
//!   socket read and write time out after it; dropping the source shuts the agent's connections
//!   down (a read blocked on a silent server returns at once) and joins the worker (a connect in
//!   progress, which a shutdown cannot interrupt, is left to end by its own time-out);
//! - no message shows the URL's user, password or query string, nor the key ([`scrub`]).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ureq::http::Response;
use ureq::unversioned::resolver::DefaultResolver;
use ureq::unversioned::transport::{Connector, TcpConnector};
use ureq::Body;

use super::mjpeg::MjpegScanner;
use super::spec::{scrub, SourceSpec};
use super::{FrameSource, HttpAccess, Skipped, SourceError, SourceOptions, POLL};
use crate::camera::frame::RawFrame;
use crate::camera::slot::LatestSlot;
use crate::client_tls::{ureq_tls::TlsConnector, Trust};

/// Bytes asked of the socket at a time for a stream.
const READ_BUFFER: usize = 64 * 1024;
/// How long dropping a source waits for its worker before leaving it to its time-outs.
const JOIN_WAIT: Duration = Duration::from_secs(2);
/// How often a waiting worker looks whether it should stop.
const NAP: Duration = Duration::from_millis(50);

/// A camera over HTTP(S): an MJPEG stream or polled JPEG snapshots.
pub struct HttpSource {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    worker: Option<JoinHandle<()>>,
    /// Disconnected once the worker has ended (its sender dropped).
    ended: mpsc::Receiver<()>,
    shown: String,
    stale: Duration,
    last_frame: Instant,
}

/// What the worker and the source share.
struct Shared {
    frames: LatestSlot<Vec<u8>>,
    /// Why the worker ended (then `frames` is closed).
    failure: Mutex<Option<String>>,
    skipped: Mutex<Skipped>,
    description: Mutex<String>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn count(&self, skipped: Skipped) {
        if skipped != Skipped::default() {
            lock(&self.skipped).add(skipped);
        }
    }

    /// Waits until `until`; false when asked to stop meanwhile.
    fn nap_until(&self, until: Instant) -> bool {
        loop {
            if self.stopping() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep(NAP.min(until - now));
        }
    }
}

/// What the answer holds, by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Stream,
    Snapshot,
}

/// The kind a `Content-Type` names, or why it is neither.
fn kind_of(content_type: Option<&str>) -> Result<Kind, String> {
    let full = content_type.unwrap_or("").trim();
    let essence = full
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "multipart/x-mixed-replace" => Ok(Kind::Stream),
        "image/jpeg" | "image/jpg" | "image/pjpeg" => Ok(Kind::Snapshot),
        "" => Err("answered without a content type, not an MJPEG stream \
                   (multipart/x-mixed-replace) or a JPEG snapshot (image/jpeg)"
            .into()),
        _ => Err(format!(
            "answered {:?}, not an MJPEG stream (multipart/x-mixed-replace) or a JPEG snapshot \
             (image/jpeg)",
            full.chars().take(80).collect::<String>()
        )),
    }
}

/// Why a status outside 2xx stops the source.
fn refusal(status: u16, has_key: bool, has_user: bool, challenge: Option<&str>) -> String {
    match status {
        401 | 403 if has_key => format!("refused the key (HTTP {status}): check CAMERA_HTTP_KEY"),
        401 | 403 if has_user => {
            let digest = challenge
                .is_some_and(|c| c.trim_start().to_ascii_lowercase().starts_with("digest"));
            if digest {
                format!(
                    "asks for HTTP Digest authentication (HTTP {status}), which this box does not \
                     do: use a URL of the camera that takes Basic authentication or a key"
                )
            } else {
                format!("refused the user and password of the URL (HTTP {status})")
            }
        }
        401 | 403 => format!(
            "asks for a key (HTTP {status}): set CAMERA_HTTP_KEY (or a user and password in the \
             URL for a camera)"
        ),
        300..=399 => format!(
            "redirected elsewhere (HTTP {status}); redirects are not followed: give the final URL"
        ),
        _ => format!("answered HTTP {status}"),
    }
}

/// The worker's side: the request, and what is made of the answer.
struct Job {
    agent: ureq::Agent,
    url: String,
    key: Option<String>,
    has_user: bool,
    pinned: bool,
    options: SourceOptions,
    shown: String,
    secrets: Vec<String>,
}

impl Job {
    /// `why` as shown: prefixed with the redacted URL, scrubbed of every secret.
    fn say(&self, why: &str) -> String {
        scrub(&format!("{}: {why}", self.shown), &self.secrets)
    }

    fn stale_secs(&self) -> u64 {
        self.options.stale.as_secs().max(1)
    }

    /// What a failed request or read means, said plainly.
    fn failure(&self, error: ureq::Error) -> String {
        let why = match error {
            ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
                format!("no connection within {} s", self.stale_secs())
            }
            ureq::Error::Timeout(ureq::Timeout::PerRead | ureq::Timeout::RecvBody) => {
                format!("no data for {} s", self.stale_secs())
            }
            ureq::Error::Timeout(_) => format!("no answer for {} s", self.stale_secs()),
            ureq::Error::Io(e) => match e.kind() {
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                    format!("no data for {} s", self.stale_secs())
                }
                std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
                _ => match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                    Some(rustls::Error::InvalidCertificate(_)) if self.pinned => {
                        "its certificate is not the one CAMERA_TLS_FINGERPRINT names (refused)"
                            .into()
                    }
                    Some(rustls::Error::InvalidCertificate(c)) => format!(
                        "its certificate is not trusted ({c:?}): for another box set \
                         CAMERA_TLS_FINGERPRINT to its certificate's SHA-256"
                    ),
                    Some(tls) => format!("TLS: {tls}"),
                    None => e.to_string(),
                },
            },
            ureq::Error::HostNotFound => "host not found".into(),
            other => other.to_string(),
        };
        self.say(&why)
    }

    /// One GET; the answer when its status is 2xx.
    fn get(&self) -> Result<Response<Body>, String> {
        let mut request = self.agent.get(&self.url);
        if let Some(key) = &self.key {
            request = request.header(crate::client::API_KEY_HEADER, key);
        }
        let response = request.call().map_err(|e| self.failure(e))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok());
        Err(self.say(&refusal(
            status,
            self.key.is_some(),
            self.has_user,
            challenge,
        )))
    }

    /// The kind of an answer, by its content type.
    fn kind(&self, response: &Response<Body>) -> Result<Kind, String> {
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        kind_of(content_type.as_deref()).map_err(|why| self.say(&why))
    }

    /// Runs until the stream fails or the source is dropped; says why it ended.
    fn run(&self, shared: &Shared) -> String {
        let response = match self.get() {
            Ok(response) => response,
            Err(why) => return why,
        };
        match self.kind(&response) {
            Ok(Kind::Stream) => {
                *lock(&shared.description) = format!("MJPEG stream {}", self.shown);
                log::info!("camera: {} sends an MJPEG stream", self.shown);
                self.stream(shared, response)
            }
            Ok(Kind::Snapshot) => {
                *lock(&shared.description) = format!(
                    "JPEG snapshots {} polled at {} fps",
                    self.shown, self.options.fps
                );
                log::info!("camera: {} sends JPEG snapshots", self.shown);
                self.snapshots(shared, response)
            }
            Err(why) => why,
        }
    }

    /// Reads a `multipart/x-mixed-replace` body through the scanner.
    fn stream(&self, shared: &Shared, response: Response<Body>) -> String {
        let mut scanner = MjpegScanner::new(self.options.max_frame_bytes).expecting_gaps();
        let mut reader = response.into_body().into_reader();
        let mut buffer = vec![0u8; READ_BUFFER];
        let mut frames = Vec::new();
        while !shared.stopping() {
            let n = match reader.read(&mut buffer) {
                Ok(0) => return self.say("the server ended the stream"),
                Ok(n) => n,
                Err(e) => return self.failure(ureq::Error::from(e)),
            };
            scanner.push(&buffer[..n], &mut frames);
            shared.count(scanner.take_skipped());
            // The newest wins: older frames of the same read are not worth handing over.
            if let Some(frame) = frames.pop() {
                shared.frames.put(frame);
            }
            frames.clear();
        }
        String::new()
    }

    /// Polls the snapshot URL at the capture rate; `first` is the first answer.
    fn snapshots(&self, shared: &Shared, first: Response<Body>) -> String {
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.options.fps.max(1)));
        let mut due = Instant::now();
        let mut response = first;
        loop {
            match self.snapshot(&mut response) {
                Ok((frame, skipped)) => {
                    shared.count(skipped);
                    if let Some(frame) = frame {
                        shared.frames.put(frame);
                    }
                }
                Err(why) => return why,
            }
            // Read to its end (or dropped), the connection goes back to the agent's pool.
            drop(response);
            due = (due + interval).max(Instant::now());
            if !shared.nap_until(due) {
                return String::new();
            }
            response = match self.get() {
                Ok(response) => response,
                Err(why) => return why,
            };
            match self.kind(&response) {
                Ok(Kind::Snapshot) => {}
                Ok(Kind::Stream) => return self.say("turned from snapshots into a stream"),
                Err(why) => return why,
            }
        }
    }

    /// One snapshot's JPEG (none when it was too large or not a whole JPEG), and what was
    /// skipped of it.
    fn snapshot(
        &self,
        response: &mut Response<Body>,
    ) -> Result<(Option<Vec<u8>>, Skipped), String> {
        let max = self.options.max_frame_bytes;
        let body = response
            .body_mut()
            .with_config()
            .limit(max as u64)
            .read_to_vec();
        let bytes = match body {
            Ok(bytes) => bytes,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                let skipped = Skipped {
                    oversize: 1,
                    ..Skipped::default()
                };
                return Ok((None, skipped));
            }
            Err(e) => return Err(self.failure(e)),
        };
        let mut scanner = MjpegScanner::new(max);
        let mut frames = Vec::new();
        scanner.push(&bytes, &mut frames);
        Ok((frames.pop(), scanner.take_skipped()))
    }
}

/// The agent for `url`: no redirects, no proxy from the environment, 4xx/5xx as answers, and
/// every wait bounded by `stale`.
fn agent(url: &str, access: &HttpAccess, stale: Duration) -> Result<ureq::Agent, String> {
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .user_agent(concat!("face-attendance/", env!("CARGO_PKG_VERSION")))
        .timeout_resolve(Some(stale))
        .timeout_connect(Some(stale))
        .timeout_send_request(Some(stale))
        .timeout_recv_response(Some(stale))
        .timeout_per_read(Some(stale))
        .timeout_per_write(Some(stale))
        .build();
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    if !https {
        if access.tls_fingerprint.is_some() {
            return Err(
                "CAMERA_TLS_FINGERPRINT is set for an http:// camera: use https:// \
                        (or drop the fingerprint)"
                    .into(),
            );
        }
        return Ok(ureq::Agent::with_parts(
            config,
            TcpConnector::default(),
            DefaultResolver::default(),
        ));
    }
    let trust = Trust {
        ca_file: None,
        fingerprint: access.tls_fingerprint,
    };
    let connector = TcpConnector::default().chain(TlsConnector(trust.config()?));
    Ok(ureq::Agent::with_parts(
        config,
        connector,
        DefaultResolver::default(),
    ))
}

impl HttpSource {
    /// Starts reading `url` (the source's `http(s)://` spec) in a worker thread; failures of
    /// the server come through [`FrameSource::next_frame`] as `Unavailable`.
    pub fn open(
        spec: &SourceSpec,
        access: &HttpAccess,
        options: &SourceOptions,
    ) -> Result<HttpSource, SourceError> {
        let SourceSpec::Http(url) = spec else {
            return Err(SourceError::Unavailable(format!(
                "{}: not an http(s):// camera",
                spec.redacted()
            )));
        };
        let shown = spec.redacted();
        let mut secrets = spec.secrets();
        secrets.extend(access.key.iter().cloned());
        let stale = options.stale.max(Duration::from_secs(1));
        let agent = agent(url, access, stale)
            .map_err(|why| SourceError::Unavailable(scrub(&format!("{shown}: {why}"), &secrets)))?;
        let shared = Arc::new(Shared {
            frames: LatestSlot::default(),
            failure: Mutex::new(None),
            skipped: Mutex::new(Skipped::default()),
            description: Mutex::new(format!("HTTP camera {shown}")),
            stop: AtomicBool::new(false),
        });
        let job = Job {
            agent: agent.clone(),
            url: url.clone(),
            key: access.key.clone(),
            has_user: url
                .split_once("://")
                .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default())
                .is_some_and(|authority| authority.contains('@')),
            pinned: access.tls_fingerprint.is_some(),
            options: SourceOptions {
                stale,
                ..options.clone()
            },
            shown: shown.clone(),
            secrets,
        };
        let (ended_tx, ended) = mpsc::channel::<()>();
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("camera-http".into())
            .spawn(move || {
                let _ended = ended_tx;
                let why = job.run(&worker_shared);
                *lock(&worker_shared.failure) = Some(why);
                worker_shared.frames.close();
            })
            .map_err(|e| {
                SourceError::Unavailable(format!("{shown}: cannot start a thread: {e}"))
            })?;
        Ok(HttpSource {
            shared,
            agent,
            worker: Some(worker),
            ended,
            shown,
            stale,
            last_frame: Instant::now(),
        })
    }
}

impl FrameSource for HttpSource {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        let left = self.stale.saturating_sub(self.last_frame.elapsed());
        if let Some(jpeg) = self.shared.frames.take(POLL.min(left)) {
            self.last_frame = Instant::now();
            return Ok(RawFrame::Mjpeg(jpeg));
        }
        if let Some(why) = lock(&self.shared.failure).take() {
            return Err(SourceError::Unavailable(why));
        }
        if self.last_frame.elapsed() >= self.stale {
            return Err(SourceError::Unavailable(format!(
                "{}: no frame for {} s",
                self.shown,
                self.stale.as_secs()
            )));
        }
        Err(SourceError::NoFrameYet)
    }

    fn describe(&self) -> String {
        lock(&self.shared.description).clone()
    }

    fn skipped(&mut self) -> Skipped {
        std::mem::take(&mut *lock(&self.shared.skipped))
    }
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Closes every connection of the agent: a read blocked on the server returns now.
        self.agent.clone().shutdown();
        let Some(worker) = self.worker.take() else {
            return;
        };
        match self.ended.recv_timeout(JOIN_WAIT) {
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = worker.join();
            }
            _ => log::debug!(
                "camera: {}: the HTTP worker is still connecting; it ends by its time-out",
                self.shown
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_choose_stream_or_snapshot() {
        let stream = Some("multipart/x-mixed-replace; boundary=frame");
        assert_eq!(kind_of(stream), Ok(Kind::Stream));
        assert_eq!(
            kind_of(Some("Multipart/X-Mixed-Replace;boundary=--x")),
            Ok(Kind::Stream)
        );
        assert_eq!(kind_of(Some("image/jpeg")), Ok(Kind::Snapshot));
        assert_eq!(kind_of(Some(" IMAGE/JPEG ; charset=x")), Ok(Kind::Snapshot));
        let html = kind_of(Some("text/html; charset=utf-8")).unwrap_err();
        assert!(html.contains("text/html"), "{html}");
        assert!(kind_of(None)
            .unwrap_err()
            .contains("without a content type"));
        // A hostile header is cut short in the message.
        let long = "x".repeat(10_000);
        assert!(kind_of(Some(&long)).unwrap_err().len() < 300);
    }

    #[test]
    fn refusals_say_what_to_fix() {
        assert!(refusal(401, true, false, None).contains("refused the key"));
        assert!(refusal(403, true, true, None).contains("CAMERA_HTTP_KEY"));
        assert!(refusal(401, false, false, None).contains("asks for a key"));
        assert!(refusal(401, false, true, Some("Basic realm=x")).contains("user and password"));
        assert!(refusal(401, false, true, Some("Digest realm=x")).contains("Digest"));
        assert!(refusal(302, false, false, None).contains("redirects are not followed"));
        assert_eq!(refusal(500, false, false, None), "answered HTTP 500");
    }

    fn options(stale: u64) -> SourceOptions {
        SourceOptions {
            stale: Duration::from_secs(stale),
            ..SourceOptions::default()
        }
    }

    /// Waits for the source's first answer that is not `NoFrameYet`.
    fn settle(source: &mut HttpSource) -> Result<RawFrame, SourceError> {
        loop {
            match source.next_frame() {
                Err(SourceError::NoFrameYet) => continue,
                other => return other,
            }
        }
    }

    #[test]
    fn failures_never_show_credentials_or_the_key() {
        // Nothing listens on a port just released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://cam:hunter2@127.0.0.1:{port}/snap.jpg?pwd=letmein");
        let spec: SourceSpec = url.parse().unwrap();
        let access = HttpAccess {
            key: Some("the-secret-key".into()),
            tls_fingerprint: None,
        };
        let mut source = HttpSource::open(&spec, &access, &options(5)).unwrap();
        let Err(SourceError::Unavailable(why)) = settle(&mut source) else {
            panic!("a closed port gave a frame");
        };
        assert!(why.contains("connection refused"), "{why}");
        for secret in ["hunter2", "letmein", "the-secret-key", "cam:"] {
            assert!(!why.contains(secret), "{secret} in {why}");
        }
        assert!(why.contains(&format!("127.0.0.1:{port}/snap.jpg")), "{why}");
        assert!(source.describe().contains("http://***@127.0.0.1"));
    }

    #[test]
    fn a_fingerprint_for_plain_http_is_refused() {
        let spec: SourceSpec = "http://127.0.0.1:9/stream.mjpg".parse().unwrap();
        let access = HttpAccess {
            key: None,
            tls_fingerprint: Some([7; 32]),
        };
        let Err(SourceError::Unavailable(why)) = HttpSource::open(&spec, &access, &options(5))
        else {
            panic!("opened");
        };
        assert!(why.contains("https://"), "{why}");
    }
}
