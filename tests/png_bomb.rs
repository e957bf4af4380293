//! A small PNG whose ICC profile (or text) chunk inflates to over a gigabyte decodes quickly
//! without allocating it. One test in this binary, so the process's peak RSS is its own.

use std::time::{Duration, Instant};

use face_attendance::image_io::{self, ImageError};

/// Writes `bits` (LSB first) and Huffman codes (MSB first) as deflate wants them.
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn code(&mut self, code: u32, len: u32) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }
}

/// A zlib stream of `1 + 258 * reps` zero bytes at ~1030:1: one dynamic Huffman block where
/// "length 258, distance 1" costs two bits. Returns the stream and the inflated length.
fn zlib_bomb(reps: usize) -> (Vec<u8>, u64) {
    let mut w = Bits {
        out: Vec::with_capacity(reps / 4 + 64),
        acc: 0,
        n: 0,
    };
    w.put(1, 1); // BFINAL
    w.put(2, 2); // dynamic Huffman
    w.put(29, 5); // HLIT: 286 literal/length codes
    w.put(1, 5); // HDIST: 2 distance codes
    w.put(14, 4); // HCLEN: 18 code length codes
                  // Code length code lengths, in deflate's order: 18 -> 1 bit, 1 and 2 -> 2 bits.
    for sym in [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1] {
        w.put(
            match sym {
                18 => 1,
                1 | 2 => 2,
                _ => 0,
            },
            3,
        );
    }
    // Canonical codes: 18 = 0, 1 = 10, 2 = 11.
    let len2 = |w: &mut Bits| w.code(0b11, 2);
    let len1 = |w: &mut Bits| w.code(0b10, 2);
    let zeros = |w: &mut Bits, n: u32| {
        w.code(0, 1);
        w.put(n - 11, 7);
    };
    len2(&mut w); // literal 0: 2 bits
    zeros(&mut w, 138); // literals 1..=138
    zeros(&mut w, 117); // literals 139..=255
    len2(&mut w); // end of block: 2 bits
    zeros(&mut w, 28); // lengths 257..=284 unused
    len1(&mut w); // length 258 (symbol 285): 1 bit
    len1(&mut w); // distance codes 0 and 1: 1 bit each
    len1(&mut w);
    // Literal/length codes: 285 = 0, literal 0 = 10, end = 11. Distance 0 (= 1 back) = 0.
    w.code(0b10, 2);
    for _ in 0..reps {
        w.code(0, 1);
        w.code(0, 1);
    }
    w.code(0b11, 2);
    if w.n > 0 {
        w.out.push(w.acc as u8);
    }
    let inflated = 1 + 258 * reps as u64;
    // Adler-32 of zeros: a stays 1, b adds 1 per byte.
    let adler = (((inflated % 65521) as u32) << 16) | 1;
    let mut z = vec![0x78, 0x01];
    z.extend_from_slice(&w.out);
    z.extend_from_slice(&adler.to_be_bytes());
    (z, inflated)
}

/// A 64x48 RGB PNG with an iCCP chunk and a zTXt chunk, each holding `zlib`.
fn png_with(zlib: &[u8], pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, 64, 48);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        let mut iccp = b"bomb\0\0".to_vec(); // profile name, compression method 0
        iccp.extend_from_slice(zlib);
        writer
            .write_chunk(png::chunk::ChunkType(*b"iCCP"), &iccp)
            .unwrap();
        let mut ztxt = b"Comment\0\0".to_vec(); // keyword, compression method 0
        ztxt.extend_from_slice(zlib);
        writer
            .write_chunk(png::chunk::ChunkType(*b"zTXt"), &ztxt)
            .unwrap();
        writer.write_image_data(pixels).unwrap();
    }
    out
}

/// Peak resident memory of this process so far, in bytes (VmHWM).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kb * 1024
}

#[test]
fn an_icc_profile_bomb_costs_neither_memory_nor_time() {
    let pixels: Vec<u8> = (0..64 * 48 * 3).map(|i| (i * 7 % 251) as u8).collect();

    // The generator is right: a small bomb's profile comes out whole through a decoder that
    // does inflate it (the png crate with its default settings).
    let (small, small_len) = zlib_bomb(1000);
    let png = png_with(&small, &pixels);
    let reader = png::Decoder::new(std::io::Cursor::new(&png))
        .read_info()
        .unwrap();
    let profile = reader.info().icc_profile.as_ref().expect("icc profile");
    assert_eq!(profile.len() as u64, small_len);
    assert!(profile.iter().all(|&b| b == 0));

    // The real one: ~1 MB of file, 1.08 GB of profile (and as much text).
    let (zlib, inflated) = zlib_bomb(4_200_000);
    assert!(inflated >= 1 << 30, "{inflated}");
    let png = png_with(&zlib, &pixels);
    assert!(png.len() < 2_200_000, "{} bytes", png.len());
    drop(zlib);

    let before = peak_rss();
    let started = Instant::now();
    let image = image_io::decode(&png, image_io::DEFAULT_MAX_PIXELS).unwrap();
    let probe = image_io::probe(&png, image_io::DEFAULT_MAX_PIXELS).unwrap();
    let small = image_io::decode_downscaled(&png, &probe, 1000).unwrap();
    let elapsed = started.elapsed();
    let grown = peak_rss().saturating_sub(before);
    eprintln!(
        "PNG of {} bytes with a {inflated}-byte ICC profile: decoded in {elapsed:?}, peak RSS +{} kB",
        png.len(),
        grown / 1024
    );
    assert_eq!((image.width, image.height), (64, 48));
    assert_eq!(image.pixels, pixels);
    assert!(small.width * small.height <= 1000);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(grown < 100 << 20, "peak RSS grew by {} MB", grown >> 20);

    // A pixel limit below the header's size refuses it before anything else.
    assert!(matches!(
        image_io::decode(&png, 1000),
        Err(ImageError::TooLarge {
            width: 64,
            height: 48,
            ..
        })
    ));
}
