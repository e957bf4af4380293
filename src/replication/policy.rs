//! What a site asks of replication beyond its mode: where the trust list is, the bounds per
//! publisher, and the enrollment checks a received person passes (the same as a local
//! enrollment's: the match tolerance and the duplicate distance).

use std::path::{Path, PathBuf};

/// People a publisher may change per hour by default (`GALLERY_SYNC_PEOPLE_PER_HOUR`): a whole
/// school's import (2,000 pupils) reaches every box within the hour it was made, while a stolen
/// box cannot add more than that before someone notices.
pub const DEFAULT_PEOPLE_PER_HOUR: u32 = 2_000;
/// Encodings a publisher may send per hour by default (`GALLERY_SYNC_ENCODINGS_PER_HOUR`):
/// five samples for each of [`DEFAULT_PEOPLE_PER_HOUR`].
pub const DEFAULT_ENCODINGS_PER_HOUR: u32 = 10_000;
/// Messages that may wait (over a publisher's bound, the clock not set yet, or this box not
/// trusted yet) by default (`GALLERY_SYNC_MAX_WAITING`); beyond it one is refused and counted.
pub const DEFAULT_MAX_WAITING: usize = 5_000;
/// Most bytes of waiting messages, whatever their number (a message is at most 1 MiB).
pub const MAX_WAITING_BYTES: usize = 64 << 20;

/// The replication policy of a box (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    trust_file: PathBuf,
    people_per_hour: u32,
    encodings_per_hour: u32,
    max_waiting: usize,
    tolerance: f64,
    duplicate_limit: Option<f64>,
}

impl Policy {
    /// The trust list at `trust_file`, the default bounds, and the enrollment checks at
    /// `tolerance` (a received sample added to an existing person by a box of role `enroll`
    /// must be this close to one of theirs) and `duplicate_limit` (a received face this close to
    /// another person's sample is refused unless an admin forced it; `None`: no check).
    pub fn new(trust_file: &Path, tolerance: f64, duplicate_limit: Option<f64>) -> Policy {
        Policy {
            trust_file: trust_file.to_path_buf(),
            people_per_hour: DEFAULT_PEOPLE_PER_HOUR,
            encodings_per_hour: DEFAULT_ENCODINGS_PER_HOUR,
            max_waiting: DEFAULT_MAX_WAITING,
            tolerance,
            duplicate_limit,
        }
    }

    /// With these bounds per publisher (each at least 1) and this many messages waiting at most.
    pub fn with_bounds(
        mut self,
        people_per_hour: u32,
        encodings_per_hour: u32,
        max_waiting: usize,
    ) -> Policy {
        self.people_per_hour = people_per_hour.max(1);
        self.encodings_per_hour = encodings_per_hour.max(1);
        self.max_waiting = max_waiting;
        self
    }

    /// The trust list's path (`GALLERY_TRUSTED_KEYS`).
    pub fn trust_file(&self) -> &Path {
        &self.trust_file
    }

    /// People a publisher may change per hour.
    pub fn people_per_hour(&self) -> u32 {
        self.people_per_hour
    }

    /// Encodings a publisher may send per hour.
    pub fn encodings_per_hour(&self) -> u32 {
        self.encodings_per_hour
    }

    /// Most messages waiting.
    pub fn max_waiting(&self) -> usize {
        self.max_waiting
    }

    /// The match tolerance.
    pub fn tolerance(&self) -> f64 {
        self.tolerance
    }

    /// The duplicate distance (`None`: no check).
    pub fn duplicate_limit(&self) -> Option<f64> {
        self.duplicate_limit
    }
}
