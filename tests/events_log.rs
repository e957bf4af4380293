//! The local event log end to end: real photos posted to `/recognize/realtime`, `GET /events`
//! as JSON and CSV, a main API down then back, and the real binary killed with SIGKILL.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use common::http::{self as h, Behaviour};
use common::wait_for;
use face_attendance::events::utc::format_rfc3339;
use face_attendance::service::Service;
use serde_json::Value;

fn photo(rel: &str) -> PathBuf {
    common::faces_dir().join(rel)
}

fn enroll(base: &str, person: &str, rel: &str) {
    let (status, answer) = h::post_image(
        &format!("{base}/enroll"),
        &photo(rel),
        &[("student_id", person)],
    );
    assert_eq!(status, 200, "{answer}");
}

/// A server over `data` whose webhook goes to `hook`, and its base URL.
fn serve_with_webhook(data: &Path, hook: String) -> (Service, String) {
    let mut settings = h::serve_settings();
    settings.webhook_url = hook;
    let server = h::start(data, settings);
    let base = format!("http://{}", server.addr());
    (server, base)
}

/// Posts a photo to the realtime endpoint; returns the event ids it dispatched.
fn realtime(base: &str, rel: &str, query: &str) -> Vec<(String, Value)> {
    let (status, answer) = h::post_image(
        &format!("{base}/recognize/realtime{query}"),
        &photo(rel),
        &[],
    );
    assert_eq!(status, 200, "{answer}");
    answer["dispatch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["event_id"].as_str().unwrap().to_string(),
                d["report"].clone(),
            )
        })
        .collect()
}

