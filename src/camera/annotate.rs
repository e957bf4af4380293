//! Boxes and names drawn on a frame, for `cam-demo --save-annotated` and the live view
//! (`GET /stream.mjpg`): on a headless board they are how one sees what the camera saw.

use font8x8::legacy::BASIC_LEGACY;

use super::tracker::Seen;
use crate::image_io::RgbImage;

const KNOWN: [u8; 3] = [40, 200, 60];
const UNKNOWN: [u8; 3] = [220, 40, 40];
const TEXT: [u8; 3] = [255, 255, 255];
/// Box outline width and text magnification, in pixels.
const LINE: i64 = 2;
const TEXT_SCALE: i64 = 2;

fn put(image: &mut RgbImage, x: i64, y: i64, color: [u8; 3]) {
    if x < 0 || y < 0 || x >= image.width as i64 || y >= image.height as i64 {
        return;
    }
    let i = (y as usize * image.width + x as usize) * 3;
    image.pixels[i..i + 3].copy_from_slice(&color);
}

fn fill(image: &mut RgbImage, (left, top, right, bottom): (i64, i64, i64, i64), color: [u8; 3]) {
    for y in top..bottom {
        for x in left..right {
            put(image, x, y, color);
        }
    }
}

/// Draws `text` (ASCII; anything else as '?') with its top-left corner at `(x, y)`.
fn text(image: &mut RgbImage, x: i64, y: i64, text: &str) {
    for (n, c) in text.chars().enumerate() {
        let glyph = BASIC_LEGACY[if c.is_ascii() {
            c as usize
        } else {
            '?' as usize
        }];
        let x0 = x + n as i64 * 8 * TEXT_SCALE;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (px, py) = (x0 + col * TEXT_SCALE, y + row as i64 * TEXT_SCALE);
                    fill(image, (px, py, px + TEXT_SCALE, py + TEXT_SCALE), TEXT);
                }
            }
        }
    }
}

/// The caption of a face: its label and distance.
pub fn caption(face: &Seen) -> String {
    let r = &face.recognition;
    match r.distance {
        Some(d) => format!("{} {d:.2}", r.label),
        None => r.label.clone(),
    }
}

/// Draws each face's box (green when recognized, red when unknown) with its caption above it
/// (below the top edge when there is no room above).
pub fn draw(image: &mut RgbImage, faces: &[Seen]) {
    draw_scaled(image, faces, 1.0);
}

/// [`draw`] on a copy of the frame scaled by `scale` (the faces' boxes are in the frame's
/// pixels): lines and captions keep their size whatever the scale.
pub fn draw_scaled(image: &mut RgbImage, faces: &[Seen], scale: f64) {
    let at = |v: i64| (v as f64 * scale).round() as i64;
    for face in faces {
        let b = face.recognition.bbox;
        let color = if face.recognition.label == crate::gallery::UNKNOWN {
            UNKNOWN
        } else {
            KNOWN
        };
        let (l, t, r, btm) = (at(b.left), at(b.top), at(b.right), at(b.bottom));
        // Lines inside the box, so a face at the frame's edge still shows its box.
        fill(image, (l, t, r, t + LINE), color);
        fill(image, (l, btm - LINE, r, btm), color);
        fill(image, (l, t, l + LINE, btm), color);
        fill(image, (r - LINE, t, r, btm), color);
        let label = caption(face);
        let height = 8 * TEXT_SCALE + 4;
        let top = if t - height >= 0 { t - height } else { t };
        let width = label.chars().count() as i64 * 8 * TEXT_SCALE + 4;
        fill(image, (l, top, l + width, top + height), color);
        text(image, l + 2, top + 2, &label);
    }
}

/// Writes `message` in the middle of `image` (white on the unknown colour): a frame that says
/// what is going on instead of showing the camera.
pub fn notice(image: &mut RgbImage, message: &str) {
    let (w, h) = (image.width as i64, image.height as i64);
    let width = message.chars().count() as i64 * 8 * TEXT_SCALE + 4;
    let height = 8 * TEXT_SCALE + 4;
    let (x, y) = ((w - width).max(0) / 2, (h - height).max(0) / 2);
    fill(image, (x, y, x + width, y + height), UNKNOWN);
    text(image, x + 2, y + 2, message);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::FaceBox;
    use crate::recognizer::Recognition;

    fn at(image: &RgbImage, x: usize, y: usize) -> [u8; 3] {
        let i = (y * image.width + x) * 3;
        [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
    }

    fn seen(label: &str, bbox: FaceBox) -> Seen {
        Seen {
            recognition: Recognition::new(
                bbox,
                label,
                (label != crate::gallery::UNKNOWN).then_some(0.31),
            ),
            track: 1,
            measured: None,
        }
    }

    #[test]
    fn boxes_are_outlined_in_their_colour_and_captioned() {
        let mut image = RgbImage::from_raw(200, 150, vec![0; 200 * 150 * 3]).unwrap();
        let bbox = FaceBox {
            top: 60,
            right: 120,
            bottom: 130,
            left: 40,
        };
        draw(&mut image, &[seen("alip", bbox)]);
        assert_eq!(at(&image, 80, 129), KNOWN, "bottom edge");
        assert_eq!(at(&image, 40, 100), KNOWN, "left edge");
        assert_eq!(at(&image, 119, 100), KNOWN, "right edge");
        assert_eq!(at(&image, 80, 100), [0, 0, 0], "inside untouched");
        assert_eq!(at(&image, 80, 131), [0, 0, 0], "outside untouched");
        // The caption sits above the box: white text on the box colour.
        let caption_pixels = (40..200)
            .flat_map(|x| (40..60).map(move |y| (x, y)))
            .filter(|&(x, y)| at(&image, x, y) == TEXT)
            .count();
        assert!(caption_pixels > 50, "{caption_pixels}");
        assert_eq!(caption(&seen("alip", bbox)), "alip 0.31");
    }

    #[test]
    fn scaled_boxes_land_on_the_scaled_frame() {
        let mut image = RgbImage::from_raw(100, 75, vec![0; 100 * 75 * 3]).unwrap();
        let bbox = FaceBox {
            top: 60,
            right: 120,
            bottom: 130,
            left: 40,
        };
        draw_scaled(&mut image, &[seen("alip", bbox)], 0.5);
        assert_eq!(at(&image, 40, 64), KNOWN, "bottom edge, halved");
        assert_eq!(at(&image, 20, 50), KNOWN, "left edge, halved");
        assert_eq!(at(&image, 40, 50), [0, 0, 0], "inside untouched");
    }

    #[test]
    fn a_notice_is_written_in_the_middle() {
        let mut image = RgbImage::from_raw(320, 240, vec![0; 320 * 240 * 3]).unwrap();
        notice(&mut image, "waiting");
        assert_eq!(at(&image, 160, 110), UNKNOWN);
        assert_eq!(at(&image, 5, 5), [0, 0, 0]);
    }

    #[test]
    fn unknown_faces_are_red_and_boxes_at_the_edges_are_clipped() {
        let mut image = RgbImage::from_raw(100, 100, vec![0; 100 * 100 * 3]).unwrap();
        let bbox = FaceBox {
            top: 0,
            right: 100,
            bottom: 100,
            left: 0,
        };
        draw(&mut image, &[seen(crate::gallery::UNKNOWN, bbox)]);
        assert_eq!(at(&image, 99, 50), UNKNOWN);
        assert_eq!(caption(&seen(crate::gallery::UNKNOWN, bbox)), "Unknown");
    }
}
