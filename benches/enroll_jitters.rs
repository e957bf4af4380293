//! `cargo bench --bench enroll_jitters`: what enrolling with more jitters (dlib's `num_jitters`:
//! the encoding averaged over randomly jittered copies of the face) buys and costs; the
//! measurement behind the `ENROLL_JITTERS` default.
//!
//! For each jitters value: every `known/` photo is enrolled (its largest face, through
//! `Recognizer::candidate` with those jitters, as POST /enroll and bulk enroll do), then the probes and
//! strangers, encoded once as the service recognizes (jitters 1, upsample 1), are matched at
//! tolerance 0.45. Printed: probes right / unknown / wrong, the farthest genuine probe (distance
//! to the nearest encoding of its own person), the nearest stranger (to any encoding), the gap
//! between them (the room the tolerance has), and the enrollment time per photo (decode, detect,
//! landmarks, encode; median and mean, on the rayon pool).
//!
//! Photos from ../shared/faces (or FACES_DIR), models from models/ (or FACE_MODELS_DIR).
//! ENROLL_JITTERS_LIST (e.g. "1,5,10,20", the default) sets the values measured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use face_attendance::bulk_enroll;
use face_attendance::engine::{distance, Encoding, Engine, EngineConfig};
use face_attendance::gallery::Gallery;
use face_attendance::image_io;
use face_attendance::pipeline;
use face_attendance::recognizer::Photo;
use face_attendance::recognizer::Recognizer;

const TOLERANCE: f64 = 0.45;

fn faces_dir() -> PathBuf {
    std::env::var("FACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/faces")))
}

fn engine() -> Engine {
    let models = std::env::var("FACE_MODELS_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/models").into());
    Engine::load(EngineConfig::new(models).with_upsample(1)).unwrap_or_else(|e| panic!("{e}"))
}

/// The photos directly in `dir` (the strangers), sorted.
fn photos(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| Some(e.ok()?.path()).filter(|p| bulk_enroll::is_photo(p)))
        .collect();
    out.sort();
    out
}

