//! Image bytes in, RGB pixels out (and RGB pixels back to JPEG for face crops).
//!
//! JPEG goes through the system libjpeg-turbo, as Pillow and OpenCV do in the original service:
//! other decoders round differently, and that alone moves encodings by 0.03-0.10. CMYK and YCCK
//! JPEGs come out as Pillow's `convert("RGB")` makes them. PNG goes through the `png` crate with
//! its ancillary chunks (ICC profiles, text) skipped and an allocation cap, so a small file cannot
//! make the decoder inflate gigabytes.
//!
//! Sizes are checked from the header ([`probe`]) before any pixel is decoded, so a decompression
//! bomb costs nothing. Images too large to detect faces on at full size are looked at twice:
//! once small ([`decode_downscaled`]: libjpeg-turbo's DCT scaling, or PNG rows averaged as they
//! stream by), then at full size ([`decode_stored`]) only for crops around the faces found
//! ([`Oriented::crop`]), turned upright crop by crop rather than as a whole.

use std::io::Cursor;

use thiserror::Error;

/// Default limit on decoded pixels: a 24 MP camera photo passes, a decompression bomb does not.
pub const DEFAULT_MAX_PIXELS: u64 = 25_000_000;

/// Why image bytes could not become pixels.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ImageError {
    /// No bytes at all.
    #[error("the image is empty (0 bytes)")]
    Empty,
    /// Neither JPEG nor PNG.
    #[error("not an image: expected JPEG or PNG data")]
    NotAnImage,
    /// A known format the service does not take (its name).
    #[error("unsupported image format {0}: send JPEG or PNG")]
    UnsupportedFormat(&'static str),
    /// The data ends before the image does.
    #[error("the image is truncated")]
    Truncated,
    /// The decoder refused the data (its reason).
    #[error("the image is corrupt: {0}")]
    Corrupt(String),
    /// More pixels than allowed (`FACE_MAX_PIXELS`), by the header: nothing was decoded.
    #[error("image of {width}x{height} pixels is larger than the limit of {max_pixels} pixels")]
    TooLarge {
        /// Width the header declares.
        width: u64,
        /// Height the header declares.
        height: u64,
        /// The limit.
        max_pixels: u64,
    },
}

/// An 8-bit RGB image, rows top to bottom, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes: R, G, B per pixel.
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

    /// Whether `pixels` holds exactly `width * height` RGB pixels (the fields are public, so
    /// code that hands the pixels to C checks this first).
    pub fn is_consistent(&self) -> bool {
        self.width
            .checked_mul(self.height)
            .and_then(|p| p.checked_mul(3))
            == Some(self.pixels.len())
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

/// The two formats accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG (decoded by libjpeg-turbo).
    Jpeg,
    /// PNG.
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

/// What an image's header says, checked against the pixel limit; no pixel decoded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// JPEG or PNG.
    pub format: Format,
    /// Width as stored, before the EXIF orientation turns it.
    pub stored_width: usize,
    /// Height as stored, before the EXIF orientation turns it.
    pub stored_height: usize,
    /// The EXIF orientation, 1 to 8 (1 when absent or unreadable).
    pub orientation: u32,
    /// The pixel limit the header was checked against (the decoders cap allocations by it).
    pub max_pixels: u64,
}

impl Probe {
    /// Width of the upright image (what the caller sees and boxes refer to).
    pub fn width(&self) -> usize {
        upright_size(self.stored_width, self.stored_height, self.orientation).0
    }

    /// Height of the upright image.
    pub fn height(&self) -> usize {
        upright_size(self.stored_width, self.stored_height, self.orientation).1
    }

    /// Pixels as stored (width times height).
    pub fn pixels(&self) -> u64 {
        self.stored_width as u64 * self.stored_height as u64
    }
}

/// Reads the format, size and EXIF orientation from the header; refuses images above
/// `max_pixels` (and other formats, non-images, broken headers) before any pixel is decoded.
pub fn probe(bytes: &[u8], max_pixels: u64) -> Result<Probe, ImageError> {
    let format = sniff(bytes)?;
    let (stored_width, stored_height) = match format {
        Format::Jpeg => {
            let header = jpeg_header(bytes)?;
            (header.width, header.height)
        }
        Format::Png => {
            let mut decoder = png_decoder(bytes, max_pixels);
            let info = decoder.read_header_info().map_err(png_error)?;
            (info.width as usize, info.height as usize)
        }
    };
    check_size(stored_width as u64, stored_height as u64, max_pixels)?;
    Ok(Probe {
        format,
        stored_width,
        stored_height,
        orientation: exif_orientation(bytes),
        max_pixels,
    })
}

/// Decodes JPEG or PNG bytes to RGB, turned upright by the EXIF orientation tag.
/// Alpha is dropped and greyscale replicated, as Pillow's `convert("RGB")` does.
pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let probe = probe(bytes, max_pixels)?;
    let stored = decode_stored(bytes, &probe)?;
    Ok(orient(stored, probe.orientation))
}

/// Decodes the whole image at full size as it is stored, without turning it upright (see
/// [`Oriented`] to read it upright).
pub fn decode_stored(bytes: &[u8], probe: &Probe) -> Result<RgbImage, ImageError> {
    match probe.format {
        Format::Jpeg => decode_jpeg(bytes, probe.stored_width, probe.stored_height),
        Format::Png => decode_png(bytes, probe.max_pixels),
    }
}

