//! Camera frames as drivers deliver them (MJPEG or YUYV), and their conversion to RGB.

use crate::image_io::{self, ImageError, RgbImage};

/// A frame as the capture source produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawFrame {
    /// One JPEG image (MJPEG streams are a sequence of these).
    Mjpeg(Vec<u8>),
    /// Packed YUV 4:2:2: Y0 U Y1 V for each pair of pixels.
    Yuyv {
        /// Width in pixels.
        width: usize,
        /// Height in pixels.
        height: usize,
        /// The packed bytes, two per pixel.
        data: Vec<u8>,
    },
}

impl RawFrame {
    /// RGB pixels of the frame; a corrupt or mis-sized frame is a typed error.
    pub fn to_rgb(&self, max_pixels: u64) -> Result<RgbImage, ImageError> {
        match self {
            RawFrame::Mjpeg(jpeg) => image_io::decode(jpeg, max_pixels),
            RawFrame::Yuyv {
                width,
                height,
                data,
            } => yuyv_to_rgb(*width, *height, data),
        }
    }
}

fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// YUYV (BT.601, limited range, as webcams send it) to RGB, in integer arithmetic.
pub fn yuyv_to_rgb(width: usize, height: usize, data: &[u8]) -> Result<RgbImage, ImageError> {
    if width == 0 || height == 0 || !width.is_multiple_of(2) || data.len() != width * height * 2 {
        return Err(ImageError::Corrupt(format!(
            "YUYV frame of {} bytes does not fit {width}x{height}",
            data.len()
        )));
    }
    let mut rgb = Vec::with_capacity(width * height * 3);
    for quad in data.chunks_exact(4) {
        let (u, v) = (quad[1] as i32 - 128, quad[3] as i32 - 128);
        for y in [quad[0], quad[2]] {
            let c = 298 * (y as i32 - 16);
            rgb.push(clamp((c + 409 * v + 128) >> 8));
            rgb.push(clamp((c - 100 * u - 208 * v + 128) >> 8));
            rgb.push(clamp((c + 516 * u + 128) >> 8));
        }
    }
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| ImageError::Corrupt("YUYV size".into()))
}

/// RGB to YUYV (BT.601 limited range; chroma of each pixel pair averaged): what a webcam would
/// send for this picture. For replaying photos as camera frames and for tests.
pub fn rgb_to_yuyv(image: &RgbImage) -> Vec<u8> {
    let width = image.width - image.width % 2;
    let mut out = Vec::with_capacity(width * image.height * 2);
    for row in image.pixels.chunks_exact(image.width * 3) {
        for pair in row[..width * 3].chunks_exact(6) {
            let px = |i: usize| (pair[i] as i32, pair[i + 1] as i32, pair[i + 2] as i32);
            let luma =
                |(r, g, b): (i32, i32, i32)| clamp(((66 * r + 129 * g + 25 * b + 128) >> 8) + 16);
            let (a, b) = (px(0), px(3));
            let (r, g, bl) = ((a.0 + b.0) / 2, (a.1 + b.1) / 2, (a.2 + b.2) / 2);
            let u = clamp(((-38 * r - 74 * g + 112 * bl + 128) >> 8) + 128);
            let v = clamp(((112 * r - 94 * g - 18 * bl + 128) >> 8) + 128);
            out.extend_from_slice(&[luma(a), u, luma(b), v]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_known_values() {
        // Black, white, and BT.601's red, green, blue.
        let cases: [([u8; 3], [u8; 3]); 5] = [
            ([16, 128, 128], [0, 0, 0]),
            ([235, 128, 128], [255, 255, 255]),
            ([81, 90, 240], [255, 0, 0]),
            ([145, 54, 34], [0, 255, 0]),
            ([41, 240, 110], [0, 0, 255]),
        ];
        for ([y, u, v], want) in cases {
            let out = yuyv_to_rgb(2, 1, &[y, u, y, v]).unwrap();
            for (got, want) in out.pixels[..3].iter().zip(want) {
                assert!(
                    (*got as i32 - want as i32).abs() <= 2,
                    "{y},{u},{v}: {:?} vs {want:?}",
                    &out.pixels[..3]
                );
            }
            assert_eq!(out.pixels[..3], out.pixels[3..]);
        }
    }

    #[test]
    fn rgb_yuyv_round_trip_is_close() {
        let mut pixels = Vec::new();
        for i in 0..64u32 {
            pixels.extend_from_slice(&[(i * 4) as u8, 128, (255 - i * 4) as u8]);
        }
        let img = RgbImage::from_raw(8, 8, pixels).unwrap();
        let back = yuyv_to_rgb(8, 8, &rgb_to_yuyv(&img)).unwrap();
        let worst = img
            .pixels
            .iter()
            .zip(&back.pixels)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        assert!(worst <= 12, "worst channel error {worst}");
    }

    #[test]
    fn mis_sized_frames_are_errors() {
        assert!(yuyv_to_rgb(4, 2, &[0; 15]).is_err());
        assert!(yuyv_to_rgb(3, 2, &[0; 12]).is_err());
        assert!(RawFrame::Mjpeg(b"not a jpeg".to_vec())
            .to_rgb(1 << 20)
            .is_err());
    }
}
