//! An MJPEG byte stream cut into JPEG images, incrementally and within a memory bound: what a
//! child program's standard output (`exec:`, libcamera, RTSP through FFmpeg), an HTTP
//! `multipart/x-mixed-replace` body and an MJPEG file or pipe (`frames:`) are read through.
//!
//! Contract:
//! - bytes go in as they arrive, in pieces of any size ([`MjpegScanner::push`]); every way of
//!   splitting a stream gives the same frames and the same counts;
//! - a frame is SOI (`FFD8`) to EOI (`FFD9`), walked by its structure, not by searching for
//!   `FFD9`: after SOI the marker segments are skipped by their lengths (so an EXIF thumbnail's
//!   own `FFD8`/`FFD9` inside APP1 neither ends nor restarts a frame); after SOS, in the
//!   entropy-coded data, `FF00` (a stuffed byte), `FFD0`-`FFD7` (restart markers) and fill `FF`s
//!   continue it, `FFD9` ends it, `FFD8` means it was cut short (a new frame begins there), and
//!   any other marker (a progressive JPEG's next DHT or SOS) is walked as a segment again;
//! - a frame without scan data, or with a byte where a marker must be, is dropped and counted as
//!   truncated; bytes between frames that are no frame are counted as garbage (unless
//!   [`MjpegScanner::expecting_gaps`]: multipart part headers are expected there);
//! - memory: the scanner keeps at most `max_frame_bytes` of the frame under way (its buffer never
//!   grows beyond that); a frame that would be larger is skipped to its end (EOI, or the next
//!   SOI in its scan data) without being kept, and counted as oversize. The frames one `push`
//!   returns are at most the bytes given to it.

use super::Skipped;

const SOI: u8 = 0xD8;
const EOI: u8 = 0xD9;
const SOS: u8 = 0xDA;
const TEM: u8 = 0x01;

/// Where the scanner is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between frames, looking for SOI; `ff`: the last byte was `FF`.
    Seeking { ff: bool },
    /// In a frame's header, where a marker (`FF xx`, after any fill `FF`s) must come next.
    Marker { ff: bool },
    /// The two length bytes of a marker segment (`high` once the first is read).
    Length { marker: u8, high: Option<u8> },
    /// The rest of a marker segment: `left` bytes.
    Segment { marker: u8, left: usize },
    /// Entropy-coded data after SOS; `ff`: the last byte was `FF`.
    Entropy { ff: bool },
}

/// Cuts an MJPEG byte stream into JPEG images (see the module doc).
#[derive(Debug)]
pub struct MjpegScanner {
    max_frame_bytes: usize,
    gaps_expected: bool,
    state: State,
    /// The frame under way (empty while `too_big`).
    frame: Vec<u8>,
    /// Bytes of the frame under way so far, kept or not.
    frame_len: usize,
    /// The frame under way is larger than `max_frame_bytes` and is being skipped.
    too_big: bool,
    /// Whether the frame under way has a marker after its SOI.
    has_segment: bool,
    /// Whether the frame under way has scan data (an SOS).
    has_scan: bool,
    /// The size of the last frame, to size the next one's buffer.
    last_len: usize,
    skipped: Skipped,
}

impl MjpegScanner {
    /// A scanner that keeps frames up to `max_frame_bytes` (SOI to EOI inclusive).
    pub fn new(max_frame_bytes: usize) -> MjpegScanner {
        MjpegScanner {
            max_frame_bytes,
            gaps_expected: false,
            state: State::Seeking { ff: false },
            frame: Vec::new(),
            frame_len: 0,
            too_big: false,
            has_segment: false,
            has_scan: false,
            last_len: 0,
            skipped: Skipped::default(),
        }
    }

    /// Bytes between frames are expected (multipart part headers): not counted as garbage.
    pub fn expecting_gaps(mut self) -> MjpegScanner {
        self.gaps_expected = true;
        self
    }

    /// Feeds the next bytes; appends each complete JPEG (SOI..EOI) to `frames`.
    pub fn push(&mut self, mut bytes: &[u8], frames: &mut Vec<Vec<u8>>) {
        while !bytes.is_empty() {
            let used = self.step(bytes, frames);
            bytes = &bytes[used..];
        }
    }

