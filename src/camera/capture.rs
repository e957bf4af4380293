//! Frames for enrollment from the box's own camera (`POST /people/{id}/capture`): a request
//! waits, bounded, for the next frame that shows exactly one face; the processing thread hands
//! such frames over only while somebody waits, so without a request this costs one atomic load
//! per frame.
//!
//! Contract: each waiter gets frames processed after it started waiting, never one it already
//! had; a waiter that times out gets `None` and leaves nothing behind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::image_io::RgbImage;
use crate::locks::lock;

/// Camera frames offered for `POST /people/{id}/capture`: the capture thread offers each frame
/// while a request waits, the request takes the next ones after the last it saw.
#[derive(Default)]
pub struct Captures {
    waiting: AtomicUsize,
    /// The newest frame with one face, and its number (frames handed over are numbered).
    latest: Mutex<(u64, Option<RgbImage>)>,
    offered: Condvar,
}

impl Captures {
    /// Called for every processed frame with the number of faces found in it.
    pub fn offer(&self, image: &RgbImage, faces: usize) {
        if faces != 1 || self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut latest = lock(&self.latest);
        latest.0 += 1;
        latest.1 = Some(image.clone());
        self.offered.notify_all();
    }

    /// The next frame with exactly one face offered after frame `after` (0: any new one), and
    /// its number; `None` when none came before `deadline`.
    pub fn next_after(&self, after: u64, deadline: Instant) -> Option<(u64, RgbImage)> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut latest = lock(&self.latest);
        let start = if after == 0 { latest.0 } else { after };
        let got = loop {
            if let Some(image) = latest.1.as_ref().filter(|_| latest.0 > start) {
                break Some((latest.0, image.clone()));
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            latest = crate::locks::wait_timeout(&self.offered, latest, deadline - now);
        };
        drop(latest);
        if self.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            // Nobody waits: let the frame go.
            lock(&self.latest).1 = None;
        }
        got
    }
}

/// The longest a capture request may wait for its frames.
pub const MAX_CAPTURE_WAIT: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn image(v: u8) -> RgbImage {
        RgbImage::from_raw(2, 2, vec![v; 12]).unwrap()
    }

    #[test]
    fn frames_with_one_face_reach_a_waiter_and_nothing_is_kept_without_one() {
        let c = Arc::new(Captures::default());
        c.offer(&image(1), 1);
        assert!(lock(&c.latest).1.is_none(), "nobody waits: nothing kept");
        let soon = || Instant::now() + Duration::from_millis(50);
        assert!(c.next_after(0, soon()).is_none(), "times out");

        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let (n, first) = c.next_after(0, deadline).unwrap();
                let (m, second) = c.next_after(n, deadline).unwrap();
                assert!(m > n);
                (first.pixels[0], second.pixels[0])
            })
        };
        // Offer until the waiter has two frames; frames with 0 or 2 faces never count.
        let mut v = 10;
        while !waiter.is_finished() {
            c.offer(&image(0), 2);
            c.offer(&image(0), 0);
            c.offer(&image(v), 1);
            v += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        let (a, b) = waiter.join().unwrap();
        assert!(a >= 10 && b > a, "{a} {b}");
        assert!(lock(&c.latest).1.is_none(), "released once nobody waits");
    }
}
