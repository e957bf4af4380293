//! Photos above the detection budget (DETECT_MAX_PIXELS): detected on a downscaled copy,
//! encoded from full-resolution crops that give the whole image's encodings, turned upright
//! crop by crop, and still enrolled and recognized as their person.

mod common;

use std::sync::OnceLock;

use face_attendance::engine::{distance, Engine, Face, FaceBox, Frame};
use face_attendance::image_io::{self, Oriented, RgbImage};
use face_attendance::pipeline::{self, face_region, REGION_BATCH_PIXELS};
use face_attendance::recognizer::{EnrollRequest, MatchOptions, Photo, Recognizer};

fn photo(rel: &str) -> RgbImage {
    let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
    image_io::decode(&bytes, u64::MAX).unwrap()
}

/// `rel` scaled up onto a `w`x`h` canvas: a phone-sized photo with big faces.
fn big(rel: &str, w: u32, h: u32) -> RgbImage {
    image_io::letterbox(&photo(rel), w, h)
}

/// `image` as a phone held upright stores it: turned 90° counter-clockwise, EXIF
/// orientation 6 ("turn 90° clockwise to view").
fn stored_sideways(image: &RgbImage) -> RgbImage {
    let (w, h) = (image.width, image.height);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..w {
        for x in 0..h {
            // stored (x, y) shows at upright (w - 1 - y, x)
            let s = (x * w + (w - 1 - y)) * 3;
            pixels.extend_from_slice(&image.pixels[s..s + 3]);
        }
    }
    RgbImage::from_raw(h, w, pixels).unwrap()
}

fn iou(a: &FaceBox, b: &FaceBox) -> f64 {
    let w = (a.right.min(b.right) - a.left.max(b.left)).max(0);
    let h = (a.bottom.min(b.bottom) - a.top.max(b.top)).max(0);
    let inter = (w * h) as f64;
    inter / ((a.area() + b.area()) as f64 - inter)
}

fn assert_same_encodings(what: &str, full: &[Face], crops: &[Face]) {
    assert_eq!(full.len(), crops.len(), "{what}");
    for (a, b) in full.iter().zip(crops) {
        assert_eq!(a.bbox, b.bbox, "{what}");
        // Landmarks found in a crop come back in the whole (upright) image's pixels.
        assert_eq!(a.landmarks, b.landmarks, "{what}: landmarks");
        let d = distance(&a.encoding, &b.encoding);
        eprintln!(
            "{what}: face {:?} crop vs whole image {d:.1e}",
            a.bbox.as_css()
        );
        assert!(d < 1e-6, "{what}: {:?} crop encoding {d} away", a.bbox);
    }
}

#[test]
fn crops_give_the_encodings_of_the_whole_image() {
    let engine = common::engine();
    assert!(engine.detect_max_pixels() < 4000 * 3000);
    for (rel, w, h) in [
        ("group/obama_and_biden.jpg", 4000, 3000),
        ("group/bbt1.jpg", 4000, 3000),
        ("probe/obama/obama_3.jpg", 4000, 3000),
        // Two faces of ~1000 px: their regions exceed REGION_BATCH_PIXELS together, so they
        // are encoded one batch after the other.
        ("two_people, cropped", 5000, 4348),
    ] {
        let image = if rel.starts_with("two_people") {
            let two = photo("group/two_people.jpg");
            image_io::letterbox(&two.crop(0, 990, two.height, 230), w, h)
        } else {
            big(rel, w, h)
        };
        let boxes = pipeline::detect(&engine, &image);
        assert!(!boxes.is_empty(), "{rel}: no face");
        let full = pipeline::encode_in(
            &engine,
            &Frame::new(&image),
            &boxes,
            engine.config().jitters(),
        );
        let crops = pipeline::encode_from_crops(
            &engine,
            &Oriented::upright(&image),
            &boxes,
            engine.config().jitters(),
        );
        assert_same_encodings(rel, &full, &crops);
        let regions: u64 = boxes
            .iter()
            .map(|b| {
                let (t, r, bo, l) = face_region(b, image.width, image.height);
                ((r - l) * (bo - t)) as u64
            })
            .sum();
        eprintln!("{rel}: {} faces, regions of {regions} pixels", boxes.len());
        if rel.starts_with("two_people") {
            assert!(regions > REGION_BATCH_PIXELS, "{regions}: one batch only");
        }
        // analyze() of the large image takes that path.
        let analyzed = pipeline::analyze(&engine, &image);
        assert_same_encodings(&format!("{rel} analyze"), &full, &analyzed);

        // Stored sideways and seen through EXIF orientation 6: the same upright crops.
        let stored = stored_sideways(&image);
        let turned = pipeline::encode_from_crops(
            &engine,
            &Oriented::new(&stored, 6),
            &boxes,
            engine.config().jitters(),
        );
        assert_same_encodings(&format!("{rel} orientation 6"), &full, &turned);
    }
    // A face close to the image's edges: its region is clipped where the image ends, in the
    // crop as in the whole image.
    let image = big("probe/obama/obama_3.jpg", 4000, 3000);
    let b = pipeline::detect(&engine, &image)[0];
    let near = image.crop(
        b.top as usize - 30,
        image.width,
        image.height,
        b.left as usize - 20,
    );
    let boxes = pipeline::detect(&engine, &near);
    assert_eq!(boxes.len(), 1, "{boxes:?}");
    assert!(boxes[0].left < 60 && boxes[0].top < 80, "{boxes:?}");
    let full = pipeline::encode_in(
        &engine,
        &Frame::new(&near),
        &boxes,
        engine.config().jitters(),
    );
    let crops = pipeline::encode_from_crops(
        &engine,
        &Oriented::upright(&near),
        &boxes,
        engine.config().jitters(),
    );
    assert_same_encodings("face by the edges", &full, &crops);
}

