//! `GET /stream.mjpg`, the live camera view, against the real server with a replayed camera of
//! real photos: the stream parsed as multipart by a small client here (parts framed by their
//! boundary and Content-Length), each JPEG decoded; the rate and viewer caps; a viewer that
//! stops reading does not slow the camera and is dropped; the service stopping ends the streams.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::http as h;
use common::wait_for;
use face_attendance::gallery::{Gallery, StudentId};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::recognizer::Recognizer;
use face_attendance::service::Service;
use face_attendance::settings::ServeSettings;
use serde_json::Value;

fn photo(rel: &str) -> RgbImage {
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    image_io::decode(&bytes, u64::MAX).unwrap()
}

/// A folder of camera frames (640x480) of one enrolled person's other photo, and that frame.
fn frames() -> (tempfile::TempDir, RgbImage) {
    let frame = image_io::letterbox(&photo("probe/obama/obama_3.jpg"), 640, 480);
    let jpeg = image_io::encode_jpeg(&frame).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        std::fs::write(dir.path().join(format!("{i:03}.jpg")), &jpeg).unwrap();
    }
    (dir, image_io::decode(&jpeg, u64::MAX).unwrap())
}

fn enroll(data: &Path) {
    let (gallery, _) = Gallery::open(data).unwrap();
    let r = Recognizer::new(common::engine(), Arc::new(gallery));
    let face = r.engine().analyze(&photo("known/obama/obama_1.jpg"));
    r.gallery()
        .append(
            &StudentId::parse("obama").unwrap(),
            &[face[0].encoding],
            "test",
        )
        .unwrap();
}

/// The service with obama enrolled and a camera replaying `frames` in a loop at `fps`.
fn serve(data: &Path, frames: &Path, fps: f64, tune: impl FnOnce(&mut ServeSettings)) -> Service {
    enroll(data);
    let mut settings = h::serve_settings();
    settings.camera.frames = Some(frames.to_path_buf());
    settings.camera.frames_loop = true;
    settings.camera.frames_fps = fps;
    tune(&mut settings);
    h::start(data, settings)
}

fn health(server: &Service) -> Value {
    h::get(&format!("http://{}/health", server.addr())).1
}

fn processed(server: &Service) -> u64 {
    health(server)["camera"]["frames_processed"]
        .as_u64()
        .unwrap()
}

/// A client of the stream: the answer's head, then its parts one by one.
struct Viewer {
    reader: BufReader<TcpStream>,
    head: String,
}

impl Viewer {
    fn connect(addr: SocketAddr) -> Viewer {
        Viewer::over(TcpStream::connect(addr).unwrap())
    }

    fn over(mut stream: TcpStream) -> Viewer {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            head.push_str(&line);
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Viewer { reader, head }
    }

    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "{line:?}");
        line.trim_end().to_string()
    }

    /// The next part's JPEG: `--frame`, headers up to an empty line (a Content-Type of
    /// image/jpeg and a Content-Length), that many bytes, CRLF.
    fn part(&mut self) -> Vec<u8> {
        assert_eq!(self.line(), "--frame");
        let (mut length, mut content_type) = (None, None);
        loop {
            let line = self.line();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = Some(value.trim().parse::<usize>().unwrap()),
                "content-type" => content_type = Some(value.trim().to_string()),
                _ => {}
            }
        }
        assert_eq!(content_type.as_deref(), Some("image/jpeg"));
        let mut jpeg = vec![0; length.expect("a Content-Length")];
        self.reader.read_exact(&mut jpeg).unwrap();
        let mut end = [0; 2];
        self.reader.read_exact(&mut end).unwrap();
        assert_eq!(&end, b"\r\n");
        jpeg
    }
}

/// Pixels of the known-face box colour (green) in `view` that are not green in `raw`.
fn drawn_green(view: &RgbImage, raw: &RgbImage) -> usize {
    let green = |p: &[u8]| p[1] > 150 && p[0] < 110 && p[2] < 130;
    view.pixels
        .chunks_exact(3)
        .zip(raw.pixels.chunks_exact(3))
        .filter(|(v, r)| green(v) && !green(r))
        .count()
}