    /// What was skipped since the last call.
    pub fn take_skipped(&mut self) -> Skipped {
        std::mem::take(&mut self.skipped)
    }

    /// Whether a frame is under way (its SOI was seen and not yet its end).
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Seeking { .. })
    }

    /// Consumes what it can of `bytes` (possibly nothing, when the state changes and the byte
    /// must be looked at again: `Seeking` always consumes, so `push` always progresses).
    fn step(&mut self, bytes: &[u8], frames: &mut Vec<Vec<u8>>) -> usize {
        let b = bytes[0];
        match self.state {
            State::Seeking { ff: true } => {
                match b {
                    SOI => self.start_frame(),
                    0xFF => self.garbage(1),
                    _ => {
                        self.garbage(2);
                        self.state = State::Seeking { ff: false };
                    }
                }
                1
            }
            State::Seeking { ff: false } => match bytes.iter().position(|&x| x == 0xFF) {
                Some(at) => {
                    self.garbage(at);
                    self.state = State::Seeking { ff: true };
                    at + 1
                }
                None => {
                    self.garbage(bytes.len());
                    bytes.len()
                }
            },
            State::Marker { ff: false } => {
                if b == 0xFF {
                    self.keep(&bytes[..1]);
                    self.state = State::Marker { ff: true };
                    1
                } else {
                    self.broken(self.frame_len);
                    0
                }
            }
            State::Marker { ff: true } => match b {
                0xFF => {
                    self.keep(&bytes[..1]);
                    1
                }
                SOI => {
                    // The `FF` kept belongs to the new frame's SOI.
                    self.broken(self.frame_len - 1);
                    self.start_frame();
                    1
                }
                EOI => {
                    self.keep(&bytes[..1]);
                    self.end_frame(frames);
                    1
                }
                0xD0..=0xD7 | TEM => {
                    self.keep(&bytes[..1]);
                    self.has_segment = true;
                    self.state = State::Marker { ff: false };
                    1
                }
                0x00 => {
                    self.broken(self.frame_len);
                    0
                }
                marker => {
                    self.keep(&bytes[..1]);
                    self.has_segment = true;
                    self.state = State::Length { marker, high: None };
                    1
                }
            },
            State::Length { marker, high: None } => {
                self.keep(&bytes[..1]);
                self.state = State::Length {
                    marker,
                    high: Some(b),
                };
                1
            }
            State::Length {
                marker,
                high: Some(high),
            } => {
                self.keep(&bytes[..1]);
                let length = usize::from(high) << 8 | usize::from(b);
                if length < 2 {
                    self.broken(self.frame_len);
                } else {
                    self.segment(marker, length - 2);
                }
                1
            }
            State::Segment { marker, left } => {
                let n = left.min(bytes.len());
                self.keep(&bytes[..n]);
                self.segment(marker, left - n);
                n
            }
            State::Entropy { ff: false } => match bytes.iter().position(|&x| x == 0xFF) {
                Some(at) => {
                    self.keep(&bytes[..=at]);
                    self.state = State::Entropy { ff: true };
                    at + 1
                }
                None => {
                    self.keep(bytes);
                    bytes.len()
                }
            },
            State::Entropy { ff: true } => {
                match b {
                    0xFF => self.keep(&bytes[..1]),
                    0x00 | 0xD0..=0xD7 | TEM => {
                        self.keep(&bytes[..1]);
                        self.state = State::Entropy { ff: false };
                    }
                    EOI => {
                        self.keep(&bytes[..1]);
                        self.end_frame(frames);
                    }
                    SOI => {
                        self.broken(self.frame_len - 1);
                        self.start_frame();
                    }
                    marker => {
                        self.keep(&bytes[..1]);
                        self.state = State::Length { marker, high: None };
                    }
                }
                1
            }
        }
    }

    /// `left` bytes of a `marker` segment remain; when none, the next state.
    fn segment(&mut self, marker: u8, left: usize) {
        self.state = if left > 0 {
            State::Segment { marker, left }
        } else if marker == SOS {
            self.has_scan = true;
            State::Entropy { ff: false }
        } else {
            State::Marker { ff: false }
        };
    }

    fn garbage(&mut self, n: usize) {
        if !self.gaps_expected {
            self.skipped.garbage_bytes += n as u64;
        }
    }

    /// Starts a frame at an SOI just seen.
    fn start_frame(&mut self) {
        self.frame = Vec::with_capacity(self.last_len.clamp(2, self.max_frame_bytes.max(2)));
        self.frame_len = 0;
        self.too_big = false;
        self.has_segment = false;
        self.has_scan = false;
        self.keep(&[0xFF, SOI]);
        self.state = State::Marker { ff: false };
    }

    /// Adds `bytes` to the frame under way, unless that makes it too big (then it is dropped).
    fn keep(&mut self, bytes: &[u8]) {
        self.frame_len = self.frame_len.saturating_add(bytes.len());
        if self.too_big {
            return;
        }
        if self.frame_len > self.max_frame_bytes {
            self.too_big = true;
            self.frame = Vec::new();
            return;
        }
        let need = self.frame.len() + bytes.len();
        if need > self.frame.capacity() {
            // Grow as a Vec would, but never beyond the cap.
            let target = (self.frame.capacity() * 2)
                .max(need)
                .min(self.max_frame_bytes);
            self.frame.reserve_exact(target - self.frame.len());
        }
        self.frame.extend_from_slice(bytes);
    }

    /// The frame under way ended at its EOI.
    fn end_frame(&mut self, frames: &mut Vec<Vec<u8>>) {
        if self.too_big {
            self.skipped.oversize += 1;
        } else if !self.has_scan {
            self.skipped.truncated += 1;
        } else {
            self.last_len = self.frame.len();
            frames.push(std::mem::take(&mut self.frame));
        }
        self.reset();
    }

    /// The frame under way is broken off after `len` of its bytes.
    fn broken(&mut self, len: usize) {
        if self.too_big {
            self.skipped.oversize += 1;
        } else if self.has_segment {
            self.skipped.truncated += 1;
        } else {
            // Only an SOI (and fill): no frame at all.
            self.garbage(len);
        }
        self.reset();
    }

    fn reset(&mut self) {
        self.frame = Vec::new();
        self.frame_len = 0;
        self.too_big = false;
        self.state = State::Seeking { ff: false };
    }
}

