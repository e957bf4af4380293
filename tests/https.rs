//! HTTPS on the real binary: `FACE_TLS_BIND` beside the plain port (or alone with
//! `FACE_PLAIN_HTTP=false`), a certificate made by `openssl req -x509` as an installer would,
//! curl with and without `--cacert`, `rt-client` pinning the certificate (its WebSocket over
//! TLS gets the event), the live view over TLS, a flood of handshakes that never finish, and
//! bad settings refusing the start (exit 2).

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::certificate::Cert;
use common::serve_process::{serve_command, Running};

/// Starts `serve`; it must serve.
fn start(site: &Path, env: &[(&str, &str)]) -> Running {
    let run = common::serve_process::start(site, env);
    let text = run.early.join("\n");
    assert!(text.contains("serving on"), "{text}");
    run
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl")
}

fn curl_json(args: &[&str]) -> Value {
    let out = curl(args);
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&out.stdout)))
}

fn rt_client(args: &[&str]) -> Output {
    let probe = common::faces_dir().join("probe/obama/obama_4.jpg");
    Command::new(env!("CARGO_BIN_EXE_face-attendance"))
        .arg("rt-client")
        .args(args)
        .args(["--rate", "5", probe.to_str().unwrap()])
        .env_remove("FACE_API_KEY")
        .output()
        .unwrap()
}

/// A connection from `ip` (any 127.x.y.z is this machine), as another host on the LAN.
fn connect_from(ip: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(ip.parse().unwrap(), 0).into())
        .unwrap();
    s.connect(&addr.into()).unwrap();
    s.into()
}