/// The upright image scaled down to at most `max_pixels` pixels (aspect kept, each side at
/// least 1), without ever holding it whole at full size when it is a non-interlaced PNG, and
/// decoding a JPEG directly at a reduced size (libjpeg-turbo's DCT scaling) before averaging
/// down to the exact size. An image already small enough comes back as [`decode`] gives it.
pub fn decode_downscaled(
    bytes: &[u8],
    probe: &Probe,
    max_pixels: u64,
) -> Result<RgbImage, ImageError> {
    let (w, h) = (probe.stored_width, probe.stored_height);
    let (tw, th) = fit_within(w, h, max_pixels);
    let small = if (tw, th) == (w, h) {
        decode_stored(bytes, probe)?
    } else {
        match probe.format {
            Format::Jpeg => {
                let (sw, sh) = jpeg_scaled_size(w, h, tw, th);
                let scaled = decode_jpeg(bytes, sw, sh)?;
                downscale_to(&scaled, tw, th)
            }
            Format::Png => {
                let mut scaler = AreaScaler::new((w, h), (tw, th));
                png_rows(bytes, probe.max_pixels, |row| scaler.push_row(row))?;
                scaler.finish()
            }
        }
    };
    Ok(orient(small, probe.orientation))
}

/// The largest size with the aspect of `width`x`height` and at most `max_pixels` pixels (each
/// side at least 1 and at most the original's).
pub fn fit_within(width: usize, height: usize, max_pixels: u64) -> (usize, usize) {
    let pixels = width as u64 * height as u64;
    if pixels <= max_pixels || width == 0 || height == 0 {
        return (width, height);
    }
    let s = (max_pixels as f64 / pixels as f64).sqrt();
    let side = |v: usize| ((v as f64 * s).floor() as usize).clamp(1, v);
    let (mut tw, mut th) = (side(width), side(height));
    // A side rounded up to 1 pixel (a very thin image) leaves the other to take the budget.
    let budget = usize::try_from(max_pixels).unwrap_or(usize::MAX).max(1);
    if th == 1 && tw > budget {
        tw = budget;
    } else if tw == 1 && th > budget {
        th = budget;
    }
    while tw as u64 * th as u64 > max_pixels && (tw > 1 || th > 1) {
        if tw >= th && tw > 1 {
            tw -= 1;
        } else {
            th -= 1;
        }
    }
    (tw, th)
}

/// `image` averaged down to at most `max_pixels` pixels (see [`fit_within`]); a copy when it
/// already fits.
pub fn downscale(image: &RgbImage, max_pixels: u64) -> RgbImage {
    let (tw, th) = fit_within(image.width, image.height, max_pixels);
    downscale_to(image, tw, th)
}

/// `image` averaged down to at most `max_width` pixels wide (aspect kept); a copy when it
/// already fits.
pub fn downscale_to_width(image: &RgbImage, max_width: usize) -> RgbImage {
    if image.width <= max_width || max_width == 0 {
        return image.clone();
    }
    let height = (image.height * max_width).div_ceil(image.width).max(1);
    downscale_to(image, max_width, height)
}

fn downscale_to(image: &RgbImage, tw: usize, th: usize) -> RgbImage {
    if (tw, th) == (image.width, image.height) || !image.is_consistent() {
        return image.clone();
    }
    let mut scaler = AreaScaler::new((image.width, image.height), (tw, th));
    for row in image.pixels.chunks_exact(image.width * 3) {
        scaler.push_row(row);
    }
    scaler.finish()
}

/// Box-filter (area-averaging) downscaling, fed one source row at a time: every source pixel
/// counts in proportion to the area it covers in a destination pixel, so no detail aliases and
/// the source never needs to be in memory whole.
struct AreaScaler {
    src: (usize, usize),
    dst: (usize, usize),
    /// For each destination column, its range in `taps`.
    spans: Vec<(usize, usize)>,
    /// (source column, weight), the weights of one destination column summing to 1.
    taps: Vec<(usize, f32)>,
    /// The current source row, scaled horizontally.
    row: Vec<f32>,
    /// The destination row being accumulated, and the weight it has received.
    acc: Vec<f32>,
    acc_weight: f64,
    /// Source rows seen, destination rows done.
    src_y: usize,
    dst_y: usize,
    out: Vec<u8>,
}

impl AreaScaler {
    fn new(src: (usize, usize), dst: (usize, usize)) -> Self {
        let rx = src.0 as f64 / dst.0 as f64;
        let mut spans = Vec::with_capacity(dst.0);
        let mut taps = Vec::new();
        for x in 0..dst.0 {
            let (a, b) = (x as f64 * rx, ((x + 1) as f64 * rx).min(src.0 as f64));
            let start = taps.len();
            let first = a.floor() as usize;
            let last = (b.ceil() as usize).min(src.0);
            for i in first..last {
                let w = b.min((i + 1) as f64) - a.max(i as f64);
                if w > 1e-9 {
                    taps.push((i, w));
                }
            }
            let total: f64 = taps[start..].iter().map(|t| t.1).sum();
            spans.push((start, taps.len()));
            for t in &mut taps[start..] {
                t.1 /= total;
            }
        }
        let taps = taps.into_iter().map(|(i, w)| (i, w as f32)).collect();
        AreaScaler {
            src,
            dst,
            spans,
            taps,
            row: vec![0.0; dst.0 * 3],
            acc: vec![0.0; dst.0 * 3],
            acc_weight: 0.0,
            src_y: 0,
            dst_y: 0,
            out: Vec::with_capacity(dst.0 * dst.1 * 3),
        }
    }

