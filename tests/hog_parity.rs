//! The parallel HOG detector (engine::hog::HogModel) finds exactly the boxes, in exactly the
//! order, of dlib's single-threaded `frontal_face_detector` (engine::hog::DlibDetector, the
//! call this project made before): on every photo of ../shared/faces at upsample 0 and 1, on
//! edge sizes (below the detection window, one pixel wide or high, odd sizes, 3000x2000 with
//! faces pasted), in rayon pools of 1 to 4 threads, and through the engine's own path.

mod common;

use std::path::{Path, PathBuf};

use dlib_face_recognition::Rectangle;
use face_attendance::engine::hog::{DlibDetector, HogModel, Spread};
use face_attendance::engine::{FaceBox, Frame};
use face_attendance::image_io::{self, RgbImage};
use face_attendance::pipeline;

/// Every photo the README of ../shared/faces lists: known/ and probe/ (one folder per person),
/// strangers/ and group/.
fn all_photos() -> Vec<PathBuf> {
    let faces = common::faces_dir();
    let mut out = Vec::new();
    for set in ["known", "probe"] {
        let mut people: Vec<PathBuf> = std::fs::read_dir(faces.join(set))
            .unwrap_or_else(|e| panic!("{set}: {e}"))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_dir())
            .collect();
        people.sort();
        for person in people {
            out.extend(common::photos(&person));
        }
    }
    for set in ["strangers", "group"] {
        out.extend(common::photos(&faces.join(set)));
    }
    out
}

fn load(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    image_io::decode(&bytes, image_io::DEFAULT_MAX_PIXELS)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Both detectors on `image` at `upsample`; fails unless they agree exactly. The boxes found.
fn same_boxes(
    model: &HogModel,
    dlib: &mut DlibDetector,
    image: &RgbImage,
    upsample: u32,
    what: &str,
) -> Vec<Rectangle> {
    let frame = Frame::new(image);
    let expected = dlib.detect(&frame, upsample);
    let found = model.detect(&frame, upsample);
    assert_eq!(
        found, expected,
        "{what} ({}x{}) at upsample {upsample}",
        image.width, image.height
    );
    // As the engine detects once every core has an image: the same boxes.
    let alone = model.detect_with(&frame, upsample, Spread::OneThread);
    assert_eq!(
        alone, expected,
        "{what} ({}x{}) at upsample {upsample}, on one thread",
        image.width, image.height
    );
    expected
}

#[test]
fn every_photo_gives_dlibs_boxes_in_dlibs_order() {
    let model = HogModel::frontal_face();
    let mut dlib = DlibDetector::new();
    let photos = all_photos();
    // known 29 + probe 20 + strangers 9 + group 11, as the README counts them.
    assert_eq!(
        photos.len(),
        69,
        "photos in {}",
        common::faces_dir().display()
    );
    let mut boxes = [0usize; 2];
    let mut several = 0;
    for path in &photos {
        let image = load(path);
        for upsample in [0, 1] {
            let found = same_boxes(
                &model,
                &mut dlib,
                &image,
                upsample,
                &path.display().to_string(),
            );
            boxes[upsample as usize] += found.len();
            several += usize::from(found.len() > 1);
        }
    }
    eprintln!(
        "{} photos: {boxes:?} boxes at upsample [0, 1]",
        photos.len()
    );
    // Not a vacuous comparison: faces everywhere, and photos where the order matters.
    assert!(boxes[0] >= 69 && boxes[1] > boxes[0], "{boxes:?}");
    assert!(several >= 10, "{several} detections with several boxes");
}

/// A `width`x`height` image, mid grey with a pseudo-random texture.
fn canvas(width: usize, height: usize) -> RgbImage {
    let mut seed = 0x9e37_79b9_u32;
    let pixels = (0..width * height * 3)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (112 + (seed >> 27)) as u8
        })
        .collect();
    RgbImage::from_raw(width, height, pixels).expect("consistent canvas")
}

/// `photo` scaled into a `size`x`size` square and copied onto `canvas` at (`left`, `top`).
fn paste(canvas: &mut RgbImage, photo: &RgbImage, left: usize, top: usize, size: u32) {
    let tile = image_io::letterbox(photo, size, size);
    for y in 0..tile.height.min(canvas.height.saturating_sub(top)) {
        let w = tile.width.min(canvas.width.saturating_sub(left));
        let from = &tile.pixels[y * tile.width * 3..][..w * 3];
        let to = ((top + y) * canvas.width + left) * 3;
        canvas.pixels[to..to + w * 3].copy_from_slice(from);
    }
}

