//! Enroll the real `known/` photos, then recognize probes and strangers; bad input is refused
//! with a typed error and writes nothing.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use face_attendance::bulk_enroll;
use face_attendance::engine::hog::Spread;
use face_attendance::engine::{Engine, EngineConfig};
use face_attendance::gallery::UNKNOWN;
use face_attendance::image_io::{self, ImageError, RgbImage};
use face_attendance::pipeline;
use face_attendance::recognizer::Recognizer;
use face_attendance::recognizer::{EnrollRequest, MatchOptions, Photo};
use face_attendance::Error;

fn recognizer_in(data: &Path, engine: Arc<Engine>) -> Recognizer {
    common::recognizer_in(data).with_engine(engine)
}

/// A recognizer with every `known/` photo enrolled (done once per test binary).
fn enrolled() -> &'static Recognizer {
    static R: OnceLock<(tempfile::TempDir, Recognizer)> = OnceLock::new();
    &R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let r = recognizer_in(dir.path(), common::engine());
        let (people, skipped) = bulk_enroll::scan(&common::faces_dir().join("known")).unwrap();
        assert!(skipped.is_empty());
        let summaries = bulk_enroll::enroll_all(&r, &people, Default::default(), &|_| {});
        for s in &summaries {
            assert_eq!(s.saved, s.photos, "{s:?}");
        }
        assert_eq!(r.gallery().counts(), (29, 12));
        (dir, r)
    })
    .1
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(common::faces_dir().join(rel)).unwrap()
}

fn decode(rel: &str) -> RgbImage {
    image_io::decode(&read(rel), image_io::DEFAULT_MAX_PIXELS).unwrap()
}

#[test]
fn probes_are_named_and_strangers_unknown() {
    let r = enrolled();
    let faces = common::faces_dir();
    let mut right_at_045 = 0;
    let mut probes = 0;
    for person in std::fs::read_dir(faces.join("probe")).unwrap() {
        let person = person.unwrap().path();
        let name = person.file_name().unwrap().to_string_lossy().into_owned();
        for photo in common::photos(&person) {
            let image = image_io::decode(&std::fs::read(&photo).unwrap(), u64::MAX).unwrap();
            let at_06 = r
                .recognize(Photo::Image(&image), MatchOptions::tolerance(Some(0.6)))
                .unwrap()
                .faces;
            assert_eq!(at_06.len(), 1, "{}", photo.display());
            assert_eq!(at_06[0].label, name, "{} at 0.6", photo.display());
            let at_045 = r
                .recognize(Photo::Image(&image), MatchOptions::tolerance(Some(0.45)))
                .unwrap()
                .faces;
            assert!(
                at_045[0].label == name || at_045[0].label == UNKNOWN,
                "{} got {} at 0.45",
                photo.display(),
                at_045[0].label
            );
            right_at_045 += usize::from(at_045[0].label == name);
            probes += 1;
        }
    }
    eprintln!(
        "probes: {probes}/{probes} right at 0.6, {right_at_045}/{probes} at 0.45, none wrong"
    );
    assert_eq!(probes, 20);
    for photo in common::photos(&faces.join("strangers")) {
        let image = image_io::decode(&std::fs::read(&photo).unwrap(), u64::MAX).unwrap();
        let found = r
            .recognize(Photo::Image(&image), MatchOptions::tolerance(Some(0.6)))
            .unwrap()
            .faces;
        assert!(!found.is_empty(), "{}: no face", photo.display());
        for f in found {
            assert_eq!(
                f.label,
                UNKNOWN,
                "{} at 0.6 (distance {:?})",
                photo.display(),
                f.distance
            );
        }
    }
}

