//! Regression tests for hostile requests found by the soak probe and the fuzz targets: each once
//! crashed or wedged the server.

mod common;

use common::http as h;

/// tiny_http 0.12 drained an unread body into `vec![0; Content-Length]` when the request was
/// dropped: `Content-Length: 10000000000000` on any route answered without reading the body
/// aborted the process ("memory allocation of 10000000000000 bytes failed"). Fixed in
/// vendor/tiny_http; the body is also discarded off the HTTP workers.
#[test]
fn a_huge_declared_content_length_is_refused_and_the_server_lives() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    settings.workers = 1;
    let server = h::start(data.path(), settings);
    let addr = server.addr();
    for (head, want) in [
        ("POST /enroll HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000000\r\n\r\n", "413"),
        ("POST /recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n", "413"),
        ("GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000000\r\n\r\n", "200"),
        ("POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000000\r\n\r\n", "404"),
        ("PUT /enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000000\r\n\r\n", "405"),
    ] {
        let (_, answer) = h::raw_request(addr, head);
        let line = answer.lines().next().unwrap_or_default();
        assert!(line.contains(want), "{head:?}: {line:?}");
        // Still alive, and the only worker is free.
        assert_eq!(h::get(&format!("http://{addr}/health")).0, 200);
    }
    server.shutdown();
}

/// Slowloris on the request head: tiny_http reads heads on threads of its own, with no timeout,
/// one thread per connection. Accepted sockets now inherit the listener's receive timeout
/// (HTTP_TIMEOUT_SECONDS, 3 s here), so stalled heads are cut off and their threads freed, and
/// idle wake-ups of accept() no longer stop the server from listening.
#[test]
fn clients_that_never_finish_their_request_head_are_cut_off() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let addr = server.addr();
    let mut stalled: Vec<std::net::TcpStream> = (0..40)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Served meanwhile.
    assert_eq!(h::get(&format!("http://{addr}/health")).0, 200);
    let started = Instant::now();
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        // Closed by the server: end of stream (or a reset), not our own 20 s timeout.
        let mut answer = Vec::new();
        if let Err(e) = s.read_to_end(&mut answer) {
            assert_ne!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        }
    }
    assert!(started.elapsed() < Duration::from_secs(15));
    // Idle longer than the timeout: the listener woke up idle and kept listening.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(h::get(&format!("http://{addr}/health")).0, 200);
    server.shutdown();
}