#[test]
fn parts_are_jpegs_with_the_boxes_drawn_at_the_capped_rate() {
    let data = tempfile::tempdir().unwrap();
    let (frames, raw) = frames();
    // The camera at 15 frames a second; viewers get 2.
    let server = serve(data.path(), frames.path(), 15.0, |s| s.stream_max_fps = 2.0);
    let mut viewer = Viewer::connect(server.addr());
    assert_eq!(viewer.status(), 200, "{}", viewer.head);
    let head = viewer.head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: multipart/x-mixed-replace; boundary=frame\r\n"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-store\r\n"), "{head}");

    // The first part may be the "waiting" picture (before the first frame): wait for the camera.
    wait_for("frames processed", Duration::from_secs(60), || {
        processed(&server) > 5
    });
    let mut boxed = 0;
    let started = Instant::now();
    let mut parts = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let jpeg = viewer.part();
        parts += 1;
        let view = image_io::decode(&jpeg, u64::MAX).expect("each part is a JPEG");
        assert_eq!((view.width, view.height), (640, 480));
        if drawn_green(&view, &raw) > 300 {
            boxed += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!("{parts} parts in {elapsed:.2} s at STREAM_MAX_FPS=2, {boxed} with the box drawn");
    assert!(
        parts as f64 <= 2.0 * elapsed + 2.0,
        "{parts} parts in {elapsed:.1} s at STREAM_MAX_FPS=2"
    );
    assert!(parts >= 3, "{parts} parts in {elapsed:.1} s");
    assert!(boxed >= 1, "no part showed the known face's box");
    let live = &health(&server)["camera"]["live"];
    assert_eq!(live["viewers"], 1, "{live}");
    assert!(live["frames_sent"].as_u64().unwrap() >= parts, "{live}");
    server.shutdown();
}

#[test]
fn viewers_past_the_cap_get_503_a_place_is_freed_when_one_leaves_and_stopping_ends_them() {
    let data = tempfile::tempdir().unwrap();
    let (frames, _) = frames();
    let server = serve(data.path(), frames.path(), 10.0, |s| {
        s.stream_max_clients = 2
    });
    let mut first = Viewer::connect(server.addr());
    let second = Viewer::connect(server.addr());
    assert_eq!((first.status(), second.status()), (200, 200));
    let (_, refused) = h::raw_request(
        server.addr(),
        "GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    assert_eq!(health(&server)["http"]["stream_clients"], 2);

    drop(second);
    wait_for("the place to be freed", Duration::from_secs(20), || {
        health(&server)["http"]["stream_clients"] == 1
    });
    let mut third = Viewer::connect(server.addr());
    assert_eq!(third.status(), 200);
    third.part();
    first.part();

    // Stopping the service ends the streams: the clients read the end of the connection.
    let started = Instant::now();
    server.shutdown();
    for viewer in [&mut first, &mut third] {
        let mut rest = Vec::new();
        viewer.reader.read_to_end(&mut rest).unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "streams ended {:?} after the stop",
        started.elapsed()
    );
}

#[test]
fn a_viewer_that_stops_reading_does_not_slow_the_camera_and_is_dropped() {
    let data = tempfile::tempdir().unwrap();
    let (frames, _) = frames();
    // Its writes may block for 10 s before it is dropped (HTTP_TIMEOUT_SECONDS).
    let server = serve(data.path(), frames.path(), 8.0, |s| {
        s.http_timeout_seconds = 10;
        s.stream_max_fps = 10.0;
    });
    wait_for("frames processed", Duration::from_secs(60), || {
        processed(&server) > 5
    });
    let window = Duration::from_secs(3);
    let pace = || {
        let before = processed(&server);
        std::thread::sleep(window);
        processed(&server) - before
    };
    let alone = pace();

    // A client with a small receive buffer that reads the head and nothing more.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr().into()).unwrap();
    let stalled = Viewer::over(socket.into());
    assert_eq!(stalled.status(), 200);
    let sent = || {
        health(&server)["camera"]["live"]["frames_sent"]
            .as_u64()
            .unwrap()
    };
    // Its thread is blocked in a write once nothing more goes out.
    let mut last = sent();
    wait_for(
        "the viewer's writes to block",
        Duration::from_secs(60),
        || {
            std::thread::sleep(Duration::from_millis(700));
            let now = sent();
            std::mem::replace(&mut last, now) == now
        },
    );
    let watched = pace();
    eprintln!(
        "frames processed in {window:?}: {alone} without a viewer, {watched} with a stalled one"
    );
    assert!(
        watched * 10 >= alone * 6,
        "{watched} frames in {window:?} with a stalled viewer, {alone} without"
    );

    wait_for(
        "the stalled viewer to be dropped",
        Duration::from_secs(60),
        || {
            let health = health(&server);
            health["http"]["stream_clients"] == 0
                && health["camera"]["live"]["viewers_stalled"] == 1
        },
    );
    // Its place is free again.
    let mut next = Viewer::connect(server.addr());
    assert_eq!(next.status(), 200);
    next.part();
    drop(stalled);
    server.shutdown();
}

#[test]
fn without_a_camera_the_stream_is_a_clear_409() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let (status, body) = h::get(&format!("http://{}/stream.mjpg", server.addr()));
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["ok"], false);
    assert!(
        body["error"].as_str().unwrap().contains("no camera"),
        "{body}"
    );
    assert_eq!(health(&server)["http"]["stream_clients"], 0);
    server.shutdown();
}
