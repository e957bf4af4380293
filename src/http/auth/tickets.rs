//! Tickets: short-lived, single-use stand-ins for a key in a URL.
//!
//! A browser cannot put a header on a WebSocket or an `<img src>`, and a key in a URL ends up in
//! the DOM, "copy image address", history and proxy logs. So the page trades its key (sent in a
//! header to `POST /tickets`) for a ticket and opens `/stream.mjpg?ticket=T` or
//! `/ws/recognitions?ticket=T` with it.
//!
//! Contract: a ticket is 32 random bytes (64 hex characters) from the OS; it carries the caller
//! (label and role) of the key that asked for it; it opens one request, within [`TTL`], and is
//! gone after that first use, whether the request then succeeds or not; an expired one is
//! refused like an unknown one. Only the tickets' SHA-256 digests are kept. At most
//! [`MAX_OUTSTANDING`] are outstanding (expired ones are dropped first); past that, asking for
//! one is refused (503) until some are used or expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::keys::Caller;
use crate::locks::lock;

/// How long a ticket stays valid.
pub const TTL: Duration = Duration::from_secs(30);
/// Tickets outstanding at most.
pub const MAX_OUTSTANDING: usize = 1024;

/// The tickets given and not yet used.
#[derive(Default)]
pub struct Tickets {
    outstanding: Mutex<HashMap<[u8; 32], (Caller, Instant)>>,
}

/// Why no ticket could be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TicketError {
    /// As many tickets as allowed are outstanding: 503.
    #[error("too many tickets outstanding")]
    TooMany,
    /// No random bytes for a ticket (the reason).
    #[error("the system's random source failed: {0}")]
    Random(String),
}

fn digest(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A new ticket for `caller`, valid for [`TTL`] from `now`.
    pub fn issue(&self, caller: &Caller, now: Instant) -> Result<String, TicketError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| TicketError::Random(e.to_string()))?;
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut outstanding = lock(&self.outstanding);
        if outstanding.len() >= MAX_OUTSTANDING {
            outstanding.retain(|_, (_, expires)| *expires > now);
            if outstanding.len() >= MAX_OUTSTANDING {
                return Err(TicketError::TooMany);
            }
        }
        outstanding.insert(digest(&ticket), (caller.clone(), now + TTL));
        Ok(ticket)
    }

    /// The caller of `ticket` if it is outstanding and not expired at `now`; it is used up
    /// either way.
    pub fn redeem(&self, ticket: &str, now: Instant) -> Option<Caller> {
        let (caller, expires) = lock(&self.outstanding).remove(&digest(ticket))?;
        (expires > now).then_some(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::Role;

    #[test]
    fn a_ticket_opens_once_within_its_lifetime() {
        let tickets = Tickets::default();
        let now = Instant::now();
        let hall = Caller::new("hall", Role::Viewer);
        let t = tickets.issue(&hall, now).unwrap();
        assert_eq!(t.len(), 64);
        assert!(t.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tickets.redeem(&t, now), Some(hall.clone()));
        assert_eq!(tickets.redeem(&t, now), None, "single use");
        let late = tickets.issue(&hall, now).unwrap();
        assert_eq!(tickets.redeem(&late, now + TTL), None, "expired");
        assert_eq!(tickets.redeem("0".repeat(64).as_str(), now), None);
        assert_ne!(tickets.issue(&hall, now).unwrap(), t);
    }

    #[test]
    fn outstanding_tickets_are_bounded() {
        let tickets = Tickets::default();
        let now = Instant::now();
        let who = Caller::new("x", Role::Kiosk);
        for _ in 0..MAX_OUTSTANDING {
            tickets.issue(&who, now).unwrap();
        }
        assert_eq!(tickets.issue(&who, now), Err(TicketError::TooMany));
        // Once they expire, there is room again.
        assert!(tickets.issue(&who, now + TTL).is_ok());
    }
}
