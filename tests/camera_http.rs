//! HTTP(S) cameras (`sources::open` of an `http(s)://` spec) against real servers on 127.0.0.1:
//! another `serve` process's `/stream.mjpg` of a replayed camera, read with its key (plain, and
//! over HTTPS with its certificate pinned; a wrong or missing key, a wrong certificate refused);
//! a JPEG snapshot URL served by a small server here (polled over one kept-alive connection, the
//! key on every request; redirects not followed, other content types and oversize snapshots
//! refused); a stream with a frame above the cap and a frame cut short (counted, skipped, the
//! stream goes on); servers that send their headers (or a frame) and then nothing: the source answers
//! `Unavailable` after the stale time, and no thread of it outlives it. The tests run one at a
//! time, as they count this process's threads.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use face_attendance::camera::frame::RawFrame;
use face_attendance::camera::sources::{
    self, FrameSource, HttpAccess, SourceError, SourceOptions, SourceSpec,
};
use face_attendance::image_io;

use common::certificate::Cert;
use common::serve_process::Running;

const KEY: &str = "camera-http-test-key-0123456789abcdef";

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn options(stale_secs: u64) -> SourceOptions {
    SourceOptions {
        fps: 5,
        stale: Duration::from_secs(stale_secs),
        ..SourceOptions::default()
    }
}

fn access(key: Option<&str>, fingerprint: Option<[u8; 32]>) -> HttpAccess {
    HttpAccess {
        key: key.map(str::to_string),
        tls_fingerprint: fingerprint,
    }
}

fn open(url: &str, access: &HttpAccess, options: &SourceOptions) -> Box<dyn FrameSource> {
    let spec: SourceSpec = url.parse().unwrap();
    match sources::open(&spec, access, options) {
        Ok(source) => source,
        Err(e) => panic!("{url}: {e}"),
    }
}

/// The source's next answer that is not `NoFrameYet`, waiting at most `limit`.
fn settle(source: &mut dyn FrameSource, limit: Duration) -> Result<Vec<u8>, SourceError> {
    let deadline = Instant::now() + limit;
    loop {
        match source.next_frame() {
            Ok(RawFrame::Mjpeg(jpeg)) => return Ok(jpeg),
            Ok(other) => panic!("not a JPEG: {other:?}"),
            Err(SourceError::NoFrameYet) => {
                assert!(Instant::now() < deadline, "nothing within {limit:?}");
            }
            Err(e) => return Err(e),
        }
    }
}

