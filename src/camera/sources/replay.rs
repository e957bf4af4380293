//! `frames:PATH`: a folder of JPEGs, one image, or an MJPEG file replayed at a set rate as a
//! camera would deliver them, so everything after the driver runs the same on real frames in
//! tests and demos.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{FrameSource, SourceError};
use crate::bulk_enroll::is_photo;
use crate::camera::frame::RawFrame;

/// Replays frames from disk at `fps`: a folder of `.jpg`/`.jpeg`/`.png` files (read as each
/// frame is due, so files may change between loops), one image, or an `.mjpeg`/`.mjpg` file.
pub struct ReplaySource {
    path: PathBuf,
    frames: Frames,
    next: usize,
    interval: Duration,
    due: Instant,
    repeat: bool,
}

enum Frames {
    Files(Vec<PathBuf>),
    Stream(Vec<Vec<u8>>),
}

impl Frames {
    fn len(&self) -> usize {
        match self {
            Frames::Files(f) => f.len(),
            Frames::Stream(s) => s.len(),
        }
    }
}

/// The JPEG images in an MJPEG byte stream (SOI ... EOI, back to back).
pub fn split_mjpeg(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut start = None;
    let mut i = 0;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (0xFF, 0xD8) if start.is_none() => start = Some(i),
            (0xFF, 0xD9) => {
                if let Some(s) = start.take() {
                    frames.push(bytes[s..i + 2].to_vec());
                }
            }
            _ => {}
        }
        i += 1;
    }
    frames
}

impl ReplaySource {
    /// Opens `path`; `Unavailable` when it is missing or holds no frame (it may appear later).
    pub fn open(path: &Path, fps: f64, repeat: bool) -> Result<ReplaySource, SourceError> {
        let unavailable =
            |why: String| SourceError::Unavailable(format!("{}: {why}", path.display()));
        let frames = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| unavailable(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_photo(p))
                .collect();
            files.sort();
            Frames::Files(files)
        } else {
            let bytes = std::fs::read(path).map_err(|e| unavailable(e.to_string()))?;
            let name = path.to_string_lossy().to_ascii_lowercase();
            if name.ends_with(".mjpeg") || name.ends_with(".mjpg") {
                Frames::Stream(split_mjpeg(&bytes))
            } else {
                Frames::Stream(vec![bytes])
            }
        };
        if frames.len() == 0 {
            return Err(unavailable("no frames".into()));
        }
        Ok(ReplaySource::new(path.to_path_buf(), frames, fps, repeat))
    }

    /// Replays JPEG images held in memory (`name` is for `describe`); benchmarks use it.
    pub fn from_jpegs(name: &str, jpegs: Vec<Vec<u8>>, fps: f64, repeat: bool) -> ReplaySource {
        ReplaySource::new(name.into(), Frames::Stream(jpegs), fps, repeat)
    }

    fn new(path: PathBuf, frames: Frames, fps: f64, repeat: bool) -> ReplaySource {
        let fps = if fps.is_finite() && fps > 0.0 {
            fps
        } else {
            10.0
        };
        ReplaySource {
            path,
            frames,
            next: 0,
            interval: Duration::from_secs_f64(1.0 / fps),
            due: Instant::now(),
            repeat,
        }
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        if self.next >= self.frames.len() {
            if !self.repeat || self.frames.len() == 0 {
                return Err(SourceError::Ended);
            }
            self.next = 0;
        }
        let now = Instant::now();
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
        self.due = self.due.max(now) + self.interval;
        let i = self.next;
        self.next += 1;
        match &self.frames {
            Frames::Stream(s) => Ok(RawFrame::Mjpeg(s[i].clone())),
            Frames::Files(files) => std::fs::read(&files[i])
                .map(RawFrame::Mjpeg)
                .map_err(|e| SourceError::Unavailable(format!("{}: {e}", files[i].display()))),
        }
    }

    fn describe(&self) -> String {
        format!(
            "replay of {} ({} frames at {:.1} fps{})",
            self.path.display(),
            self.frames.len(),
            1.0 / self.interval.as_secs_f64(),
            if self.repeat { ", looping" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mjpeg_streams_split_into_jpegs() {
        let a = [0xFF, 0xD8, 1, 2, 0xFF, 0xD9];
        let b = [0xFF, 0xD8, 3, 0xFF, 0xD9];
        let stream: Vec<u8> = [&a[..], &[0, 0], &b[..], &[0xFF, 0xD8, 9]].concat();
        assert_eq!(split_mjpeg(&stream), vec![a.to_vec(), b.to_vec()]);
    }

    #[test]
    fn folder_replay_in_order_then_ends_or_loops() {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in [("b.jpg", b"2"), ("a.jpg", b"1"), ("notes.txt", b"x")] {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        let mut once = ReplaySource::open(dir.path(), 1000.0, false).unwrap();
        assert_eq!(once.next_frame(), Ok(RawFrame::Mjpeg(b"1".to_vec())));
        assert_eq!(once.next_frame(), Ok(RawFrame::Mjpeg(b"2".to_vec())));
        assert_eq!(once.next_frame(), Err(SourceError::Ended));
        let mut looping = ReplaySource::open(dir.path(), 1000.0, true).unwrap();
        for want in [b"1", b"2", b"1"] {
            assert_eq!(looping.next_frame(), Ok(RawFrame::Mjpeg(want.to_vec())));
        }
        assert!(matches!(
            ReplaySource::open(&dir.path().join("missing"), 10.0, false),
            Err(SourceError::Unavailable(_))
        ));
    }
}