#[test]
fn images_within_the_budget_take_the_full_size_path() {
    let engine = common::engine();
    let image = photo("group/obama_and_biden.jpg");
    assert!(engine.detects_at_full_size(image.width, image.height));
    let frame = Frame::new(&image);
    let want = pipeline::encode_in(
        &engine,
        &frame,
        &engine.detect(&frame, engine.config().upsample()),
        engine.config().jitters(),
    );
    let got = pipeline::analyze(&engine, &image);
    assert_eq!(
        got.iter().map(|f| f.bbox).collect::<Vec<_>>(),
        want.iter().map(|f| f.bbox).collect::<Vec<_>>()
    );
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a.encoding, b.encoding);
    }
    // A budget below the image's size sends it down the other path, with the same faces.
    let small_budget = Engine::load(face_attendance::engine::EngineConfig::new(
        common::models_dir(),
    ))
    .unwrap()
    .with_detect_max_pixels(800_000);
    assert!(!small_budget.detects_at_full_size(image.width, image.height));
    let found = pipeline::analyze(&small_budget, &image);
    assert_eq!(found.len(), want.len());
    for f in &found {
        let best = want
            .iter()
            .max_by(|p, q| iou(&p.bbox, &f.bbox).total_cmp(&iou(&q.bbox, &f.bbox)))
            .unwrap();
        assert!(
            iou(&best.bbox, &f.bbox) > 0.7,
            "{:?} vs {:?}",
            f.bbox,
            best.bbox
        );
        // A box found at another scale differs by a few pixels, and the landmarks with it:
        // the same person, not the same encoding (the camera's half-size detection: < 0.2).
        let d = distance(&best.encoding, &f.encoding);
        eprintln!(
            "{:?} found on a 0.8x copy: encoding {d:.3} from the full-size one",
            f.bbox
        );
        assert!(d < 0.3, "{:?}: {d}", f.bbox);
    }
}

/// Obama, Biden and Alex enrolled from their known photos (once per test binary).
fn enrolled() -> &'static Recognizer {
    static R: OnceLock<(tempfile::TempDir, Recognizer)> = OnceLock::new();
    &R.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let r = common::recognizer_in(dir.path());
        for (id, rel) in [
            ("obama", "known/obama/obama_1.jpg"),
            ("obama", "known/obama/obama_2.jpg"),
            ("biden", "known/biden/biden_1.jpg"),
            ("alex", "known/alex_lacamoire/alex_lacamoire_1.jpg"),
        ] {
            let bytes = std::fs::read(common::faces_dir().join(rel)).unwrap();
            assert_eq!(
                r.enroll(id, Photo::Bytes(&bytes), &EnrollRequest::default())
                    .unwrap()
                    .saved,
                1,
                "{rel}"
            );
        }
        (dir, r)
    })
    .1
}

