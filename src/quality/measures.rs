//! Cheap measures of a face box, from its pixels alone: [`sharpness`] (blur by motion or focus),
//! [`width`], and a [`Thumbnail`] to tell whether a box still shows the same face. The camera
//! uses them to spare the encoder faces it cannot recognize well (off unless configured);
//! enrollment's quality check uses the sharpness.

use crate::engine::FaceBox;
use crate::image_io::RgbImage;

/// Side of the grid the face is sampled on, so that one threshold fits near and far faces.
const GRID: usize = 64;

/// Sharpness of the face at `bbox`: the variance of the Laplacian of its grey levels, sampled on
/// a 64x64 grid. Sharp faces score from several hundred to a few thousand; a box blur
/// 1/20 of the face's width divides it by 7 to 10. A degenerate box scores 0.
pub fn sharpness(image: &RgbImage, bbox: &FaceBox) -> f64 {
    let (left, top) = (bbox.left.max(0) as usize, bbox.top.max(0) as usize);
    let right = (bbox.right.max(0) as usize).min(image.width);
    let bottom = (bbox.bottom.max(0) as usize).min(image.height);
    if right <= left + 2 || bottom <= top + 2 {
        return 0.0;
    }
    let (w, h) = (right - left, bottom - top);
    let grey = |gx: usize, gy: usize| -> f64 {
        let x = left + gx * w / GRID;
        let y = top + gy * h / GRID;
        let p = &image.pixels[(y * image.width + x) * 3..][..3];
        0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2])
    };
    let mut grid = vec![0.0; GRID * GRID];
    for gy in 0..GRID {
        for gx in 0..GRID {
            grid[gy * GRID + gx] = grey(gx, gy);
        }
    }
    let (mut sum, mut sum_sq, mut n) = (0.0, 0.0, 0.0);
    for y in 1..GRID - 1 {
        for x in 1..GRID - 1 {
            let at = |dx: isize, dy: isize| {
                grid[(y as isize + dy) as usize * GRID + (x as isize + dx) as usize]
            };
            let lap = at(-1, 0) + at(1, 0) + at(0, -1) + at(0, 1) - 4.0 * at(0, 0);
            sum += lap;
            sum_sq += lap * lap;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum_sq / n - mean * mean
}

/// Side of a face's [`Thumbnail`].
const THUMB: usize = 16;

/// A face's grey levels averaged over a 16x16 grid, minus their mean: a cheap fingerprint to
/// tell whether a box in the same place still shows the same face.
#[derive(Debug, Clone, PartialEq)]
pub struct Thumbnail([f32; THUMB * THUMB]);

impl Thumbnail {
    /// The thumbnail of the face at `bbox` in `image` (all zeros for an empty box).
    pub fn of(image: &RgbImage, bbox: &FaceBox) -> Thumbnail {
        let mut cells = [0f32; THUMB * THUMB];
        let (left, top) = (bbox.left.max(0) as usize, bbox.top.max(0) as usize);
        let right = (bbox.right.max(0) as usize).min(image.width);
        let bottom = (bbox.bottom.max(0) as usize).min(image.height);
        if right <= left || bottom <= top {
            return Thumbnail(cells);
        }
        let (w, h) = (right - left, bottom - top);
        let mut counts = [0u32; THUMB * THUMB];
        for y in top..bottom {
            let cy = (y - top) * THUMB / h;
            let row = &image.pixels[(y * image.width + left) * 3..(y * image.width + right) * 3];
            for (x, p) in row.chunks_exact(3).enumerate() {
                let cell = cy * THUMB + x * THUMB / w;
                cells[cell] +=
                    0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]);
                counts[cell] += 1;
            }
        }
        for (c, n) in cells.iter_mut().zip(counts) {
            *c /= n.max(1) as f32;
        }
        let mean = cells.iter().sum::<f32>() / cells.len() as f32;
        cells.iter_mut().for_each(|c| *c -= mean);
        Thumbnail(cells)
    }

    /// Mean absolute difference of the two (grey levels, brightness change removed).
    pub fn difference(&self, other: &Thumbnail) -> f32 {
        self.0
            .iter()
            .zip(other.0.iter())
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / self.0.len() as f32
    }
}

/// Width of the face box in pixels.
pub fn width(bbox: &FaceBox) -> i64 {
    (bbox.right - bbox.left).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(width: usize, height: usize, f: impl Fn(usize, usize) -> u8) -> RgbImage {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let v = f(x, y);
                pixels.extend([v, v, v]);
            }
        }
        RgbImage::from_raw(width, height, pixels).unwrap()
    }

    fn whole(img: &RgbImage) -> FaceBox {
        FaceBox {
            top: 0,
            right: img.width as i64,
            bottom: img.height as i64,
            left: 0,
        }
    }

    #[test]
    fn a_flat_face_has_no_sharpness_and_a_checkerboard_a_lot() {
        let flat = image(128, 128, |_, _| 128);
        assert_eq!(sharpness(&flat, &whole(&flat)), 0.0);
        let checker = image(
            128,
            128,
            |x, y| if (x / 2 + y / 2) % 2 == 0 { 0 } else { 255 },
        );
        assert!(sharpness(&checker, &whole(&checker)) > 10_000.0);
    }

    #[test]
    fn a_smooth_gradient_is_less_sharp_than_edges() {
        let gradient = image(200, 200, |x, _| (x * 255 / 199) as u8);
        let edges = image(200, 200, |x, _| if (x / 10) % 2 == 0 { 30 } else { 220 });
        assert!(sharpness(&gradient, &whole(&gradient)) < 5.0);
        assert!(sharpness(&edges, &whole(&edges)) > 1000.0);
    }

    #[test]
    fn boxes_outside_or_too_small_score_zero() {
        let img = image(50, 50, |x, _| x as u8);
        let tiny = FaceBox {
            top: 10,
            right: 12,
            bottom: 12,
            left: 10,
        };
        assert_eq!(sharpness(&img, &tiny), 0.0);
        let outside = FaceBox {
            top: 60,
            right: 90,
            bottom: 90,
            left: 60,
        };
        assert_eq!(sharpness(&img, &outside), 0.0);
        assert_eq!(width(&tiny), 2);
    }
}
