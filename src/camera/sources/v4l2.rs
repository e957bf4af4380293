//! The V4L2 driver as a [`FrameSource`]: open the device, negotiate MJPEG (else YUYV) at the
//! asked size and rate, stream through mmap buffers. Deliberately thin: everything after
//! `next_frame` is the code the replay tests run.

use std::path::{Path, PathBuf};

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{FrameSource, SourceError};
use crate::camera::frame::RawFrame;

/// Mapped buffers: enough to keep the driver busy while one frame is copied out.
const BUFFERS: u32 = 4;

/// A camera that delivers nothing for this long (a wedged driver or USB hub) is treated as gone
/// and reopened, rather than blocking the capture thread, and with it shutdown, for ever.
const FRAME_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A V4L2 camera (`/dev/videoN`), streaming MJPEG or YUYV by memory-mapped buffers.
pub struct V4l2Source {
    path: PathBuf,
    stream: Stream<'static>,
    fourcc: FourCC,
    width: u32,
    height: u32,
}

fn unavailable(path: &Path, what: &str, e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(format!("{}: {what}: {e}", path.display()))
}

impl V4l2Source {
    /// Opens the camera at `path` for frames of about `width` x `height` at `fps` (the driver may
    /// choose the nearest it offers).
    pub fn open(path: &Path, width: u32, height: u32, fps: u32) -> Result<V4l2Source, SourceError> {
        let device = Device::with_path(path).map_err(|e| unavailable(path, "cannot open", e))?;
        let mut format = device
            .format()
            .map_err(|e| unavailable(path, "cannot read the format", e))?;
        format.width = width;
        format.height = height;
        // MJPEG costs the USB bus and this board the least; YUYV is what every webcam has.
        let mut chosen = None;
        for fourcc in [FourCC::new(b"MJPG"), FourCC::new(b"YUYV")] {
            format.fourcc = fourcc;
            if let Ok(set) = device.set_format(&format) {
                if set.fourcc == fourcc {
                    chosen = Some(set);
                    break;
                }
            }
        }
        let format = chosen
            .ok_or_else(|| unavailable(path, "no MJPEG or YUYV format", "unsupported camera"))?;
        if let Err(e) = device.set_params(&Parameters::with_fps(fps.max(1))) {
            log::warn!("camera {}: cannot set {fps} fps: {e}", path.display());
        }
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, BUFFERS)
            .map_err(|e| unavailable(path, "cannot start streaming", e))?;
        stream.set_timeout(FRAME_TIMEOUT);
        Ok(V4l2Source {
            path: path.to_path_buf(),
            stream,
            fourcc: format.fourcc,
            width: format.width,
            height: format.height,
        })
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<RawFrame, SourceError> {
        // An error here is a device that went away (USB unplugged) or broke: reopen it.
        let (buffer, meta) = self.stream.next().map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                let waited = format!("no frame for {} s", FRAME_TIMEOUT.as_secs());
                unavailable(&self.path, "capture stalled", waited)
            } else {
                unavailable(&self.path, "capture failed", e)
            }
        })?;
        let data = buffer[..(meta.bytesused as usize).min(buffer.len())].to_vec();
        Ok(if self.fourcc == FourCC::new(b"MJPG") {
            RawFrame::Mjpeg(data)
        } else {
            RawFrame::Yuyv {
                width: self.width as usize,
                height: self.height as usize,
                data,
            }
        })
    }

    fn describe(&self) -> String {
        format!(
            "{} {} {}x{}",
            self.path.display(),
            self.fourcc,
            self.width,
            self.height
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_unavailable_not_fatal() {
        let err = V4l2Source::open(Path::new("/dev/video-does-not-exist"), 640, 480, 15).err();
        assert!(
            matches!(err, Some(SourceError::Unavailable(ref m)) if m.contains("video-does-not-exist")),
            "{err:?}"
        );
    }
}
