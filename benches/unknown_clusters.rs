//! The same-person threshold of the unknown-faces clusters (`UNKNOWN_CLUSTER_DISTANCE`), measured
//! on `../shared/faces`: the largest face of every `known/`, `probe/` and `strangers/` photo
//! (`stuart_*` being one person), encoded as the camera encodes (no jitter). Prints the distances
//! between two photos of one person and between two people, then what the clustering makes of
//! all the faces at several thresholds: clusters, clusters that mix people (the error that
//! enrolls a face under the wrong name) and people split over several clusters (the harmless
//! error: two clusters to enroll under one name).
//!
//! `cargo bench --bench unknown_clusters` (FACES_DIR, FACE_MODELS_DIR as for the tests).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use face_attendance::engine::{distance, Encoding, Engine, EngineConfig};
use face_attendance::image_io;
use face_attendance::pipeline::{self, Purpose};
use face_attendance::unknowns::cluster;

fn dir_from(var: &str, default: &str) -> PathBuf {
    std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
}

fn jpgs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|x| x == "jpg"));
    out.sort();
    out
}

fn stats(mut v: Vec<f64>) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_by(f64::total_cmp);
    format!(
        "n={} min {:.3} median {:.3} max {:.3}",
        v.len(),
        v[0],
        v[v.len() / 2],
        v[v.len() - 1]
    )
}

fn main() {
    face_attendance::engine::blas::reexec_with_best_kernels();
    let faces = dir_from("FACES_DIR", "../shared/faces");
    let models = dir_from("FACE_MODELS_DIR", "models");
    let engine = Engine::load(EngineConfig::new(models)).unwrap_or_else(|e| panic!("{e}"));
    let mut photos: Vec<(String, PathBuf)> = Vec::new();
    for part in ["known", "probe"] {
        let mut people: Vec<PathBuf> = std::fs::read_dir(faces.join(part))
            .expect("faces folder")
            .filter_map(|e| Some(e.ok()?.path()).filter(|p| p.is_dir()))
            .collect();
        people.sort();
        for person in people {
            let name = person.file_name().unwrap().to_string_lossy().into_owned();
            photos.extend(jpgs(&person).into_iter().map(|p| (name.clone(), p)));
        }
    }
    for p in jpgs(&faces.join("strangers")) {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        // stuart_1..5 are one person; every other stranger is someone else.
        let who = if stem.starts_with("stuart_") {
            "stuart"
        } else {
            &stem
        };
        photos.push((format!("stranger:{who}"), p));
    }
    let mut encoded: Vec<(String, String, Encoding)> = Vec::new();
    for (who, path) in &photos {
        let bytes = std::fs::read(path).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode");
        match pipeline::analyze_image(&engine, &image, Purpose::Enroll { jitters: 1 })
            .faces
            .pop()
        {
            Some(face) => encoded.push((
                who.clone(),
                path.file_name().unwrap().to_string_lossy().into_owned(),
                face.encoding,
            )),
            None => println!("no face: {}", path.display()),
        }
    }
    println!(
        "{} faces of {} people",
        encoded.len(),
        encoded.iter().map(|e| &e.0).collect::<BTreeSet<_>>().len()
    );
    let mut same: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut across = Vec::new();
    let mut closest: Vec<(f64, String)> = Vec::new();
    for i in 0..encoded.len() {
        for j in i + 1..encoded.len() {
            let d = distance(&encoded[i].2, &encoded[j].2);
            if encoded[i].0 == encoded[j].0 {
                same.entry(&encoded[i].0).or_default().push(d);
            } else {
                across.push(d);
                closest.push((
                    d,
                    format!(
                        "{} {} / {} {}",
                        encoded[i].0, encoded[i].1, encoded[j].0, encoded[j].1
                    ),
                ));
            }
        }
    }
    println!("\nsame person (pairs of photos):");
    let mut all_same_pairs = Vec::new();
    for (who, d) in &same {
        println!("  {who:<18} {}", stats(d.clone()));
        all_same_pairs.extend(d);
    }
    println!("  {:<18} {}", "all", stats(all_same_pairs.clone()));
    println!("two people: {}", stats(across));
    closest.sort_by(|a, b| a.0.total_cmp(&b.0));
    println!("closest pairs of two people:");
    for (d, pair) in closest.iter().take(5) {
        println!("  {d:.3} {pair}");
    }
    println!("\nthreshold  same-person pairs at or above  two-people pairs below");
    for t in [0.45, 0.50, 0.55, 0.60] {
        let above = all_same_pairs.iter().filter(|d| **d >= t).count();
        let below = closest.iter().filter(|(d, _)| *d < t).count();
        println!(
            "  {t:.2}      {above:>3} of {:<3}                      {below} of {}",
            all_same_pairs.len(),
            closest.len()
        );
    }
    println!("\nthreshold clusters mixed split (people in several clusters) stuart");
    let points: Vec<(u64, Encoding)> = encoded
        .iter()
        .enumerate()
        .map(|(i, e)| (i as u64, e.2))
        .collect();
    for t in [0.35, 0.40, 0.45, 0.50, 0.55, 0.60] {
        let groups = cluster::clusters(&points, t);
        let mut mixed = 0;
        let mut clusters_of: BTreeMap<&str, usize> = BTreeMap::new();
        for g in &groups {
            let who: BTreeSet<&str> = g.members().iter().map(|&i| encoded[i].0.as_str()).collect();
            if who.len() > 1 {
                mixed += 1;
            }
            for w in who {
                *clusters_of.entry(w).or_default() += 1;
            }
        }
        let split = clusters_of.values().filter(|n| **n > 1).count();
        println!(
            "  {t:.2}      {:>8} {mixed:>5} {split:>5}                             {}",
            groups.len(),
            clusters_of.get("stranger:stuart").copied().unwrap_or(0)
        );
    }
}
