//! `cargo bench --bench engine`: per-stage cost of the face engine, in ms (median of many runs).
//!
//! Frames: a 640x480 frame with one face (a probe photo scaled onto a canvas) and a 1280x720
//! photo with four faces, from ../shared/faces (or FACES_DIR). Models from models/ (or
//! FACE_MODELS_DIR). BENCH_RUNS sets the number of runs per figure (default 15).
//!
//! The HOG table compares the engine's detector (the pyramid scanned on every thread of the
//! rayon pool: RAYON_NUM_THREADS sets how many) with dlib's own single-threaded detector on the
//! same frames, runs interleaved so that a busy machine slows both alike.

use std::path::PathBuf;
use std::time::Instant;

use face_attendance::engine::hog::{DlibDetector, HogModel};
use face_attendance::engine::{Encoding, Engine, EngineConfig, Frame};
use face_attendance::gallery::{Gallery, NewSample, StudentId};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline;

fn runs() -> usize {
    std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn faces_dir() -> PathBuf {
    std::env::var("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/faces")))
}

fn load(rel: &str) -> RgbImage {
    let bytes = std::fs::read(faces_dir().join(rel)).expect("photo");
    image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode")
}

fn engine(upsample: u32) -> Engine {
    let models = std::env::var("FACE_MODELS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/models").into());
    Engine::load(EngineConfig::new(models).with_upsample(upsample))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn main() {
    // The kernels `face-attendance` itself uses on this CPU.
    face_attendance::engine::blas::reexec_with_best_kernels();
    let n = runs();
    let frames = [
        (
            "640x480, 1 face",
            image_io::letterbox(&load("probe/obama/obama_3.jpg"), 640, 480),
        ),
        ("1280x720, 4 faces", load("group/bbt1.jpg")),
    ];
    let e0 = engine(0);
    let e1 = engine(1);
    println!("face engine, median of {n} runs, ms; sum u0 = detect u0 + encodings one by one, analyze u0 = the engine's pipeline (faces encoded in parallel)");
    println!(
        "{:<20} {:>8} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "frame",
        "decode",
        "detect u0",
        "detect u1",
        "landmarks",
        "enc/face",
        "sum u0",
        "analyze u0"
    );
    for (name, img) in &frames {
        let jpeg = image_io::encode_jpeg(img).expect("jpeg");
        let boxes = pipeline::detect(&e0, img);
        let decode = median_ms(n, || drop(image_io::decode(&jpeg, u64::MAX)));
        let d0 = median_ms(n, || drop(pipeline::detect(&e0, img)));
        let d1 = median_ms(n.min(7), || drop(pipeline::detect(&e1, img)));
        let lm = median_ms(n, || {
            drop(
                e0.landmarks(&Frame::new(img), &boxes)
                    .iter()
                    .map(|s| s.points().to_vec())
                    .collect::<Vec<_>>(),
            )
        }) / boxes.len().max(1) as f64;
        let one = boxes.first().map(|b| vec![*b]).unwrap_or_default();
        let enc = median_ms(n, || drop(pipeline::encode(&e0, img, &one)));
        let all = median_ms(n, || drop(pipeline::analyze(&e0, img)));
        println!(
            "{:<20} {:>8.2} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
            name,
            decode,
            d0,
            d1,
            lm,
            enc,
            d0 + enc * boxes.len() as f64,
            all
        );
        println!("  ({} faces found at upsample 0)", boxes.len());
    }

    println!(
        "\nHOG detection alone, ms (median of {n} interleaved runs): dlib's detector on one thread, \
         the parallel scan on {} rayon threads",
        rayon::current_num_threads()
    );
    println!(
        "{:<20} {:>9} {:>14} {:>10} {:>8}",
        "frame", "upsample", "dlib 1 thread", "parallel", "speedup"
    );
    let model = HogModel::frontal_face();
    let mut dlib = DlibDetector::new();
    for (name, img) in &frames {
        let frame = Frame::new(img);
        for upsample in [0, 1] {
            let (mut single, mut parallel) = (Vec::new(), Vec::new());
            for run in 0..=n {
                let t = Instant::now();
                let a = dlib.detect(&frame, upsample);
                let t_single = t.elapsed().as_secs_f64() * 1000.0;
                let t = Instant::now();
                let b = model.detect(&frame, upsample);
                let t_parallel = t.elapsed().as_secs_f64() * 1000.0;
                assert_eq!(a, b, "{name} at upsample {upsample}: not the same boxes");
                // Run 0 warms up.
                if run > 0 {
                    single.push(t_single);
                    parallel.push(t_parallel);
                }
            }
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let (s, p) = (median(single), median(parallel));
            println!(
                "{:<20} {:>9} {:>14.2} {:>10.2} {:>7.2}x",
                name,
                upsample,
                s,
                p,
                s / p
            );
        }
    }

    println!("\nmatching one face against the gallery (median of {n} runs)");
    let dir = tempfile::tempdir().expect("tempdir");
    let (gallery, _) = Gallery::open(dir.path()).expect("gallery");
    let probe: Encoding = std::array::from_fn(|i| (i as f64 * 0.37).sin() * 0.1);
    let mut enrolled = 0usize;
    for size in [100usize, 10_000, 100_000] {
        // Pseudo-random encodings, in files of size/100 rows (one file write each).
        let chunk = (size / 100).max(10);
        while enrolled < size {
            let rows: Vec<Encoding> = (0..chunk)
                .map(|r| {
                    std::array::from_fn(|i| {
                        ((enrolled + r) as f64 * 1.3 + i as f64 * 0.71).sin() * 0.1
                    })
                })
                .collect();
            let id = StudentId::parse(&format!("p{enrolled}")).expect("id");
            enrolled += rows.len();
            let samples = rows.into_iter().map(NewSample::new).collect();
            gallery.replace(&id, samples, "bench").expect("write");
        }
        let t = median_ms(n, || drop(gallery.best_match(&probe, 0.45)));
        println!("{size:>8} encodings: {t:.3} ms");
    }
}