    /// One source row of `src.0` RGB pixels, top to bottom.
    fn push_row(&mut self, rgb: &[u8]) {
        if self.src_y >= self.src.1 || rgb.len() < self.src.0 * 3 {
            return;
        }
        for (x, &(start, end)) in self.spans.iter().enumerate() {
            let mut px = [0f32; 3];
            for &(i, w) in &self.taps[start..end] {
                let p = &rgb[i * 3..i * 3 + 3];
                px[0] += w * f32::from(p[0]);
                px[1] += w * f32::from(p[1]);
                px[2] += w * f32::from(p[2]);
            }
            self.row[x * 3..x * 3 + 3].copy_from_slice(&px);
        }
        let ry = self.src.1 as f64 / self.dst.1 as f64;
        let (a, b) = (self.src_y as f64, (self.src_y + 1) as f64);
        self.src_y += 1;
        while self.dst_y < self.dst.1 {
            let (start, end) = (self.dst_y as f64 * ry, (self.dst_y + 1) as f64 * ry);
            let w = b.min(end) - a.max(start);
            if w > 0.0 {
                let wf = w as f32;
                for (acc, v) in self.acc.iter_mut().zip(&self.row) {
                    *acc += wf * v;
                }
                self.acc_weight += w;
            }
            let last_row = self.src_y == self.src.1;
            if end <= b + 1e-9 || (last_row && self.dst_y + 1 == self.dst.1) {
                self.emit();
                if end < b - 1e-9 {
                    continue; // the rest of this source row belongs to the next one
                }
            }
            break;
        }
    }

    fn emit(&mut self) {
        let scale = if self.acc_weight > 0.0 {
            (1.0 / self.acc_weight) as f32
        } else {
            0.0
        };
        self.out.extend(
            self.acc
                .iter()
                .map(|v| (v * scale).round().clamp(0.0, 255.0) as u8),
        );
        self.acc.fill(0.0);
        self.acc_weight = 0.0;
        self.dst_y += 1;
    }

    fn finish(mut self) -> RgbImage {
        // Rows a short source never delivered (a decoder stopping early) repeat the last one.
        while self.dst_y < self.dst.1 {
            if self.acc_weight == 0.0 {
                self.acc.copy_from_slice(&self.row);
                self.acc_weight = 1.0;
            }
            self.emit();
        }
        RgbImage {
            width: self.dst.0,
            height: self.dst.1,
            pixels: self.out,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// JPEG

/// What decoding a JPEG needs from its header.
struct JpegHeader {
    width: usize,
    height: usize,
    /// CMYK or YCCK: libjpeg-turbo gives these as CMYK only.
    cmyk: bool,
}

fn jpeg_header(bytes: &[u8]) -> Result<JpegHeader, ImageError> {
    let mut decompressor =
        turbojpeg::Decompressor::new().map_err(|e| ImageError::Corrupt(e.to_string()))?;
    match decompressor.read_header(bytes) {
        Ok(h) => Ok(JpegHeader {
            width: h.width,
            height: h.height,
            cmyk: matches!(
                h.colorspace,
                turbojpeg::Colorspace::CMYK | turbojpeg::Colorspace::YCCK
            ),
        }),
        // TurboJPEG 2.x names the chroma subsampling of every image it reads a header of, and
        // gives up on layouts outside its list (Pillow's CMYK with subsampling, for one), which
        // libjpeg itself decodes fine: read the frame header ourselves then.
        Err(e) if message(&e).contains("Could not determine subsampling") => {
            frame_header(bytes).ok_or_else(|| ImageError::Corrupt(message(&e)))
        }
        Err(e) => Err(jpeg_error(&e).unwrap_or_else(|| ImageError::Corrupt(message(&e)))),
    }
}

/// Size and component count from a JPEG's SOF segment; `None` when there is none before the
/// first scan.
fn frame_header(bytes: &[u8]) -> Option<JpegHeader> {
    let mut i = 2; // after SOI
    loop {
        // A marker: 0xFF (fill bytes allowed), then its code.
        while *bytes.get(i)? != 0xFF {
            i += 1;
        }
        while *bytes.get(i)? == 0xFF {
            i += 1;
        }
        let marker = *bytes.get(i)?;
        i += 1;
        if marker == 0x01 || (0xD0..=0xD8).contains(&marker) {
            continue; // stand-alone markers
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof {
            let seg = bytes.get(i + 2..i + len)?;
            let height = usize::from(u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]));
            let width = usize::from(u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]));
            let components = *seg.get(5)?;
            return Some(JpegHeader {
                width,
                height,
                cmyk: components == 4,
            });
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // a scan (or the end) before any frame header
        }
        i += len;
    }
}

