//! face-attendance: hostile and broken clients against a real server on 127.0.0.1, with small
//! limits so that each test takes a few seconds at most (PATCHED.md, change 3).

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tiny_http::{Limits, Request, Response, Server};

/// A server on 127.0.0.1 that hands each request to `handler` on a thread of its own.
fn serve<F>(limits: Limits, handler: F) -> (Arc<Server>, SocketAddr)
where
    F: Fn(Request) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    serve_on(listener, limits, handler)
}

fn serve_on<F>(listener: TcpListener, limits: Limits, handler: F) -> (Arc<Server>, SocketAddr)
where
    F: Fn(Request) + Send + Sync + 'static,
{
    let addr = listener.local_addr().unwrap();
    let server = Arc::new(Server::from_listener_with_limits(listener, None, limits).unwrap());
    let handler = Arc::new(handler);
    let s = server.clone();
    thread::spawn(move || {
        while let Ok(request) = s.recv() {
            let handler = handler.clone();
            thread::spawn(move || handler(request));
        }
    });
    (server, addr)
}

fn ok(request: Request) {
    let _ = request.respond(Response::from_string("ok"));
}

/// A response: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response with a Content-Length body.
fn read_answer<R: BufRead>(r: &mut R) -> Answer {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 "), "{:?}", line);
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').unwrap();
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// Sends `data`, then reads everything until the server closes the connection.
fn exchange(addr: SocketAddr, data: &[u8]) -> (String, Duration) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    s.write_all(data).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < Duration::from_secs(10), "{}", what);
        thread::sleep(Duration::from_millis(10));
    }
}

/// A client socket bound to `ip` (any 127.x.y.z is this machine on Linux), as another host.
fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
        .unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

#[test]
fn a_300_mb_header_line_is_refused_with_431() {
    let (server, addr) = serve(Limits::default(), ok);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let mut sent = 0usize;
        if w.write_all(b"GET / HTTP/1.1\r\nX-Long: ").is_err() {
            return sent;
        }
        let chunk = vec![b'a'; 64 * 1024];
        while sent < 300 * 1024 * 1024 {
            match w.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        sent
    });
    let answer = read_answer(&mut BufReader::new(&mut s));
    assert_eq!(answer.status, 431);
    assert_eq!(answer.body, "request header line longer than 8192 bytes\n");
    assert_eq!(answer.header("connection"), Some("close"));
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // The server read at most the lingering allowance after that, then closed.
    let sent = writer.join().unwrap();
    assert!(sent < 64 * 1024 * 1024, "{} bytes went in", sent);
    wait_until("the connection closed", || server.open_connections() == 0);
    // And serves on.
    let (out, _) = exchange(addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(out.starts_with("HTTP/1.0 200"), "{}", out);
}

#[test]
fn a_trickled_head_gets_408_at_the_head_timeout() {
    let limits = Limits {
        head_timeout: Duration::from_millis(1500),
        idle_timeout: Duration::from_secs(5),
        ..Limits::default()
    };
    let (_server, addr) = serve(limits, ok);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut w = s.try_clone().unwrap();
    let started = Instant::now();
    // One byte every 300 ms: each read gets a byte long before any per-read timeout.
    let writer = thread::spawn(move || {
        for &b in b"GET / HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
            if w.write_all(&[b]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(300));
        }
    });
    let answer = read_answer(&mut BufReader::new(&mut s));
    let elapsed = started.elapsed();
    assert_eq!(answer.status, 408);
    assert_eq!(answer.body, "request head not received within 1500 ms\n");
    assert!(
        elapsed >= Duration::from_millis(1400) && elapsed < Duration::from_millis(3000),
        "{:?}",
        elapsed
    );
    drop(s);
    writer.join().unwrap();
}

#[test]
fn idle_connections_are_closed_without_an_answer() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let (server, addr) = serve(limits, ok);
    // A fresh connection that sends nothing.
    let (out, elapsed) = exchange(addr, b"");
    assert_eq!(out, "");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{:?}",
        elapsed
    );
    // A kept-alive one, after its answer.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert_eq!(read_answer(&mut r).status, 200);
    let started = Instant::now();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{:?}",
        elapsed
    );
    wait_until("the connections closed", || server.open_connections() == 0);
}

