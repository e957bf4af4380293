//! `frames:PATH`: a folder of JPEGs, one image, or an MJPEG file replayed at a set rate as a
//! camera would deliver them, so everything after the driver runs the same on real frames in
//! tests and demos.
//!
//! An MJPEG file (`.mjpeg`/`.mjpg`), and any path that is not a regular file (a FIFO,
//! `/dev/stdin`), is read as it comes through an [`MjpegScanner`]: never whole, within the frame
//! cap and a read buffer, and never blocking longer than [`POLL`] (a FIFO is opened without
//! waiting for its writer). When it ends it is opened again if looping (a FIFO then waits for
//! its next writer), else the source has `Ended`.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::mjpeg::MjpegScanner;
use super::{FrameSource, Skipped, SourceError, SourceOptions, POLL};
use crate::bulk_enroll::is_photo;
use crate::camera::frame::RawFrame;

/// Replays frames from disk at `fps`: a folder of `.jpg`/`.jpeg`/`.png` files (read as each
/// frame is due, so files may change between loops), one image, or an MJPEG file or pipe.
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
    Mjpeg(Box<MjpegFile>),
}

/// An MJPEG file or pipe, read incrementally.
struct MjpegFile {
    file: File,
    scanner: MjpegScanner,
    max_frame_bytes: usize,
    /// Frames cut from the last read, not yet replayed.
    ready: VecDeque<Vec<u8>>,
    /// Frames replayed since the file was (re)opened.
    this_pass: u64,
    skipped: Skipped,
    buf: Vec<u8>,
}

/// Bytes read from an MJPEG file at a time.
const READ_BUFFER: usize = 64 * 1024;

/// What one read of an MJPEG file gave.
enum Read1 {
    Frame(Vec<u8>),
    End,
    Waiting,
}

