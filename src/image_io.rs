//! Image bytes in, RGB pixels out (and RGB pixels back to JPEG for face crops).
//!
//! JPEG goes through the system libjpeg-turbo, as Pillow and OpenCV do in the original service:
//! other decoders round differently, and that alone moves encodings by 0.03-0.10. Sizes are
//! checked from the header before any pixel is decoded, so a decompression bomb costs nothing.

use std::io::Cursor;

use image::ImageDecoder;
use thiserror::Error;

/// Default limit on decoded pixels: a 24 MP camera photo passes, a decompression bomb does not.
pub const DEFAULT_MAX_PIXELS: u64 = 25_000_000;

/// Why image bytes could not become pixels.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("not an image: expected JPEG or PNG data")]
    NotAnImage,
    #[error("unsupported image format {0}: send JPEG or PNG")]
    UnsupportedFormat(&'static str),
    #[error("the image is truncated")]
    Truncated,
    #[error("the image is corrupt: {0}")]
    Corrupt(String),
    #[error("image of {width}x{height} pixels is larger than the limit of {max_pixels} pixels")]
    TooLarge {
        width: u64,
        height: u64,
        max_pixels: u64,
    },
}

/// An 8-bit RGB image, rows top to bottom, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

impl RgbImage {
    /// Wraps raw RGB bytes; `None` when the length does not fit the size.
    pub fn from_raw(width: usize, height: usize, pixels: Vec<u8>) -> Option<Self> {
        (width.checked_mul(height)?.checked_mul(3)? == pixels.len()).then_some(Self {
            width,
            height,
            pixels,
        })
    }

    /// The pixels of the rectangle `[left, right) x [top, bottom)`, clipped to the image.
    pub fn crop(&self, top: usize, right: usize, bottom: usize, left: usize) -> RgbImage {
        let (right, bottom) = (right.min(self.width), bottom.min(self.height));
        let (left, top) = (left.min(right), top.min(bottom));
        let (w, h) = (right - left, bottom - top);
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in top..bottom {
            let row = (y * self.width + left) * 3;
            pixels.extend_from_slice(&self.pixels[row..row + w * 3]);
        }
        RgbImage {
            width: w,
            height: h,
            pixels,
        }
    }

    fn into_buffer(self) -> Option<image::RgbImage> {
        image::RgbImage::from_raw(self.width as u32, self.height as u32, self.pixels)
    }

    fn from_buffer(buffer: image::RgbImage) -> Self {
        let (w, h) = buffer.dimensions();
        RgbImage {
            width: w as usize,
            height: h as usize,
            pixels: buffer.into_raw(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
}

fn sniff(bytes: &[u8]) -> Result<Format, ImageError> {
    match bytes {
        [] => Err(ImageError::Empty),
        [0xFF, 0xD8, 0xFF, ..] => Ok(Format::Jpeg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Ok(Format::Png),
        [b'G', b'I', b'F', b'8', ..] => Err(ImageError::UnsupportedFormat("GIF")),
        [b'B', b'M', ..] => Err(ImageError::UnsupportedFormat("BMP")),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => {
            Err(ImageError::UnsupportedFormat("WebP"))
        }
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => {
            Err(ImageError::UnsupportedFormat("TIFF"))
        }
        _ => Err(ImageError::NotAnImage),
    }
}

fn check_size(width: u64, height: u64, max_pixels: u64) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt(format!(
            "the header declares a {width}x{height} image"
        )));
    }
    if width.saturating_mul(height) > max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_pixels,
        });
    }
    Ok(())
}

/// Decodes JPEG or PNG bytes to RGB, turned upright by the EXIF orientation tag.
/// Alpha is dropped and greyscale replicated, as Pillow's `convert("RGB")` does.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let image = match sniff(bytes)? {
        Format::Jpeg => decode_jpeg(bytes, max_pixels)?,
        Format::Png => decode_png(bytes, max_pixels)?,
    };
    Ok(apply_orientation(image, exif_orientation(bytes)))
}

fn decode_jpeg(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let mut decompressor =
        turbojpeg::Decompressor::new().map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let header = decompressor
        .read_header(bytes)
        .map_err(|e| jpeg_error(&e).unwrap_or_else(|| ImageError::Corrupt(message(&e))))?;
    check_size(header.width as u64, header.height as u64, max_pixels)?;
    let mut pixels = vec![0u8; header.width * header.height * 3];
    let output = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width: header.width,
        pitch: header.width * 3,
        height: header.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    if let Err(e) = decompressor.decompress(bytes, output) {
        // libjpeg-turbo reports recoverable damage as a warning after decoding every pixel;
        // Pillow accepts those images, so do we. A premature end is a truncated upload.
        if let Some(err) = jpeg_error(&e) {
            return Err(err);
        }
    }
    RgbImage::from_raw(header.width, header.height, pixels)
        .ok_or_else(|| ImageError::Corrupt("decoded size mismatch".into()))
}

