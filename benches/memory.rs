//! `cargo bench --bench memory`: peak memory and time of HOG detection alone, as a function
//! of the pixels scanned, to size DETECT_MAX_PIXELS and the images processed at once.
//!
//! Each figure comes from a fresh process (this binary runs itself per case), after the models
//! are loaded and the image is in memory (as RGB and as dlib's copy): the peak RSS (VmHWM,
//! reset through /proc/self/clear_refs) above the RSS at that point. Photo: a probe photo of
//! ../shared/faces (or FACES_DIR) scaled onto a 4:3 canvas; models from models/ (or
//! FACE_MODELS_DIR).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use face_attendance::engine::hog::DlibDetector;
use face_attendance::engine::{Engine, EngineConfig, Frame};
use face_attendance::image_io;

fn faces_dir() -> PathBuf {
    std::env::var("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/faces")))
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One measurement in this process: prints `RESULT <rss_mb> <image_mb> <peak_mb> <faces> <ms>`.
/// With `dlib`, dlib's own single-threaded detector scans instead of the engine (for comparison).
fn child(width: u32, height: u32, upsample: u32, dlib: bool) {
    let models = std::env::var("FACE_MODELS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/models").into());
    let engine = Engine::load(EngineConfig::new(models).with_upsample(upsample))
        .unwrap_or_else(|e| panic!("{e}"));
    let bytes = std::fs::read(faces_dir().join("probe/obama/obama_3.jpg")).expect("photo");
    let photo = image_io::decode(&bytes, u64::MAX).expect("decode");
    let before_image = status_kb("VmRSS:");
    let image = image_io::letterbox(&photo, width, height);
    let frame = Frame::new(&image);
    let mut reference = dlib.then(DlibDetector::new);
    let rss = status_kb("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let started = Instant::now();
    let faces = match reference.as_mut() {
        Some(d) => d.detect(&frame, upsample).len(),
        None => engine.detect(&frame, engine.config().upsample()).len(),
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let peak = if reset { status_kb("VmHWM:") } else { 0 };
    println!(
        "RESULT {} {} {} {faces} {ms:.0}",
        rss / 1024,
        rss.saturating_sub(before_image) / 1024,
        peak.saturating_sub(rss) / 1024
    );
}

fn main() {
    if let Ok(case) = std::env::var("MEMORY_BENCH_CASE") {
        let v: Vec<u32> = case.split(',').filter_map(|x| x.parse().ok()).collect();
        if let [w, h, u, dlib] = v[..] {
            child(w, h, u, dlib == 1);
        }
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("HOG detection alone: peak RSS above the process with models and image loaded");
    println!(
        "(the engine's parallel scan; then dlib's own detector on one thread, for comparison)"
    );
    println!(
        "{:>10} {:>10} {:>9} {:>12} {:>13} {:>8} {:>6} {:>14} {:>8}",
        "pixels",
        "size",
        "upsample",
        "base RSS MB",
        "image+dlib MB",
        "peak +MB",
        "ms",
        "dlib peak +MB",
        "dlib ms"
    );
    let sizes: [(u32, u32); 6] = [
        (640, 480),
        (1152, 864),
        (1280, 960),
        (1672, 1254),
        (2304, 1728),
        (3264, 2448),
    ];
    for upsample in [1, 0] {
        for (w, h) in sizes {
            if upsample == 1 && w > 2400 {
                continue;
            }
            let measure = |dlib: u32| -> Option<Vec<String>> {
                let out = Command::new(&exe)
                    .env("MEMORY_BENCH_CASE", format!("{w},{h},{upsample},{dlib}"))
                    .output()
                    .expect("run the measurement");
                let text = String::from_utf8_lossy(&out.stdout);
                let Some(line) = text.lines().find(|l| l.starts_with("RESULT")) else {
                    eprintln!("{w}x{h}: {}", String::from_utf8_lossy(&out.stderr));
                    return None;
                };
                Some(line.split_whitespace().skip(1).map(String::from).collect())
            };
            let (Some(f), Some(d)) = (measure(0), measure(1)) else {
                continue;
            };
            println!(
                "{:>9.2}M {:>10} {:>9} {:>12} {:>13} {:>8} {:>6} {:>14} {:>8}",
                (w * h) as f64 / 1e6,
                format!("{w}x{h}"),
                upsample,
                f[0],
                f[1],
                f[2],
                f[4],
                d[2],
                d[4]
            );
        }
    }
}