fn events(base: &str, query: &str) -> Value {
    let (status, answer) = h::get(&format!("{base}/events{query}"));
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The event ids of a `GET /events` answer, in order.
fn event_ids(answer: &Value) -> Vec<String> {
    answer["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// The event ids of what `/recognize/realtime` dispatched.
fn dispatched_ids(sent: &[(String, Value)]) -> Vec<String> {
    sent.iter().map(|(id, _)| id.clone()).collect()
}

/// RFC 4180 rows (quoted cells, doubled quotes, CRLF).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(cell.is_empty() && row.is_empty(), "the CSV ends mid-row");
    rows
}

/// What a spreadsheet-safe cell of `text` reads as.
fn neutralised(text: &str) -> String {
    match text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        true => format!("'{text}"),
        false => text.to_string(),
    }
}

#[test]
fn realtime_events_are_logged_with_their_delivery_and_download_as_the_same_csv() {
    let (hook, received) = h::receiver(Behaviour::Ok);
    let data = tempfile::tempdir().unwrap();
    let (server, base) = serve_with_webhook(data.path(), hook);
    enroll(&base, "obama", "known/obama/obama_1.jpg");
    // An id a spreadsheet would take for a formula (ids may start with '-').
    for photo in common::photos(&photo("known/raj")) {
        let (status, answer) =
            h::post_image(&format!("{base}/enroll"), &photo, &[("student_id", "-raj")]);
        assert_eq!(status, 200, "{answer}");
    }

    let mut sent = Vec::new();
    sent.extend(realtime(&base, "probe/obama/obama_3.jpg", ""));
    sent.extend(realtime(&base, "probe/raj/raj_4.jpg", ""));
    // A repeat within the cooldown is skipped, and not logged.
    let repeat = realtime(&base, "probe/obama/obama_3.jpg", "");
    assert_eq!(repeat[0].1["status"], "skipped");
    sent.extend(realtime(
        &base,
        "strangers/stuart_1.jpg",
        "?send_unknown=true",
    ));
    assert_eq!(sent.len(), 3);
    assert_eq!(received.lock().unwrap().len(), 3);

    let all = events(&base, "");
    assert_eq!(
        (all["count"].clone(), all["truncated"].clone()),
        (3.into(), false.into())
    );
    assert_eq!(event_ids(&all), dispatched_ids(&sent));
    let logged = all["events"].as_array().unwrap();
    let people: Vec<(&str, &str)> = logged
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap(),
                e["student_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        people,
        [
            ("attendance", "obama"),
            ("attendance", "-raj"),
            ("unknown", "Unknown")
        ]
    );
    for e in logged {
        assert_eq!(e["delivery"]["status"], "sent", "{e}");
        assert_eq!(e["delivery"]["http_status"], 200, "{e}");
        assert!(e["distance"].is_f64() && e["ts"].is_i64(), "{e}");
    }

    // Filters: a person, a kind, a range; a path-like id is just an id nobody has.
    assert_eq!(events(&base, "?student_id=obama")["count"], 1);
    assert_eq!(events(&base, "?kind=unknown")["count"], 1);
    assert_eq!(events(&base, "?student_id=..%2F..%2Fetc")["count"], 0);
    assert_eq!(events(&base, "?student_id=../../etc")["count"], 0);
    let first_ms = logged[0]["at_ms"].as_u64().unwrap();
    let after = events(&base, &format!("?since={}", first_ms + 1));
    assert!(after["count"].as_u64() <= Some(2));
    let before = events(&base, &format!("?until={first_ms}"));
    assert_eq!(before["count"], 0);
    let one = events(&base, "?limit=1");
    assert_eq!(
        (one["count"].clone(), one["truncated"].clone()),
        (1.into(), true.into())
    );

    // The CSV download: the same rows, the formula-like id quoted with a leading '.
    let mut response = h::agent()
        .get(&format!("{base}/events?format=csv&since=2000-01-01"))
        .call()
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("Content-Type"), "text/csv; charset=utf-8");
    let disposition = header("Content-Disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"events-2000-01-01_now.csv"),
        "{disposition}"
    );
    let text = response.body_mut().read_to_string().unwrap();
    assert!(text.contains(",\"'-raj\","), "{text}");
    let rows = parse_csv(&text);
    assert_eq!(
        rows[0].join(","),
        "time,event_id,kind,student_id,distance,delivery,http_status,candidates,name,group,punch"
    );
    assert_eq!(rows.len(), 4, "{text}");
    for (row, e) in rows[1..].iter().zip(logged) {
        let want = [
            format_rfc3339(e["at_ms"].as_u64().unwrap()),
            e["event_id"].as_str().unwrap().to_string(),
            e["kind"].as_str().unwrap().to_string(),
            neutralised(e["student_id"].as_str().unwrap()),
            e["distance"].as_f64().unwrap().to_string(),
            "sent".to_string(),
            "200".to_string(),
            String::new(),
            String::new(),
            String::new(),
            // The punch helper's dispatcher marks recognized events in or out; before it, none.
            e["punch"].as_str().unwrap_or_default().to_string(),
        ];
        assert_eq!(row.as_slice(), want.as_slice());
    }

    let (_, health) = h::get(&format!("{base}/health"));
    assert_eq!(health["event_log"]["records_written"], 3, "{health}");
    assert_eq!(health["event_log"]["write_errors"], 0, "{health}");
    let (_, config) = h::get(&format!("{base}/config"));
    assert_eq!(config["events_keep_days"], 90);
    server.shutdown();
}