/// Decodes a JPEG at `width`x`height`: its own size, or one of libjpeg-turbo's DCT scaling
/// sizes ([`jpeg_scaled_size`]). CMYK and YCCK JPEGs are converted as Pillow converts them.
fn decode_jpeg(bytes: &[u8], width: usize, height: usize) -> Result<RgbImage, ImageError> {
    let header = jpeg_header(bytes)?;
    let mut decompressor =
        turbojpeg::Decompressor::new().map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (format, channels) = if header.cmyk {
        (turbojpeg::PixelFormat::CMYK, 4)
    } else {
        (turbojpeg::PixelFormat::RGB, 3)
    };
    let len = width
        .checked_mul(height)
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| ImageError::Corrupt("image size overflows".into()))?;
    let mut pixels = vec![0u8; len];
    let output = turbojpeg::Image {
        pixels: pixels.as_mut_slice(),
        width,
        pitch: width * channels,
        height,
        format,
    };
    if let Err(e) = decompressor.decompress(bytes, output) {
        // libjpeg-turbo reports recoverable damage as a warning after decoding every pixel;
        // Pillow accepts those images, so do we. A premature end is a truncated upload.
        if let Some(err) = jpeg_error(&e) {
            return Err(err);
        }
    }
    if header.cmyk {
        adobe_cmyk_to_rgb(&mut pixels);
    }
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| ImageError::Corrupt("decoded size mismatch".into()))
}

/// CMYK pixels as libjpeg gives them (from a CMYK or YCCK JPEG) to RGB, in place, exactly as
/// Pillow does: it reads JPEG CMYK with the Adobe convention (rawmode `CMYK;I`, every channel
/// inverted), then `convert("RGB")` computes `255 - k` minus the ink scaled by it, with its
/// `MULDIV255` rounding. The buffer shrinks from 4 to 3 bytes per pixel.
fn adobe_cmyk_to_rgb(pixels: &mut Vec<u8>) {
    fn muldiv255(a: u32, b: u32) -> u32 {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    }
    let n = pixels.len() / 4;
    for i in 0..n {
        let s = i * 4;
        // Pillow's "CMYK;I" inverts what libjpeg stored, so its `255 - k` is the stored k.
        let nk = u32::from(pixels[s + 3]);
        let c = 255 - u32::from(pixels[s]);
        let m = 255 - u32::from(pixels[s + 1]);
        let y = 255 - u32::from(pixels[s + 2]);
        // out[j] = CLIP8(nk - MULDIV255(ink, nk)); the difference is never negative here.
        let d = i * 3; // d + 2 < s + 3: each write lands on bytes already read
        pixels[d] = nk.saturating_sub(muldiv255(c, nk)).min(255) as u8;
        pixels[d + 1] = nk.saturating_sub(muldiv255(m, nk)).min(255) as u8;
        pixels[d + 2] = nk.saturating_sub(muldiv255(y, nk)).min(255) as u8;
    }
    pixels.truncate(n * 3);
    pixels.shrink_to_fit();
}

/// The smallest of libjpeg-turbo's DCT scaling sizes (k/8 of each side) that is still at least
/// `min_width`x`min_height`; the full size when none is smaller.
fn jpeg_scaled_size(
    width: usize,
    height: usize,
    min_width: usize,
    min_height: usize,
) -> (usize, usize) {
    let mut count: std::os::raw::c_int = 0;
    // SAFETY: tjGetScalingFactors only writes the count through the valid pointer it is given
    // and returns a pointer to libjpeg-turbo's static table of `count` factors (or null).
    let table = unsafe { turbojpeg::raw::tjGetScalingFactors(&mut count) };
    let factors: &[turbojpeg::raw::tjscalingfactor] = if table.is_null() || count <= 0 {
        &[]
    } else {
        // SAFETY: non-null, `count` initialised elements, in static storage that lives (and is
        // never written) for the rest of the process.
        unsafe { std::slice::from_raw_parts(table, count as usize) }
    };
    let mut best = (width, height);
    for f in factors {
        let (num, denom) = (f.num as i64, f.denom as i64);
        if num <= 0 || denom <= 0 || num > denom {
            continue;
        }
        // TJSCALED(dimension, factor)
        let scaled = |v: usize| ((v as i64 * num + denom - 1) / denom) as usize;
        let (sw, sh) = (scaled(width), scaled(height));
        if sw >= min_width && sh >= min_height && sw * sh < best.0 * best.1 {
            best = (sw, sh);
        }
    }
    best
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

// ---------------------------------------------------------------------------------------------
// PNG

/// What the PNG decoder may allocate for itself (chunk buffers, palette, rows; not our output):
/// never more than the RGB pixels of the largest image accepted, at least 1 MiB.
fn png_alloc_limit(max_pixels: u64) -> usize {
    usize::try_from(max_pixels.saturating_mul(3))
        .unwrap_or(usize::MAX)
        .max(1 << 20)
}

fn png_decoder(bytes: &[u8], max_pixels: u64) -> png::Decoder<Cursor<&[u8]>> {
    let limits = png::Limits {
        bytes: png_alloc_limit(max_pixels),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), limits);
    // An ICC profile or a zTXt/iTXt chunk is a zlib stream the decoder would inflate in full
    // (a 2 MB file can hold gigabytes); nothing here uses them.
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    // Palettes, grey below 8 bits and tRNS expanded; 16-bit samples keep their high byte.
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    decoder
}

type PngReader<'a> = png::Reader<Cursor<&'a [u8]>>;

