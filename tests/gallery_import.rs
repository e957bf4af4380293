//! `POST /gallery/import` on a real server on 127.0.0.1: one import at a time (a second one is
//! refused at once with 503 and `Retry-After`, before its body is read), the body kept in an
//! unlinked file of the data folder readable by the service's user only, and nothing left in the
//! data folder after an import refused, cut off, stalled, garbage or killed with the server.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http as h;
use face_attendance::gallery::{Gallery, NewSample, StudentId};
use face_attendance::image_io;
use face_attendance::service::Service;
use serde_json::Value;

fn url(server: &Service, path: &str) -> String {
    format!("http://{}{}", server.addr(), path)
}

/// An exported gallery of `people` people with two samples each, their crops real photos.
fn archive(people: usize) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let (g, _) = Gallery::open(dir.path()).unwrap();
    let photo = std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap();
    let photo = image_io::decode(&photo, u64::MAX).unwrap();
    // The size of the crops enrollment keeps.
    let jpeg = image_io::encode_jpeg(&image_io::letterbox(&photo, 160, 160)).unwrap();
    for p in 0..people {
        let id = StudentId::parse(&format!("p{p:03}")).unwrap();
        let samples = (0..2)
            .map(|s| {
                let mut e = [0.0; 128];
                e[p % 128] = 1.0 + p as f64;
                e[(p + 1 + s) % 128] = 0.5 + s as f64;
                NewSample::new(e).with_crop(jpeg.clone())
            })
            .collect();
        g.enroll(&id, samples, "test").unwrap();
    }
    let mut out = Vec::new();
    g.export(&mut out).unwrap();
    out
}

/// Files open in this process (the server runs in it) that are gone from `dir`, directly
/// inside it, with their mode: the body of an import in progress.
fn unlinked_files_in(dir: &Path) -> Vec<(PathBuf, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let text = target.display().to_string();
        let Some(path) = text.strip_suffix(" (deleted)") else {
            continue;
        };
        if Path::new(path).parent() == Some(dir) {
            // The metadata of the open file itself, through its descriptor.
            if let Ok(meta) = std::fs::metadata(entry.path()) {
                out.push((PathBuf::from(path), meta.permissions().mode() & 0o777));
            }
        }
    }
    out
}

fn health_imports(server: &Service) -> Value {
    h::get(&url(server, "/health")).1["http"]["imports"].clone()
}

fn wait_until_no_import(server: &Service) {
    common::wait_for(
        "the import place given back",
        Duration::from_secs(30),
        || health_imports(server)["busy"] == 0,
    );
}

/// A connection that has sent an import's head and `sent` of its `total` bytes of body.
fn start_import(addr: SocketAddr, total: usize, body: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /gallery/import HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-tar\r\n\
         Content-Length: {total}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}

