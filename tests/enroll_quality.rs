//! Enrollment quality on real photos: every `known/` photo passes the default limits with room
//! to spare, a blurred copy fails on sharpness and a shrunken copy on size; the quality comes
//! from the very landmarks the encoding used; enrollment jitters touch enrollment only.
//!
//! `cargo test --test enroll_quality -- --nocapture` prints every photo's figures.

mod common;

use std::sync::Arc;

use face_attendance::engine::distance;
use face_attendance::engine::Frame;
use face_attendance::gallery::Gallery;
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline;
use face_attendance::quality::{FaceQuality, FailedLimit, QualityLimits};
use face_attendance::recognizer::Recognizer;
use face_attendance::recognizer::{MatchOptions, Photo};

/// The default recognizer, over a throwaway gallery, with `enroll_jitters`.
fn recognizer(enroll_jitters: u32) -> (tempfile::TempDir, Recognizer) {
    let dir = tempfile::tempdir().unwrap();
    let r = common::recognizer_in(dir.path()).with_enroll_jitters(enroll_jitters);
    (dir, r)
}

/// Every photo of every person under `faces/<set>`, as `(name, bytes)`.
fn photo_set(set: &str) -> Vec<(String, Vec<u8>)> {
    let mut people: Vec<_> = std::fs::read_dir(common::faces_dir().join(set))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    people.sort();
    people
        .iter()
        .flat_map(|p| common::photos(p))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn quality_of(r: &Recognizer, image: &RgbImage) -> Option<FaceQuality> {
    r.candidate(Photo::Image(image), None).unwrap().quality
}

#[test]
fn known_photos_pass_and_blurred_or_small_copies_fail() {
    let (_dir, r) = recognizer(1);
    let limits = QualityLimits::default();
    let mut known = Vec::new();
    for (set, must_pass) in [("known", true), ("probe", false)] {
        let photos = photo_set(set);
        let mut qs = Vec::new();
        for (name, bytes) in &photos {
            let c = r.candidate(Photo::Bytes(bytes), None).unwrap();
            let q = c.quality.unwrap_or_else(|| panic!("{name}: no face"));
            let verdict = limits.check(&q);
            eprintln!(
                "{set}/{name}: face {} px, sharpness {}, yaw {}: {}",
                q.face_px,
                q.sharpness,
                q.yaw,
                verdict
                    .as_ref()
                    .map_or_else(|e| e.to_string(), |_| "ok".into())
            );
            if must_pass {
                // With room: 25 % above the size and sharpness limits, 5° inside the yaw one.
                assert!(verdict.is_ok(), "{name}: {verdict:?}");
                assert!(
                    q.face_px as f64 >= 1.25 * limits.min_face_px() as f64,
                    "{name}"
                );
                assert!(q.sharpness >= 1.25 * limits.min_sharpness(), "{name}");
                assert!(q.yaw.abs() <= limits.max_yaw() - 5.0, "{name}");
            }
            qs.push(q);
        }
        let min = |f: fn(&FaceQuality) -> f64| qs.iter().map(f).fold(f64::INFINITY, f64::min);
        let max = |f: fn(&FaceQuality) -> f64| qs.iter().map(f).fold(0.0, f64::max);
        eprintln!(
            "{set}: {} photos; face {}..{} px, sharpness {}..{}, |yaw| {}..{}",
            qs.len(),
            min(|q| q.face_px.into()),
            max(|q| q.face_px.into()),
            min(|q| q.sharpness),
            max(|q| q.sharpness),
            min(|q| q.yaw.abs()),
            max(|q| q.yaw.abs()),
        );
        if must_pass {
            assert_eq!(qs.len(), 29);
            known = photos.into_iter().zip(qs).collect::<Vec<_>>();
        }
    }

    // Every known photo spoiled two ways: blurred over 1/8 of the face's width, and shrunk
    // until its face is ~40 px.
    let (mut blurred_seen, mut small_seen) = (0, 0);
    for ((name, bytes), q) in &known {
        let image = image_io::decode(bytes, image_io::DEFAULT_MAX_PIXELS).unwrap();
        let blurred = common::box_blur(&image, (q.face_px as usize / 8).max(2));
        match quality_of(&r, &blurred) {
            Some(b) => {
                let e = limits.check(&b).expect_err(name);
                eprintln!("{name} blurred: sharpness {} ({e})", b.sharpness);
                assert_eq!(e.failed, FailedLimit::Blurred, "{name}: {e}");
                assert!(
                    b.sharpness < 0.8 * limits.min_sharpness(),
                    "{name}: {}",
                    b.sharpness
                );
                blurred_seen += 1;
            }
            None => eprintln!("{name} blurred: no face found"),
        }
        let small = common::shrunk(&image, q.face_px, 40);
        match quality_of(&r, &small) {
            Some(s) => {
                let e = limits.check(&s).expect_err(name);
                eprintln!("{name} shrunk: face {} px ({e})", s.face_px);
                assert_eq!(e.failed, FailedLimit::FaceTooSmall, "{name}: {e}");
                small_seen += 1;
            }
            None => eprintln!("{name} shrunk: no face found"),
        }
    }
    // A blur of 1/8 of the face hides many faces of the small BBT crops from the detector (no
    // face: nothing to enroll either); enough are still found that the limits, not the
    // detector, refused them.
    eprintln!("spoiled copies with a face found: {blurred_seen} blurred, {small_seen} shrunk");
    assert!(blurred_seen >= 15, "{blurred_seen}");
    assert!(small_seen >= 25, "{small_seen}");
}

#[test]
fn the_quality_is_measured_on_the_encodings_own_landmarks() {
    let (_dir, r) = recognizer(1);
    let bytes = std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap();
    let image = image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS).unwrap();
    let c = r.candidate(Photo::Bytes(&bytes), None).unwrap();
    let (face, _) = c.face.unwrap();
    let q = c.quality.unwrap();
    // dlib's point order, which the yaw formula relies on: the image's right eye (outer, inner
    // corner), the left eye (outer, inner), the nose base between them.
    let [r_out, r_in, l_out, l_in, nose] = face.landmarks.map(|p| p.0);
    assert!(
        r_out > r_in && r_in > nose && nose > l_in && l_in > l_out,
        "{face:?}"
    );
    // The landmarks the encoder aligned on are the predictor's for that box.
    let points = r
        .engine()
        .landmarks(&Frame::new(&image), &[face.bbox])
        .iter()
        .map(|s| s.points().to_vec())
        .collect::<Vec<_>>();
    assert_eq!(face.landmarks.to_vec(), points[0]);
    assert_eq!(q, FaceQuality::measure(&image, &face.bbox, &face.landmarks));
    // From an image as from bytes, and recognition sees the same face.
    let from_image = r.candidate(Photo::Image(&image), None).unwrap();
    assert_eq!(from_image.quality, Some(q));
    let analyzed = pipeline::analyze(r.engine(), &image);
    assert_eq!(analyzed[0].landmarks, face.landmarks);
    assert_eq!(analyzed[0].encoding, face.encoding);
}

