//! Bounds per publisher and the messages that wait.
//!
//! Each signing box has two buckets ([`Buckets`]): people per hour and encodings per hour, each
//! holding at most an hour's worth and refilled continuously. A message that finds its
//! publisher's buckets short waits ([`Waiting`]) and is applied as they refill, in the order
//! messages arrived: a legitimate large import reaches every box, later; a stolen box cannot
//! flood the gallery. Messages also wait while this box's clock is not set or its own key is
//! not trusted yet. Waiting is bounded in number ([`super::Policy::max_waiting`]) and bytes
//! ([`super::policy::MAX_WAITING_BYTES`]); over either, a message is refused and counted. Only
//! the newest message of a topic waits (as the broker retains only the newest), and a message
//! for a person with one waiting waits behind it, so that a person's messages keep their order.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use super::topics::Kind;

/// Most publishers whose buckets are remembered (a bucket forgotten is full again).
const MAX_PUBLISHERS: usize = 1_000;

/// A bucket of `capacity` tokens refilled at `capacity` per hour.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The buckets of every publisher.
#[derive(Debug)]
pub(super) struct Buckets {
    people_per_hour: f64,
    encodings_per_hour: f64,
    by_publisher: HashMap<String, (Bucket, Bucket)>,
}

impl Buckets {
    pub(super) fn new(people_per_hour: u32, encodings_per_hour: u32) -> Buckets {
        Buckets {
            people_per_hour: f64::from(people_per_hour),
            encodings_per_hour: f64::from(encodings_per_hour),
            by_publisher: HashMap::new(),
        }
    }

    /// Takes one person and `encodings` from `publisher`'s buckets at `now` when both hold
    /// enough; `false` (nothing taken) when not. A message larger than a whole bucket is let
    /// through once that bucket is full, so that it cannot wait for ever.
    pub(super) fn take(&mut self, publisher: &str, encodings: usize, now: Instant) -> bool {
        if !self.by_publisher.contains_key(publisher) && self.by_publisher.len() >= MAX_PUBLISHERS {
            self.by_publisher.clear();
        }
        let (people_per_hour, encodings_per_hour) = (self.people_per_hour, self.encodings_per_hour);
        let full = |capacity: f64| Bucket {
            tokens: capacity,
            at: now,
        };
        let (people, codes) = self
            .by_publisher
            .entry(publisher.to_string())
            .or_insert_with(|| (full(people_per_hour), full(encodings_per_hour)));
        refill(people, people_per_hour, now);
        refill(codes, encodings_per_hour, now);
        let need = (encodings as f64).min(encodings_per_hour);
        if people.tokens < 1.0 || codes.tokens < need {
            return false;
        }
        people.tokens -= 1.0;
        codes.tokens -= need;
        true
    }
}

fn refill(bucket: &mut Bucket, per_hour: f64, now: Instant) {
    let hours = now.saturating_duration_since(bucket.at).as_secs_f64() / 3600.0;
    bucket.tokens = (bucket.tokens + hours * per_hour).min(per_hour);
    bucket.at = now;
}

/// A message waiting, as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Parked {
    pub(super) kind: Kind,
    pub(super) topic_id: String,
    pub(super) payload: Vec<u8>,
}

/// Why a message could not wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// The messages waiting, in the order they arrived, the newest of each topic only.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    next: u64,
    by_order: BTreeMap<u64, Parked>,
    by_topic: HashMap<(bool, String), u64>,
    bytes: usize,
}

impl Waiting {
    /// How many wait.
    pub(super) fn len(&self) -> usize {
        self.by_order.len()
    }

    /// Whether a message of the person `topic_id` (either topic) waits.
    pub(super) fn has_person(&self, topic_id: &str) -> bool {
        [true, false]
            .iter()
            .any(|k| self.by_topic.contains_key(&(*k, topic_id.to_string())))
    }

    /// Parks a message: it replaces the one of its topic waiting, if any, and goes to the end.
    /// [`Full`] when `max` messages or `max_bytes` would be exceeded.
    pub(super) fn park(
        &mut self,
        parked: Parked,
        max: usize,
        max_bytes: usize,
    ) -> Result<(), Full> {
        let key = (parked.kind == Kind::Person, parked.topic_id.clone());
        let replaced = self
            .by_topic
            .get(&key)
            .and_then(|n| self.by_order.get(n))
            .map_or(0, |p| p.payload.len());
        let count = self.by_order.len() - usize::from(self.by_topic.contains_key(&key));
        if count >= max || self.bytes - replaced + parked.payload.len() > max_bytes {
            return Err(Full);
        }
        if let Some(old) = self.by_topic.remove(&key) {
            self.by_order.remove(&old);
        }
        self.bytes = self.bytes - replaced + parked.payload.len();
        self.by_topic.insert(key, self.next);
        self.by_order.insert(self.next, parked);
        self.next += 1;
        Ok(())
    }

    /// Takes every waiting message out, in order (they are parked again if they still must
    /// wait).
    pub(super) fn drain(&mut self) -> Vec<Parked> {
        self.by_topic.clear();
        self.bytes = 0;
        std::mem::take(&mut self.by_order).into_values().collect()
    }

    /// The ids waiting, for a person's topic id (used by tests and `/health`).
    #[cfg(test)]
    pub(super) fn ids(&self) -> Vec<String> {
        self.by_order.values().map(|p| p.topic_id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_publisher_gets_an_hour_s_worth_then_what_refills() {
        let t0 = Instant::now();
        let mut b = Buckets::new(3, 10);
        assert!(b.take("a", 4, t0));
        assert!(b.take("a", 4, t0));
        // Two encodings left: a message of four waits.
        assert!(!b.take("a", 4, t0));
        // Another publisher has buckets of its own.
        assert!(b.take("b", 10, t0));
        // 20 minutes: one person and 3.3 encodings back.
        let later = t0 + Duration::from_secs(20 * 60);
        assert!(!b.take("a", 6, later));
        assert!(b.take("a", 5, later));
        assert!(b.take("a", 0, later));
        assert!(!b.take("a", 0, later));
        // A message larger than the bucket passes once it is full, not before.
        let mut b = Buckets::new(10, 10);
        assert!(b.take("a", 256, t0));
        assert!(!b.take("a", 256, t0 + Duration::from_secs(1800)));
        assert!(b.take("a", 256, t0 + Duration::from_secs(7200)));
    }

    fn parked(kind: Kind, id: &str, bytes: usize) -> Parked {
        Parked {
            kind,
            topic_id: id.into(),
            payload: vec![b'x'; bytes],
        }
    }

    #[test]
    fn only_the_newest_of_a_topic_waits_and_the_bounds_hold() {
        let mut w = Waiting::default();
        w.park(parked(Kind::Person, "p", 10), 3, 100).unwrap();
        w.park(parked(Kind::Deleted, "p", 10), 3, 100).unwrap();
        w.park(parked(Kind::Person, "q", 10), 3, 100).unwrap();
        assert_eq!(w.park(parked(Kind::Person, "r", 10), 3, 100), Err(Full));
        // The newest of p's person topic replaces the older one and goes last.
        w.park(parked(Kind::Person, "p", 20), 3, 100).unwrap();
        assert_eq!(w.ids(), ["p", "q", "p"]);
        assert!(w.has_person("p") && w.has_person("q") && !w.has_person("r"));
        assert_eq!(w.park(parked(Kind::Person, "q", 71), 3, 100), Err(Full));
        w.park(parked(Kind::Person, "q", 70), 3, 100).unwrap();
        let out = w.drain();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].kind, Kind::Deleted);
        assert_eq!((w.len(), w.bytes), (0, 0));
    }
}