#[test]
fn both_listeners_serve_and_clients_verify_or_pin_the_certificate() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let cert = Cert::make(dir, "box");
    let other = Cert::make(dir, "other");
    let (plain_port, tls_port) = (common::free_port(), common::free_port());
    let plain = format!("http://127.0.0.1:{plain_port}");
    let tls = format!("https://localhost:{tls_port}");
    let run = start(
        dir,
        &[
            ("FACE_BIND", &format!("127.0.0.1:{plain_port}")),
            ("FACE_TLS_BIND", &format!("127.0.0.1:{tls_port}")),
            ("FACE_TLS_CERT", cert.cert.to_str().unwrap()),
            ("FACE_TLS_KEY", cert.key.to_str().unwrap()),
        ],
    );
    let text = run.early.join("\n");
    assert!(
        text.contains(&format!(
            "serving on http://127.0.0.1:{plain_port} and https://127.0.0.1:{tls_port}"
        )),
        "{text}"
    );
    // The log names the fingerprint openssl computes.
    let fingerprint = cert.fingerprint();
    let (_, colons) = fingerprint.split_once('=').unwrap();
    assert!(text.contains(colons), "{colons}: {text}");

    // The original's requests on the plain port, as before.
    let photo = common::faces_dir().join("known/obama/obama_1.jpg");
    let enrolled = curl_json(&[
        "-X",
        "POST",
        &format!("{plain}/enroll"),
        "-F",
        "student_id=alip",
        "-F",
        &format!("image=@{}", photo.display()),
    ]);
    assert_eq!(enrolled["ok"], true, "{enrolled}");

    // HTTPS with the box's certificate as CA: /health, both listeners named.
    let cacert = cert.cert.to_str().unwrap();
    let health = curl_json(&["--cacert", cacert, &format!("{tls}/health")]);
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(health["labels"], 1, "{health}");
    let over_http = curl_json(&[&format!("{plain}/health")]);
    let listeners = &over_http["http"]["listeners"];
    assert_eq!(
        listeners,
        &serde_json::json!({"http": format!("127.0.0.1:{plain_port}"),
                            "https": format!("127.0.0.1:{tls_port}")}),
        "{over_http}"
    );
    // Without it, or with another certificate, curl refuses the server (60: certificate).
    let refused = curl(&[&format!("{tls}/health")]);
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
    let refused = curl(&[
        "--cacert",
        other.cert.to_str().unwrap(),
        &format!("{tls}/health"),
    ]);
    assert_eq!(refused.status.code(), Some(60), "{refused:?}");
    // Over TLS the box's own origin is https://: its page may change it, while the same host
    // with http:// is another origin (issue 22's Origin check sees the request came over TLS).
    let rename = |origin: &str, to: &str| {
        let out = curl(&[
            "--cacert",
            cacert,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            &format!("Origin: {origin}"),
            "--data",
            &format!("student_id={to}"),
            &format!("{tls}/people/alip/rename"),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(rename(&format!("http://localhost:{tls_port}"), "x"), "403");
    assert_eq!(
        rename(&format!("https://localhost:{tls_port}"), "alip2"),
        "200"
    );
    let people = curl_json(&["--cacert", cacert, &format!("{tls}/people")]);
    assert_eq!(people["people"][0]["student_id"], "alip2", "{people}");
    let back = curl_json(&[
        "--cacert",
        cacert,
        "--data",
        "student_id=alip",
        &format!("{tls}/people/alip2/rename"),
    ]);
    assert_eq!(back["student_id"], "alip", "{back}");
    // Plain HTTP on the TLS port is no request.
    let garbled = curl(&[&format!("http://127.0.0.1:{tls_port}/health")]);
    assert!(!garbled.status.success());

    // rt-client over HTTPS, pinning the certificate: its POST is answered and the WebSocket
    // (over TLS) brings the event.
    let pinned = rt_client(&["--server", &tls, "--tls-fingerprint", &fingerprint]);
    let out = String::from_utf8_lossy(&pinned.stdout);
    assert!(
        pinned.status.success(),
        "{out} {}",
        String::from_utf8_lossy(&pinned.stderr)
    );
    let http_line = out
        .lines()
        .find(|l| l.starts_with("http "))
        .expect("http line");
    assert!(http_line.contains("\"label\":\"alip\""), "{out}");
    let ws_line = out.lines().find(|l| l.starts_with("ws ")).expect("ws line");
    let message: Value = serde_json::from_str(ws_line.trim_start_matches("ws").trim()).unwrap();
    assert_eq!(message["type"], "recognized", "{message}");
    assert_eq!(message["student_id"], "alip", "{message}");
    // By IP address too: a pin does not depend on names.
    let by_ip = rt_client(&[
        "--server",
        &format!("https://127.0.0.1:{tls_port}"),
        "--tls-fingerprint",
        colons,
    ]);
    assert!(by_ip.status.success(), "{by_ip:?}");
    // The certificate as a CA file works as well.
    let ca = rt_client(&["--server", &tls, "--ca-file", cacert]);
    assert!(ca.status.success(), "{ca:?}");
    assert!(String::from_utf8_lossy(&ca.stdout).contains("\"label\":\"alip\""));

    // Another certificate's fingerprint, or CA, or none at all: refused before anything is sent.
    let other_fingerprint = other.fingerprint();
    for args in [
        vec!["--tls-fingerprint", other_fingerprint.as_str()],
        vec!["--ca-file", other.cert.to_str().unwrap()],
        vec![],
    ] {
        let mut all = vec!["--server", tls.as_str()];
        all.extend(args.iter().copied());
        let refused = rt_client(&all);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("certificate"), "{args:?}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&refused.stdout).contains("http "),
            "{args:?}"
        );
    }
    // Pinning on a plain URL is a mistake, said so.
    let mistaken = rt_client(&["--server", &plain, "--tls-fingerprint", colons]);
    assert_eq!(mistaken.status.code(), Some(2));

    // A flood of handshakes that never finish (silent, half a ClientHello, garbage), from two
    // other addresses: each costs a place until the deadline, nobody else waits.
    let tls_addr: SocketAddr = format!("127.0.0.1:{tls_port}").parse().unwrap();
    let mut flood = Vec::new();
    for i in 0..50 {
        let ip = if i % 2 == 0 { "127.0.0.2" } else { "127.0.0.3" };
        let mut s = connect_from(ip, tls_addr);
        match i % 3 {
            0 => {}
            1 => s
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
                .unwrap(),
            _ => s.write_all(b"\xff\xfe garbage").unwrap(),
        }
        flood.push(s);
    }
    let started = Instant::now();
    let health = curl_json(&["--cacert", cacert, &format!("{tls}/health")]);
    assert_eq!(health["ok"], true);
    let health = curl_json(&[&format!("{plain}/health")]);
    assert_eq!(health["ok"], true);
    let answered = started.elapsed();
    // Not a speed figure: a blocked accept thread would wait for the flood's deadline (15 s).
    assert!(answered < Duration::from_secs(10), "{answered:?}");
    drop(flood);
}

#[test]
fn https_only_serves_the_live_view_and_leaves_the_plain_port_closed() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let cert = Cert::make(dir, "box");
    // Camera frames replayed in a loop, for /stream.mjpg.
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let photo = std::fs::read(common::faces_dir().join("probe/obama/obama_3.jpg")).unwrap();
    let image = face_attendance::image_io::decode(&photo, u64::MAX).unwrap();
    let frame = face_attendance::image_io::letterbox(&image, 640, 480);
    let jpeg = face_attendance::image_io::encode_jpeg(&frame).unwrap();
    for i in 0..3 {
        std::fs::write(frames.join(format!("{i:03}.jpg")), &jpeg).unwrap();
    }
    let (plain_port, tls_port) = (common::free_port(), common::free_port());
    let run = start(
        dir,
        &[
            ("FACE_BIND", &format!("127.0.0.1:{plain_port}")),
            ("FACE_PLAIN_HTTP", "false"),
            ("FACE_TLS_BIND", &format!("127.0.0.1:{tls_port}")),
            ("FACE_TLS_CERT", cert.cert.to_str().unwrap()),
            ("FACE_TLS_KEY", cert.key.to_str().unwrap()),
            ("CAMERA_FRAMES", frames.to_str().unwrap()),
            ("CAMERA_LOOP", "true"),
        ],
    );
    let text = run.early.join("\n");
    assert!(
        text.contains(&format!("serving on https://127.0.0.1:{tls_port} (")),
        "{text}"
    );
    let tls = format!("https://localhost:{tls_port}");
    let cacert = cert.cert.to_str().unwrap();
    let health = curl_json(&["--cacert", cacert, &format!("{tls}/health")]);
    assert_eq!(health["ok"], true, "{health}");
    assert_eq!(
        health["http"]["listeners"],
        serde_json::json!({"http": null, "https": format!("127.0.0.1:{tls_port}")})
    );
    // Nothing listens on FACE_BIND.
    let closed = TcpStream::connect(("127.0.0.1", plain_port));
    assert!(closed.is_err(), "the plain port answers");

    // The live view over TLS: the multipart answer and JPEG frames, until curl stops.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "3", "-D", "-", "--cacert", cacert])
        .arg(format!("{tls}/stream.mjpg"))
        .output()
        .unwrap();
    // 28: curl's own time limit ended the endless answer.
    assert_eq!(out.status.code(), Some(28), "{out:?}");
    let body = &out.stdout;
    let head = String::from_utf8_lossy(&body[..body.len().min(300)]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("multipart/x-mixed-replace"), "{head}");
    let jpegs = body.windows(3).filter(|w| w == &[0xff, 0xd8, 0xff]).count();
    assert!(jpegs >= 1, "no JPEG in {} bytes", body.len());
}