/// The status line and the rest of a whole answer.
fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_of(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[test]
fn one_import_at_a_time_and_nothing_is_left_in_the_data_folder() {
    let archive = archive(40);
    let data = tempfile::tempdir().unwrap();
    let mut settings = h::serve_settings();
    // (The import limit is at least the upload limit.)
    settings.max_upload_bytes = 1 << 20;
    settings.max_import_bytes = 4 << 20;
    let server = h::start(data.path(), settings);
    let addr = server.addr();
    let before = common::tree(data.path());

    // A first import, half sent: it holds the import place and a private unnamed file.
    let half = archive.len() / 2;
    let mut first = start_import(addr, archive.len(), &archive[..half]);
    common::wait_for("the first import's place", Duration::from_secs(10), || {
        health_imports(&server)["busy"] == 1
    });
    common::wait_for("the body in a file", Duration::from_secs(10), || {
        !unlinked_files_in(data.path()).is_empty()
    });
    let spools = unlinked_files_in(data.path());
    assert_eq!(spools.len(), 1, "{spools:?}");
    assert_eq!(spools[0].1, 0o600, "{spools:?}");
    assert_eq!(
        common::tree(data.path()),
        before,
        "the body's file has no name"
    );

    // A second one is refused at once, its body unread (it never sends it).
    let (second, answer) = h::raw_request(
        addr,
        &format!(
            "POST /gallery/import HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-tar\r\n\
             Content-Length: {}\r\n\r\n",
            archive.len()
        ),
    );
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    assert!(answer.contains("an import is in progress"), "{answer}");
    drop(second.shutdown(std::net::Shutdown::Both));
    // Uploads of other kinds are not held up by it.
    let photo = common::faces_dir().join("probe/obama/obama_3.jpg");
    assert_eq!(
        h::post_image(&url(&server, "/recognize"), &photo, &[]).0,
        200
    );

    first.write_all(&archive[half..]).unwrap();
    let answer = read_answer(&mut first);
    assert_eq!(status_of(&answer), 200, "{answer}");
    assert!(answer.contains("\"people_added\":40"), "{answer}");
    wait_until_no_import(&server);
    let imports = health_imports(&server);
    assert_eq!(
        (imports["max"].as_u64(), imports["refused"].as_u64()),
        (Some(1), Some(1))
    );
    let metrics = h::get_bytes(&url(&server, "/metrics")).2;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("face_http_places_refused_total{budget=\"imports\"} 1"),
        "{metrics}"
    );
    assert!(unlinked_files_in(data.path()).is_empty());
    assert_eq!(h::get(&url(&server, "/people")).1["total"], 40);
    let imported = common::tree(data.path());
    assert!(
        imported.iter().all(|p| !p.contains("gallery-import")),
        "{imported:?}"
    );

    // Refused by its Content-Length, before a byte is read: 413.
    let (_, answer) = h::raw_request(
        addr,
        &format!(
            "POST /gallery/import HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n",
            (4 << 20) + 1
        ),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    // Past the limit while reading (chunked, no length): 413 too.
    let mut chunked = TcpStream::connect(addr).unwrap();
    chunked
        .write_all(
            format!(
                "POST /gallery/import HTTP/1.1\r\nHost: {addr}\r\n\
                 Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let block = vec![0x5a; 64 << 10];
    for _ in 0..80 {
        let chunk = [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat();
        if chunked.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = chunked.write_all(b"0\r\n\r\n");
    chunked
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = read_answer(&mut chunked);
    assert_eq!(status_of(&answer), 413, "{answer}");
    wait_until_no_import(&server);
    assert!(unlinked_files_in(data.path()).is_empty());
    assert_eq!(common::tree(data.path()), imported);

    // Garbage: 400, nothing written, nothing left.
    let garbage: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let (status, refused) = h::post(
        &url(&server, "/gallery/import"),
        "application/x-tar",
        garbage,
    );
    assert_eq!(status, 400, "{refused}");
    wait_until_no_import(&server);
    assert!(unlinked_files_in(data.path()).is_empty());
    assert_eq!(common::tree(data.path()), imported);

    // Cut off: the client hangs up half way (400), or stops sending (408 after the timeout).
    let mut cut = start_import(addr, archive.len(), &archive[..half]);
    common::wait_for("the cut import's file", Duration::from_secs(10), || {
        unlinked_files_in(data.path()).len() == 1
    });
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = read_answer(&mut cut);
    assert!(answer.is_empty() || status_of(&answer) == 400, "{answer}");
    wait_until_no_import(&server);
    assert!(unlinked_files_in(data.path()).is_empty());
    // (A little of the body: what came earns the client time at the minimum rate.)
    let mut stalled = start_import(addr, archive.len(), &archive[..1024]);
    let answer = read_answer(&mut stalled);
    assert!(answer.is_empty() || status_of(&answer) == 408, "{answer}");
    wait_until_no_import(&server);
    assert!(unlinked_files_in(data.path()).is_empty());
    assert_eq!(common::tree(data.path()), imported);
    assert_eq!(h::get(&url(&server, "/people")).1["total"], 40);
    server.shutdown();
}

#[test]
fn a_killed_server_leaves_no_body_behind_and_a_leftover_goes_at_start() {
    let archive = archive(10);
    let site = tempfile::tempdir().unwrap();
    let data = site.path().join("data");
    let port = common::free_port();
    let spawn = || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_face-attendance"));
        command
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .current_dir(site.path())
            .env("FACE_MODELS_DIR", common::models_dir())
            .env("FACE_DATA_DIR", &data)
            .env_remove("FACE_API_KEY")
            .env_remove("FACE_API_KEYS_FILE");
        common::spawn_until_serving(command)
    };
    let mut server = spawn();
    let before = common::tree(&data);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let half = archive.len() / 2;
    let _import = start_import(addr, archive.len(), &archive[..half]);
    let health = format!("http://{addr}/health");
    common::wait_for("the import in progress", Duration::from_secs(10), || {
        h::get(&health).1["http"]["imports"]["busy"] == 1
    });
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(common::tree(&data), before, "a kill left the body behind");

    // What a kill between a named file's creation and its removal would leave.
    let leftover = data.join(format!(".gallery-import.tmp-{}-0", std::process::id()));
    std::fs::write(&leftover, &archive[..half]).unwrap();
    let mut server = spawn();
    assert!(!leftover.exists());
    assert_eq!(common::tree(&data), before);
    assert!(common::sigterm_and_wait(&mut server).success());
}