#[test]
fn enrollment_jitters_move_the_enrolled_encoding_slightly_and_leave_recognition_alone() {
    let (_dir, plain) = recognizer(1);
    let jittered = plain.clone().with_enroll_jitters(10);
    let bytes = std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap();
    let one = plain.candidate(Photo::Bytes(&bytes), None).unwrap();
    let ten = jittered.candidate(Photo::Bytes(&bytes), None).unwrap();
    let (a, b) = (one.face.unwrap().0, ten.face.unwrap().0);
    let d = distance(&a.encoding, &b.encoding);
    eprintln!("obama_1: 10 jitters move the encoding by {d:.4}");
    // Jittering averages shifted, rotated and mirrored copies: a systematic move of ~0.13 on
    // the known photos (benches/enroll_jitters.rs), well within one person's spread.
    assert!(d > 0.0 && d < 0.2, "{d}");
    // Jittering changes the encoding, not the face found or its quality.
    assert_eq!((a.bbox, a.landmarks), (b.bbox, b.landmarks));
    assert_eq!(one.quality, ten.quality);
    assert_eq!(
        jittered
            .candidate(Photo::Bytes(&bytes), Some(1))
            .unwrap()
            .face
            .unwrap()
            .0
            .encoding,
        a.encoding
    );

    // Recognition keeps the engine's jitters (1): the same encodings, distances and labels.
    let dir = tempfile::tempdir().unwrap();
    let (gallery, _) = Gallery::open(dir.path()).unwrap();
    let gallery = Arc::new(gallery);
    let id = face_attendance::gallery::StudentId::parse("obama").unwrap();
    gallery.append(&id, &[b.encoding], "test").unwrap();
    let plain = Recognizer::new(plain.engine().clone(), gallery.clone());
    let jittered = plain.clone().with_enroll_jitters(10);
    let probe = std::fs::read(common::faces_dir().join("probe/obama/obama_3.jpg")).unwrap();
    let image = image_io::decode(&probe, image_io::DEFAULT_MAX_PIXELS).unwrap();
    let seen = plain
        .recognize(Photo::Bytes(&probe), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(
        jittered
            .recognize(Photo::Bytes(&probe), MatchOptions::default())
            .map(|r| r.faces)
            .unwrap(),
        seen
    );
    assert_eq!(
        jittered
            .recognize(Photo::Image(&image), MatchOptions::default())
            .unwrap()
            .faces,
        seen
    );
    assert_eq!(seen[0].label, "obama");
    let engine_sees = pipeline::analyze(plain.engine(), &image);
    assert_eq!(
        seen[0].distance,
        Some(distance(&engine_sees[0].encoding, &b.encoding))
    );
}