#[test]
fn bad_tls_settings_stop_the_start_with_status_2_and_one_line() {
    let site = tempfile::tempdir().unwrap();
    let dir = site.path();
    let cert = Cert::make(dir, "box");
    let other = Cert::make(dir, "other");
    let garbage = dir.join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let empty = dir.join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.join("missing.pem");
    let unreadable = dir.join("unreadable.pem");
    std::fs::create_dir_all(&unreadable).unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let bind = format!("127.0.0.1:{}", common::free_port());
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("FACE_TLS_CERT", p(&cert.cert))],
            "FACE_TLS_CERT is set but FACE_TLS_KEY is not",
        ),
        (
            vec![("FACE_TLS_KEY", p(&cert.key))],
            "FACE_TLS_KEY is set but FACE_TLS_CERT is not",
        ),
        (
            vec![("FACE_TLS_BIND", bind.clone())],
            "FACE_TLS_BIND needs FACE_TLS_CERT and FACE_TLS_KEY",
        ),
        (
            vec![
                ("FACE_TLS_CERT", p(&cert.cert)),
                ("FACE_TLS_KEY", p(&cert.key)),
            ],
            "FACE_TLS_BIND is not",
        ),
        (
            vec![("FACE_PLAIN_HTTP", "false".into())],
            "FACE_PLAIN_HTTP=false needs FACE_TLS_BIND",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&missing)),
                ("FACE_TLS_KEY", p(&cert.key)),
            ],
            "FACE_TLS_CERT: cannot read",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&unreadable)),
                ("FACE_TLS_KEY", p(&cert.key)),
            ],
            "FACE_TLS_CERT: cannot read",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&garbage)),
                ("FACE_TLS_KEY", p(&cert.key)),
            ],
            "FACE_TLS_CERT:",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&empty)),
                ("FACE_TLS_KEY", p(&cert.key)),
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&cert.cert)),
                ("FACE_TLS_KEY", p(&cert.cert)),
            ],
            "FACE_TLS_KEY:",
        ),
        (
            vec![
                ("FACE_TLS_BIND", bind.clone()),
                ("FACE_TLS_CERT", p(&cert.cert)),
                ("FACE_TLS_KEY", p(&other.key)),
            ],
            "FACE_TLS_KEY does not go with FACE_TLS_CERT",
        ),
    ];
    for (env, expected) in cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut child = serve_command(dir, &env)
            .env("FACE_BIND", "127.0.0.1:0")
            .env("RUST_LOG", "off")
            .spawn()
            .unwrap();
        // A setting taken for good would serve for ever: stopped, and the test fails below.
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{env:?}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{env:?}: {stderr}");
        assert!(
            lines[0].contains(expected),
            "{env:?}: expected {expected:?}: {stderr}"
        );
    }
}