#[test]
fn the_listeners_receive_timeout_is_not_relied_on() {
    // What the application did before: accepted sockets inherit a 100 ms receive timeout.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (_server, addr) = serve_on(listener, Limits::default(), ok);
    let mut s = TcpStream::connect(addr).unwrap();
    thread::sleep(Duration::from_millis(400));
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
    thread::sleep(Duration::from_millis(400));
    s.write_all(b"\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_answer(&mut BufReader::new(&mut s)).status, 200);
}

#[test]
fn a_slow_body_fails_with_timed_out_near_the_grace() {
    let limits = Limits {
        body_grace: Duration::from_secs(1),
        body_min_rate: 1000,
        ..Limits::default()
    };
    let (tx, rx) = mpsc::channel();
    let (_server, addr) = serve(limits, move |mut request: Request| {
        let started = Instant::now();
        let mut body = Vec::new();
        let result = request.as_reader().read_to_end(&mut body);
        tx.send((result.map_err(|e| e.kind()), started.elapsed(), body.len()))
            .unwrap();
        let _ = request.respond(Response::from_string("too slow").with_status_code(408));
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    // A byte every 200 ms, where 1000 bytes/s are asked for after a second of grace.
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for _ in 0..50 {
            if w.write_all(b"x").is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    let (result, elapsed, got) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(result, Err(ErrorKind::TimedOut));
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2000),
        "{:?}",
        elapsed
    );
    assert!(got <= 10, "{}", got);
    // The client gets the answer, then the connection is closed.
    let mut r = BufReader::new(&mut s);
    assert_eq!(read_answer(&mut r).status, 408);
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    drop(s);
    writer.join().unwrap();
}

#[test]
fn a_stalled_small_body_is_answered_408_by_the_server() {
    // Bodies of up to 1024 bytes are read by tiny_http itself, under the same rule.
    let limits = Limits {
        body_grace: Duration::from_millis(800),
        body_min_rate: 1000,
        ..Limits::default()
    };
    let (_server, addr) = serve(limits, ok);
    let (out, elapsed) = exchange(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly this",
    );
    assert!(out.starts_with("HTTP/1.1 408 "), "{}", out);
    assert!(out.contains("the request body came slower than 1000 bytes/s"));
    // Cut at the grace, then a lingering close until the client stops (here: 2 s at most).
    assert!(elapsed >= Duration::from_millis(700), "{:?}", elapsed);
    assert!(elapsed < Duration::from_secs(5), "{:?}", elapsed);
}

#[test]
fn connection_caps_answer_503_at_once_and_free_up() {
    let limits = Limits {
        max_connections: 3,
        max_connections_per_ip: 2,
        idle_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (server, addr) = serve(limits, ok);
    let a = connect_from("127.0.0.1", addr);
    let b = connect_from("127.0.0.1", addr);
    wait_until("two open", || server.open_connections() == 2);

    let refused = |ip: &str, why: &str| {
        let mut s = connect_from(ip, addr);
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            out.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{}",
            out
        );
        assert!(out.contains("\r\nRetry-After: 1\r\n"), "{}", out);
        assert!(out.contains("\r\nConnection: close\r\n"), "{}", out);
        assert!(out.ends_with(&format!("\r\n\r\n{}\n", why)), "{}", out);
    };
    // A third from the same address.
    refused("127.0.0.1", "too many connections from this address");
    // From another address, one more fits in all...
    let mut c = connect_from("127.0.0.2", addr);
    wait_until("three open", || server.open_connections() == 3);
    // ... and that is all.
    refused("127.0.0.3", "too many connections");
    assert_eq!(server.open_connections(), 3);

    // Freed when connections close.
    drop(a);
    wait_until("two open again", || server.open_connections() == 2);
    let mut d = connect_from("127.0.0.1", addr);
    d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_answer(&mut BufReader::new(&mut d)).status, 200);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(read_answer(&mut BufReader::new(&mut c)).status, 200);
    drop((b, c, d));
    wait_until("none open", || server.open_connections() == 0);
}

#[test]
fn an_unread_body_does_not_hold_the_thread_that_drops_the_request() {
    let (tx, rx) = mpsc::channel();
    let (server, addr) = serve(Limits::default(), move |request: Request| {
        let started = Instant::now();
        let _ = request.respond(Response::from_string("too large").with_status_code(413));
        tx.send(started.elapsed()).unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
        .unwrap();
    // The client keeps sending, slowly: upstream drained it for as long as this lasts.
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(8) {
            if w.write_all(&[b'x'; 1024]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let took = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(took < Duration::from_millis(500), "{:?}", took);
    // The client gets the answer...
    let mut r = BufReader::new(&mut s);
    let answer = read_answer(&mut r);
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, "too large");
    // ... then the end of the stream, and the connection is closed after the lingering time.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
    wait_until("the connection closed", || server.open_connections() == 0);
    writer.join().unwrap();
}

#[test]
fn keep_alive_serves_requests_whose_bodies_were_read() {
    let (server, addr) = serve(Limits::default(), |mut request: Request| {
        let mut body = Vec::new();
        request.as_reader().read_to_end(&mut body).unwrap();
        let _ = request.respond(Response::from_string(format!("{} bytes", body.len())));
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    // Small (read by tiny_http), large (read by the application), chunked, none.
    s.write_all(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789")
        .unwrap();
    assert_eq!(read_answer(&mut r).body, "10 bytes");
    let mut large = b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 50000\r\n\r\n".to_vec();
    large.resize(large.len() + 50000, b'y');
    s.write_all(&large).unwrap();
    assert_eq!(read_answer(&mut r).body, "50000 bytes");
    s.write_all(
        b"POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_answer(&mut r).body, "6 bytes");
    s.write_all(b"GET /4 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(read_answer(&mut r).body, "0 bytes");
    assert_eq!(server.open_connections(), 1);
}

#[test]
fn malformed_heads_are_answered_at_once() {
    let (_server, addr) = serve(Limits::default(), ok);
    for (request, status, text) in [
        (
            &b"GET / HTTP/1.1\n"[..],
            400,
            "request head line ending in LF without CR",
        ),
        (
            b"GET /caf\xc3\xa9 HTTP/1.1\r\n",
            400,
            "byte 0xc3 not allowed in a request line",
        ),
        (
            b"GET / HTTP/1.1\r\nX: \xff\r\n",
            400,
            "byte 0xff not allowed in a request header",
        ),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            505,
            "HTTP version not supported (only HTTP/1.0 and HTTP/1.1 are)",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
            "Transfer-Encoding not supported (only chunked is)",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
            "both Content-Length and Transfer-Encoding in one request",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            400,
            "invalid Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "conflicting Content-Length values",
        ),
        (
            b"POST / HTTP/1.1\r\nExpect: something\r\nContent-Length: 2\r\n\r\n",
            417,
            "unsupported Expect header",
        ),
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        // The client sends no more, and does not close: the answer must not wait for it.
        s.write_all(request).unwrap();
        let answer = read_answer(&mut BufReader::new(&mut s));
        assert!(started.elapsed() < Duration::from_secs(1));
        let shown = String::from_utf8_lossy(request);
        assert_eq!(answer.status, status, "{:?}", shown);
        assert_eq!(answer.body, format!("{}\n", text), "{:?}", shown);
        assert_eq!(answer.header("connection"), Some("close"), "{:?}", shown);
    }
}

#[test]
fn an_upgraded_stream_takes_timeouts_and_keeps_buffered_bytes() {
    let limits = Limits {
        // Would cut an idle body at once: it must not apply to the upgraded stream.
        body_grace: Duration::from_millis(100),
        body_min_rate: 1_000_000,
        ..Limits::default()
    };
    let (tx, rx) = mpsc::channel();
    let (server, addr) = serve(limits, move |request: Request| {
        let mut stream = request.upgrade_stream("test", Response::empty(101));
        let mut buf = [0; 64];
        // Sent with the head: already buffered.
        let n = stream.read(&mut buf).unwrap();
        let early = String::from_utf8_lossy(&buf[..n]).into_owned();
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let started = Instant::now();
        let timed_out = stream.read(&mut buf).map_err(|e| e.kind());
        let waited = started.elapsed();
        stream.set_read_timeout(None).unwrap();
        stream.write_all(b"pong").unwrap();
        stream.flush().unwrap();
        // Comes after longer than the body grace.
        let n = stream.read(&mut buf).unwrap();
        let late = String::from_utf8_lossy(&buf[..n]).into_owned();
        tx.send((early, timed_out, waited, late)).unwrap();
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\nEARLY",
    )
    .unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 101 "), "{}", line);
    while line != "\r\n" {
        line.clear();
        r.read_line(&mut line).unwrap();
    }
    let mut pong = [0; 4];
    r.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"pong");
    thread::sleep(Duration::from_millis(300));
    s.write_all(b"LATE").unwrap();
    let (early, timed_out, waited, late) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(early, "EARLY");
    assert!(
        matches!(
            timed_out,
            Err(ErrorKind::WouldBlock) | Err(ErrorKind::TimedOut)
        ),
        "{:?}",
        timed_out
    );
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(2),
        "{:?}",
        waited
    );
    assert_eq!(late, "LATE");
    // Counted while the stream lived, not after.
    wait_until("the upgraded connection closed", || {
        server.open_connections() == 0
    });
}

#[test]
fn pipelined_requests_are_handled_one_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let busy = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (b, m) = (busy.clone(), most.clone());
    let (_server, addr) = serve(Limits::default(), move |request: Request| {
        let now = b.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(50));
        b.fetch_sub(1, Ordering::SeqCst);
        let path = request.url().to_string();
        let _ = request.respond(Response::from_string(path));
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut all = Vec::new();
    for i in 0..5 {
        all.extend_from_slice(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", i).as_bytes());
    }
    s.write_all(&all).unwrap();
    let mut r = BufReader::new(&mut s);
    for i in 0..5 {
        assert_eq!(read_answer(&mut r).body, format!("/{}", i));
    }
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[test]
fn requests_left_in_the_queue_are_answered_when_the_server_is_dropped() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::from_listener(listener, None).unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Two pipelined requests: the first is queued, the second waits for its answer.
    s.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_until("one open", || server.open_connections() == 1);
    thread::sleep(Duration::from_millis(200));
    drop(server);
    // Both answered (the second is read once the first is, and finds the queue closed)...
    let mut r = BufReader::new(&mut s);
    assert_eq!(read_answer(&mut r).status, 500);
    assert_eq!(read_answer(&mut r).status, 500);
    // ... and the connection ends rather than waiting for ever.
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

#[test]
fn an_upgrade_request_that_is_not_upgraded_has_an_empty_body() {
    // Its bytes after the head are the upgraded protocol's, read by no one unless upgraded.
    let (tx, rx) = mpsc::channel();
    let (_server, addr) = serve(Limits::default(), move |mut request: Request| {
        let started = Instant::now();
        let mut body = Vec::new();
        let result = request.as_reader().read_to_end(&mut body);
        tx.send((result.map_err(|e| e.kind()), started.elapsed()))
            .unwrap();
        let _ = request.respond(Response::from_string("no").with_status_code(400));
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /enroll HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\nmore",
    )
    .unwrap();
    let (result, took) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(result, Ok(0));
    assert!(took < Duration::from_secs(1), "{:?}", took);
    assert_eq!(read_answer(&mut BufReader::new(&mut s)).status, 400);
}

#[test]
fn a_client_that_sends_its_whole_body_first_gets_the_answer_within_the_linger_allowance() {
    // Like ureq: the whole body, then the answer. The application answers without reading it.
    let limits = Limits {
        linger_bytes: 32 * 1024 * 1024,
        ..Limits::default()
    };
    let (_server, addr) = serve(limits, |request: Request| {
        let _ = request.respond(Response::from_string("too large").with_status_code(413));
    });
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = vec![b'x'; 24 * 1024 * 1024];
    s.write_all(
        format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&body).unwrap();
    let answer = read_answer(&mut BufReader::new(&mut s));
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, "too large");
}

/// face-attendance: TLS (PATCHED.md, change 5). The handshake runs on the connection's own
/// thread, under its idle deadline and the connection caps; a certificate is made by `openssl`
/// once per test run.
#[cfg(feature = "ssl-rustls")]
mod tls {
    use super::*;
    use std::convert::TryFrom;
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::OnceLock;

    /// (certificate PEM, key PEM, directory) of a self-signed certificate for localhost and
    /// 127.0.0.1, made by `openssl req -x509`.
    fn certificate() -> &'static (Vec<u8>, Vec<u8>, PathBuf) {
        static CERT: OnceLock<(Vec<u8>, Vec<u8>, PathBuf)> = OnceLock::new();
        CERT.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("tiny-http-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let status = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .stderr(std::process::Stdio::null())
                .status()
                .expect("openssl must be installed for the TLS tests");
            assert!(status.success());
            let cert = std::fs::read(dir.join("cert.pem")).unwrap();
            let key = std::fs::read(dir.join("key.pem")).unwrap();
            (cert, key, dir)
        })
    }

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn server_config() -> Arc<rustls::ServerConfig> {
        let (cert, key, _) = certificate();
        let certs = rustls_pemfile::certs(&mut cert.as_slice())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut key.as_slice())
            .unwrap()
            .unwrap();
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }

    fn client_config() -> Arc<rustls::ClientConfig> {
        let (cert, _, _) = certificate();
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cert.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    /// An HTTPS server on 127.0.0.1 that hands each request to `handler` on a thread of its own.
    fn serve_tls<F>(limits: Limits, handler: F) -> (Arc<Server>, SocketAddr)
    where
        F: Fn(Request) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server =
            Arc::new(Server::from_listener_with_tls(listener, server_config(), limits).unwrap());
        run(server.clone(), handler);
        (server, addr)
    }

    fn run<F>(server: Arc<Server>, handler: F)
    where
        F: Fn(Request) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        thread::spawn(move || {
            while let Ok(request) = server.recv() {
                let handler = handler.clone();
                thread::spawn(move || handler(request));
            }
        });
    }

    type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

    fn tls_over(sock: TcpStream) -> Tls {
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(client_config(), name).unwrap();
        rustls::StreamOwned::new(conn, sock)
    }

    /// `GET /` over a new TLS connection from `ip`: the status and body.
    fn get(ip: &str, addr: SocketAddr) -> (u16, String) {
        let mut s = tls_over(connect_from(ip, addr));
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let a = read_answer(&mut BufReader::new(&mut s));
        (a.status, a.body)
    }

    /// A ClientHello as a real client sends it.
    fn client_hello() -> Vec<u8> {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(client_config(), name).unwrap();
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).unwrap();
        }
        assert!(hello.len() > 100 && hello[0] == 22, "{}", hello.len());
        hello
    }

    /// Reads until the server closes: how long that took.
    fn closed_within(s: &mut TcpStream) -> Duration {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let started = Instant::now();
        let mut buf = [0; 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    }

    fn secure_or_not(request: Request) {
        let body = format!("secure={}", request.secure());
        let _ = request.respond(Response::from_string(body));
    }

    #[test]
    fn requests_over_tls_are_answered_secure_and_kept_alive() {
        let (server, addr) = serve_tls(Limits::default(), secure_or_not);
        let mut s = tls_over(TcpStream::connect(addr).unwrap());
        for _ in 0..3 {
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let a = read_answer(&mut BufReader::new(&mut s));
            assert_eq!((a.status, a.body.as_str()), (200, "secure=true"));
        }
        assert_eq!(server.open_connections(), 1);
        drop(s);
        wait_until("closed", || server.open_connections() == 0);
        // A bad key or no certificate is an error, not a panic.
        let bad = tiny_http::SslConfig {
            certificate: b"not PEM".to_vec(),
            private_key: certificate().1.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(Server::from_listener(listener, Some(bad)).is_err());
        // The PEM constructor works too.
        let good = tiny_http::SslConfig {
            certificate: certificate().0.clone(),
            private_key: certificate().1.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Arc::new(Server::from_listener(listener, Some(good)).unwrap());
        run(server, secure_or_not);
        assert_eq!(get("127.0.0.1", addr), (200, "secure=true".to_string()));
    }

    #[test]
    fn a_silent_client_holds_its_place_until_the_idle_timeout_and_blocks_no_one() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(1500),
            ..Limits::default()
        };
        let (server, addr) = serve_tls(limits, ok);
        let mut silent: Vec<TcpStream> = (0..5)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        wait_until("five open", || server.open_connections() == 5);
        // Others are served meanwhile, at once.
        for _ in 0..3 {
            assert_eq!(get("127.0.0.2", addr), (200, "ok".to_string()));
        }
        let waited = closed_within(&mut silent[0]);
        assert!(waited < Duration::from_secs(3), "{:?}", waited);
        for s in &mut silent[1..] {
            closed_within(s);
        }
        wait_until("all closed", || server.open_connections() == 0);
    }

    #[test]
    fn a_trickled_client_hello_is_cut_off_at_the_deadline() {
        let limits = Limits {
            idle_timeout: Duration::from_millis(1000),
            ..Limits::default()
        };
        let (server, addr) = serve_tls(limits, ok);
        let hello = client_hello();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        // Counted once the accept thread took it (else "0 open" below may only mean "not yet").
        wait_until("the connection counted", || server.open_connections() == 1);
        let started = Instant::now();
        // A byte every 100 ms: each read of the socket gets one, the whole hello would take
        // far longer than the deadline.
        let mut cut = None;
        for byte in &hello {
            if s.write_all(&[*byte]).is_err() {
                cut = Some(started.elapsed());
                break;
            }
            if server.open_connections() == 0 {
                cut = Some(started.elapsed());
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let cut = cut.expect("the whole ClientHello went through");
        assert!(
            cut >= Duration::from_millis(900) && cut < Duration::from_millis(2500),
            "{:?}",
            cut
        );
    }

    #[test]
    fn a_client_that_closes_mid_handshake_frees_its_place_at_once() {
        // RUSTSEC-2024-0336: rustls 0.20 looped for ever on a connection closed during the
        // handshake. Here the connection ends, and its place (and thread) with it.
        let limits = Limits {
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let (server, addr) = serve_tls(limits, ok);
        let hello = client_hello();
        for cut in [0, 5, hello.len() / 2, hello.len()] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&hello[..cut]).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let waited = closed_within(&mut s);
            assert!(waited < Duration::from_secs(2), "cut {}: {:?}", cut, waited);
            drop(s);
            wait_until("the place freed", || server.open_connections() == 0);
        }
        // Many at once, each closed: no place is kept, the server still answers.
        let socks: Vec<TcpStream> = (0..20)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(&hello[..hello.len() / 2]).unwrap();
                s
            })
            .collect();
        drop(socks);
        wait_until("all freed", || server.open_connections() == 0);
        assert_eq!(get("127.0.0.1", addr), (200, "ok".to_string()));
    }

    #[test]
    fn garbage_instead_of_a_handshake_ends_the_connection_at_once() {
        let limits = Limits {
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let (server, addr) = serve_tls(limits, ok);
        let garbage: [&[u8]; 3] = [
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
            // A handshake record longer than TLS allows.
            &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5],
            &[0xff; 3000],
        ];
        for g in garbage {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(g).unwrap();
            let waited = closed_within(&mut s);
            assert!(waited < Duration::from_secs(2), "{:?}", waited);
        }
        wait_until("all freed", || server.open_connections() == 0);
        assert_eq!(get("127.0.0.1", addr), (200, "ok".to_string()));
    }

    #[test]
    fn tls_and_plain_siblings_share_the_connection_caps() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            idle_timeout: Duration::from_secs(30),
            ..Limits::default()
        };
        let (plain, plain_addr) = serve(limits, secure_or_not);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let tls_addr = listener.local_addr().unwrap();
        let tls = Arc::new(plain.sibling(listener, Some(server_config())).unwrap());
        run(tls.clone(), secure_or_not);

        // Two silent TLS connections from 127.0.0.1 fill its share, on both servers.
        let a = connect_from("127.0.0.1", tls_addr);
        let b = connect_from("127.0.0.1", tls_addr);
        wait_until("two open", || plain.open_connections() == 2);
        assert_eq!(tls.open_connections(), 2);
        let mut refused = connect_from("127.0.0.1", plain_addr);
        let mut out = String::new();
        refused
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = refused.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 503 "), "{}", out);
        // Over TLS a refusal is a close without a word (no handshake is spent on it).
        let mut refused = connect_from("127.0.0.1", tls_addr);
        assert!(closed_within(&mut refused) < Duration::from_secs(1));
        // Another address: one more in all, over TLS, then no more on either.
        let mut c = tls_over(connect_from("127.0.0.2", tls_addr));
        c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let answer = read_answer(&mut BufReader::new(&mut c));
        assert_eq!((answer.status, answer.body.as_str()), (200, "secure=true"));
        let mut refused = connect_from("127.0.0.3", plain_addr);
        let mut out = String::new();
        refused
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = refused.read_to_string(&mut out);
        assert!(out.ends_with("too many connections\n"), "{}", out);
        drop((a, b, c));
        wait_until("none open", || plain.open_connections() == 0);
        let mut d = connect_from("127.0.0.1", plain_addr);
        d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let answer = read_answer(&mut BufReader::new(&mut d));
        assert_eq!((answer.status, answer.body.as_str()), (200, "secure=false"));
    }

    #[test]
    fn an_upgraded_tls_stream_writes_while_its_reads_time_out_and_loses_nothing() {
        let (tx, rx) = mpsc::channel();
        let (server, addr) = serve_tls(Limits::default(), move |request: Request| {
            let mut stream = request.upgrade_stream("test", Response::empty(101));
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut got = Vec::new();
            let mut timeouts = 0;
            let mut buf = [0; 64];
            // A tick each turn; what the client sends, echoed once a line is complete.
            while !got.ends_with(b"\n") {
                if stream.write_all(b"tick\n").and_then(|_| stream.flush()).is_err() {
                    return;
                }
                match stream.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        timeouts += 1
                    }
                    Err(_) => return,
                }
            }
            let _ = stream.write_all(b"echo:");
            let _ = stream.write_all(&got);
            let _ = stream.flush();
            tx.send(timeouts).unwrap();
        });
        let mut s = tls_over(TcpStream::connect(addr).unwrap());
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: test\r\n\r\n")
            .unwrap();
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 101 "), "{}", line);
        while line != "\r\n" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        // Ticks come while the server's reads time out.
        for _ in 0..5 {
            line.clear();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "tick\n");
        }
        // One line in records split across the server's read timeouts: a record's first
        // bytes, a pause, the rest.
        let mut records = Vec::new();
        {
            let conn = &mut r.get_mut().conn;
            conn.writer().write_all(b"hello ").unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut records).unwrap();
            }
            conn.writer().write_all(b"world\n").unwrap();
            while conn.wants_write() {
                conn.write_tls(&mut records).unwrap();
            }
        }
        let (first, rest) = records.split_at(3);
        r.get_mut().sock.write_all(first).unwrap();
        thread::sleep(Duration::from_millis(350));
        r.get_mut().sock.write_all(rest).unwrap();
        let timeouts = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(timeouts >= 3, "{}", timeouts);
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            if line != "tick\n" {
                break;
            }
        }
        assert_eq!(line, "echo:hello world\n");
        drop(r);
        wait_until("closed", || server.open_connections() == 0);
    }
}
