//! The HTTP API on 127.0.0.1:0 with real clients: every endpoint of the original service.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::{self as h, Behaviour};
use common::wait_for;
use face_attendance::client::{multipart, Part};
use serde_json::{json, Value};

fn faces(rel: &str) -> std::path::PathBuf {
    common::faces_dir().join(rel)
}

fn url(server: &face_attendance::service::Service, path: &str) -> String {
    format!("http://{}{}", server.addr(), path)
}

#[test]
fn enroll_recognize_health_config_over_http() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    for person in ["obama", "biden", "penny", "raj"] {
        for photo in common::photos(&faces(&format!("known/{person}"))) {
            let (status, answer) =
                h::post_image(&url(&server, "/enroll"), &photo, &[("student_id", person)]);
            assert_eq!(status, 200, "{answer}");
            assert_eq!(
                answer,
                json!({"ok": true, "saved": 1, "msg": {"faces_found": 1, "saved": 1}})
            );
        }
    }
    // An upload's place is freed just after its answer is written: wait for it.
    wait_for(
        "the upload places to be free",
        Duration::from_secs(10),
        || h::get(&url(&server, "/health")).1["http"]["uploads"]["busy"] == 0,
    );
    let (status, health) = h::get(&url(&server, "/health"));
    assert_eq!(status, 200);
    for (k, v) in [
        ("ok", json!(true)),
        ("encodings", json!(9)),
        ("labels", json!(4)),
    ] {
        assert_eq!(health[k], v, "{health}");
    }
    // The budgets, all places free again.
    assert_eq!(health["http"]["uploads"]["busy"], 0, "{health}");
    assert_eq!(health["http"]["images"]["busy"], 0, "{health}");
    assert!(
        health["http"]["connections"].as_u64() >= Some(1),
        "{health}"
    );
    let (status, config) = h::get(&url(&server, "/config"));
    assert_eq!(status, 200);
    assert_eq!(config["tolerance"], 0.45);
    assert_eq!(config["webhook_enabled"], false);
    assert_eq!(config["cooldown_seconds"], 5.0);

    for (photo, want) in [
        ("probe/obama/obama_3.jpg", "obama"),
        ("probe/raj/raj_4.jpg", "raj"),
        ("strangers/stuart_1.jpg", "Unknown"),
    ] {
        let (status, answer) = h::post_image(&url(&server, "/recognize"), &faces(photo), &[]);
        assert_eq!(status, 200);
        assert_eq!(answer["ok"], true);
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{photo}: {answer}");
        assert_eq!(results[0]["label"], want, "{photo}");
        assert_eq!(results[0]["box"].as_array().unwrap().len(), 4);
        assert!(results[0]["distance"].is_f64());
    }
    // A raw image body works too.
    let (status, answer) = h::post(
        &url(&server, "/recognize"),
        "image/jpeg",
        std::fs::read(faces("probe/biden/biden_2.jpg")).unwrap(),
    );
    assert_eq!(
        (status, answer["results"][0]["label"].clone()),
        (200, json!("biden"))
    );

    // The mock webhook echoes.
    let (status, answer) = h::post(
        &url(&server, "/mock/webhook"),
        "application/json",
        br#"{"a":1}"#.to_vec(),
    );
    assert_eq!(
        (status, answer),
        (
            200,
            json!({"ok": true, "token": "dummy-token", "echo": {"a": 1}})
        )
    );
    server.shutdown();
}