/// Why the source stopped (it must stop with `Unavailable` within `limit`).
fn refused(source: &mut dyn FrameSource, limit: Duration) -> String {
    loop {
        match settle(source, limit) {
            Ok(_) => continue,
            Err(SourceError::Unavailable(why)) => return why,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A real photo, as the JPEG file it is.
fn photo(rel: &str) -> Vec<u8> {
    std::fs::read(common::faces_dir().join(rel)).unwrap()
}

/// A folder of real photos for the other box's replayed camera.
fn frames_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (i, rel) in [
        "probe/obama/obama_3.jpg",
        "known/obama/obama_1.jpg",
        "probe/biden/biden_2.jpg",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(dir.path().join(format!("{i:03}.jpg")), photo(rel)).unwrap();
    }
    dir
}

/// Another box: `serve` with a key, replaying `frames` in a loop, with `env` added.
fn other_box(site: &Path, frames: &Path, env: &[(&str, &str)]) -> Running {
    let mut all = vec![
        ("FACE_API_KEY", KEY),
        ("CAMERA_FRAMES", frames.to_str().unwrap()),
        ("CAMERA_LOOP", "true"),
        ("CAMERA_FPS", "5"),
    ];
    all.extend_from_slice(env);
    let run = common::serve_process::start(site, &all);
    let text = run.early.join("\n");
    assert!(text.contains("serving on"), "{text}");
    run
}

/// Reads `n` frames; each is a whole JPEG of the other box's live view (at most 640 wide).
fn read_frames(source: &mut dyn FrameSource, n: usize) {
    for _ in 0..n {
        let jpeg = settle(source, Duration::from_secs(30)).unwrap();
        let image = image_io::decode(&jpeg, u64::MAX).unwrap();
        assert!(image.width <= 640 && image.width >= 100, "{}", image.width);
    }
    let skipped = source.skipped();
    assert_eq!(skipped.truncated, 0, "{skipped:?}");
    assert_eq!(skipped.oversize, 0, "{skipped:?}");
    // The part headers between frames were expected, not garbage.
    assert_eq!(skipped.garbage_bytes, 0, "{skipped:?}");
}

#[test]
fn another_box_stream_is_read_with_its_key_and_refused_without() {
    let _serial = one_at_a_time();
    let site = tempfile::tempdir().unwrap();
    let frames = frames_dir();
    let port = common::free_port();
    let _run = other_box(
        site.path(),
        frames.path(),
        &[("FACE_BIND", &format!("127.0.0.1:{port}"))],
    );
    let url = format!("http://127.0.0.1:{port}/stream.mjpg");

    let mut source = open(&url, &access(Some(KEY), None), &options(10));
    read_frames(source.as_mut(), 5);
    assert_eq!(source.describe(), format!("MJPEG stream {url}"));
    drop(source);

    // No key: a clear word of what to set.
    let mut source = open(&url, &access(None, None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("asks for a key (HTTP 401)"), "{why}");
    assert!(why.contains("CAMERA_HTTP_KEY"), "{why}");

    // A wrong key: refused, and the key is not repeated.
    let wrong = "not-the-key-of-that-box-0123456789";
    let mut source = open(&url, &access(Some(wrong), None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("refused the key"), "{why}");
    assert!(!why.contains(wrong), "{why}");

    // A path of the box that is not a stream (JSON): refused, naming what it is.
    let health = format!("http://127.0.0.1:{port}/health");
    let mut source = open(&health, &access(Some(KEY), None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("application/json"), "{why}");
}

/// The bytes of a fingerprint as `openssl x509 -fingerprint -sha256` prints it.
fn parse_fingerprint(printed: &str) -> Option<[u8; 32]> {
    let (_, colons) = printed.split_once('=')?;
    let bytes: Vec<u8> = colons
        .split(':')
        .map(|b| u8::from_str_radix(b, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    bytes.try_into().ok()
}

#[test]
fn another_box_over_https_is_read_with_its_certificate_pinned() {
    let _serial = one_at_a_time();
    let site = tempfile::tempdir().unwrap();
    let frames = frames_dir();
    let cert = Cert::make(site.path(), "box");
    let other = Cert::make(site.path(), "other");
    let (plain, tls) = (common::free_port(), common::free_port());
    let _run = other_box(
        site.path(),
        frames.path(),
        &[
            ("FACE_BIND", &format!("127.0.0.1:{plain}")),
            ("FACE_TLS_BIND", &format!("127.0.0.1:{tls}")),
            ("FACE_TLS_CERT", cert.cert.to_str().unwrap()),
            ("FACE_TLS_KEY", cert.key.to_str().unwrap()),
        ],
    );
    let url = format!("https://127.0.0.1:{tls}/stream.mjpg");
    let pin = parse_fingerprint(&cert.fingerprint()).unwrap();

    // The box's own certificate, as `openssl x509 -fingerprint -sha256` printed it.
    let mut source = open(&url, &access(Some(KEY), Some(pin)), &options(10));
    read_frames(source.as_mut(), 5);
    drop(source);

    // Another certificate's fingerprint: the handshake is refused.
    let wrong = parse_fingerprint(&other.fingerprint()).unwrap();
    let mut source = open(&url, &access(Some(KEY), Some(wrong)), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(
        why.contains("not the one CAMERA_TLS_FINGERPRINT names"),
        "{why}"
    );
    assert!(!why.contains(KEY), "{why}");

    // No fingerprint: the system's CA certificates do not know a self-signed box.
    let mut source = open(&url, &access(Some(KEY), None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("not trusted"), "{why}");
    assert!(why.contains("CAMERA_TLS_FINGERPRINT"), "{why}");

    // The right certificate but no key: refused by the box.
    let mut source = open(&url, &access(None, Some(pin)), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("asks for a key"), "{why}");
}

/// What a small server here saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    /// Each request's head, lowercased.
    requests: Vec<String>,
}

/// A small HTTP/1.1 server on 127.0.0.1 answering each request with `answer(head)`, keeping
/// connections alive, one connection at a time on one thread (so that it adds no thread while
/// a test counts them).
fn tiny_server(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> (u16, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            record.lock().unwrap().connections += 1;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
            let mut pending = Vec::new();
            let mut buf = [0u8; 4096];
            'connection: loop {
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
                    pending.drain(..end + 4);
                    record.lock().unwrap().requests.push(head.clone());
                    if stream.write_all(&answer(&head)).is_err() {
                        break 'connection;
                    }
                }
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending.extend_from_slice(&buf[..n]),
                }
            }
        }
    });
    (port, seen)
}

fn answer(status: &str, content_type: &str, body: &[u8], extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn a_snapshot_url_is_polled_over_one_connection_with_the_key() {
    let _serial = one_at_a_time();
    let jpeg = photo("probe/obama/obama_3.jpg");
    let served = jpeg.clone();
    let (port, seen) = tiny_server(move |head| {
        if head.contains(&format!("x-api-key: {}", KEY.to_ascii_lowercase())) {
            answer("200 OK", "image/jpeg", &served, "")
        } else {
            answer("401 Unauthorized", "text/plain", b"key", "")
        }
    });
    let url = format!("http://127.0.0.1:{port}/snapshot.jpg");
    let mut source = open(&url, &access(Some(KEY), None), &options(10));
    for _ in 0..6 {
        let frame = settle(source.as_mut(), Duration::from_secs(10)).unwrap();
        assert_eq!(frame, jpeg, "the snapshot as served");
    }
    assert_eq!(source.skipped(), Default::default());
    assert!(
        source.describe().contains("JPEG snapshots"),
        "{}",
        source.describe()
    );
    drop(source);
    let seen = seen.lock().unwrap();
    // One request per frame (a frame may have been replaced by a newer before it was taken).
    assert!(seen.requests.len() >= 6, "{}", seen.requests.len());
    assert!(
        seen.requests
            .iter()
            .all(|r| r.starts_with("get /snapshot.jpg ")),
        "{:?}",
        seen.requests
    );
    println!(
        "snapshots: {} requests over {} connection(s)",
        seen.requests.len(),
        seen.connections
    );
    assert_eq!(seen.connections, 1, "kept alive");
    drop(seen);

    // Without the key: refused, naming the setting.
    let mut source = open(&url, &access(None, None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("CAMERA_HTTP_KEY"), "{why}");
}

#[test]
fn redirects_other_content_and_oversize_snapshots_are_refused() {
    let _serial = one_at_a_time();
    // A redirect is not followed: the place it names is never contacted.
    let elsewhere = TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!(
        "http://127.0.0.1:{}/x.jpg",
        elsewhere.local_addr().unwrap().port()
    );
    let (port, _) = tiny_server(move |_| {
        answer(
            "302 Found",
            "text/plain",
            b"",
            &format!("Location: {target}\r\n"),
        )
    });
    let url = format!("http://127.0.0.1:{port}/snap.jpg");
    let mut source = open(&url, &access(None, None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("redirects are not followed"), "{why}");
    assert!(elsewhere.accept().is_err(), "the redirect was followed");

    // A web page is not a camera.
    let (port, _) = tiny_server(|_| answer("200 OK", "text/html; charset=utf-8", b"<html>", ""));
    let url = format!("http://127.0.0.1:{port}/");
    let mut source = open(&url, &access(None, None), &options(10));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("text/html"), "{why}");

    // Snapshots above the cap: counted, never handed over; then stale.
    let jpeg = photo("probe/obama/obama_3.jpg");
    let (port, seen) = tiny_server(move |_| answer("200 OK", "image/jpeg", &jpeg, ""));
    let url = format!("http://127.0.0.1:{port}/snap.jpg");
    let small = SourceOptions {
        max_frame_bytes: 1000,
        ..options(2)
    };
    let mut source = open(&url, &access(None, None), &small);
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("no frame for 2 s"), "{why}");
    let skipped = source.skipped();
    assert!(skipped.oversize >= 1, "{skipped:?}");
    assert_eq!(
        skipped.oversize as usize,
        seen.lock().unwrap().requests.len()
    );

    // A snapshot that is not a JPEG: its bytes are counted, no frame.
    let (port, _) = tiny_server(|_| answer("200 OK", "image/jpeg", b"<html>not a jpeg</html>", ""));
    let url = format!("http://127.0.0.1:{port}/snap.jpg");
    let mut source = open(&url, &access(None, None), &options(2));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(why.contains("no frame for 2 s"), "{why}");
    assert!(source.skipped().garbage_bytes > 0);
}

/// This process's threads, and those of HTTP camera sources among them.
fn threads() -> (usize, usize) {
    let mut all = 0;
    let mut cameras = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let task = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue; // ended meanwhile
        };
        all += 1;
        if name.trim() == "camera-http" {
            cameras += 1;
        }
    }
    (all, cameras)
}

/// A server that answers every connection with `head` (and nothing more), holding each
/// connection open without reading it: on its accepting thread, so it adds no thread.
fn silent_server(head: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.write_all(&head);
            held.push(stream);
        }
    });
    port
}