/// A PNG reader positioned at the first row, after the size check, with the image's size.
fn png_reader(bytes: &[u8], max_pixels: u64) -> Result<(PngReader<'_>, usize, usize), ImageError> {
    let mut decoder = png_decoder(bytes, max_pixels);
    let info = decoder.read_header_info().map_err(png_error)?;
    check_size(u64::from(info.width), u64::from(info.height), max_pixels)?;
    let (w, h) = (info.width as usize, info.height as usize);
    let reader = decoder.read_info().map_err(png_error)?;
    if reader.output_color_type().1 != png::BitDepth::Eight {
        return Err(ImageError::Corrupt("unexpected PNG sample depth".into()));
    }
    Ok((reader, w, h))
}

/// One decoded row (8-bit samples of `color`) to RGB: grey replicated, alpha dropped.
fn png_row_to_rgb(row: &[u8], color: png::ColorType, rgb: &mut [u8]) -> Result<(), ImageError> {
    let channels = match color {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        png::ColorType::Indexed => {
            return Err(ImageError::Corrupt("unexpanded PNG palette".into()));
        }
    };
    if row.len() / channels < rgb.len() / 3 {
        return Err(ImageError::Corrupt("short PNG row".into()));
    }
    for (src, dst) in row.chunks_exact(channels).zip(rgb.chunks_exact_mut(3)) {
        if channels < 3 {
            dst.fill(src[0]);
        } else {
            dst.copy_from_slice(&src[..3]);
        }
    }
    Ok(())
}