#[test]
fn realtime_calls_the_webhook_with_cooldown_and_broadcasts() {
    let (hook, received) = h::receiver(Behaviour::Ok);
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.webhook_api_key = "secret-key".into();
    let server = h::start(data.path(), settings);
    h::post_image(
        &url(&server, "/enroll"),
        &faces("known/obama/obama_1.jpg"),
        &[("student_id", "obama")],
    );

    let mut ws1 = tungstenite::connect(format!("ws://{}/ws/recognitions", server.addr()))
        .unwrap()
        .0;
    let mut ws2 = tungstenite::connect(format!("ws://{}/ws/recognitions", server.addr()))
        .unwrap()
        .0;

    let realtime = url(
        &server,
        "/recognize/realtime?min_conf=0.45&send_unknown=false",
    );
    let (status, first) = h::post_image(&realtime, &faces("probe/obama/obama_3.jpg"), &[]);
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["webhook_enabled"], true);
    assert_eq!(first["results"][0]["label"], "obama");
    let report = &first["dispatch"][0];
    assert_eq!(report["label"], "obama");
    assert_eq!(
        report["report"],
        json!({"status": "sent", "http_status": 200, "message": "{\"stored\":true}"})
    );

    // Within the cooldown: skipped, and the receiver saw one call only.
    let (_, second) = h::post_image(&realtime, &faces("probe/obama/obama_4.jpg"), &[]);
    assert_eq!(
        second["dispatch"][0]["report"],
        json!({"status": "skipped"})
    );
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (auth, payload) = (&got[0].auth, &got[0].body);
    assert_eq!(auth.as_deref(), Some("Bearer secret-key"));
    assert_eq!(payload["event"], "attendance.recognized");
    let event_id = payload["event_id"].as_str().unwrap();
    assert_eq!(event_id.len(), 36, "a UUID: {event_id}");
    assert_eq!(got[0].idempotency_key.as_deref(), Some(event_id));
    assert_eq!(payload["student_id"], "obama");
    assert_eq!(payload["frame_info"], json!({"w": 1280, "h": 720}));
    let b = &first["results"][0]["box"];
    assert_eq!(
        payload["box"],
        json!({"top": b[0], "right": b[1], "bottom": b[2], "left": b[3]})
    );
    assert!(payload["ts"].as_i64().unwrap() > 1_700_000_000);

    // Both WebSocket clients got both events, in order.
    for ws in [&mut ws1, &mut ws2] {
        let m1: Value = h::next_json(ws);
        assert_eq!(m1["type"], "recognized");
        assert_eq!(m1["student_id"], "obama");
        assert_eq!(m1["dispatch"]["status"], "sent");
        assert_eq!(m1["event_id"], event_id);
        assert!(m1["distance"].as_f64().unwrap() < 0.45);
        let m2: Value = h::next_json(ws);
        assert_eq!(m2["dispatch"]["status"], "skipped");
    }

    // Strangers make no event unless send_unknown=true.
    let (_, quiet) = h::post_image(&realtime, &faces("strangers/stuart_2.jpg"), &[]);
    assert_eq!(quiet["dispatch"], json!([]));
    let loud = url(&server, "/recognize/realtime?send_unknown=true");
    let (_, noisy) = h::post_image(&loud, &faces("strangers/stuart_2.jpg"), &[]);
    assert_eq!(noisy["dispatch"][0]["label"], "Unknown");
    assert_eq!(noisy["dispatch"][0]["report"]["status"], "sent");
    let m: Value = h::next_json(&mut ws1);
    assert_eq!(m["student_id"], "Unknown");

    // min_conf replaces the tolerance: at 0.1 even Obama is Unknown, so no event.
    let strict = url(&server, "/recognize/realtime?min_conf=0.1");
    let (_, answer) = h::post_image(&strict, &faces("probe/obama/obama_3.jpg"), &[]);
    assert_eq!(answer["results"][0]["label"], "Unknown");
    assert_eq!(answer["dispatch"], json!([]));
    server.shutdown();
}

#[test]
fn a_failing_or_hanging_main_api_is_reported_in_bounded_time() {
    let data = tempfile::tempdir().unwrap();
    let (fail_url, _) = h::receiver(Behaviour::Fail500);
    let mut settings = h::serve_settings();
    settings.webhook_url = fail_url;
    let server = h::start(data.path(), settings);
    h::post_image(
        &url(&server, "/enroll"),
        &faces("known/biden/biden_1.jpg"),
        &[("student_id", "biden")],
    );
    let (_, answer) = h::post_image(
        &url(&server, "/recognize/realtime"),
        &faces("probe/biden/biden_2.jpg"),
        &[],
    );
    // Kept in the outbox and retried: `queued`, with the main API's answer.
    assert_eq!(
        answer["dispatch"][0]["report"],
        json!({"status": "queued", "http_status": 500, "message": "database down"})
    );
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["outbox"]["pending"], 1, "{health}");
    assert_eq!(health["outbox"]["last_error"], "HTTP 500");
    server.shutdown();

    // A main API that never answers (a fresh box: nothing pending from the first part).
    let data = tempfile::tempdir().unwrap();
    let (hang_url, received) = h::receiver(Behaviour::Hang);
    let mut settings = h::serve_settings();
    settings.webhook_url = hang_url;
    settings.webhook_timeout_seconds = 1.0;
    let server = h::start(data.path(), settings);
    h::post_image(
        &url(&server, "/enroll"),
        &faces("known/biden/biden_1.jpg"),
        &[("student_id", "biden")],
    );
    let started = Instant::now();
    let (status, answer) = h::post_image(
        &url(&server, "/recognize/realtime"),
        &faces("probe/biden/biden_2.jpg"),
        &[],
    );
    let took = started.elapsed();
    assert_eq!(status, 200);
    let report = &answer["dispatch"][0]["report"];
    assert_eq!(report["status"], "queued", "{report}");
    // The bound is the webhook timeout (1 s) plus recognition; far below a hang.
    assert!(took < Duration::from_secs(30), "answer took {took:?}");
    // Retried after each timeout, always as the same event.
    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty());
    assert!(got
        .iter()
        .all(|hit| hit.idempotency_key == got[0].idempotency_key));
    // The server still answers.
    assert_eq!(h::get(&url(&server, "/health")).0, 200);
    server.shutdown();
}

