//! How the match rules decide on `../shared/faces`: every `known/` photo enrolled as the
//! service enrolls them (bulk enroll, its checks and `ENROLL_JITTERS`), then each face of
//! `probe/` (who they are is known) and `strangers/` (nobody enrolled) labelled at several
//! tolerances, without and with a margin over the closest other person (`MATCH_MARGIN`,
//! `CAMERA_MATCH_MARGIN`). Prints, per rule, the probes named right / Unknown / ambiguous /
//! wrong, and the strangers given a name (false accepts) or ambiguous.
//!
//! Then the camera's decisions: each photo replayed as a walk-by of six frames (the photo
//! cropped a few pixels differently, letterboxed onto 640x480, through JPEG, every frame
//! encoded) and decided by the camera's confirmation (`CAMERA_CONFIRM_FRAMES`, in a 2 s window)
//! with and without the margin. Prints, per rule, the walk-bys of probes decided as their
//! person / as someone else, and the walk-bys of strangers decided as somebody (a false
//! attendance record) or as two people at once.
//!
//! `cargo bench --bench decisions` (FACES_DIR, FACE_MODELS_DIR as for the tests).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::time::Duration;

use face_attendance::bulk_enroll;
use face_attendance::camera::confirm::{ConfirmSettings, Confirmer};
use face_attendance::camera::{Measured, Seen};
use face_attendance::engine::{Encoding, Engine, EngineConfig, Face};
use face_attendance::gallery::{Gallery, UNKNOWN};
use face_attendance::image_io;
use face_attendance::pipeline;
use face_attendance::quality;
use face_attendance::recognizer::MatchOptions;
use face_attendance::recognizer::Recognizer;

/// The camera frames of one person passing: each frame's largest face and its measures.
type WalkBy = Vec<(Face, Measured)>;

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

    // Every face of every photo, with who it is (None: a stranger); and each photo as a
    // walk-by of camera frames (its largest face in each).
    let mut walk_bys: Vec<(Option<String>, WalkBy)> = Vec::new();
    let walk_by = |path: &Path| -> WalkBy {
        let bytes = std::fs::read(path).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode");
        let (w, h) = (image.width, image.height);
        let mut frames = Vec::new();
        for cut in [0, 4, 8, 12, 6, 2] {
            // A different crop each frame moves and rescales the face a little, as walking does.
            let (dx, dy) = ((cut * w / 200).min(w / 8), (cut * h / 200).min(h / 8));
            let moved = image.crop(dy, w - (cut % 8) * w / 400, h - dy / 2, dx);
            let frame = image_io::letterbox(&moved, 640, 480);
            let jpeg = image_io::encode_jpeg(&frame).expect("jpeg");
            let frame = image_io::decode(&jpeg, image_io::DEFAULT_MAX_PIXELS).expect("decode");
            let faces = pipeline::analyze(recognizer.engine(), &frame);
            if let Some(face) = faces.into_iter().max_by_key(|f| f.bbox.area()) {
                let measured = Measured {
                    encoding: face.encoding,
                    face_px: quality::width(&face.bbox) as u32,
                    sharpness: quality::sharpness(&frame, &face.bbox),
                };
                frames.push((face, measured));
            }
        }
        frames
    };
    let encode = |path: &Path| -> Vec<Encoding> {
        let bytes = std::fs::read(path).expect("photo");
        let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).expect("decode");
        pipeline::analyze(recognizer.engine(), &image)
            .into_iter()
            .map(|f| f.encoding)
            .collect()
    };
    let mut faces_seen: Vec<(Option<String>, Encoding)> = Vec::new();
    let (probes, _) = bulk_enroll::scan(&faces.join("probe")).expect("probe/");
    for (id, photos) in &probes {
        for path in photos {
            faces_seen.extend(encode(path).into_iter().map(|e| (Some(id.to_string()), e)));
            walk_bys.push((Some(id.to_string()), walk_by(path)));
        }
    }
    let mut strangers: Vec<PathBuf> = std::fs::read_dir(faces.join("strangers"))
        .expect("strangers/")
        .filter_map(|e| Some(e.ok()?.path()).filter(|p| bulk_enroll::is_photo(p)))
        .collect();
    strangers.sort();
    for path in &strangers {
        faces_seen.extend(encode(path).into_iter().map(|e| (None, e)));
        walk_bys.push((None, walk_by(path)));
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
                    .gallery()
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

    let frames: usize = walk_bys.iter().map(|(_, f)| f.len()).sum();
    let probe_walks = walk_bys.iter().filter(|(who, _)| who.is_some()).count();
    println!(
        "\ncamera walk-bys: {probe_walks} of probes, {} of strangers, {frames} frames with a face",
        walk_bys.len() - probe_walks
    );
    println!(
        "{:>9} {:>6} {:>7} | {:>5} {:>5} | {:>13} {:>9}",
        "tolerance", "margin", "confirm", "right", "wrong", "false accepts", "ambiguous"
    );
    for tolerance in [0.45, 0.6, 0.7] {
        for margin in [0.0, 0.05] {
            for confirm in [1, 3] {
                let settings = ConfirmSettings::new(confirm, Duration::from_secs(2));
                let (mut right, mut wrong, mut accepted, mut ambiguous) = (0, 0, 0, 0);
                for (who, frames) in &walk_bys {
                    let mut confirmer = Confirmer::new(settings);
                    let mut decided = Vec::new();
                    for (n, (face, measured)) in frames.iter().enumerate() {
                        let recognition = recognizer.label(
                            face.clone(),
                            MatchOptions {
                                tolerance: Some(tolerance),
                                margin: Some(margin),
                            },
                        );
                        let seen = Seen {
                            recognition,
                            track: 1,
                            measured: Some(measured.clone()),
                        };
                        // 10 frames per second.
                        let at = Duration::from_millis(100 * n as u64);
                        decided.extend(confirmer.step(at, &[seen], [1]));
                    }
                    let names: Vec<&str> = decided
                        .iter()
                        .filter(|d| d.recognition.label != UNKNOWN)
                        .map(|d| d.recognition.label.as_str())
                        .collect();
                    match who {
                        Some(id) => {
                            right += usize::from(names.contains(&id.as_str()));
                            wrong += usize::from(names.iter().any(|n| n != id));
                        }
                        None => {
                            accepted += usize::from(!names.is_empty());
                            ambiguous += usize::from(
                                decided.iter().any(|d| d.recognition.ambiguous.is_some()),
                            );
                        }
                    }
                }
                println!(
                    "{tolerance:>9} {margin:>6} {confirm:>7} | {right:>5} {wrong:>5} | {accepted:>13} {ambiguous:>9}"
                );
            }
        }
    }
}