fn decode_png(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageError> {
    let (mut reader, w, h) = png_reader(bytes, max_pixels)?;
    let color = reader.output_color_type().0;
    let stride = w * 3;
    let mut pixels = vec![0u8; stride * h];
    if reader.info().interlaced {
        let mut rgb = Vec::with_capacity(stride);
        while let Some(row) = reader.next_interlaced_row().map_err(png_error)? {
            let png::InterlaceInfo::Adam7(pass) = *row.interlace() else {
                return Err(ImageError::Corrupt("PNG interlacing mixed up".into()));
            };
            rgb.clear();
            rgb.resize(pass_width(row.data().len(), color) * 3, 0);
            png_row_to_rgb(row.data(), color, &mut rgb)?;
            png::expand_interlaced_row(&mut pixels, stride, &rgb, &pass, 24);
        }
    } else {
        for dst in pixels.chunks_exact_mut(stride) {
            let row = reader
                .next_row()
                .map_err(png_error)?
                .ok_or(ImageError::Truncated)?;
            png_row_to_rgb(row.data(), color, dst)?;
        }
        // Reads to the end of the image data, as the image crate did (a cut stream is an error).
        reader.next_row().map_err(png_error)?;
    }
    Ok(RgbImage {
        width: w,
        height: h,
        pixels,
    })
}

/// Pixels in a decoded row of `len` bytes of 8-bit `color` samples.
fn pass_width(len: usize, color: png::ColorType) -> usize {
    len / match color {
        png::ColorType::Grayscale | png::ColorType::Indexed => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
    }
}

/// Hands each RGB row of a PNG to `each_row`, top to bottom, holding one row at a time (an
/// interlaced PNG has to be decoded whole first).
fn png_rows(
    bytes: &[u8],
    max_pixels: u64,
    mut each_row: impl FnMut(&[u8]),
) -> Result<(), ImageError> {
    let (mut reader, w, h) = png_reader(bytes, max_pixels)?;
    if reader.info().interlaced {
        drop(reader);
        let image = decode_png(bytes, max_pixels)?;
        image.pixels.chunks_exact(w * 3).for_each(each_row);
        return Ok(());
    }
    let color = reader.output_color_type().0;
    let mut rgb = vec![0u8; w * 3];
    for _ in 0..h {
        let row = reader
            .next_row()
            .map_err(png_error)?
            .ok_or(ImageError::Truncated)?;
        png_row_to_rgb(row.data(), color, &mut rgb)?;
        each_row(&rgb);
    }
    reader.next_row().map_err(png_error)?;
    Ok(())
}

fn png_error(e: png::DecodingError) -> ImageError {
    match e {
        png::DecodingError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            ImageError::Truncated
        }
        png::DecodingError::LimitsExceeded => {
            ImageError::Corrupt("the PNG needs more memory to decode than its size allows".into())
        }
        other => {
            let msg = other.to_string();
            if msg.contains("EOF") || msg.contains("end of") || msg.contains("not have enough data")
            {
                ImageError::Truncated
            } else {
                ImageError::Corrupt(msg)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// EXIF orientation

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
        .filter(|o| (1..=8).contains(o))
        .unwrap_or(1)
}

/// The upright size of a `width`x`height` image stored with EXIF `orientation`.
fn upright_size(width: usize, height: usize, orientation: u32) -> (usize, usize) {
    if (5..=8).contains(&orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// Where the upright pixel `(x, y)` lies in the stored `width`x`height` image. 2 mirrors, 3
/// turns 180°, 4 flips, 5 transposes, 6 means "turn 90° clockwise to view", 7 transverses, 8
/// means "turn 90° counter-clockwise to view".
fn stored_position(
    x: usize,
    y: usize,
    width: usize,
    height: usize,
    orientation: u32,
) -> (usize, usize) {
    match orientation {
        2 => (width - 1 - x, y),
        3 => (width - 1 - x, height - 1 - y),
        4 => (x, height - 1 - y),
        5 => (y, x),
        6 => (y, height - 1 - x),
        7 => (width - 1 - y, height - 1 - x),
        8 => (width - 1 - y, x),
        _ => (x, y),
    }
}

/// A decoded image as stored ([`decode_stored`]) turned upright by its EXIF `orientation`
/// ([`Probe::orientation`]): what [`decode`] returns.
pub fn upright(stored: RgbImage, orientation: u32) -> RgbImage {
    orient(stored, orientation)
}

/// `image` (as stored) turned upright by EXIF `orientation`; itself when there is nothing to do.
fn orient(image: RgbImage, orientation: u32) -> RgbImage {
    if !(2..=8).contains(&orientation) || !image.is_consistent() {
        return image;
    }
    let (w, h) = upright_size(image.width, image.height, orientation);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = stored_position(x, y, image.width, image.height, orientation);
            let s = (sy * image.width + sx) * 3;
            pixels.extend_from_slice(&image.pixels[s..s + 3]);
        }
    }
    RgbImage {
        width: w,
        height: h,
        pixels,
    }
}

/// A stored image seen upright through its EXIF orientation, without turning it whole: only
/// what is cropped from it is turned.
#[derive(Debug, Clone, Copy)]
pub struct Oriented<'a> {
    stored: &'a RgbImage,
    orientation: u32,
}

impl<'a> Oriented<'a> {
    /// `stored` with EXIF `orientation` (anything but 2-8 means upright already).
    pub fn new(stored: &'a RgbImage, orientation: u32) -> Self {
        let orientation = if (2..=8).contains(&orientation) {
            orientation
        } else {
            1
        };
        Oriented {
            stored,
            orientation,
        }
    }

    /// An image that is upright already.
    pub fn upright(image: &'a RgbImage) -> Self {
        Self::new(image, 1)
    }

    /// Upright width.
    pub fn width(&self) -> usize {
        upright_size(self.stored.width, self.stored.height, self.orientation).0
    }

    /// Upright height.
    pub fn height(&self) -> usize {
        upright_size(self.stored.width, self.stored.height, self.orientation).1
    }

    /// The upright pixels of the upright rectangle `[left, right) x [top, bottom)`, clipped to
    /// the image: the same pixels as cropping the whole image turned upright.
    pub fn crop(&self, top: usize, right: usize, bottom: usize, left: usize) -> RgbImage {
        let (w, h) = (self.width(), self.height());
        let (right, bottom) = (right.min(w), bottom.min(h));
        let (left, top) = (left.min(right), top.min(bottom));
        if self.orientation == 1 || right == left || bottom == top {
            return self.stored.crop(top, right, bottom, left);
        }
        // The stored rectangle is spanned by the images of two opposite upright corners.
        let (sw, sh) = (self.stored.width, self.stored.height);
        let (x0, y0) = stored_position(left, top, sw, sh, self.orientation);
        let (x1, y1) = stored_position(right - 1, bottom - 1, sw, sh, self.orientation);
        let stored = self
            .stored
            .crop(y0.min(y1), x0.max(x1) + 1, y0.max(y1) + 1, x0.min(x1));
        orient(stored, self.orientation)
    }
}

impl Oriented<'_> {
    /// Copies upright row `y` from column `left` on into `out` (`out.len() / 3` pixels, which
    /// must lie inside the upright image; anything past its edge is left as it is).
    pub fn copy_row(&self, y: usize, left: usize, out: &mut [u8]) {
        let n = (out.len() / 3).min(self.width().saturating_sub(left));
        if y >= self.height() || n == 0 || !self.stored.is_consistent() {
            return;
        }
        let (sw, sh, o) = (self.stored.width, self.stored.height, self.orientation);
        let src = &self.stored.pixels;
        if o == 1 {
            let start = (y * sw + left) * 3;
            out[..n * 3].copy_from_slice(&src[start..start + n * 3]);
            return;
        }
        for (x, px) in out.chunks_exact_mut(3).take(n).enumerate() {
            let (sx, sy) = stored_position(left + x, y, sw, sh, o);
            let s = (sy * sw + sx) * 3;
            px.copy_from_slice(&src[s..s + 3]);
        }
    }
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
    encode_jpeg_quality(image, 95)
}

/// Encodes RGB pixels as a JPEG of `quality` (1 to 100).
pub fn encode_jpeg_quality(image: &RgbImage, quality: i32) -> Result<Vec<u8>, ImageError> {
    if !image.is_consistent() {
        return Err(ImageError::Corrupt(
            "pixel buffer does not match the size".into(),
        ));
    }
    let source = turbojpeg::Image {
        pixels: image.pixels.as_slice(),
        width: image.width,
        pitch: image.width * 3,
        height: image.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    turbojpeg::compress(source, quality.clamp(1, 100), turbojpeg::Subsamp::Sub2x2)
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
        let turned = orient(img.clone(), 6);
        assert_eq!((turned.width, turned.height), (1, 2));
        assert_eq!(turned.pixels, vec![255, 0, 0, 0, 255, 0]);
        let mirrored = orient(img.clone(), 2);
        assert_eq!(mirrored.pixels, vec![0, 255, 0, 255, 0, 0]);
        // 5 is a transpose, 7 a transverse: both swap the sides.
        let t = orient(img.clone(), 5);
        assert_eq!(
            (t.width, t.height, t.pixels.clone()),
            (1, 2, img.pixels.clone())
        );
        let t = orient(img.clone(), 7);
        assert_eq!((t.width, t.height), (1, 2));
        assert_eq!(t.pixels, vec![0, 255, 0, 255, 0, 0]);
        assert_eq!(orient(img.clone(), 1), img);
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

    /// The image crate's turns, as decoding did them before: `orient` must agree with them.
    fn turned_by_image_crate(img: &RgbImage, orientation: u32) -> RgbImage {
        use image::imageops::{flip_horizontal, flip_vertical, rotate180, rotate270, rotate90};
        let buf = img.clone().into_buffer().unwrap();
        let turned = match orientation {
            2 => flip_horizontal(&buf),
            3 => rotate180(&buf),
            4 => flip_vertical(&buf),
            5 => flip_horizontal(&rotate90(&buf)),
            6 => rotate90(&buf),
            7 => flip_horizontal(&rotate270(&buf)),
            8 => rotate270(&buf),
            _ => buf,
        };
        RgbImage::from_buffer(turned)
    }

    #[test]
    fn crops_of_an_oriented_image_are_crops_of_the_upright_image() {
        let stored = checker(7, 5);
        for o in 1..=8 {
            let upright = turned_by_image_crate(&stored, o);
            assert_eq!(orient(stored.clone(), o), upright, "orientation {o}");
            let view = Oriented::new(&stored, o);
            assert_eq!(
                (view.width(), view.height()),
                (upright.width, upright.height)
            );
            for (t, r, b, l) in [
                (0, 7, 7, 0),
                (1, 3, 4, 0),
                (2, 5, 3, 4),
                (0, 1, 1, 0),
                (3, 9, 9, 2),
            ] {
                assert_eq!(
                    view.crop(t, r, b, l),
                    upright.crop(t, r, b, l),
                    "orientation {o}, crop {t},{r},{b},{l}"
                );
            }
        }
    }

    #[test]
    fn rows_of_an_oriented_image_are_rows_of_the_upright_image() {
        let stored = checker(7, 5);
        for o in 1..=8 {
            let upright = orient(stored.clone(), o);
            let view = Oriented::new(&stored, o);
            for y in 0..upright.height {
                for left in 0..upright.width {
                    let n = upright.width - left;
                    let mut row = vec![0; n * 3];
                    view.copy_row(y, left, &mut row);
                    let want = &upright.pixels[(y * upright.width + left) * 3..][..n * 3];
                    assert_eq!(row, want, "orientation {o}, row {y} from {left}");
                }
            }
        }
    }

    #[test]
    fn fit_within_keeps_the_aspect_under_the_budget() {
        assert_eq!(fit_within(640, 480, 2_100_000), (640, 480));
        assert_eq!(fit_within(1920, 1080, 2_100_000), (1920, 1080));
        for (w, h, max) in [
            (5000, 5000, 2_100_000),
            (4000, 3000, 2_100_000),
            (3000, 4000, 1_000_000),
            (100_000, 3, 1000),
            (7, 9, 1),
        ] {
            let (tw, th) = fit_within(w, h, max);
            assert!(tw as u64 * th as u64 <= max, "{w}x{h} -> {tw}x{th}");
            assert!(tw >= 1 && th >= 1 && tw <= w && th <= h);
            let (a, b) = (w as f64 / h as f64, tw as f64 / th as f64);
            assert!(
                tw < 10 || th < 10 || (a / b - 1.0).abs() < 0.01,
                "{a} vs {b}"
            );
        }
        assert_eq!(fit_within(5000, 5000, 2_100_000), (1449, 1449));
    }

    #[test]
    fn area_downscaling_averages() {
        // A flat colour stays exactly that colour, whatever the ratio.
        let flat = RgbImage::from_raw(101, 77, [9, 200, 31].repeat(101 * 77)).unwrap();
        for max in [5000, 2000, 777, 12, 1] {
            let small = downscale(&flat, max);
            assert!((small.width * small.height) as u64 <= max);
            assert!(small.pixels.chunks(3).all(|p| p == [9, 200, 31]), "{max}");
        }
        // Halving averages each 2x2 block exactly.
        let img = checker(8, 6);
        let half = downscale_to(&img, 4, 3);
        for y in 0..3 {
            for x in 0..4 {
                for c in 0..3 {
                    let at = |xx: usize, yy: usize| img.pixels[(yy * 8 + xx) * 3 + c] as f32;
                    let mean = (at(2 * x, 2 * y)
                        + at(2 * x + 1, 2 * y)
                        + at(2 * x, 2 * y + 1)
                        + at(2 * x + 1, 2 * y + 1))
                        / 4.0;
                    assert_eq!(half.pixels[(y * 4 + x) * 3 + c], mean.round() as u8);
                }
            }
        }
        // A ratio that is not whole keeps the mean brightness.
        let big = checker(80, 50);
        let small = downscale_to(&big, 33, 21);
        let mean =
            |i: &RgbImage| i.pixels.iter().map(|&v| v as f64).sum::<f64>() / i.pixels.len() as f64;
        assert!(
            (mean(&big) - mean(&small)).abs() < 0.5,
            "{} vs {}",
            mean(&big),
            mean(&small)
        );
    }

    #[test]
    fn jpeg_dct_scaling_sizes() {
        // k/8 of each side, rounded up; the smallest still covering the target.
        assert_eq!(jpeg_scaled_size(5000, 5000, 1449, 1449), (1875, 1875));
        assert_eq!(jpeg_scaled_size(4000, 3000, 1673, 1254), (2000, 1500));
        assert_eq!(jpeg_scaled_size(1000, 800, 999, 799), (1000, 800));
        assert_eq!(jpeg_scaled_size(1000, 800, 100, 80), (125, 100));
    }

    #[test]
    fn downscaled_decoding_matches_decoding_then_downscaling() {
        let img = checker(300, 200);
        // PNG: the same rows through the same scaler, so the very same pixels.
        let png = png_bytes(image::DynamicImage::ImageRgb8(
            img.clone().into_buffer().unwrap(),
        ));
        let probe = probe(&png, DEFAULT_MAX_PIXELS).unwrap();
        assert_eq!(
            decode_downscaled(&png, &probe, 6000).unwrap(),
            downscale(&img, 6000)
        );
        assert_eq!(decode_downscaled(&png, &probe, 60_000).unwrap(), img);
        // JPEG: DCT scaling first, so close rather than equal.
        let jpeg = encode_jpeg(&img).unwrap();
        let probe = super::probe(&jpeg, DEFAULT_MAX_PIXELS).unwrap();
        let small = decode_downscaled(&jpeg, &probe, 6000).unwrap();
        let want = downscale(&decode(&jpeg, DEFAULT_MAX_PIXELS).unwrap(), 6000);
        assert_eq!((small.width, small.height), (want.width, want.height));
        let diff: u64 = small
            .pixels
            .iter()
            .zip(&want.pixels)
            .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
            .sum();
        assert!(diff / (small.pixels.len() as u64) < 4, "mean error {diff}");
    }

    #[test]
    fn cmyk_conversion_is_pillows() {
        // Stored (Adobe, inverted) values: c, m, y ink and k. No ink and no black is white;
        // full black is black; values computed with Pillow 9.4's cmyk2rgb on 255 - stored.
        let mut px = vec![
            255, 255, 255, 255, 0, 0, 0, 0, 200, 100, 50, 128, 255, 0, 128, 10,
        ];
        adobe_cmyk_to_rgb(&mut px);
        assert_eq!(px, vec![255, 255, 255, 0, 0, 0, 100, 50, 25, 10, 0, 5]);
    }

    /// A minimal PNG writer for what the image crate cannot write: Adam7-interlaced RGB.
    fn interlaced_png(img: &RgbImage) -> Vec<u8> {
        fn crc32(data: &[u8]) -> u32 {
            let mut crc = !0u32;
            for &b in data {
                crc ^= u32::from(b);
                for _ in 0..8 {
                    crc = if crc & 1 != 0 {
                        (crc >> 1) ^ 0xEDB8_8320
                    } else {
                        crc >> 1
                    };
                }
            }
            !crc
        }
        fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32(&body).to_be_bytes());
        }
        let (w, h) = (img.width, img.height);
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ] {
            if x0 >= w {
                continue;
            }
            for y in (y0..h).step_by(dy) {
                raw.push(0); // filter: none
                for x in (x0..w).step_by(dx) {
                    raw.extend_from_slice(&img.pixels[(y * w + x) * 3..(y * w + x) * 3 + 3]);
                }
            }
        }
        // zlib with stored deflate blocks.
        let mut z = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65535).collect();
        for (i, b) in blocks.iter().enumerate() {
            z.push(u8::from(i + 1 == blocks.len()));
            z.extend_from_slice(&(b.len() as u16).to_le_bytes());
            z.extend_from_slice(&(!(b.len() as u16)).to_le_bytes());
            z.extend_from_slice(b);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in &raw {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        z.extend_from_slice(&((b << 16) | a).to_be_bytes());
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = (w as u32).to_be_bytes().to_vec();
        ihdr.extend_from_slice(&(h as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 1]); // 8-bit RGB, interlaced
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &z);
        chunk(&mut out, b"IEND", &[]);
        out
    }

    #[test]
    fn interlaced_png_decodes_like_a_plain_one() {
        for (w, h) in [(37, 23), (1, 1), (3, 9), (64, 64)] {
            let img = checker(w, h);
            let png = interlaced_png(&img);
            assert_eq!(decode(&png, DEFAULT_MAX_PIXELS).unwrap(), img, "{w}x{h}");
            let probe = probe(&png, DEFAULT_MAX_PIXELS).unwrap();
            assert_eq!(
                decode_downscaled(&png, &probe, 100).unwrap(),
                downscale(&img, 100),
                "{w}x{h}"
            );
        }
        let cut = interlaced_png(&checker(64, 64));
        assert_eq!(
            decode(&cut[..cut.len() - 300], 10_000),
            Err(ImageError::Truncated)
        );
    }

    #[test]
    fn png_sixteen_bit_keeps_the_high_byte_and_palettes_expand() {
        let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(3, 2, |x, y| {
            image::Rgb([0x1280 + x as u16, 0xFFFF, (y as u16) << 8 | 0xFF])
        });
        let out = decode(&png_bytes(image::DynamicImage::ImageRgb16(rgb16)), 100).unwrap();
        assert_eq!(&out.pixels[..6], &[0x12, 0xFF, 0x00, 0x12, 0xFF, 0x00]);
        assert_eq!(&out.pixels[9..12], &[0x12, 0xFF, 0x01]);
        let la = image::GrayAlphaImage::from_pixel(2, 1, image::LumaA([33, 9]));
        let out = decode(&png_bytes(image::DynamicImage::ImageLumaA8(la)), 100).unwrap();
        assert_eq!(out.pixels, vec![33; 6]);
    }
}