#[test]
fn a_server_that_goes_silent_never_holds_a_thread() {
    let _serial = one_at_a_time();
    let jpeg = photo("probe/obama/obama_3.jpg");
    let mut head = STREAM_HEAD.to_vec();
    head.extend(part(&jpeg));
    let one_frame = silent_server(head);
    // Accepts, and never says a word.
    let mute = silent_server(Vec::new());
    let before = threads();
    assert_eq!(before.1, 0, "{before:?}");

    // One frame, then silence: Unavailable after the stale time, and restarted, 5 times.
    let url = format!("http://127.0.0.1:{one_frame}/stream.mjpg");
    for round in 0..5 {
        let mut source = open(&url, &access(Some(KEY), None), &options(2));
        assert_eq!(
            settle(source.as_mut(), Duration::from_secs(10)).unwrap(),
            jpeg
        );
        let why = refused(source.as_mut(), Duration::from_secs(10));
        assert!(
            why.contains("no frame for 2 s") || why.contains("no data for 2 s"),
            "{why}"
        );
        assert_eq!(
            threads().1,
            1,
            "round {round}: the worker runs until dropped"
        );
        drop(source);
        assert_eq!(
            threads().1,
            0,
            "round {round}: dropping the source ended its thread"
        );
    }

    // Dropped while its worker is blocked reading a silent server with a long stale time: the
    // read is interrupted, the thread ends with the source.
    let mut source = open(&url, &access(None, None), &options(600));
    assert_eq!(
        settle(source.as_mut(), Duration::from_secs(10)).unwrap(),
        jpeg
    );
    let started = Instant::now();
    drop(source);
    println!("drop with a blocked read took {:?}", started.elapsed());
    assert_eq!(threads().1, 0, "the blocked worker ended with its source");

    // Headers never come: the same.
    let url = format!("http://127.0.0.1:{mute}/stream.mjpg");
    let mut source = open(&url, &access(None, None), &options(2));
    let why = refused(source.as_mut(), Duration::from_secs(10));
    assert!(
        why.contains("no frame for 2 s") || why.contains("no answer for 2 s"),
        "{why}"
    );
    drop(source);
    let mut source = open(&url, &access(None, None), &options(600));
    assert!(matches!(source.next_frame(), Err(SourceError::NoFrameYet)));
    drop(source);
    assert_eq!(
        threads().1,
        0,
        "the worker waiting for headers ended with its source"
    );

    // The process is back to its threads (a test thread of the harness may come or go).
    let after = threads();
    println!("threads before {before:?}, after {after:?}");
    assert!(
        after.0 <= before.0 + 1,
        "before {before:?}, after {after:?}"
    );
}