#[test]
fn edge_sizes_give_dlibs_boxes() {
    let model = HogModel::frontal_face();
    let mut dlib = DlibDetector::new();
    let faces = common::faces_dir();
    let obama = load(&faces.join("probe/obama/obama_3.jpg"));
    let group = load(&faces.join("group/bbt1.jpg"));

    // Empty, below the 80x80 detection window (even upsampled once), one pixel, one pixel wide
    // or high: no boxes, no crash.
    for (w, h) in [
        (0, 0),
        (0, 10),
        (10, 0),
        (1, 1),
        (2, 3),
        (1, 500),
        (500, 1),
        (1, 2000),
        (2000, 2),
        (39, 39),
        (20, 60),
    ] {
        for upsample in [0, 1] {
            let found = same_boxes(&model, &mut dlib, &canvas(w, h), upsample, "small");
            assert!(found.is_empty(), "{w}x{h}: {found:?}");
        }
    }
    // Around the window and the pyramid's smallest level (64 px), odd sizes, crops of a photo
    // with faces cut by the border.
    // (77 and 92 px shrink to exactly 64 px, the smallest level, after one and two levels.)
    for (w, h) in [
        (79, 80),
        (80, 79),
        (81, 81),
        (127, 63),
        (63, 127),
        (129, 131),
        (77, 92),
    ] {
        let image = image_io::letterbox(&obama, w as u32, h as u32);
        for upsample in [0, 1] {
            same_boxes(&model, &mut dlib, &image, upsample, "near the window");
        }
    }
    let mut with_faces = 0;
    for (top, right, bottom, left) in [(0, 641, 359, 0), (101, 1280, 720, 333), (7, 999, 513, 3)] {
        let image = group.crop(top, right, bottom, left);
        for upsample in [0, 1] {
            let found = same_boxes(&model, &mut dlib, &image, upsample, "odd crop");
            with_faces += usize::from(!found.is_empty());
        }
    }
    assert!(with_faces >= 4, "odd crops with faces: {with_faces}");

    // A large image: 3000x2000 with faces of several sizes pasted across it, at upsample 1
    // (6000x4000 scanned) too.
    let mut large = canvas(3000, 2000);
    paste(&mut large, &obama, 40, 60, 300);
    paste(&mut large, &group, 900, 100, 1000);
    paste(&mut large, &obama, 2500, 1500, 160);
    paste(
        &mut large,
        &load(&faces.join("group/obama_and_biden.jpg")),
        200,
        1100,
        800,
    );
    paste(&mut large, &obama, 2100, 300, 600);
    for upsample in [0, 1] {
        let found = same_boxes(&model, &mut dlib, &large, upsample, "3000x2000");
        assert!(found.len() >= 6, "3000x2000 at {upsample}: {found:?}");
    }
}

#[test]
fn any_pool_size_gives_the_same_boxes() {
    let model = HogModel::frontal_face();
    let mut dlib = DlibDetector::new();
    let faces = common::faces_dir();
    for name in [
        "group/bbt1.jpg",
        "group/voc_2008_001322.jpg",
        "strangers/stuart_5.jpg",
    ] {
        let image = load(&faces.join(name));
        let frame = Frame::new(&image);
        for upsample in [0, 1] {
            let expected = dlib.detect(&frame, upsample);
            for threads in 1..=4 {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .expect("rayon pool");
                let found = pool.install(|| model.detect(&frame, upsample));
                assert_eq!(found, expected, "{name} at {upsample}, {threads} threads");
            }
        }
    }
}

/// dlib coordinates are C `long`: 64-bit here, 32-bit on armv7.
#[allow(clippy::useless_conversion)]
fn long(v: std::os::raw::c_long) -> i64 {
    i64::from(v)
}

#[test]
fn the_engine_detects_with_the_parallel_model() {
    let faces = common::faces_dir();
    let mut dlib = DlibDetector::new();
    for upsample in [0, 1] {
        let engine = common::engine_with(upsample);
        for name in [
            "group/bbt2.jpg",
            "probe/biden/biden_2.jpg",
            "strangers/stuart_5.jpg",
        ] {
            let image = load(&faces.join(name));
            let frame = Frame::new(&image);
            let expected: Vec<FaceBox> = dlib
                .detect(&frame, upsample)
                .iter()
                .map(|r| FaceBox {
                    top: long(r.top).max(0),
                    right: long(r.right).min(image.width as i64),
                    bottom: long(r.bottom).min(image.height as i64),
                    left: long(r.left).max(0),
                })
                .collect();
            assert_eq!(
                pipeline::detect(&engine, &image),
                expected,
                "{name} at {upsample}"
            );
            assert_eq!(
                engine.detect(&frame, engine.config().upsample()),
                expected,
                "{name} at {upsample}"
            );
        }
    }
}
