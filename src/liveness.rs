//! Is every long-running loop of the service still turning? Each watched thread holds a
//! [`Heartbeat`] and beats it once per loop iteration; [`Liveness::check`] fails when a thread has
//! not beaten for longer than a limit (wedged: a deadlock, a hung device, a runaway computation)
//! or ended without saying it was done (a panic, a fatal error). `serve` pets systemd's watchdog
//! only while the check passes, so systemd restarts a wedged service.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use thiserror::Error;

/// Why the service is not alive.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Stall {
    /// A thread has not beaten for too long.
    #[error("thread {name} has not made progress for {} s", .stuck_for.as_secs())]
    Stuck {
        /// The thread's name.
        name: String,
        /// Since its last beat.
        stuck_for: Duration,
    },
    /// A thread ended without saying it was done.
    #[error("thread {name} has ended unexpectedly")]
    Ended {
        /// The thread's name.
        name: String,
    },
}

const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const DIED: u8 = 2;

struct Beat {
    name: String,
    /// Milliseconds since [`epoch`] of the last beat (monotonic: wall-clock jumps do not count).
    last_ms: AtomicU64,
    phase: AtomicU8,
}

/// A monotonic origin shared by all heartbeats.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// The watched threads of one component (the HTTP workers, the camera loop).
#[derive(Clone, Default)]
pub struct Liveness {
    beats: Arc<Mutex<Vec<Arc<Beat>>>>,
}

impl Liveness {
    /// Registers a thread loop named `name`; it counts as alive from now on.
    pub fn watch(&self, name: impl Into<String>) -> Heartbeat {
        let beat = Arc::new(Beat {
            name: name.into(),
            last_ms: AtomicU64::new(now_ms()),
            phase: AtomicU8::new(RUNNING),
        });
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(beat.clone());
        Heartbeat {
            beat,
            finished: false,
        }
    }

    /// Ok when every watched thread is done or has beaten within `stall_limit`.
    pub fn check(&self, stall_limit: Duration) -> Result<(), Stall> {
        let now = now_ms();
        for beat in self.beats.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            match beat.phase.load(Ordering::Acquire) {
                FINISHED => {}
                DIED => {
                    return Err(Stall::Ended {
                        name: beat.name.clone(),
                    })
                }
                _ => {
                    let age = Duration::from_millis(
                        now.saturating_sub(beat.last_ms.load(Ordering::Relaxed)),
                    );
                    if age > stall_limit {
                        return Err(Stall::Stuck {
                            name: beat.name.clone(),
                            stuck_for: age,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

/// Held by a watched thread. Dropped without [`Heartbeat::finish`] (an early return, a panic
/// unwinding the thread) it marks the thread as ended unexpectedly.
pub struct Heartbeat {
    beat: Arc<Beat>,
    finished: bool,
}

impl Heartbeat {
    /// "Still turning": call once per loop iteration.
    pub fn beat(&self) {
        self.beat.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The thread is ending as it should (asked to stop, or its work is over).
    pub fn finish(mut self) {
        self.finished = true;
        self.beat.phase.store(FINISHED, Ordering::Release);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !self.finished {
            self.beat.phase.store(DIED, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_millis(150);

    #[test]
    fn beating_threads_are_alive_and_a_wedged_one_is_not() {
        let liveness = Liveness::default();
        let a = liveness.watch("http-0");
        let b = liveness.watch("http-1");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(50));
            a.beat();
            b.beat();
        }
        assert_eq!(liveness.check(LIMIT), Ok(()));
        // http-1 is now busy on something that never returns; http-0 keeps turning.
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(50));
            a.beat();
        }
        match liveness.check(LIMIT) {
            Err(Stall::Stuck { name, stuck_for }) => {
                assert_eq!(name, "http-1");
                assert!(stuck_for > LIMIT, "{stuck_for:?}");
            }
            other => panic!("expected http-1 stuck, got {other:?}"),
        }
        // It comes back: alive again.
        b.beat();
        assert_eq!(liveness.check(LIMIT), Ok(()));
    }

    #[test]
    fn a_thread_that_finishes_is_fine_and_one_that_dies_is_not() {
        let liveness = Liveness::default();
        let done = liveness.watch("camera-capture");
        done.finish();
        std::thread::sleep(LIMIT * 2);
        assert_eq!(
            liveness.check(LIMIT),
            Ok(()),
            "finished threads need no beats"
        );

        let watched = liveness.watch("http-0");
        let crashed = std::thread::spawn(move || {
            let _beat = watched;
            panic!("a bug outside the request guard");
        });
        assert!(crashed.join().is_err());
        assert_eq!(
            liveness.check(LIMIT),
            Err(Stall::Ended {
                name: "http-0".into()
            })
        );
    }
}
