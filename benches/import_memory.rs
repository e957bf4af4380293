//! `cargo bench --bench import_memory`: the service's memory while `POST /gallery/import`
//! runs, with a real `serve` (with an API key, the default GALLERY_IMPORT_MAX_BYTES) on a data
//! folder on disk, fed by 8 clients at once.
//!
//! Archives: a real export of many people with face crops (`IMPORT_BENCH_PEOPLE`, default 2400
//! people with 4 samples each, their crops 160x160 JPEGs of a photo of ../shared/faces or
//! FACES_DIR: ~120 MiB), and 120 MiB of garbage. Each case starts from a fresh server: its RSS
//! once serving (`base`), the highest VmRSS sampled every 5 ms and the kernel's VmHWM during the
//! case (`peak`), and its RSS a second after the last answer (`after`), all from
//! /proc/<pid>/status; the contract is `peak - after` at most 64 MiB. `IMPORT_BENCH_BIN` runs
//! another build of the binary (an older release, for comparison); `IMPORT_BENCH_DIR` keeps the
//! archives (and the data folder) there, made once and reused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use face_attendance::gallery::{Gallery, NewSample, StudentId};
use face_attendance::image_io;

const KEY: &str = "import-bench-key-0123456789abcdef";
const CLIENTS: usize = 8;

fn faces_dir() -> PathBuf {
    std::env::var("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/faces")))
}

fn models_dir() -> String {
    std::env::var("FACE_MODELS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/models").into())
}