#[test]
fn bad_input_gets_the_right_status_and_writes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let before = common::tree(data.path());
    let enroll = url(&server, "/enroll");
    let recognize = url(&server, "/recognize");
    let photo = std::fs::read(faces("known/obama/obama_1.jpg")).unwrap();
    let file = |data: &[u8]| -> (String, Vec<u8>) {
        multipart(&[
            ("student_id", Part::Text("alip")),
            (
                "image",
                Part::File {
                    file_name: "a.jpg",
                    content_type: "image/jpeg",
                    data,
                },
            ),
        ])
    };
    // (what, where, (content type, body), expected status)
    type Case<'a> = (&'a str, &'a str, (String, Vec<u8>), u16);
    let cases: Vec<Case> = vec![
        (
            "no image field",
            &enroll,
            multipart(&[("student_id", Part::Text("alip"))]),
            422,
        ),
        (
            "no student_id",
            &enroll,
            multipart(&[(
                "image",
                Part::File {
                    file_name: "a.jpg",
                    content_type: "image/jpeg",
                    data: &photo,
                },
            )]),
            422,
        ),
        (
            "empty form",
            &recognize,
            (
                "multipart/form-data; boundary=x".into(),
                b"--x--\r\n".to_vec(),
            ),
            422,
        ),
        ("empty file", &enroll, file(b""), 400),
        (
            "text as image",
            &enroll,
            file(b"hello, these are notes"),
            415,
        ),
        (
            "PDF as image",
            &recognize,
            file(b"%PDF-1.4\n1 0 obj\n"),
            415,
        ),
        (
            "truncated JPEG",
            &enroll,
            file(&photo[..photo.len() / 3]),
            400,
        ),
        (
            "11 MiB body",
            &recognize,
            file(&vec![0xFFu8; 11 * 1024 * 1024]),
            413,
        ),
        (
            "student_id ../../etc",
            &enroll,
            multipart(&[
                ("student_id", Part::Text("../../etc")),
                (
                    "image",
                    Part::File {
                        file_name: "a.jpg",
                        content_type: "image/jpeg",
                        data: &photo,
                    },
                ),
            ]),
            400,
        ),
        (
            "garbage boundary",
            &enroll,
            (
                "multipart/form-data; boundary=abc".into(),
                b"--zzz\r\nrubbish\r\n".to_vec(),
            ),
            400,
        ),
        (
            "no boundary",
            &enroll,
            ("multipart/form-data".into(), b"rubbish".to_vec()),
            400,
        ),
        (
            "wrong content type",
            &recognize,
            ("text/plain".into(), b"hello".to_vec()),
            415,
        ),
    ];
    for (name, target, (ct, body), want) in cases {
        let (status, answer) = h::post(target, &ct, body);
        assert_eq!(status, want, "{name}: {answer}");
        assert_eq!(answer["ok"], false, "{name}");
        assert!(
            answer["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}"
        );
        assert_eq!(
            h::get(&url(&server, "/health")).0,
            200,
            "server down after {name}"
        );
    }
    let (status, answer) = h::post(
        &url(&server, "/recognize/realtime?min_conf=abc"),
        "image/jpeg",
        photo.clone(),
    );
    assert_eq!((status, answer["ok"].clone()), (400, json!(false)));
    assert_eq!(h::get(&url(&server, "/nope")).0, 404);
    let (status, _) = h::get(&url(&server, "/enroll"));
    assert_eq!(status, 405);
    assert_eq!(
        common::tree(data.path()),
        before,
        "bad input wrote to data/"
    );
    server.shutdown();
}

