//! Copies of a model that keeps scratch, lent to one thread at a time.

use std::sync::{Condvar, Mutex};

/// A poisoned lock only means another thread panicked while holding it; the pools stay whole.
use crate::locks::{self, lock};

/// Models that keep scratch buffers while they work (dlib's detector keeps its feature pyramid,
/// the network its activations), lent to one thread at a time.
///
/// Contract: at most `max` copies ever exist, `max` being the engine's pool threads, and only
/// those threads borrow, one copy each at a time: so each core holds at most one working set,
/// and a borrower that finds none idle while `max` exist waits for one (never for long: no
/// borrower waits on anything else while it holds one). Returned copies are reused last-in
/// first-out, so a box serving one client at a time keeps using (and keeping in memory) one.
pub(super) struct Lender<T> {
    state: Mutex<LenderState<T>>,
    returned: Condvar,
    max: usize,
}

struct LenderState<T> {
    idle: Vec<T>,
    made: usize,
}

impl<T> Lender<T> {
    pub(super) fn new(first: T, max: usize) -> Self {
        Lender {
            state: Mutex::new(LenderState {
                idle: vec![first],
                made: 1,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        }
    }

    /// An idle copy; else, below `max`, a new one copied (by `copy`) from the next copy that
    /// comes back, so no spare is ever kept just to copy from; else the next one back.
    pub(super) fn borrow(&self, copy: impl FnOnce(&T) -> T) -> Loan<'_, T> {
        let mut state = lock(&self.state);
        loop {
            if let Some(item) = state.idle.pop() {
                return Loan::new(self, item);
            }
            if state.made < self.max {
                state.made += 1;
                let source = loop {
                    match state.idle.pop() {
                        Some(item) => break item,
                        None => state = locks::wait(&self.returned, state),
                    }
                };
                drop(state);
                let item = copy(&source);
                self.give_back(source);
                return Loan::new(self, item);
            }
            state = locks::wait(&self.returned, state);
        }
    }

    /// A copy of its own for the caller, made from a borrowed one: it counts against no limit
    /// and is gone when the caller drops it.
    pub(super) fn spare(&self, copy: impl Fn(&T) -> T) -> T {
        let loan = self.borrow(&copy);
        copy(&loan)
    }

    fn give_back(&self, item: T) {
        lock(&self.state).idle.push(item);
        self.returned.notify_one();
    }

    /// How many copies exist (idle or lent).
    pub(super) fn made(&self) -> usize {
        lock(&self.state).made
    }
}

/// A borrowed copy, given back when dropped.
pub(super) struct Loan<'a, T> {
    lender: &'a Lender<T>,
    item: Option<T>,
}

impl<'a, T> Loan<'a, T> {
    fn new(lender: &'a Lender<T>, item: T) -> Self {
        Loan {
            lender,
            item: Some(item),
        }
    }
}

impl<T> std::ops::Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Present from construction until drop.
        self.item.as_ref().expect("lent item present until drop")
    }
}

impl<T> std::ops::DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Present from construction until drop.
        self.item.as_mut().expect("lent item present until drop")
    }
}

impl<T> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.lender.give_back(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_lender_reuses_the_last_copy_and_never_makes_more_than_its_max() {
        let lender = Lender::new(0u32, 3);
        for _ in 0..5 {
            drop(lender.borrow(|_| unreachable!("one borrower at a time needs no copy")));
        }
        assert_eq!(lender.made(), 1);

        // Eight threads borrowing at once, each holding its copy a moment: at most three exist,
        // all copied from the first (value 0), and every borrower is served.
        let served = std::sync::atomic::AtomicUsize::new(0);
        let held = std::sync::atomic::AtomicUsize::new(0);
        let most = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let item = lender.borrow(|source| *source);
                        assert_eq!(*item, 0);
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        held.fetch_sub(1, Ordering::SeqCst);
                        served.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert_eq!(served.load(Ordering::SeqCst), 160);
        assert!(lender.made() <= 3, "{} copies", lender.made());
        assert!(most.load(Ordering::SeqCst) <= 3);
        let made = lender.made();
        assert_eq!(lock(&lender.state).idle.len(), made, "every copy came back");
    }

    #[test]
    fn a_spare_is_the_callers_own_and_leaves_the_lent_copies_as_they_were() {
        let lender = Lender::new(7u32, 2);
        let spare = lender.spare(|source| *source + 1);
        assert_eq!(spare, 8, "copied from a lent copy");
        assert_eq!(lender.made(), 1, "a spare is not one of the lent copies");
        assert_eq!(
            lock(&lender.state).idle,
            vec![7],
            "the copy it came from is back"
        );
    }
}
