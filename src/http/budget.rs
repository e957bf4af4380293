//! Budgets: how much of the box one kind of work may hold at once, so that no client (with or
//! without a key) can take memory, threads or time from the others.
//!
//! Contract:
//! - A request with a body takes one of `max_uploads` upload places *before* a byte of the body
//!   is read, and keeps it until it is answered; without a free place it is refused at once with
//!   503 and `Retry-After`. Each place holds at most `MAX_UPLOAD_BYTES` of body.
//! - A gallery import (`POST /gallery/import`) takes the one import place instead, on the same
//!   terms (a second one at once is refused with 503 and `Retry-After` before its body is read);
//!   its body goes to an unlinked file in the data folder, never into memory, and the import
//!   reads the archive from there (memory: the rows it holds, not its size).
//! - Decoding an image and the face work on it take one of `max_images` image places, waiting at
//!   most `queue_wait` for one (then 503 and `Retry-After`); an image above `DETECT_MAX_PIXELS`
//!   (from its header) also takes the one large-image place. The engine bounds what one image may
//!   cost (`FACE_MAX_PIXELS`, `DETECT_MAX_PIXELS`), so together they cost at most one large image
//!   and `max_images - 1` others: the memory budget of docs/src/operations/limits.md.
//! - Light routes (`/health`, `/config`, `/docs`, ...) take no place: the HTTP workers answer them
//!   at once and hand everything else to the places above, so they never wait behind an upload.
//! - Connections are bounded by the vendored tiny_http before a thread is spent on them
//!   (`HTTP_MAX_CONNECTIONS`, per client address and overall), sized from the open-files limit.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A fixed number of places for one kind of work. Cheap to clone (shared).
#[derive(Clone)]
pub struct Places {
    inner: Arc<PlacesInner>,
}

struct PlacesInner {
    max: usize,
    state: Mutex<PlacesState>,
    freed: Condvar,
}

#[derive(Default)]
struct PlacesState {
    busy: usize,
    waiting: usize,
    refused: u64,
}

/// One taken place, given back when dropped.
pub struct Place {
    places: Places,
}

impl Places {
    /// `max` places, none taken.
    pub fn new(max: usize) -> Places {
        Places {
            inner: Arc::new(PlacesInner {
                max: max.max(1),
                state: Mutex::default(),
                freed: Condvar::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PlacesState> {
        // The counters stay meaningful if a holder panicked.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A place now, or `None` (counted as refused).
    pub fn try_take(&self) -> Option<Place> {
        self.take_within(Duration::ZERO)
    }

    /// A place within `wait`, or `None` (counted as refused).
    pub fn take_within(&self, wait: Duration) -> Option<Place> {
        let deadline = Instant::now() + wait;
        let mut state = self.state();
        state.waiting += 1;
        while state.busy >= self.inner.max {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                state.waiting -= 1;
                state.refused += 1;
                return None;
            }
            state = self
                .inner
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        state.waiting -= 1;
        state.busy += 1;
        Some(Place {
            places: self.clone(),
        })
    }

    /// Places in all.
    pub fn max(&self) -> usize {
        self.inner.max
    }

    /// Places taken now.
    pub fn busy(&self) -> usize {
        self.state().busy
    }

    /// Places taken, their number, requests waiting for one, requests refused so far: what
    /// `/health` and `/metrics` show.
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        let s = self.state();
        [
            ("busy", s.busy as u64),
            ("max", self.inner.max as u64),
            ("waiting", s.waiting as u64),
            ("refused", s.refused),
        ]
    }

    /// `{"busy":1,"max":2,"waiting":0,"refused":0}` for `/health`.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.places.state();
        state.busy -= 1;
        drop(state);
        self.places.inner.freed.notify_one();
    }
}

/// The budgets of one server.
#[derive(Clone)]
pub struct Budget {
    /// Requests whose body is being received or handled.
    pub uploads: Places,
    /// Gallery imports being received or handled: one at a time.
    pub imports: Places,
    /// Images being decoded and analyzed.
    pub images: Places,
    /// Images above `DETECT_MAX_PIXELS` among them: one at a time.
    pub large_images: Places,
    /// Large answers (the docs, the OpenAPI document) written to clients that may read slowly.
    pub downloads: Places,
    /// How long an upload waits for an image place before it is refused.
    pub queue_wait: Duration,
}

/// Large answers written off the HTTP workers at once; past that a worker writes them itself.
const MAX_DOWNLOADS: usize = 8;

impl Budget {
    /// Places for `max_uploads` uploads and `max_images` images at once (one of them large),
    /// waiting at most `queue_wait` for an image place.
    pub fn new(max_uploads: usize, max_images: usize, queue_wait: Duration) -> Budget {
        Budget {
            uploads: Places::new(max_uploads),
            imports: Places::new(1),
            images: Places::new(max_images),
            large_images: Places::new(1),
            downloads: Places::new(MAX_DOWNLOADS),
            queue_wait,
        }
    }
}

/// The process's limit on open files (soft, hard), raised to `wanted` when the hard limit allows:
/// systemd and most shells start services at 1024.
// rlim_t is u64 on 64-bit Linux and u32 on armv7: the casts are needed there only.
#[allow(clippy::unnecessary_cast)]
pub fn raise_open_files_limit(wanted: u64) -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let target = (wanted as libc::rlim_t).min(limit.rlim_max);
    if target > limit.rlim_cur {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass; a soft limit at most the hard one is
        // always allowed.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = target;
        }
    }
    Ok((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Descriptors kept for everything but client connections: the listener, data files, the
/// webhook, the camera, logging.
const RESERVED_FDS: u64 = 64;
/// Most connections at once when the open-files limit allows more.
pub const MAX_CONNECTIONS_DEFAULT: usize = 512;

/// Connections the open-files limit `soft` allows: one descriptor each, after the reserve.
pub fn connections_for_fd_limit(soft: u64) -> usize {
    let usable = soft.saturating_sub(RESERVED_FDS);
    (usable as usize).clamp(1, MAX_CONNECTIONS_DEFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let places = Places::new(2);
        let a = places.try_take().unwrap();
        let _b = places.try_take().unwrap();
        assert!(places.try_take().is_none());
        assert_eq!(places.to_json()["refused"], 1);
        drop(a);
        assert!(places.try_take().is_some());
        assert_eq!(places.busy(), 1);
    }

    #[test]
    fn a_waiter_gets_a_place_freed_within_its_wait_and_not_after() {
        let places = Places::new(1);
        let held = places.try_take().unwrap();
        let other = places.clone();
        let waiter =
            std::thread::spawn(move || other.take_within(Duration::from_secs(10)).is_some());
        std::thread::sleep(Duration::from_millis(50));
        drop(held);
        assert!(waiter.join().unwrap());
        let _held = places.try_take().unwrap();
        let started = Instant::now();
        assert!(places.take_within(Duration::from_millis(100)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn connections_follow_the_open_files_limit() {
        assert_eq!(connections_for_fd_limit(1024), MAX_CONNECTIONS_DEFAULT);
        assert_eq!(connections_for_fd_limit(300), 236);
        assert_eq!(connections_for_fd_limit(65_536), MAX_CONNECTIONS_DEFAULT);
        assert_eq!(connections_for_fd_limit(10), 1);
    }

    #[test]
    fn the_open_files_limit_is_read_and_never_lowered() {
        let (soft, hard) = raise_open_files_limit(0).unwrap();
        assert!(soft <= hard && soft > 0);
        let (again, _) = raise_open_files_limit(soft).unwrap();
        assert_eq!(again, soft);
    }
}