/// `(person, photo)` for every photo of the per-person folders of `dir`, as bulk enroll finds
/// them.
fn people_photos(dir: &Path) -> Vec<(String, PathBuf)> {
    let (people, _) = bulk_enroll::scan(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    people
        .into_iter()
        .flat_map(|(id, photos)| photos.into_iter().map(move |p| (id.to_string(), p)))
        .collect()
}

fn jitters_list() -> Vec<u32> {
    std::env::var("ENROLL_JITTERS_LIST")
        .ok()
        .map(|v| v.split(',').filter_map(|j| j.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 5, 10, 20])
}

fn main() {
    // The kernels `face-attendance` itself uses on this CPU.
    face_attendance::engine::blas::reexec_with_best_kernels();
    let faces = faces_dir();
    let engine = Arc::new(engine());
    let dir = tempfile::tempdir().expect("tempdir");
    let (gallery, _) = Gallery::open(dir.path()).expect("gallery");
    let recognizer = Recognizer::new(engine.clone(), Arc::new(gallery));

    // Probes and strangers as the service sees them: engine jitters (1), every face.
    let encode_all = |path: &Path| -> Vec<Encoding> {
        let bytes = std::fs::read(path).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode");
        pipeline::analyze(&engine, &image)
            .into_iter()
            .map(|f| f.encoding)
            .collect()
    };
    let probes: Vec<(String, PathBuf, Encoding)> = people_photos(&faces.join("probe"))
        .into_iter()
        .filter_map(|(name, path)| {
            let found = encode_all(&path);
            if found.len() != 1 {
                eprintln!("{}: {} faces, left out", path.display(), found.len());
            }
            (found.len() == 1).then(|| (name, path, found[0]))
        })
        .collect();
    let strangers: Vec<(PathBuf, Encoding)> = photos(&faces.join("strangers"))
        .into_iter()
        .flat_map(|path| {
            encode_all(&path)
                .into_iter()
                .map(move |e| (path.clone(), e))
        })
        .collect();
    let known = people_photos(&faces.join("known"));
    println!(
        "{} known photos enrolled per row, {} probes and {} stranger faces matched at \
         tolerance {TOLERANCE}; {} rayon threads",
        known.len(),
        probes.len(),
        strangers.len(),
        engine.threads()
    );
    println!(
        "{:>7} {:>6} {:>8} {:>6} {:>17} {:>17} {:>7} {:>14} {:>12}",
        "jitters",
        "right",
        "unknown",
        "wrong",
        "farthest genuine",
        "nearest stranger",
        "gap",
        "enroll median",
        "enroll mean"
    );
    let mut baseline: Option<Vec<Encoding>> = None;
    let mut previous: Option<Vec<Encoding>> = None;
    for jitters in jitters_list() {
        // Warm-up (encoder copy, caches), not timed.
        let _ = recognizer.candidate(
            Photo::Bytes(&std::fs::read(&known[0].1).expect("photo")),
            Some(1),
        );
        let mut enrolled: Vec<(String, Encoding)> = Vec::new();
        let mut times = Vec::new();
        for (name, path) in &known {
            let bytes = std::fs::read(path).expect("photo");
            let t = Instant::now();
            let candidate = recognizer
                .candidate(Photo::Bytes(&bytes), Some(jitters))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            let (face, _) = candidate
                .face
                .unwrap_or_else(|| panic!("{}: no face", path.display()));
            enrolled.push((name.clone(), face.encoding));
        }
        let (mut right, mut unknown, mut wrong) = (0, 0, 0);
        let mut farthest_genuine: (f64, String) = (0.0, String::new());
        for (name, path, probe) in &probes {
            let (best_name, best) = enrolled
                .iter()
                .map(|(n, e)| (n, distance(probe, e)))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("enrolled");
            match (best <= TOLERANCE, best_name == name) {
                (true, true) => right += 1,
                (true, false) => wrong += 1,
                (false, _) => unknown += 1,
            }
            let own = enrolled
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, e)| distance(probe, e))
                .fold(f64::INFINITY, f64::min);
            if own > farthest_genuine.0 {
                farthest_genuine = (own, file_name(path));
            }
        }
        let mut nearest_stranger: (f64, String) = (f64::INFINITY, String::new());
        for (path, stranger) in &strangers {
            for (_, e) in &enrolled {
                let d = distance(stranger, e);
                if d < nearest_stranger.0 {
                    nearest_stranger = (d, file_name(path));
                }
            }
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "{:>7} {:>6} {:>8} {:>6} {:>17} {:>17} {:>7.3} {:>11.0} ms {:>9.0} ms",
            jitters,
            right,
            unknown,
            wrong,
            format!("{:.3}", farthest_genuine.0),
            format!("{:.3}", nearest_stranger.0),
            nearest_stranger.0 - farthest_genuine.0,
            median,
            mean
        );
        println!(
            "{:>7}   farthest genuine: {}, nearest stranger: {}",
            "", farthest_genuine.1, nearest_stranger.1
        );
        // How far the enrolled encodings moved from the first row's and the previous row's:
        // a systematic shift (jittering averages mirrored and shifted copies) against the
        // random part, which shrinks as jitters grow.
        let encodings: Vec<Encoding> = enrolled.iter().map(|(_, e)| *e).collect();
        for (what, other) in [("first", &baseline), ("previous", &previous)] {
            if let Some(other) = other {
                let (mean, max) = moved(other, &encodings);
                println!(
                    "{:>7}   enrolled encodings moved from the {what} row's: mean {mean:.3}, max {max:.3}",
                    ""
                );
            }
        }
        baseline.get_or_insert_with(|| encodings.clone());
        previous = Some(encodings);
    }
}

/// Mean and largest distance between the encodings of `a` and `b`, pairwise.
fn moved(a: &[Encoding], b: &[Encoding]) -> (f64, f64) {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| distance(x, y)).collect();
    let max = d.iter().copied().fold(0.0, f64::max);
    (d.iter().sum::<f64>() / d.len().max(1) as f64, max)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
