//! Images above the detection budget (`DETECT_MAX_PIXELS`): detected on a copy scaled down
//! to fit it, and each face's landmarks and encoding computed on a crop of the full-resolution
//! image around it. The shape predictor and the chip extraction only read pixels near the
//! face, so the crop gives the very encoding the whole image would (identical in
//! tests/large_images.rs), and memory follows the budget and the faces, not the photo.

use rayon::prelude::*;

use crate::engine::{Engine, Face, FaceBox, Frame};
use crate::image_io::{Oriented, RgbImage};

/// Face regions encoded at once from a large image hold at most this many pixels together
/// (3 bytes each in dlib's copies): 24 MB.
pub const REGION_BATCH_PIXELS: u64 = 8_000_000;

/// Face boxes of an image of `size` (upright width, height) found on `small`, an upright
/// copy of it scaled down (to the detection budget), in pixels of the full image. Only
/// `small` is scanned: memory and time follow its size, not the image's.
pub fn detect_on_copy(engine: &Engine, small: &RgbImage, size: (usize, usize)) -> Vec<FaceBox> {
    let Ok(frame) = Frame::try_new(small) else {
        return Vec::new();
    };
    let found = engine.detect(&frame, engine.config().upsample());
    drop(frame);
    scale_boxes(&found, (small.width, small.height), size)
}

/// Landmarks and encodings of the faces at `boxes` (pixels of the upright `image`), with
/// `jitters` re-encodings per face, each computed on a crop of `image` around its face
/// ([`face_region`]): no full-size dlib copy of the image is made, and crops are turned
/// upright one by one. Faces are encoded in parallel in batches whose crops hold at most
/// [`REGION_BATCH_PIXELS`] pixels together (a face larger than that alone), so a group photo
/// with big faces stays bounded too. dlib's shape predictor reads pixels within about half a
/// face of the box, and the chip extraction a grown, rotated square around the landmarks, so
/// the crop gives the same encoding as the whole image (identical in tests/large_images.rs).
pub fn encode_from_crops(
    engine: &Engine,
    image: &Oriented<'_>,
    boxes: &[FaceBox],
    jitters: u32,
) -> Vec<Face> {
    engine.install(|| encode_regions(engine, image, boxes, jitters))
}

fn encode_regions(
    engine: &Engine,
    image: &Oriented<'_>,
    boxes: &[FaceBox],
    jitters: u32,
) -> Vec<Face> {
    let (width, height) = (image.width(), image.height());
    let regions: Vec<_> = boxes
        .iter()
        .map(|b| (*b, face_region(b, width, height)))
        .collect();
    let mut faces = Vec::with_capacity(boxes.len());
    let mut rest = regions.as_slice();
    while !rest.is_empty() {
        let mut total = 0u64;
        let take = rest
            .iter()
            .take_while(|(_, (t, r, b, l))| {
                total += ((r - l) * (b - t)) as u64;
                total <= REGION_BATCH_PIXELS
            })
            .count()
            .max(1);
        let (batch, next) = rest.split_at(take);
        rest = next;
        faces.par_extend(batch.par_iter().filter_map(|&(b, region)| {
            let (top, right, bottom, left) = region;
            let frame = Frame::from_region(image, top, right, bottom, left);
            let (dx, dy) = (left as i64, top as i64);
            let local = FaceBox {
                top: b.top - dy,
                right: b.right - dx,
                bottom: b.bottom - dy,
                left: b.left - dx,
            };
            let mut face = super::encode_in(engine, &frame, &[local], jitters).pop()?;
            face.bbox = b;
            // Back to the whole image's pixels, like the box.
            for p in &mut face.landmarks {
                *p = (p.0 + dx, p.1 + dy);
            }
            Some(face)
        }));
    }
    faces
}

/// Boxes found in an image of size `from` mapped to an image of size `to` (the same picture
/// scaled), clipped to it.
pub(super) fn scale_boxes(
    boxes: &[FaceBox],
    from: (usize, usize),
    to: (usize, usize),
) -> Vec<FaceBox> {
    let (sx, sy) = (
        to.0 as f64 / from.0.max(1) as f64,
        to.1 as f64 / from.1.max(1) as f64,
    );
    let up = |v: i64, s: f64| (v as f64 * s).round() as i64;
    boxes
        .iter()
        .map(|b| FaceBox {
            top: up(b.top, sy).max(0),
            right: up(b.right, sx).min(to.0 as i64),
            bottom: up(b.bottom, sy).min(to.1 as i64),
            left: up(b.left, sx).max(0),
        })
        .collect()
}

/// The part of a `width`x`height` image that landmarks and the encoder look at for the face at
/// `b`: the box grown by its larger side on every side, clipped; `(top, right, bottom, left)`.
pub fn face_region(b: &FaceBox, width: usize, height: usize) -> (usize, usize, usize, usize) {
    let margin = (b.right - b.left).max(b.bottom - b.top).max(1);
    let clamp = |v: i64, max: usize| v.clamp(0, max as i64) as usize;
    (
        clamp(b.top - margin, height),
        clamp(b.right + margin, width),
        clamp(b.bottom + margin, height),
        clamp(b.left - margin, width),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn face_regions_grow_by_a_face_and_stay_inside() {
        let b = FaceBox {
            top: 100,
            right: 260,
            bottom: 220,
            left: 160,
        };
        assert_eq!(face_region(&b, 1000, 1000), (0, 380, 340, 40));
        assert_eq!(face_region(&b, 300, 250), (0, 300, 250, 40));
    }

    #[test]
    fn boxes_scale_back_to_the_full_image() {
        let small = [FaceBox {
            top: 10,
            right: 50,
            bottom: 40,
            left: 20,
        }];
        let full = scale_boxes(&small, (100, 80), (400, 320));
        assert_eq!(
            full,
            [FaceBox {
                top: 40,
                right: 200,
                bottom: 160,
                left: 80
            }]
        );
        let edge = [FaceBox {
            top: -3,
            right: 100,
            bottom: 80,
            left: 95,
        }];
        let clipped = scale_boxes(&edge, (100, 80), (333, 250));
        assert_eq!(clipped[0].top, 0);
        assert_eq!((clipped[0].right, clipped[0].bottom), (333, 250));
    }
}