impl MjpegFile {
    fn open(path: &Path, max_frame_bytes: usize) -> io::Result<MjpegFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(MjpegFile {
            file,
            scanner: MjpegScanner::new(max_frame_bytes),
            max_frame_bytes,
            ready: VecDeque::new(),
            this_pass: 0,
            skipped: Skipped::default(),
            buf: vec![0; READ_BUFFER],
        })
    }

    /// The next frame, reading until `deadline` at the latest.
    fn next(&mut self, deadline: Instant) -> io::Result<Read1> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                self.this_pass += 1;
                return Ok(Read1::Frame(frame));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = libc::c_int::try_from(left.as_millis()).unwrap_or(libc::c_int::MAX);
            let ready = crate::subprocess::poll_readable(self.file.as_raw_fd(), ms);
            if ready == 0 {
                return Ok(Read1::Waiting);
            }
            match self.file.read(&mut self.buf) {
                Ok(0) => {
                    self.skipped.add(self.scanner.take_skipped());
                    return Ok(Read1::End);
                }
                Ok(n) => {
                    let mut frames = Vec::new();
                    self.scanner.push(&self.buf[..n], &mut frames);
                    self.skipped.add(self.scanner.take_skipped());
                    self.ready.extend(frames);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    if Instant::now() >= deadline {
                        return Ok(Read1::Waiting);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Whether `path` is read as an MJPEG stream: an `.mjpeg`/`.mjpg` file, or anything that is not
/// a regular file (a FIFO, a character device, `/dev/stdin`).
fn is_stream(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".mjpeg")
        || name.ends_with(".mjpg")
        || std::fs::metadata(path).is_ok_and(|m| {
            let t = m.file_type();
            t.is_fifo() || t.is_char_device() || t.is_socket()
        })
}

impl ReplaySource {
    /// Opens `path`; `Unavailable` when it is missing or holds no frame (it may appear later).
    /// MJPEG frames above the default cap are skipped.
    pub fn open(path: &Path, fps: f64, repeat: bool) -> Result<ReplaySource, SourceError> {
        ReplaySource::open_capped(path, fps, repeat, SourceOptions::default().max_frame_bytes)
    }

    /// [`ReplaySource::open`] skipping MJPEG frames above `max_frame_bytes`.
    pub fn open_capped(
        path: &Path,
        fps: f64,
        repeat: bool,
        max_frame_bytes: usize,
    ) -> Result<ReplaySource, SourceError> {
        let unavailable =
            |why: String| SourceError::Unavailable(format!("{}: {why}", path.display()));
        let frames = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| unavailable(e.to_string()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_photo(p))
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(unavailable("no frames".into()));
            }
            Frames::Files(files)
        } else if is_stream(path) {
            Frames::Mjpeg(Box::new(
                MjpegFile::open(path, max_frame_bytes).map_err(|e| unavailable(e.to_string()))?,
            ))
        } else {
            let bytes = std::fs::read(path).map_err(|e| unavailable(e.to_string()))?;
            if bytes.is_empty() {
                return Err(unavailable("no frames".into()));
            }
            Frames::Stream(vec![bytes])
        };
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

    /// The next frame of an MJPEG file or pipe.
    fn next_streamed(&mut self, deadline: Instant) -> Result<Vec<u8>, SourceError> {
        let unavailable =
            |why: String| SourceError::Unavailable(format!("{}: {why}", self.path.display()));
        let Frames::Mjpeg(file) = &mut self.frames else {
            return Err(SourceError::Ended);
        };
        match file
            .next(deadline)
            .map_err(|e| unavailable(e.to_string()))?
        {
            Read1::Frame(frame) => Ok(frame),
            Read1::Waiting => Err(SourceError::NoFrameYet),
            Read1::End if !self.repeat => Err(SourceError::Ended),
            Read1::End if file.this_pass == 0 => Err(unavailable("no frames".into())),
            Read1::End => {
                let mut again = MjpegFile::open(&self.path, file.max_frame_bytes)
                    .map_err(|e| unavailable(e.to_string()))?;
                again.skipped = file.skipped;
                **file = again;
                Err(SourceError::NoFrameYet)
            }
        }
    }
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        let now = Instant::now();
        let deadline = now + POLL;
        if self.due > deadline {
            std::thread::sleep(POLL);
            return Err(SourceError::NoFrameYet);
        }
        if self.due > now {
            std::thread::sleep(self.due - now);
        }
        let frame = if matches!(self.frames, Frames::Mjpeg(_)) {
            self.next_streamed(deadline)?
        } else {
            let len = match &self.frames {
                Frames::Files(f) => f.len(),
                Frames::Stream(s) => s.len(),
                Frames::Mjpeg(_) => 0,
            };
            if self.next >= len {
                if !self.repeat || len == 0 {
                    return Err(SourceError::Ended);
                }
                self.next = 0;
            }
            match &self.frames {
                Frames::Files(files) => std::fs::read(&files[self.next]).map_err(|e| {
                    SourceError::Unavailable(format!("{}: {e}", files[self.next].display()))
                })?,
                Frames::Stream(s) => s[self.next].clone(),
                Frames::Mjpeg(_) => return Err(SourceError::Ended),
            }
        };
        self.next += 1;
        self.due = self.due.max(now) + self.interval;
        Ok(RawFrame::Mjpeg(frame))
    }

    fn describe(&self) -> String {
        let what = match &self.frames {
            Frames::Files(f) => format!("{} frames", f.len()),
            Frames::Stream(s) => format!("{} frames", s.len()),
            Frames::Mjpeg(_) => "MJPEG".to_string(),
        };
        format!(
            "replay of {} ({what} at {:.1} fps{})",
            self.path.display(),
            1.0 / self.interval.as_secs_f64(),
            if self.repeat { ", looping" } else { "" }
        )
    }

    fn skipped(&mut self) -> Skipped {
        match &mut self.frames {
            Frames::Mjpeg(file) => std::mem::take(&mut file.skipped),
            _ => Skipped::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_mjpeg_file_is_read_as_it_comes_and_reopened_to_loop() {
        use crate::camera::sources::mjpeg::photo;
        let a = photo("known/penny/penny_3.jpg");
        let b = photo("known/obama/obama_1.jpg");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.MJPG");
        std::fs::write(&path, [&a[..], b"junk", &b, &b[..1000], &a].concat()).unwrap();
        let mut once = ReplaySource::open_capped(&path, 1000.0, false, 100_000).unwrap();
        assert!(once.describe().contains("MJPEG"), "{}", once.describe());
        assert_eq!(once.next_frame(), Ok(RawFrame::Mjpeg(a.clone())));
        // b is above the cap, its copy is cut short by a's SOI; then a.
        assert_eq!(once.next_frame(), Ok(RawFrame::Mjpeg(a.clone())));
        assert_eq!(once.next_frame(), Err(SourceError::Ended));
        assert_eq!(
            once.skipped(),
            Skipped {
                oversize: 1,
                truncated: 1,
                garbage_bytes: 4
            }
        );
        let mut looping = ReplaySource::open(&path, 1000.0, true).unwrap();
        let mut got = Vec::new();
        while got.len() < 6 {
            match looping.next_frame() {
                Ok(RawFrame::Mjpeg(f)) => got.push(f),
                Err(SourceError::NoFrameYet) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, [&a, &b, &a, &a, &b, &a].map(|f| f.clone()));
        assert_eq!(looping.skipped().truncated, 2);
        // A file without a frame is no source to spin on.
        let empty = dir.path().join("empty.mjpeg");
        std::fs::write(&empty, b"nothing here").unwrap();
        let mut nothing = ReplaySource::open(&empty, 1000.0, true).unwrap();
        assert!(matches!(
            nothing.next_frame(),
            Err(SourceError::Unavailable(why)) if why.contains("no frames")
        ));
    }

    #[test]
    fn a_fifo_is_opened_without_waiting_and_read_as_its_writer_writes() {
        use crate::camera::sources::mjpeg::photo;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("camera");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path that lives for the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let started = Instant::now();
        let mut source = ReplaySource::open(&fifo, 1000.0, false).unwrap();
        // No writer yet: the source answers within about POLL instead of blocking.
        assert_eq!(source.next_frame(), Err(SourceError::NoFrameYet));
        assert!(started.elapsed() < POLL * 3);
        let a = photo("strangers/stuart_5.jpg");
        let b = photo("strangers/stuart_4.jpg");
        let stream = [&a[..], &b, &a].concat();
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
            for piece in stream.chunks(1500) {
                w.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let mut got = Vec::new();
        loop {
            match source.next_frame() {
                Ok(RawFrame::Mjpeg(f)) => got.push(f),
                Err(SourceError::NoFrameYet) => {}
                Err(SourceError::Ended) => break,
                other => panic!("{other:?}"),
            }
        }
        writer.join().unwrap();
        assert_eq!(got, vec![a.clone(), b, a]);
    }
}