#[test]
fn a_12_megapixel_phone_photo_is_recognized_enrolled_and_turned_upright() {
    let r = enrolled();
    let image = big("probe/obama/obama_3.jpg", 4000, 3000);
    let jpeg = image_io::encode_jpeg(&image).unwrap();
    let (found, size) = r
        .recognize(Photo::Bytes(&jpeg), MatchOptions::default())
        .map(|r| (r.faces, r.size))
        .unwrap();
    assert_eq!(size, (4000, 3000));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].label, "obama", "{found:?}");
    let face_width = found[0].bbox.right - found[0].bbox.left;
    eprintln!("12 MP: {found:?} (face {face_width} px wide)");
    assert!(face_width > 300);
    assert_eq!(
        r.recognize(Photo::Bytes(&jpeg), MatchOptions::default())
            .map(|r| r.faces)
            .unwrap(),
        found
    );

    // The same photo stored sideways with EXIF orientation 6: upright size, same face.
    let sideways = image_io::encode_jpeg(&stored_sideways(&image)).unwrap();
    let (turned, size) = r
        .recognize(
            Photo::Bytes(&common::with_exif_orientation(&sideways, 6)),
            MatchOptions::default(),
        )
        .map(|r| (r.faces, r.size))
        .unwrap();
    assert_eq!(size, (4000, 3000));
    assert_eq!(turned.len(), 1, "{turned:?}");
    assert_eq!(turned[0].label, "obama");
    assert!(
        iou(&turned[0].bbox, &found[0].bbox) > 0.9,
        "{turned:?} vs {found:?}"
    );

    // A large PNG goes the same way (rows streamed into the small copy).
    let png_image = big("probe/biden/biden_2.jpg", 3000, 2400);
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(
        image::RgbImage::from_raw(3000, 2400, png_image.pixels.clone()).unwrap(),
    )
    .write_to(&mut png, image::ImageOutputFormat::Png)
    .unwrap();
    let (found, size) = r
        .recognize(Photo::Bytes(png.get_ref()), MatchOptions::default())
        .map(|r| (r.faces, r.size))
        .unwrap();
    assert_eq!(size, (3000, 2400));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].label, "biden");

    // Enrolled from the 12 MP photo, the person is recognized in an ordinary one.
    let dir = tempfile::tempdir().unwrap();
    let fresh = common::recognizer_in(dir.path());
    let out = fresh
        .enroll("big_obama", Photo::Bytes(&jpeg), &EnrollRequest::default())
        .unwrap();
    assert_eq!((out.faces_found, out.saved), (1, 1));
    let crops: Vec<_> = std::fs::read_dir(dir.path().join("faces/big_obama"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let crop = image_io::decode(&std::fs::read(&crops[0]).unwrap(), u64::MAX).unwrap();
    let b = r
        .recognize(Photo::Bytes(&jpeg), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap()[0]
        .bbox;
    assert_eq!(
        (crop.width as i64, crop.height as i64),
        (b.right - b.left, b.bottom - b.top)
    );
    let other = std::fs::read(common::faces_dir().join("known/obama/obama_1.jpg")).unwrap();
    let seen = fresh
        .recognize(Photo::Bytes(&other), MatchOptions::default())
        .map(|r| r.faces)
        .unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].label, "big_obama", "{seen:?}");
}

#[test]
fn a_large_photo_without_faces_is_never_decoded_at_full_size() {
    // Nothing to find: the answer comes from the small copy alone (fast), size still right.
    let r = enrolled();
    let blank = RgbImage::from_raw(5000, 4000, vec![90; 5000 * 4000 * 3]).unwrap();
    let jpeg = image_io::encode_jpeg(&blank).unwrap();
    drop(blank);
    let (found, size) = r
        .recognize(Photo::Bytes(&jpeg), MatchOptions::default())
        .map(|r| (r.faces, r.size))
        .unwrap();
    assert!(found.is_empty());
    assert_eq!(size, (5000, 4000));
    let out = r
        .enroll("nobody", Photo::Bytes(&jpeg), &EnrollRequest::default())
        .unwrap();
    assert_eq!((out.faces_found, out.saved), (0, 0));
}
