//! Regression tests for hostile requests found by the soak probe and the fuzz targets: each once
//! crashed or wedged the server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::http as h;

/// Sends raw request headers (no body) and returns the status line of the answer.
fn status_line(addr: std::net::SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0; 1024];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

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
        let line = status_line(addr, head);
        assert!(line.contains(want), "{head:?}: {line:?}");
        // Still alive, and the only worker is free.
        assert_eq!(h::get(&format!("http://{addr}/health")).0, 200);
    }
    server.shutdown();
}