#[test]
fn events_queued_while_the_main_api_is_down_show_sent_once_it_takes_them() {
    let (hook, received, behaviour) = h::switchable_receiver(Behaviour::Fail500);
    let data = tempfile::tempdir().unwrap();
    let (server, base) = serve_with_webhook(data.path(), hook);
    enroll(&base, "obama", "known/obama/obama_1.jpg");
    enroll(&base, "biden", "known/biden/biden_1.jpg");
    let mut sent = realtime(&base, "probe/obama/obama_3.jpg", "");
    sent.extend(realtime(&base, "probe/biden/biden_2.jpg", ""));
    for (_, report) in &sent {
        assert_eq!(report["status"], "queued", "{report}");
    }
    let down = events(&base, "");
    assert_eq!(down["count"], 2, "{down}");
    for e in down["events"].as_array().unwrap() {
        assert_eq!(e["delivery"]["status"], "queued", "{e}");
        assert_eq!(e["delivery"]["http_status"], 500, "{e}");
    }

    *behaviour.lock().unwrap() = Behaviour::Ok;
    wait_for(
        "the backlog to be delivered",
        Duration::from_secs(30),
        || received.lock().unwrap().len() >= 2,
    );
    wait_for("the log to say sent", Duration::from_secs(10), || {
        events(&base, "")["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["delivery"]["status"] == "sent")
    });
    let up = events(&base, "");
    assert_eq!(event_ids(&up), dispatched_ids(&sent));
    assert_eq!(up["events"][0]["delivery"]["http_status"], 200);
    server.shutdown();
}

#[test]
fn bad_parameters_are_refused_with_400() {
    let data = tempfile::tempdir().unwrap();
    let server = h::start(data.path(), h::serve_settings());
    let base = format!("http://{}", server.addr());
    for query in [
        "since=yesterday",
        "until=2024-02-30",
        "since=2024-09-30&until=2024-09-29",
        "format=xlsx",
        "kind=teacher",
        "limit=0",
        "limit=1000000",
        "student_id=%zz",
    ] {
        let (status, answer) = h::get(&format!("{base}/events?{query}"));
        assert_eq!(status, 400, "{query}: {answer}");
        assert_eq!(answer["ok"], false);
        let name = query.split('=').next().unwrap();
        assert!(
            answer["error"].as_str().unwrap().starts_with(name),
            "{query}: {answer}"
        );
    }
    // Nothing logged yet: an empty answer, not an error.
    let (status, answer) = h::get(&format!("{base}/events?since=2024-09-29T07:00:00%2B07:00"));
    assert_eq!(
        (status, answer["count"].clone()),
        (200, 0.into()),
        "{answer}"
    );
    server.shutdown();
}

/// `face-attendance serve` on `port` over `site/data`, ready.
fn serve(site: &Path, port: u16) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_face-attendance"));
    command
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .current_dir(site)
        .env("FACE_MODELS_DIR", common::models_dir())
        .env("EVENT_COOLDOWN_SECONDS", "0")
        .env_remove("FACE_DATA_DIR")
        .env_remove("FACE_API_KEY")
        .env_remove("ATTENDANCE_WEBHOOK_URL");
    common::spawn_until_serving(command)
}

fn kill_9(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn the_log_survives_a_kill_9_and_a_torn_last_line_is_skipped() {
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = serve(site.path(), port);
    enroll(&base, "obama", "known/obama/obama_1.jpg");
    let mut ids = Vec::new();
    for _ in 0..3 {
        let got = realtime(&base, "probe/obama/obama_3.jpg", "");
        assert_eq!(got[0].1["status"], "disabled");
        ids.push(got[0].0.clone());
    }
    kill_9(server);

    // A write cut short by the kill (or a power cut): half a record, no newline.
    let dir = site.path().join("data/events");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes.last(), Some(&b'\n'));
    bytes.extend_from_slice(br#"{"at_ms":1727580000000,"event_id":"torn","kind":"atten"#);
    std::fs::write(&files[0], &bytes).unwrap();

    let server = serve(site.path(), port);
    let after = events(&base, "");
    assert_eq!(event_ids(&after), ids);
    assert_eq!(after["unreadable_lines"], 1, "{after}");
    // The next record starts on a line of its own.
    ids.push(realtime(&base, "probe/obama/obama_3.jpg", "")[0].0.clone());
    let again = events(&base, "");
    assert_eq!(again["count"], 4, "{again}");
    assert_eq!(again["events"][3]["event_id"], ids[3].as_str());
    assert_eq!(again["unreadable_lines"], 1, "{again}");
    kill_9(server);
}
