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
