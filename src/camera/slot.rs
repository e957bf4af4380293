//! Newest frame wins: a single-slot hand-off between capture and processing. A frame not
//! taken before the next one arrives is dropped (and counted), never queued, so latency stays
//! one frame however slow recognition is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::locks::lock;

/// A slot holding the newest value only: a put replaces what was not taken yet (counted as
/// dropped), a take waits for a value.
pub struct LatestSlot<T> {
    state: Mutex<(Option<T>, bool)>,
    ready: Condvar,
    dropped: AtomicU64,
}

impl<T> Default for LatestSlot<T> {
    fn default() -> Self {
        LatestSlot {
            state: Mutex::new((None, false)),
            ready: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }
}

impl<T> LatestSlot<T> {
    /// Puts `item` in the slot, replacing (and counting as dropped) one not yet taken.
    pub fn put(&self, item: T) {
        let mut state = lock(&self.state);
        if state.0.replace(item).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    /// Takes the newest item, waiting up to `timeout`; `None` on timeout or once closed.
    pub fn take(&self, timeout: Duration) -> Option<T> {
        let state = lock(&self.state);
        let (mut state, _) = self
            .ready
            .wait_timeout_while(state, timeout, |s| s.0.is_none() && !s.1)
            .unwrap_or_else(|p| p.into_inner());
        state.0.take()
    }

    /// Wakes the taker for good (shutdown).
    pub fn close(&self) {
        lock(&self.state).1 = true;
        self.ready.notify_all();
    }

    /// Values replaced before anyone took them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_stale_ones_are_counted() {
        let slot = LatestSlot::default();
        slot.put(1);
        slot.put(2);
        slot.put(3);
        assert_eq!(slot.take(Duration::from_millis(1)), Some(3));
        assert_eq!(slot.dropped(), 2);
        assert_eq!(slot.take(Duration::from_millis(1)), None);
    }

    #[test]
    fn take_waits_for_a_frame_from_another_thread() {
        let slot = std::sync::Arc::new(LatestSlot::default());
        let putter = slot.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            putter.put("frame");
        });
        assert_eq!(slot.take(Duration::from_secs(10)), Some("frame"));
        t.join().unwrap();
        slot.close();
        assert_eq!(slot.take(Duration::from_secs(10)), None);
    }
}