/// The head of an MJPEG stream's answer.
const STREAM_HEAD: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n";

/// `jpeg` as one part of a `multipart/x-mixed-replace` body.
fn part(jpeg: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    out.extend_from_slice(jpeg);
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn a_frame_above_the_cap_and_a_cut_frame_in_a_stream_are_counted_and_it_goes_on() {
    let _serial = one_at_a_time();
    let small = photo("group/voc_2008_001009.jpg");
    let large = photo("known/obama/obama_1.jpg");
    let cut = photo("probe/obama/obama_3.jpg");
    let last = photo("group/bbt3.jpg");
    let mut body = STREAM_HEAD.to_vec();
    body.extend(part(&small));
    body.extend(part(&large));
    body.extend(part(&cut[..cut.len() / 2]));
    body.extend(part(&last));
    let port = silent_server(body);
    let capped = SourceOptions {
        max_frame_bytes: 100_000,
        ..options(2)
    };
    assert!(small.len() < 100_000 && last.len() < 100_000 && large.len() > 100_000);
    let url = format!("http://127.0.0.1:{port}/video.mjpg");
    let mut source = open(&url, &access(None, None), &capped);
    let mut got = Vec::new();
    let why = loop {
        match settle(source.as_mut(), Duration::from_secs(10)) {
            Ok(frame) => got.push(frame),
            Err(SourceError::Unavailable(why)) => break why,
            Err(e) => panic!("{e}"),
        }
    };
    // The newest frame wins the hand-over: the first may have been replaced by the last.
    assert_eq!(
        got.last(),
        Some(&last),
        "the stream went on to its last frame"
    );
    assert!(
        got.iter().all(|f| *f == small || *f == last),
        "only whole frames"
    );
    let skipped = source.skipped();
    assert_eq!(skipped.oversize, 1, "{skipped:?}");
    assert_eq!(skipped.truncated, 1, "{skipped:?}");
    assert_eq!(
        skipped.garbage_bytes, 0,
        "part headers are expected: {skipped:?}"
    );
    assert!(
        why.contains("no frame for 2 s") || why.contains("no data for 2 s"),
        "{why}"
    );
}