fn message(e: &turbojpeg::Error) -> String {
    match e {
        turbojpeg::Error::TurboJpegError(msg) => msg.clone(),
        other => other.to_string(),
    }
}

/// `None` when the libjpeg message is only a warning about data the decoder worked around.
fn jpeg_error(e: &turbojpeg::Error) -> Option<ImageError> {
    let msg = message(e);
    if msg.contains("Premature end") {
        Some(ImageError::Truncated)
    } else if msg.starts_with("Corrupt JPEG data") || msg.starts_with("Warning") {
        None
    } else {
        Some(ImageError::Corrupt(msg))
    }
}

fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let decoder = image::codecs::png::PngDecoder::new(Cursor::new(bytes)).map_err(png_error)?;
    let (w, h) = decoder.dimensions();
    check_size(w as u64, h as u64, max_pixels)?;
    let decoded = image::DynamicImage::from_decoder(decoder).map_err(png_error)?;
    Ok(RgbImage::from_buffer(decoded.into_rgb8()))
}

fn png_error(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated
        }
        other => {
            let msg = other.to_string();
            if msg.contains("EOF") || msg.contains("end of") {
                ImageError::Truncated
            } else {
                ImageError::Corrupt(msg)
            }
        }
    }
}

/// The EXIF orientation (1-8), 1 when absent or unreadable.
fn exif_orientation(bytes: &[u8]) -> u32 {
    let mut cursor = Cursor::new(bytes);
    exif::Reader::new()
        .read_from_container(&mut cursor)
        .ok()
        .and_then(|data| {
            data.get_field(exif::Tag::Orientation, exif::In::PRIMARY)
                .and_then(|f| f.value.get_uint(0))
        })
        .unwrap_or(1)
}

fn apply_orientation(image: RgbImage, orientation: u32) -> RgbImage {
    use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
    if !(2..=8).contains(&orientation) {
        return image;
    }
    let Some(buf) = image.clone().into_buffer() else {
        return image;
    };
    let turned = match orientation {
        2 => flip_horizontal(&buf),
        3 => rotate180(&buf),
        4 => flip_vertical(&buf),
        5 => flip_horizontal(&rotate90(&buf)),
        6 => rotate90(&buf),
        7 => flip_horizontal(&rotate270(&buf)),
        _ => rotate270(&buf),
    };
    RgbImage::from_buffer(turned)
}

/// `image` scaled to fit inside `width`x`height` (aspect kept), centred on a grey canvas of
/// exactly that size: a camera-sized frame made from any photo (benchmarks, replayed frames).
pub fn letterbox(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([128, 128, 128]));
    if let Some(src) = image.clone().into_buffer() {
        let scale = (width as f64 / image.width as f64).min(height as f64 / image.height as f64);
        let (w, h) = (
            ((image.width as f64 * scale).round() as u32).clamp(1, width),
            ((image.height as f64 * scale).round() as u32).clamp(1, height),
        );
        let scaled = image::imageops::resize(&src, w, h, image::imageops::FilterType::Triangle);
        image::imageops::overlay(
            &mut canvas,
            &scaled,
            ((width - w) / 2) as i64,
            ((height - h) / 2) as i64,
        );
    }
    RgbImage::from_buffer(canvas)
}

