//! How the match rules decide on `../shared/faces`: every `known/` photo enrolled as the
//! service enrolls them (bulk enroll, its checks and `ENROLL_JITTERS`), then each face of
//! `probe/` (who they are is known) and `strangers/` (nobody enrolled) labelled at several
//! tolerances, without and with a margin over the closest other person (`MATCH_MARGIN`,
//! `CAMERA_MATCH_MARGIN`). Prints, per rule, the probes named right / Unknown / ambiguous /
//! wrong, and the strangers given a name (false accepts) or ambiguous.
//!
//! `cargo bench --bench decisions` (FACES_DIR, FACE_MODELS_DIR as for the tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use face_attendance::bulk_enroll;
use face_attendance::engine::{Encoding, Engine, EngineConfig};
use face_attendance::gallery::{Gallery, UNKNOWN};
use face_attendance::image_io;
use face_attendance::recognizer::Recognizer;

fn dir_from(var: &str, default: &str) -> PathBuf {
    std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(default))
}

fn main() {
    face_attendance::engine::blas::reexec_with_best_kernels();
    let faces = dir_from("FACES_DIR", "../shared/faces");
    let models = dir_from("FACE_MODELS_DIR", "models");
    let engine = Engine::load(EngineConfig::new(models)).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let (gallery, _) = Gallery::open(dir.path()).expect("gallery");
    let recognizer = Recognizer::new(Arc::new(engine), Arc::new(gallery));
    let (people, _) = bulk_enroll::scan(&faces.join("known")).expect("known/");
    let report = bulk_enroll::enroll_all(&recognizer, &people, Default::default(), &|_| {});
    let saved: usize = report.iter().map(|p| p.saved).sum();

    // Every face of every photo, with who it is (None: a stranger).
    let encode = |path: &Path| -> Vec<Encoding> {
        let bytes = std::fs::read(path).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode");
        recognizer
            .engine
            .analyze(&image)
            .into_iter()
            .map(|f| f.encoding)
            .collect()
    };
    let mut faces_seen: Vec<(Option<String>, Encoding)> = Vec::new();
    let (probes, _) = bulk_enroll::scan(&faces.join("probe")).expect("probe/");
    for (id, photos) in &probes {
        for path in photos {
            faces_seen.extend(encode(path).into_iter().map(|e| (Some(id.to_string()), e)));
        }
    }
    let mut strangers: Vec<PathBuf> = std::fs::read_dir(faces.join("strangers"))
        .expect("strangers/")
        .filter_map(|e| Some(e.ok()?.path()).filter(|p| bulk_enroll::is_photo(p)))
        .collect();
    strangers.sort();
    for path in &strangers {
        faces_seen.extend(encode(path).into_iter().map(|e| (None, e)));
    }
    let probe_faces = faces_seen.iter().filter(|(who, _)| who.is_some()).count();
    println!(
        "{saved} known photos enrolled; {probe_faces} probe faces, {} stranger faces",
        faces_seen.len() - probe_faces
    );
    println!(
        "{:>9} {:>6} | {:>5} {:>7} {:>9} {:>5} | {:>13} {:>9}",
        "tolerance",
        "margin",
        "right",
        "unknown",
        "ambiguous",
        "wrong",
        "false accepts",
        "ambiguous"
    );
    for tolerance in [0.45, 0.5, 0.6, 0.7] {
        for margin in [0.0, 0.05, 0.1] {
            let mut probes = [0usize; 4];
            let mut stranger = [0usize; 2];
            for (who, encoding) in &faces_seen {
                let m = recognizer
                    .gallery
                    .best_match_with_margin(encoding, tolerance, margin);
                match who {
                    Some(id) if m.label == *id => probes[0] += 1,
                    Some(_) if m.ambiguous.is_some() => probes[2] += 1,
                    Some(_) if m.label == UNKNOWN => probes[1] += 1,
                    Some(_) => probes[3] += 1,
                    None if m.ambiguous.is_some() => stranger[1] += 1,
                    None if m.label != UNKNOWN => stranger[0] += 1,
                    None => {}
                }
            }
            println!(
                "{tolerance:>9} {margin:>6} | {:>5} {:>7} {:>9} {:>5} | {:>13} {:>9}",
                probes[0], probes[1], probes[2], probes[3], stranger[0], stranger[1]
            );
        }
    }
}