#[test]
fn a_client_that_sends_half_a_body_and_hangs_does_not_hold_a_worker() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings(); // 3 s I/O timeout
    settings.workers = 1;
    let server = h::start(data.path(), settings);
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    let (ct, body) = multipart(&[(
        "image",
        Part::File {
            file_name: "a.jpg",
            content_type: "image/jpeg",
            data: &[0xFF; 5000],
        },
    )]);
    write!(
        stalled,
        "POST /enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stalled.write_all(&body[..body.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The only worker is released after the I/O timeout and serves others.
    assert_eq!(h::get(&url(&server, "/health")).0, 200);
    // The stalled client hears 408 once its body falls behind the minimum rate (after a grace of
    // the I/O timeout), and its connection is closed.
    stalled
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = stalled.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(common::tree(data.path())
        .iter()
        .all(|p| !p.ends_with(".npy")));

    // A client that disconnects mid-upload costs nothing either.
    let mut gone = TcpStream::connect(server.addr()).unwrap();
    write!(
        gone,
        "POST /recognize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    gone.write_all(&body[..100]).unwrap();
    drop(gone);
    assert_eq!(h::get(&url(&server, "/health")).0, 200);
    server.shutdown();
}

#[test]
fn a_websocket_client_that_stops_reading_does_not_block_the_others() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    // A client that upgrades, then never reads a byte.
    let mut stuck = TcpStream::connect(server.addr()).unwrap();
    write!(stuck, "GET /ws/recognitions HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut reader = tungstenite::connect(format!("ws://{}/ws/recognitions", server.addr()))
        .unwrap()
        .0;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(server.app().hub.clients(), 2);
    // Far more than the stuck client's queue and socket buffers hold.
    let count = 2000;
    let reading = std::thread::spawn(move || {
        let mut next = 0;
        while next < count {
            match reader.read().unwrap() {
                tungstenite::Message::Text(text) => {
                    let m: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(m["n"], next);
                    next += 1;
                }
                other => assert!(other.is_ping() || other.is_pong(), "{other:?}"),
            }
        }
    });
    let filler = "x".repeat(4096);
    // Paced like a busy camera (bursts of 32), so only the stuck client falls behind.
    for i in 0..count {
        server
            .app()
            .hub
            .broadcast(format!("{{\"n\":{i},\"pad\":\"{filler}\"}}"));
        if i % 32 == 31 {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    reading.join().unwrap();
    // The stuck one was dropped (its writer gives up at the write timeout).
    wait_for(
        "the stuck client to be dropped",
        Duration::from_secs(30),
        || server.app().hub.clients() <= 1,
    );
    assert_eq!(server.app().hub.clients(), 1);
    drop(stuck);
    server.shutdown();
}

/// `GET /people`, `GET /people/{id}` and `DELETE /people/{id}` on a real server: paging and
/// filtering, bad and hostile ids, and a deletion that stops matching at once and leaves no
/// file of the person behind.
#[test]
fn people_are_listed_shown_and_deleted() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let mut enrolled = std::collections::BTreeMap::new();
    for person in ["obama", "biden", "raj"] {
        for photo in common::photos(&faces(&format!("known/{person}"))) {
            let (status, answer) =
                h::post_image(&url(&server, "/enroll"), &photo, &[("student_id", person)]);
            assert_eq!(status, 200, "{answer}");
            *enrolled.entry(person).or_insert(0u64) += 1;
        }
    }
    let (status, list) = h::get(&url(&server, "/people"));
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["total"], 3);
    let listed: Vec<(&str, u64)> = list["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["student_id"].as_str().unwrap(),
                p["samples"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        enrolled.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>()
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for p in list["people"].as_array().unwrap() {
        let (enrolled_at, updated_at) = (
            p["enrolled_at"].as_u64().unwrap(),
            p["updated_at"].as_u64().unwrap(),
        );
        assert!(enrolled_at <= updated_at && updated_at <= now + 1, "{p}");
        assert!(now - enrolled_at < 600, "{p}");
    }
    let (_, b) = h::get(&url(&server, "/people?q=b"));
    assert_eq!(
        (b["total"].clone(), b["people"][0]["student_id"].clone()),
        (json!(1), json!("biden"))
    );
    let (_, page) = h::get(&url(&server, "/people?limit=1&offset=1"));
    assert_eq!(page["total"], 3);
    assert_eq!(page["people"].as_array().unwrap().len(), 1);
    assert_eq!(page["people"][0]["student_id"], "obama");
    for bad in ["limit=abc", "limit=5000", "offset=-1"] {
        let (status, answer) = h::get(&url(&server, &format!("/people?{bad}")));
        assert_eq!(status, 400, "{bad}: {answer}");
        assert_eq!(answer["ok"], false);
    }

    let (status, obama) = h::get(&url(&server, "/people/obama"));
    assert_eq!(status, 200, "{obama}");
    assert_eq!(obama["student_id"], "obama");
    assert_eq!(
        obama["samples"].as_array().unwrap().len() as u64,
        enrolled["obama"]
    );
    assert_eq!(h::get(&url(&server, "/people/nobody")).0, 404);
    // Ids that could name other files are refused before any path is made of them.
    for hostile in [
        "..%2F..%2Fetc",
        "%2Fetc%2Fpasswd",
        ".hidden",
        "a%00b",
        "%zz",
    ] {
        let (status, answer) = h::get(&url(&server, &format!("/people/{hostile}")));
        assert_eq!(status, 400, "{hostile}: {answer}");
        assert_eq!(
            h::delete(&url(&server, &format!("/people/{hostile}"))).0,
            400
        );
    }
    let wrong = h::agent()
        .put(&url(&server, "/people/obama"))
        .send_empty()
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 405);
    assert_eq!(wrong.headers()["Allow"], "GET, DELETE, PATCH");

    let probe = faces("probe/obama/obama_3.jpg");
    let (_, before) = h::post_image(&url(&server, "/recognize"), &probe, &[]);
    assert_eq!(before["results"][0]["label"], "obama");
    let (status, deleted) = h::delete(&url(&server, "/people/obama"));
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted,
        json!({"ok": true, "deleted": "obama", "samples": enrolled["obama"], "unknown_faces": 0})
    );
    let (_, after) = h::post_image(&url(&server, "/recognize"), &probe, &[]);
    assert_ne!(after["results"][0]["label"], "obama", "{after}");
    assert_eq!(h::delete(&url(&server, "/people/obama")).0, 404);
    assert_eq!(h::get(&url(&server, "/people/obama")).0, 404);
    assert_eq!(h::get(&url(&server, "/people")).1["total"], 2);
    let left: Vec<String> = common::tree(data.path())
        .into_iter()
        .filter(|p| p.contains("obama"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    server.shutdown();
}

#[test]
fn openapi_lists_every_route() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let (status, spec) = h::get(&url(&server, "/openapi.json"));
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    for route in face_attendance::http::ROUTES {
        let (path, method) = (route.path, route.method);
        let op = &spec["paths"][path][method.to_ascii_lowercase()];
        assert!(op.is_object(), "{method} {path} missing from openapi.json");
        assert!(
            op["responses"].is_object(),
            "{method} {path} has no responses"
        );
    }
    let mut docs = h::agent().get(&url(&server, "/docs")).call().unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    let html = docs.body_mut().read_to_string().unwrap();
    assert!(html.contains("/openapi.json"));
    assert!(
        !html.contains("https://"),
        "the docs page must work without internet"
    );
    server.shutdown();
}

#[test]
fn events_made_while_the_main_api_is_down_arrive_once_each_in_order_when_it_is_back() {
    let data = tempfile::tempdir().unwrap();
    let (hook, received, behaviour) = h::switchable_receiver(Behaviour::Fail500);
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    settings.cooldown_seconds = 0.0;
    settings.webhook_retry_max_seconds = 0.5;
    let server = h::start(data.path(), settings);
    for person in ["obama", "biden"] {
        h::post_image(
            &url(&server, "/enroll"),
            &faces(&format!("known/{person}/{person}_1.jpg")),
            &[("student_id", person)],
        );
    }
    // The main API is down: each event is answered `queued` at once, never waiting on it.
    let realtime = url(&server, "/recognize/realtime");
    let mut sent_ids = Vec::new();
    for n in 0..6 {
        let photo = ["probe/obama/obama_3.jpg", "probe/biden/biden_2.jpg"][n % 2];
        let started = Instant::now();
        let (status, answer) = h::post_image(&realtime, &faces(photo), &[]);
        assert_eq!(status, 200);
        let report = &answer["dispatch"][0]["report"];
        assert_eq!(report["status"], "queued", "{answer}");
        sent_ids.push(answer["dispatch"][0]["label"].as_str().unwrap().to_string());
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["outbox"]["pending"], 6, "{health}");
    assert!(
        health["outbox"]["oldest_pending_age_seconds"]
            .as_f64()
            .unwrap()
            >= 0.0
    );
    assert!(received.lock().unwrap().is_empty());

    // Back up: everything arrives, once, in the order it happened.
    *behaviour.lock().unwrap() = Behaviour::Ok;
    wait_for("the outbox to drain", Duration::from_secs(30), || {
        h::get(&url(&server, "/health")).1["outbox"]["pending"] == 0
    });
    let got = received.lock().unwrap().clone();
    let people: Vec<&str> = got
        .iter()
        .map(|hit| hit.body["student_id"].as_str().unwrap())
        .collect();
    assert_eq!(people, sent_ids);
    let mut ids: Vec<&str> = got
        .iter()
        .map(|hit| hit.idempotency_key.as_deref().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "each event once");
    let (_, health) = h::get(&url(&server, "/health"));
    assert_eq!(health["outbox"]["delivered"], 6);
    assert_eq!(health["outbox"]["last_error"], Value::Null);
    server.shutdown();
}

#[test]
fn samples_are_shown_fetched_and_deleted_and_people_renamed() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    for (id, photo) in [
        ("obama", "known/obama/obama_1.jpg"),
        ("obama", "known/obama/obama_2.jpg"),
        ("biden", "known/biden/biden_1.jpg"),
    ] {
        let (status, answer) = h::post_image(
            &url(&server, "/enroll"),
            &faces(photo),
            &[("student_id", id)],
        );
        assert_eq!(status, 200, "{answer}");
    }
    let (status, obama) = h::get(&url(&server, "/people/obama"));
    assert_eq!(status, 200, "{obama}");
    let samples = obama["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[1]["index"], 1);
    assert_eq!(samples[1]["crop"], "/people/obama/samples/1.jpg");
    assert!(samples[0]["enrolled_at"].as_u64().unwrap() > 1_700_000_000);
    let history = obama["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{obama}");
    assert_eq!(
        (
            &history[0]["action"],
            &history[0]["by"],
            &history[1]["samples"]
        ),
        (&json!("enroll"), &json!("anyone"), &json!(2))
    );

    // The crops, as image/jpeg.
    let (status, content_type, jpeg) = h::get_bytes(&url(&server, "/people/obama/samples/1.jpg"));
    assert_eq!((status, content_type.as_str()), (200, "image/jpeg"));
    assert!(jpeg.starts_with(&[0xFF, 0xD8, 0xFF]) && jpeg.len() > 1000);
    for (path, want) in [
        ("/people/obama/samples/2.jpg", 404),
        ("/people/nobody/samples/0.jpg", 404),
        ("/people/obama/samples/x.jpg", 400),
        ("/people/obama/samples/-1.jpg", 400),
        ("/people/..%2Fetc/samples/0.jpg", 400),
    ] {
        assert_eq!(h::get(&url(&server, path)).0, want, "{path}");
    }

    // One sample removed: its crop goes, the other moves to index 0.
    let first_crop = h::get_bytes(&url(&server, "/people/obama/samples/0.jpg")).2;
    let (status, left) = h::delete(&url(&server, "/people/obama/samples/1"));
    assert_eq!(
        (status, left),
        (
            200,
            json!({"ok": true, "student_id": "obama", "samples": 1})
        )
    );
    assert_eq!(
        h::get_bytes(&url(&server, "/people/obama/samples/0.jpg")).2,
        first_crop
    );
    assert_eq!(common::photos(&data.path().join("faces/obama")).len(), 1);
    assert_eq!(h::delete(&url(&server, "/people/obama/samples/1")).0, 404);
    assert_eq!(h::delete(&url(&server, "/people/obama/samples/one")).0, 400);

    // Renames: taken, invalid, unknown, then done (JSON body) and matching follows.
    let rename = |from: &str, body: Value| {
        h::post(
            &url(&server, &format!("/people/{from}/rename")),
            "application/json",
            body.to_string().into_bytes(),
        )
    };
    let (status, taken) = rename("obama", json!({"student_id": "biden"}));
    assert_eq!(status, 409, "{taken}");
    assert_eq!(rename("obama", json!({"student_id": "../x"})).0, 400);
    assert_eq!(rename("obama", json!({})).0, 422);
    assert_eq!(rename("nobody", json!({"student_id": "x"})).0, 404);
    let (status, renamed) = rename("obama", json!({"student_id": "barack"}));
    assert_eq!(
        (status, renamed),
        (
            200,
            json!({"ok": true, "student_id": "barack", "from": "obama", "samples": 1})
        )
    );
    let probe = faces("probe/obama/obama_3.jpg");
    let (_, seen) = h::post_image(&url(&server, "/recognize"), &probe, &[]);
    assert_eq!(seen["results"][0]["label"], "barack", "{seen}");
    assert_eq!(h::get(&url(&server, "/people/obama")).0, 404);
    let (_, barack) = h::get(&url(&server, "/people/barack"));
    assert_eq!(barack["samples"][0]["crop"], "/people/barack/samples/0.jpg");
    let last = &barack["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (&last["action"], &last["from"]),
        (&json!("rename"), &json!("obama"))
    );
    // A form body works too.
    let (status, back) = h::post(
        &url(&server, "/people/barack/rename"),
        "application/x-www-form-urlencoded",
        b"student_id=obama".to_vec(),
    );
    assert_eq!(status, 200, "{back}");

    // The last sample takes the person with it, and nothing of theirs is left on disk.
    let (status, gone) = h::delete(&url(&server, "/people/obama/samples/0"));
    assert_eq!((status, &gone["samples"]), (200, &json!(0)), "{gone}");
    assert_eq!(h::get(&url(&server, "/people/obama")).0, 404);
    let left: Vec<String> = common::tree(data.path())
        .into_iter()
        .filter(|p| p.contains("obama") || p.contains("barack"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    server.shutdown();
}

#[test]
fn a_face_enrolled_under_another_id_is_refused_unless_forced() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let enroll = |id: &str, photo: &str, extra: &[(&str, &str)]| {
        let mut fields = vec![("student_id", id)];
        fields.extend_from_slice(extra);
        h::post_image(&url(&server, "/enroll"), &faces(photo), &fields)
    };
    assert_eq!(enroll("biden", "known/biden/biden_1.jpg", &[]).0, 200);
    assert_eq!(enroll("obama", "known/obama/obama_1.jpg", &[]).0, 200);
    // More photos of the same person under their own id are fine.
    assert_eq!(enroll("obama", "probe/obama/obama_3.jpg", &[]).0, 200);
    let before = common::tree(data.path());
    // A real second photo of Biden under a new id: "two records for one student".
    let (status, refused) = enroll("joe", "probe/biden/biden_2.jpg", &[]);
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["duplicate_of"], "biden");
    let d = refused["distance"].as_f64().unwrap();
    assert!(d > 0.0 && d <= 0.45, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("force=true"));
    assert_eq!(common::tree(data.path()), before, "nothing written");
    assert_eq!(h::get(&url(&server, "/people/joe")).0, 404);
    assert_eq!(
        enroll("joe", "probe/biden/biden_2.jpg", &[("force", "maybe")]).0,
        400
    );
    let (status, forced) = enroll("joe", "probe/biden/biden_2.jpg", &[("force", "true")]);
    assert_eq!(status, 200, "{forced}");
    assert_eq!(
        h::get(&url(&server, "/people/joe")).1["samples"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    server.shutdown();
}

#[test]
fn a_gallery_exported_from_one_box_and_imported_into_another_recognizes_the_same() {
    let (first_data, second_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = h::start(first_data.path(), h::serve_settings());
    for person in ["obama", "biden", "penny"] {
        for photo in common::photos(&faces(&format!("known/{person}"))) {
            let (status, answer) =
                h::post_image(&url(&first, "/enroll"), &photo, &[("student_id", person)]);
            assert_eq!(status, 200, "{answer}");
        }
    }
    let (status, content_type, archive) = h::get_bytes(&url(&first, "/gallery/export"));
    assert_eq!((status, content_type.as_str()), (200, "application/x-tar"));
    assert!(archive.len() > 10_000);

    let second = h::start(second_data.path(), h::serve_settings());
    let before = common::tree(second_data.path());
    // A bad archive changes nothing: cut short, not an archive, an unknown mode.
    for (body, query) in [
        (archive[..archive.len() / 2].to_vec(), ""),
        (b"%PDF-1.7 not a tar".to_vec(), ""),
        (Vec::new(), ""),
        (archive.clone(), "?mode=overwrite"),
    ] {
        let (status, refused) = h::post(
            &url(&second, &format!("/gallery/import{query}")),
            "application/x-tar",
            body,
        );
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["ok"], false);
        assert_eq!(common::tree(second_data.path()), before);
    }
    let (status, imported) = h::post(
        &url(&second, "/gallery/import"),
        "application/x-tar",
        archive.clone(),
    );
    assert_eq!(status, 200, "{imported}");
    assert_eq!(imported["imported"]["people_added"], 3, "{imported}");
    // The same people, samples and enrollment times (updated_at is when each file was written).
    let listing = |server: &face_attendance::service::Service| {
        let mut people = h::get(&url(server, "/people")).1["people"].clone();
        for p in people.as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("updated_at");
        }
        people
    };
    assert_eq!(listing(&second), listing(&first));
    for probe in [
        "probe/obama/obama_3.jpg",
        "probe/biden/biden_2.jpg",
        "probe/penny/penny_4.jpg",
        "strangers/stuart_1.jpg",
    ] {
        let one = h::post_image(&url(&first, "/recognize"), &faces(probe), &[]).1;
        let two = h::post_image(&url(&second, "/recognize"), &faces(probe), &[]).1;
        assert_eq!(one["results"], two["results"], "{probe}");
    }
    let crop = "/people/penny/samples/1.jpg";
    assert_eq!(
        h::get_bytes(&url(&first, crop)).2,
        h::get_bytes(&url(&second, crop)).2
    );
    // Merging the same archive again adds nothing; replacing drops who is not in it.
    let (_, again) = h::post(
        &url(&second, "/gallery/import"),
        "application/x-tar",
        archive.clone(),
    );
    assert_eq!(again["imported"]["samples"], 0, "{again}");
    assert_eq!(h::delete(&url(&first, "/people/biden")).0, 200);
    let (_, _, archive) = h::get_bytes(&url(&first, "/gallery/export"));
    let (status, replaced) = h::post(
        &url(&second, "/gallery/import?mode=replace"),
        "application/x-tar",
        archive,
    );
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(h::get(&url(&second, "/people/biden")).0, 404);
    assert_eq!(h::get(&url(&second, "/people")).1["total"], 2);
    let history = h::get(&url(&second, "/people/obama")).1["history"].clone();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "import"),
        "{history}"
    );
    first.shutdown();
    second.shutdown();
}

#[test]
fn blurred_and_small_faces_are_refused_with_what_was_measured() {
    use face_attendance::image_io;
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let photo = std::fs::read(faces("known/obama/obama_1.jpg")).unwrap();
    let image = image_io::decode(&photo, image_io::DEFAULT_MAX_PIXELS).unwrap();
    let enroll = |jpeg: Vec<u8>| {
        let path = data.path().join("upload.jpg");
        std::fs::write(&path, jpeg).unwrap();
        let answer = h::post_image(&url(&server, "/enroll"), &path, &[("student_id", "obama")]);
        std::fs::remove_file(&path).unwrap();
        answer
    };
    let before = common::tree(data.path());
    let blurred = image_io::encode_jpeg(&common::box_blur(&image, 40)).unwrap();
    let (status, refused) = enroll(blurred);
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("ENROLL_MIN_SHARPNESS"),
        "{refused}"
    );
    assert!(
        refused["quality"]["sharpness"].as_f64().unwrap() < 100.0,
        "{refused}"
    );
    assert_eq!(refused["faces_found"], 1);
    // Obama's face is 268 px here (the reference box): shrunk to ~50, still found.
    let small = image_io::encode_jpeg(&common::shrunk(&image, 268, 50)).unwrap();
    let (status, refused) = enroll(small);
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("ENROLL_MIN_FACE"),
        "{refused}"
    );
    assert!(
        refused["quality"]["face_px"].as_u64().unwrap() < 80,
        "{refused}"
    );
    assert_eq!(common::tree(data.path()), before, "nothing written");
    // The photo itself passes, and its quality is kept with the sample.
    let (status, ok) = enroll(photo);
    assert_eq!(status, 200, "{ok}");
    let (_, obama) = h::get(&url(&server, "/people/obama"));
    let quality = &obama["samples"][0]["quality"];
    assert!(quality["face_px"].as_u64().unwrap() > 80, "{obama}");
    assert!(quality["sharpness"].as_f64().unwrap() > 100.0, "{obama}");
    assert!(quality["yaw"].as_f64().unwrap().abs() < 35.0, "{obama}");
    server.shutdown();
}