/// Encodes RGB pixels as a JPEG (quality 95, like OpenCV's `imwrite` default).
pub fn encode_jpeg(image: &RgbImage) -> Result<Vec<u8>, ImageError> {
    let source = turbojpeg::Image {
        pixels: image.pixels.as_slice(),
        width: image.width,
        pitch: image.width * 3,
        height: image.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(source, 95, turbojpeg::Subsamp::Sub2x2)
        .map(|buf| buf.to_vec())
        .map_err(|e| ImageError::Corrupt(format!("cannot encode JPEG: {}", message(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checker(w: usize, h: usize) -> RgbImage {
        let mut pixels = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                pixels.extend_from_slice(&[(x * 3) as u8, (y * 5) as u8, 7]);
            }
        }
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    fn png_bytes(img: image::DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageOutputFormat::Png)
            .unwrap();
        out.into_inner()
    }

    #[test]
    fn sniffs_formats() {
        assert_eq!(decode(b"", 100), Err(ImageError::Empty));
        assert_eq!(decode(b"%PDF-1.7\n...", 100), Err(ImageError::NotAnImage));
        assert_eq!(
            decode(b"GIF89a....", 100),
            Err(ImageError::UnsupportedFormat("GIF"))
        );
        assert_eq!(
            decode(b"hello, I am text", 100),
            Err(ImageError::NotAnImage)
        );
    }

    #[test]
    fn jpeg_round_trip_keeps_size_and_colour() {
        let img = checker(64, 48);
        let jpeg = encode_jpeg(&img).unwrap();
        let back = decode(&jpeg, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!((back.width, back.height), (64, 48));
        let diff: u64 = img
            .pixels
            .iter()
            .zip(&back.pixels)
            .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
            .sum();
        assert!(diff / (img.pixels.len() as u64) < 6, "mean error {diff}");
    }

    #[test]
    fn truncated_jpeg_is_refused() {
        let jpeg = encode_jpeg(&checker(400, 300)).unwrap();
        let cut = &jpeg[..jpeg.len() * 3 / 4];
        assert_eq!(decode(cut, DEFAULT_MAX_PIXELS), Err(ImageError::Truncated));
    }

    #[test]
    fn png_alpha_is_dropped_and_grey_replicated() {
        let rgba = image::RgbaImage::from_pixel(3, 2, image::Rgba([10, 20, 30, 0]));
        let out = decode(&png_bytes(image::DynamicImage::ImageRgba8(rgba)), 100).unwrap();
        assert_eq!(out.pixels, [10, 20, 30].repeat(6));
        let grey = image::GrayImage::from_pixel(2, 2, image::Luma([77]));
        let out = decode(&png_bytes(image::DynamicImage::ImageLuma8(grey)), 100).unwrap();
        assert_eq!(out.pixels, vec![77; 12]);
    }

    #[test]
    fn size_is_checked_before_decoding() {
        let bytes = png_bytes(image::DynamicImage::ImageRgb8(image::RgbImage::new(20, 10)));
        assert_eq!(
            decode(&bytes, 199),
            Err(ImageError::TooLarge {
                width: 20,
                height: 10,
                max_pixels: 199
            })
        );
        assert!(decode(&bytes, 200).is_ok());
    }

    #[test]
    fn orientation_turns_the_image_upright() {
        // 2x1 image: red, green. Orientation 6 means "rotate 90 clockwise to view".
        let img = RgbImage::from_raw(2, 1, vec![255, 0, 0, 0, 255, 0]).unwrap();
        let turned = apply_orientation(img.clone(), 6);
        assert_eq!((turned.width, turned.height), (1, 2));
        assert_eq!(turned.pixels, vec![255, 0, 0, 0, 255, 0]);
        let mirrored = apply_orientation(img.clone(), 2);
        assert_eq!(mirrored.pixels, vec![0, 255, 0, 255, 0, 0]);
        // 5 is a transpose, 7 a transverse: both swap the sides.
        let t = apply_orientation(img.clone(), 5);
        assert_eq!(
            (t.width, t.height, t.pixels.clone()),
            (1, 2, img.pixels.clone())
        );
        let t = apply_orientation(img.clone(), 7);
        assert_eq!((t.width, t.height), (1, 2));
        assert_eq!(t.pixels, vec![0, 255, 0, 255, 0, 0]);
        assert_eq!(apply_orientation(img.clone(), 1), img);
    }

    #[test]
    fn letterbox_keeps_the_aspect() {
        let wide = RgbImage::from_raw(200, 100, vec![255; 200 * 100 * 3]).unwrap();
        let framed = letterbox(&wide, 640, 480);
        assert_eq!((framed.width, framed.height), (640, 480));
        // 200x100 scales to 640x320, centred: rows 80..400 are the photo, the rest grey.
        assert_eq!(&framed.pixels[..3], &[128, 128, 128]);
        let row = |y: usize| &framed.pixels[y * 640 * 3..y * 640 * 3 + 3];
        assert_eq!(row(79), &[128, 128, 128]);
        assert_eq!(row(80), &[255, 255, 255]);
        assert_eq!(row(400), &[128, 128, 128]);
    }

    #[test]
    fn crop_clips_to_the_image() {
        let img = checker(4, 3);
        let c = img.crop(1, 10, 10, 2);
        assert_eq!((c.width, c.height), (2, 2));
        assert_eq!(&c.pixels[..3], &[6, 5, 7]);
    }
}