/// `field` of /proc/<pid>/status, in KiB.
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// A real export: `people` people with 4 samples each, every sample with a crop.
fn real_archive(dir: &Path, people: usize) -> PathBuf {
    let gallery_dir = dir.join("source-gallery");
    let (g, _) = Gallery::open(&gallery_dir).expect("open the source gallery");
    let photos: Vec<PathBuf> = ["known/obama", "known/biden", "probe/obama", "probe/biden"]
        .iter()
        .flat_map(|d| std::fs::read_dir(faces_dir().join(d)).expect("photos"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    let crops: Vec<Vec<u8>> = photos
        .iter()
        .map(|p| {
            let photo =
                image_io::decode(&std::fs::read(p).expect("photo"), u64::MAX).expect("decode");
            image_io::encode_jpeg(&image_io::letterbox(&photo, 160, 160)).expect("encode")
        })
        .collect();
    for p in 0..people {
        let id = StudentId::parse(&format!("student{p:05}")).expect("id");
        let samples = (0..4)
            .map(|s| {
                let mut e = [0.0; 128];
                for (i, v) in e.iter_mut().enumerate() {
                    *v = (((p * 131 + s * 17 + i * 7) % 1000) as f64 - 500.0) / 5000.0;
                }
                NewSample::new(e).with_crop(crops[(p + s) % crops.len()].clone())
            })
            .collect();
        g.enroll(&id, samples, "bench").expect("enroll");
    }
    let path = dir.join("gallery.tar");
    let mut file = std::fs::File::create(&path).expect("archive file");
    g.export(&mut file).expect("export");
    drop(g);
    let _ = std::fs::remove_dir_all(&gallery_dir);
    path
}

/// 120 MiB that is no archive.
fn garbage(dir: &Path) -> PathBuf {
    let path = dir.join("garbage.bin");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("garbage file"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..(120 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        file.write_all(&x.to_le_bytes()).expect("write garbage");
    }
    file.flush().expect("flush garbage");
    path
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &Path, data: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("address");
    let child = Command::new(bin)
        .args(["serve", "--bind", &addr.to_string()])
        .env("FACE_MODELS_DIR", models_dir())
        .env("FACE_DATA_DIR", data)
        .env("FACE_API_KEY", KEY)
        .env_remove("GALLERY_IMPORT_MAX_BYTES")
        .env_remove("FACE_API_KEYS_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let started = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, addr }
}

/// One import of `file`: the status, or 0 when the connection failed.
fn import(addr: SocketAddr, file: &Path, mode: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let head = format!(
        "POST /gallery/import?mode={mode} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return 0;
    }
    // The body is sent while the answer is awaited: a refused import is answered at once.
    let writer = stream.try_clone().ok().map(|mut out| {
        let file = file.to_path_buf();
        std::thread::spawn(move || {
            if let Ok(mut body) = std::fs::File::open(file) {
                let _ = std::io::copy(&mut body, &mut out);
            }
        })
    });
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Runs `clients` imports of `file` at once on a fresh server over `data`; prints one line.
fn case(bin: &Path, data: &Path, what: &str, file: &Path, mode: &str, clients: usize, again: bool) {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data).expect("data folder");
    let server = start(bin, data);
    let pid = server.child.id();
    if again {
        // The gallery holds the archive already: the import merges nothing new, or replaces.
        assert_eq!(import(server.addr, file, "merge"), 200, "first import");
        std::thread::sleep(Duration::from_secs(1));
    }
    let base = status_kb(pid, "VmRSS:");
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
    let highest = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (highest, done) = (highest.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                highest.fetch_max(status_kb(pid, "VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|_| s.spawn(|| import(server.addr, file, mode)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).collect()
    });
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let after = status_kb(pid, "VmRSS:");
    let hwm = if reset { status_kb(pid, "VmHWM:") } else { 0 };
    let peak = highest.load(Ordering::Relaxed).max(hwm);
    let mut counts: Vec<(u16, usize)> = Vec::new();
    for s in statuses {
        match counts.iter_mut().find(|(k, _)| *k == s) {
            Some((_, n)) => *n += 1,
            None => counts.push((s, 1)),
        }
    }
    counts.sort();
    let answers: Vec<String> = counts.iter().map(|(s, n)| format!("{n}x{s}")).collect();
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "{what:<34} {:>8.1} {:>8.1} {:>8.1} {:>12.1} {:>11.1} {:>7.1} {:>14}",
        mb(std::fs::metadata(file).map(|m| m.len()).unwrap_or(0) / 1024),
        mb(base),
        mb(peak),
        mb(after),
        mb(peak) - mb(after),
        took.as_secs_f64(),
        answers.join(" "),
    );
}

fn main() {
    let bin = std::env::var("IMPORT_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_BIN_EXE_face-attendance")));
    let people: usize = std::env::var("IMPORT_BENCH_PEOPLE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2400);
    // A folder of one's own keeps the archives for the next run (they take minutes to make).
    let temp = tempfile::Builder::new()
        .prefix("import-bench")
        .tempdir_in("/tmp")
        .expect("work folder");
    let work = std::env::var_os("IMPORT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&work).expect("IMPORT_BENCH_DIR");
    let work = work.as_path();
    let started = Instant::now();
    let archive = match work.join("gallery.tar") {
        made if made.exists() => made,
        _ => real_archive(work, people),
    };
    let garbage = match work.join("garbage.bin") {
        made if made.exists() => made,
        _ => garbage(work),
    };
    eprintln!(
        "archives made in {:.0} s: {} ({people} people x 4 samples with crops), {}",
        started.elapsed().as_secs_f64(),
        archive.display(),
        garbage.display()
    );
    let data = work.join("data");
    println!("binary: {}", bin.display());
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>12} {:>11} {:>7} {:>14}",
        "case", "MiB", "base MB", "peak MB", "after MB", "peak-after", "s", "answers"
    );
    let n = CLIENTS;
    case(
        &bin,
        &data,
        "garbage, 8 at once",
        &garbage,
        "merge",
        n,
        false,
    );
    case(
        &bin,
        &data,
        "real archive, 8 at once (merge)",
        &archive,
        "merge",
        n,
        false,
    );
    case(
        &bin,
        &data,
        "real archive, 1 (merge)",
        &archive,
        "merge",
        1,
        false,
    );
    case(
        &bin,
        &data,
        "same archive again (merge)",
        &archive,
        "merge",
        1,
        true,
    );
    case(
        &bin,
        &data,
        "same archive again (replace)",
        &archive,
        "replace",
        1,
        true,
    );
}