#[test]
fn many_threads_give_the_same_answers_as_one() {
    let r = enrolled();
    let photos: Vec<RgbImage> = [
        "probe/obama/obama_3.jpg",
        "group/bbt1.jpg",
        "strangers/stuart_2.jpg",
        "group/two_people.jpg",
    ]
    .iter()
    .map(|p| decode(p))
    .collect();
    let serial: Vec<_> = photos
        .iter()
        .map(|p| {
            r.recognize(Photo::Image(p), MatchOptions::default())
                .unwrap()
                .faces
        })
        .collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (photos, serial) = (&photos, &serial);
                s.spawn(move || {
                    for round in 0..3 {
                        let i = (t + round) % photos.len();
                        assert_eq!(
                            r.recognize(Photo::Image(&photos[i]), MatchOptions::default())
                                .unwrap()
                                .faces,
                            serial[i]
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    // The batch path (rayon over images) agrees too.
    let batch = pipeline::analyze_batch(r.engine(), &photos);
    for (faces, want) in batch.iter().zip(&serial) {
        let boxes: Vec<_> = faces.iter().map(|f| f.bbox).collect();
        assert_eq!(boxes, want.iter().map(|w| w.bbox).collect::<Vec<_>>());
    }
    // Six callers, group photos with several faces each: still at most one encoder network
    // per thread of the engine's pool (the callers' own threads never run dlib).
    assert!(
        r.engine().encoder_copies() <= r.engine().threads(),
        "{} encoder copies for {} pool threads",
        r.engine().encoder_copies(),
        r.engine().threads()
    );
}

/// A detection spreads over the pool while a thread has no image of its own, and stays on its
/// thread once every thread has one; the count goes back down as images end.
#[test]
fn detections_spread_only_while_a_thread_is_free() {
    let engine = Engine::load(EngineConfig::new(common::models_dir()).with_threads(2)).unwrap();
    assert_eq!(engine.install(|| engine.spread()), Spread::AllThreads);
    // Two images at once on two threads, each asking while both are in.
    let both_in = std::sync::Barrier::new(2);
    let seen: Vec<Spread> = std::thread::scope(|s| {
        let askers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    engine.install(|| {
                        both_in.wait();
                        let spread = engine.spread();
                        both_in.wait();
                        spread
                    })
                })
            })
            .collect();
        askers.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert_eq!(seen, [Spread::OneThread, Spread::OneThread]);
    // Work nested inside an image is not another image.
    assert_eq!(
        engine.install(|| engine.install(|| engine.spread())),
        Spread::AllThreads
    );
    // The same boxes either way (tests/hog_parity.rs compares both with dlib's).
    let photo = decode("group/bbt1.jpg");
    let alone = pipeline::detect(&engine, &photo);
    let busy: Vec<_> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..3)
            .map(|_| s.spawn(|| pipeline::detect(&engine, &photo)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(alone.len() >= 4);
    assert!(busy.iter().all(|b| *b == alone));
}

#[test]
fn one_client_at_a_time_keeps_one_encoder() {
    let engine = Engine::load(EngineConfig::new(common::models_dir()).with_threads(4)).unwrap();
    assert_eq!(engine.threads(), 4);
    let photo = decode("probe/obama/obama_3.jpg");
    for _ in 0..6 {
        assert_eq!(pipeline::analyze(&engine, &photo).len(), 1);
    }
    assert_eq!(
        engine.encoder_copies(),
        1,
        "sequential single faces reuse one copy"
    );
    // Four faces at once on four threads: copies are made, never more than the threads.
    let group = decode("group/bbt1.jpg");
    let faces = pipeline::analyze(&engine, &group);
    assert!(faces.len() >= 4, "{} faces", faces.len());
    let copies = engine.encoder_copies();
    assert!((1..=4).contains(&copies), "{copies} copies");
    // The copies encode exactly as the first network does.
    assert_eq!(
        pipeline::analyze(&engine, &group)
            .iter()
            .map(|f| f.encoding)
            .collect::<Vec<_>>(),
        faces.iter().map(|f| f.encoding).collect::<Vec<_>>()
    );
}

#[test]
fn enroll_saves_the_largest_face_and_its_crop() {
    let dir = tempfile::tempdir().unwrap();
    let r = recognizer_in(dir.path(), common::engine());
    // Two faces: Biden (larger) and Obama.
    let out = r
        .enroll(
            "someone",
            Photo::Bytes(&read("group/two_people.jpg")),
            &EnrollRequest::default(),
        )
        .unwrap();
    assert_eq!((out.faces_found, out.saved), (2, 1));
    let crops: Vec<_> = std::fs::read_dir(dir.path().join("faces/someone"))
        .unwrap()
        .collect();
    assert_eq!(crops.len(), 1);
    let crop_bytes = std::fs::read(crops[0].as_ref().unwrap().path()).unwrap();
    let crop = image_io::decode(&crop_bytes, u64::MAX).unwrap();
    assert_eq!((crop.width, crop.height), (964 - 778, 242 - 57));
    let known = enrolled();
    let face = pipeline::analyze(r.engine(), &decode("known/biden/biden_1.jpg"));
    assert_eq!(
        r.gallery().best_match(&face[0].encoding, 0.45).label,
        "someone"
    );
    assert_eq!(
        known.gallery().best_match(&face[0].encoding, 0.45).label,
        "biden"
    );

    // A photo without a face saves nothing and says so.
    let blank =
        image_io::encode_jpeg(&RgbImage::from_raw(320, 240, vec![200; 320 * 240 * 3]).unwrap())
            .unwrap();
    let out = r
        .enroll("nobody", Photo::Bytes(&blank), &EnrollRequest::default())
        .unwrap();
    assert_eq!((out.faces_found, out.saved), (0, 0));
    assert!(!dir.path().join("embeddings/nobody.npy").exists());
    assert!(!dir.path().join("faces/nobody").exists());
}

/// A valid JPEG whose frame header claims `w`x`h`.
fn jpeg_declaring(w: u16, h: u16) -> Vec<u8> {
    let mut bytes =
        image_io::encode_jpeg(&RgbImage::from_raw(16, 16, vec![90; 16 * 16 * 3]).unwrap()).unwrap();
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("baseline SOF0");
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    bytes
}

fn png(image: image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageOutputFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn bad_images_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let r = recognizer_in(dir.path(), common::engine());
    let before = common::tree(dir.path());
    let photo = read("known/obama/obama_1.jpg");
    type Case = (&'static str, Vec<u8>, fn(&ImageError) -> bool);
    let cases: Vec<Case> = vec![
        ("empty file", vec![], |e| *e == ImageError::Empty),
        (
            "text named .jpg",
            b"just some notes, not a photo\n".to_vec(),
            |e| *e == ImageError::NotAnImage,
        ),
        (
            "PDF named .jpg",
            b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj".to_vec(),
            |e| *e == ImageError::NotAnImage,
        ),
        ("truncated JPEG", photo[..photo.len() / 2].to_vec(), |e| {
            *e == ImageError::Truncated
        }),
        ("20000x20000 header", jpeg_declaring(20000, 20000), |e| {
            matches!(
                e,
                ImageError::TooLarge {
                    width: 20000,
                    height: 20000,
                    ..
                }
            )
        }),
        ("50 MP header", jpeg_declaring(8660, 5774), |e| {
            matches!(e, ImageError::TooLarge { .. })
        }),
        ("GIF", b"GIF89a\x01\x00\x01\x00".to_vec(), |e| {
            matches!(e, ImageError::UnsupportedFormat("GIF"))
        }),
    ];
    for (name, bytes, expected) in cases {
        for result in [
            r.enroll("alip", Photo::Bytes(&bytes), &EnrollRequest::default())
                .map(|_| ()),
            r.recognize(Photo::Bytes(&bytes), MatchOptions::default())
                .map(|r| r.faces)
                .map(|_| ()),
        ] {
            match result {
                Err(Error::Image(e)) => assert!(expected(&e), "{name}: {e:?}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
    for id in ["../x", "a/b", ".hidden", "", "../../etc", "a\\b", "x y"] {
        match r.enroll(id, Photo::Bytes(&photo), &EnrollRequest::default()) {
            Err(Error::InvalidId(msg)) => assert!(msg.contains("student_id"), "{msg}"),
            other => panic!("{id:?}: {other:?}"),
        }
    }
    assert_eq!(common::tree(dir.path()), before, "bad input wrote to data/");
}

#[test]
fn png_with_alpha_and_greyscale_jpeg_are_recognized() {
    let r = enrolled();
    let rgb = decode("probe/obama/obama_4.jpg");
    let want = r
        .recognize(Photo::Image(&rgb), MatchOptions::default())
        .unwrap()
        .faces;
    assert_eq!(want[0].label, "obama");

    let buffer =
        image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.pixels.clone()).unwrap();
    let rgba = image::DynamicImage::ImageRgb8(buffer.clone()).to_rgba8();
    let got = r
        .recognize(
            Photo::Bytes(&png(image::DynamicImage::ImageRgba8(rgba))),
            MatchOptions::default(),
        )
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(got, want, "RGBA PNG of the same pixels");

    // A greyscale JPEG (the BBT photos are greyscale pictures) still finds its person.
    let sheldon = decode("probe/penny/penny_4.jpg");
    let grey = image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(sheldon.width as u32, sheldon.height as u32, sheldon.pixels)
            .unwrap(),
    )
    .to_luma8();
    let (w, h) = grey.dimensions();
    let grey_jpeg = turbojpeg::compress(
        turbojpeg::Image {
            pixels: grey.as_raw().as_slice(),
            width: w as usize,
            pitch: w as usize,
            height: h as usize,
            format: turbojpeg::PixelFormat::GRAY,
        },
        95,
        turbojpeg::Subsamp::Gray,
    )
    .unwrap();
    let got = r
        .recognize(Photo::Bytes(&grey_jpeg), MatchOptions::tolerance(Some(0.6)))
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].label, "penny");
}

#[test]
fn phone_photos_are_turned_upright_by_exif() {
    let r = enrolled();
    let upright = decode("probe/obama/obama_3.jpg");
    let buffer = image::RgbImage::from_raw(
        upright.width as u32,
        upright.height as u32,
        upright.pixels.clone(),
    )
    .unwrap();
    // Stored sideways, as a phone held upright stores it; orientation 6 says "turn 90° clockwise".
    let sideways = image::imageops::rotate270(&buffer);
    let stored = RgbImage::from_raw(
        sideways.width() as usize,
        sideways.height() as usize,
        sideways.into_raw(),
    )
    .unwrap();
    let jpeg = image_io::encode_jpeg(&stored).unwrap();
    let shown = image_io::decode(&common::with_exif_orientation(&jpeg, 6), u64::MAX).unwrap();
    assert_eq!((shown.width, shown.height), (upright.width, upright.height));
    let found = r
        .recognize(Photo::Image(&shown), MatchOptions::default())
        .unwrap()
        .faces;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].label, "obama");
}

#[test]
fn jittered_encodings_stay_close_and_run_safely_in_parallel() {
    let jittery =
        Arc::new(Engine::load(EngineConfig::new(common::models_dir()).with_jitters(4)).unwrap());
    let image = decode("probe/biden/biden_2.jpg");
    let plain = pipeline::analyze(&common::engine(), &image);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| pipeline::analyze(&jittery, &image)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let known = enrolled();
    for faces in results {
        assert_eq!(faces.len(), 1);
        assert_eq!(faces[0].bbox, plain[0].bbox);
        let d = face_attendance::engine::distance(&faces[0].encoding, &plain[0].encoding);
        eprintln!("jittered encoding {d:.3} away from the plain one");
        assert!(d < 0.2, "jittered encoding {d} away from the plain one");
        assert_eq!(
            known.gallery().best_match(&faces[0].encoding, 0.6).label,
            "biden"
        );
    }
}

#[test]
fn with_match_margin_an_answer_names_both_candidates_instead_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let r = recognizer_in(dir.path(), common::engine());
    let forced = face_attendance::recognizer::EnrollRequest {
        force: true,
        ..Default::default()
    };
    for (id, rel) in [
        ("obama", "known/obama/obama_1.jpg"),
        ("barack", "known/obama/obama_2.jpg"),
    ] {
        let bytes = read(rel);
        assert_eq!(
            r.enroll(id, Photo::Bytes(&bytes), &forced).unwrap().saved,
            1
        );
    }
    let probe = read("probe/obama/obama_3.jpg");
    // The original rule by default: the closest id, and the same JSON as before.
    let answer = r
        .recognize(Photo::Bytes(&probe), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    assert!(["obama", "barack"].contains(&answer[0].label.as_str()));
    let json = serde_json::to_value(&answer[0]).unwrap();
    assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
    let r = r.with_match_margin(0.1);
    let answer = r
        .recognize(Photo::Bytes(&probe), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    let json = serde_json::to_value(&answer[0]).unwrap();
    assert_eq!(json["label"], "Unknown", "{json}");
    let mut both: Vec<String> = serde_json::from_value(json["ambiguous"].clone()).unwrap();
    both.sort();
    assert_eq!(both, ["barack", "obama"]);
}