/// A photo of `../shared/faces` (or `FACES_DIR`), for tests.
#[cfg(test)]
pub(crate) fn photo(name: &str) -> Vec<u8> {
    let faces = std::env::var_os("FACES_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/faces")
        });
    let path = faces.join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real photos of several sizes (the smallest BBT crops to a 215 kB one).
    fn photos() -> Vec<Vec<u8>> {
        [
            "strangers/stuart_5.jpg",
            "known/penny/penny_3.jpg",
            "known/obama/obama_1.jpg",
            "known/obama/obama_2.jpg",
            "probe/sheldon/sheldon_4.jpg",
        ]
        .iter()
        .map(|p| photo(p))
        .collect()
    }

    fn scan(scanner: &mut MjpegScanner, stream: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        scanner.push(stream, &mut frames);
        frames
    }

    /// `jpeg` with an EXIF APP1 segment after its SOI holding `thumbnail` as EXIF stores one
    /// (IFD1's JPEGInterchangeFormat and its length), as cameras and phones write them.
    fn with_exif_thumbnail(jpeg: &[u8], thumbnail: &[u8]) -> Vec<u8> {
        let mut tiff = b"II*\0".to_vec();
        tiff.extend(8u32.to_le_bytes()); // IFD0 at 8
        tiff.extend(0u16.to_le_bytes()); // no entries
        tiff.extend(14u32.to_le_bytes()); // IFD1 at 14
        tiff.extend(2u16.to_le_bytes());
        let thumb_at = 14 + 2 + 2 * 12 + 4;
        for (tag, value) in [(0x0201u16, thumb_at), (0x0202, thumbnail.len() as u32)] {
            tiff.extend(tag.to_le_bytes());
            tiff.extend(4u16.to_le_bytes()); // LONG
            tiff.extend(1u32.to_le_bytes());
            tiff.extend(value.to_le_bytes());
        }
        tiff.extend(0u32.to_le_bytes()); // no further IFD
        tiff.extend(thumbnail);
        let body = [&b"Exif\0\0"[..], &tiff].concat();
        let length = u16::try_from(body.len() + 2).unwrap();
        [
            &jpeg[..2],
            &[0xFF, 0xE1],
            &length.to_be_bytes(),
            &body,
            &jpeg[2..],
        ]
        .concat()
    }

    #[test]
    fn real_photos_back_to_back_come_out_whole() {
        let photos = photos();
        let stream = photos.concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &stream), photos);
        assert_eq!(s.take_skipped(), Skipped::default());
        assert!(!s.in_frame());
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let a = photo("strangers/stuart_5.jpg");
        let b = photo("strangers/stuart_4.jpg");
        let garbage = b"\xFF\xFF\x00junk\xFF\xD8\x00\xFF";
        let stream = [&a[..], &garbage[..], &b[..], &a[..2000], &a[..]].concat();
        let mut whole = MjpegScanner::new(1 << 20);
        let want = scan(&mut whole, &stream);
        let want_skipped = whole.take_skipped();
        assert_eq!(want, vec![a.clone(), b.clone(), a.clone()]);
        assert_eq!(want_skipped.truncated, 1);
        assert_eq!(want_skipped.garbage_bytes, garbage.len() as u64);
        // Two pieces, at every point.
        for at in 0..=stream.len() {
            let mut s = MjpegScanner::new(1 << 20);
            let mut frames = Vec::new();
            s.push(&stream[..at], &mut frames);
            s.push(&stream[at..], &mut frames);
            assert_eq!(frames, want, "split at {at}");
            assert_eq!(s.take_skipped(), want_skipped, "split at {at}");
        }
        // Byte by byte.
        let mut s = MjpegScanner::new(1 << 20);
        let mut frames = Vec::new();
        for byte in &stream {
            s.push(std::slice::from_ref(byte), &mut frames);
        }
        assert_eq!(frames, want);
        assert_eq!(s.take_skipped(), want_skipped);
    }

    #[test]
    fn garbage_between_frames_is_counted_unless_gaps_are_expected() {
        let a = photo("known/penny/penny_3.jpg");
        let part = b"\r\n--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 4265\r\n\r\n";
        let stream = [&part[..], &a, &part[..], &a, b"\r\n"].concat();
        let mut counted = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut counted, &stream), vec![a.clone(), a.clone()]);
        let skipped = counted.take_skipped();
        assert_eq!(skipped.garbage_bytes, (2 * part.len() + 2) as u64);
        assert_eq!(counted.take_skipped(), Skipped::default(), "taken once");
        let mut multipart = MjpegScanner::new(1 << 20).expecting_gaps();
        assert_eq!(scan(&mut multipart, &stream), vec![a.clone(), a]);
        assert_eq!(multipart.take_skipped(), Skipped::default());
    }

    #[test]
    fn an_exif_thumbnail_neither_ends_nor_restarts_a_frame() {
        let thumbnail = photo("strangers/stuart_5.jpg");
        let jpeg = with_exif_thumbnail(&photo("known/obama/obama_2.jpg"), &thumbnail);
        // The thumbnail really is a whole JPEG inside the frame (the naive split stops there).
        assert!(jpeg[2..]
            .windows(thumbnail.len())
            .any(|w| w == &thumbnail[..]));
        assert!(crate::image_io::decode(&jpeg, 1 << 24).is_ok());
        let other = photo("known/penny/penny_3.jpg");
        let stream = [&jpeg[..], &other, &jpeg].concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &stream), vec![jpeg.clone(), other, jpeg]);
        assert_eq!(s.take_skipped(), Skipped::default());
    }

    #[test]
    fn a_frame_cut_short_is_counted_and_the_next_one_kept() {
        let a = photo("known/obama/obama_1.jpg");
        let b = photo("known/penny/penny_3.jpg");
        // Cut in the scan data; cut in a header segment (5 bytes into obama_1's third DHT, at
        // 295: the rest of its length swallows the next frame's start, which is lost too); and
        // right after SOI (two bytes of garbage).
        let stream = [&a[..a.len() / 2], &b, &a[..300], &b, &a[..2], &b].concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &stream), vec![b.clone(), b.clone()]);
        let skipped = s.take_skipped();
        assert_eq!((skipped.truncated, skipped.oversize), (2, 0), "{skipped:?}");
        assert!(skipped.garbage_bytes >= 2, "{skipped:?}");
        // A byte where a marker must be, and a segment length below 2.
        let broken = [&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 1, 2, 0x42][..], &b].concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &broken), vec![b.clone()]);
        assert_eq!(s.take_skipped().truncated, 1);
        let short = [&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01][..], &b].concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &short), vec![b.clone()]);
        assert_eq!(s.take_skipped().truncated, 1);
        // Headers but no scan data.
        let no_scan = [&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0xFF, 0xD9][..], &b].concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(scan(&mut s, &no_scan), vec![b]);
        assert_eq!(s.take_skipped().truncated, 1);
    }

    #[test]
    fn oversize_frames_are_skipped_without_being_kept() {
        let big = photo("known/obama/obama_1.jpg");
        let small = photo("known/penny/penny_3.jpg");
        let cap = 100_000;
        assert!(big.len() > cap && small.len() < cap);
        let stream = [&small[..], &big, &small, &big[..big.len() / 2], &small].concat();
        let mut s = MjpegScanner::new(cap);
        let mut frames = Vec::new();
        for chunk in stream.chunks(4096) {
            s.push(chunk, &mut frames);
            assert!(s.frame.capacity() <= cap, "{}", s.frame.capacity());
        }
        assert_eq!(frames, vec![small.clone(), small.clone(), small.clone()]);
        assert_eq!(
            s.take_skipped(),
            Skipped {
                oversize: 2,
                truncated: 0,
                garbage_bytes: 0
            }
        );
        // Exactly at the cap is kept; one byte less is not.
        let mut at_cap = MjpegScanner::new(small.len());
        assert_eq!(scan(&mut at_cap, &small), vec![small.clone()]);
        let mut below = MjpegScanner::new(small.len() - 1);
        assert!(scan(&mut below, &small).is_empty());
        assert_eq!(below.take_skipped().oversize, 1);
    }

    #[test]
    fn progressive_scans_restart_markers_and_fill_bytes_continue_a_frame() {
        // SOI, DQT, SOS (entropy data with stuffing, RST, fill), DHT between scans, SOS, EOI.
        let frame: Vec<u8> = [
            &[0xFF, 0xD8, 0xFF, 0xFF, 0xDB, 0x00, 0x04, 0xFF, 0xD9][..],
            &[0xFF, 0xDA, 0x00, 0x03, 0xD8],
            &[1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4, 0xFF, 0xFF, 0xD7, 5],
            &[0xFF, 0xC4, 0x00, 0x04, 0xFF, 0xD8],
            &[0xFF, 0xDA, 0x00, 0x02, 6, 7, 0xFF, 0xFF, 0xD9],
        ]
        .concat();
        let mut s = MjpegScanner::new(1 << 20);
        assert_eq!(
            scan(&mut s, &[&frame[..], &frame].concat()),
            vec![frame.clone(), frame]
        );
        assert_eq!(s.take_skipped(), Skipped::default());
    }

    #[test]
    fn pure_garbage_is_counted_and_keeps_nothing() {
        let mut s = MjpegScanner::new(1000);
        let mut frames = Vec::new();
        let noise: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        s.push(&noise, &mut frames);
        assert!(frames.is_empty());
        let skipped = s.take_skipped();
        assert!(skipped.garbage_bytes > 0, "{skipped:?}");
        assert!(s.frame.capacity() <= 1000);
    }
}
