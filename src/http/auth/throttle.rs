//! Key guessing, slowed per client address.
//!
//! Contract:
//! - Only wrong credentials count (a wrong key or ticket); a request without one is answered
//!   401 and costs nothing here, and a request with a valid key never reaches this module, so
//!   staff behind a school's one NAT address keep working while a student there guesses.
//! - Each address has an allowance of [`BURST`] wrong credentials, refilled at one every
//!   [`REFILL`] (20 a minute). Past it the address is held off: every wrong credential is
//!   answered 429 with `Retry-After`, and each one while held off doubles the hold, from
//!   [`FIRST_HOLD`] up to [`MAX_HOLD`]. An address that stops for a while starts afresh.
//! - IPv6 clients are counted by their /64 (a host picks any address in its own /64).
//! - At most [`MAX_ADDRESSES`] addresses are remembered; past that the quiet ones are forgotten
//!   first, and if all are busy the new address shares one entry with every other newcomer
//!   (so an attacker with many addresses cannot grow memory, nor escape by flooding the table).
//! - Failures are logged with the address, at most [`LOG_LINES`] lines per [`LOG_WINDOW`]
//!   overall (the lines suppressed are counted in the next one), and counted for `/metrics`.
//!
//! What this cannot do: a request with a valid key is always served, so while an address is
//! held off, a guess that happens to be right still gets through. The allowance makes each
//! *wrong* answer cost time, which is what a guesser needs most of; a key made by the install
//! (32 random bytes) is beyond guessing at any rate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::locks::lock;

/// Wrong credentials an address may present at once before it is held off.
pub const BURST: f64 = 5.0;
/// One more wrong credential is allowed this often: 20 a minute, sustained.
pub const REFILL: Duration = Duration::from_secs(3);
/// The first hold once the allowance is spent; each wrong credential while held doubles it.
pub const FIRST_HOLD: Duration = Duration::from_secs(3);
/// The longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(300);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 4096;
/// Log lines about failures, overall, per window.
pub const LOG_LINES: u32 = 10;
/// The window of [`LOG_LINES`].
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// One address's record.
#[derive(Debug, Clone)]
struct Entry {
    /// Wrong credentials it may still present before it is held off.
    allowance: f64,
    /// When `allowance` was last refilled.
    refilled: Instant,
    /// Held off until then (429 for every wrong credential).
    held_until: Option<Instant>,
    /// The current hold's length; doubled by every wrong credential while held.
    hold: Duration,
    last_seen: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            allowance: BURST,
            refilled: now,
            held_until: None,
            hold: FIRST_HOLD,
            last_seen: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned =
            now.saturating_duration_since(self.refilled).as_secs_f64() / REFILL.as_secs_f64();
        self.allowance = (self.allowance + earned).min(BURST);
        self.refilled = now;
    }

    /// A quiet address that has all its allowance back and no hold is not worth remembering.
    fn forgettable(&self, now: Instant) -> bool {
        let quiet = now.saturating_duration_since(self.last_seen);
        self.held_until.is_none_or(|t| t <= now) && quiet >= REFILL.mul_f64(BURST)
    }
}

/// The verdict on a wrong credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the allowance: answer 401.
    Refuse,
    /// Held off: answer 429, `Retry-After` this many seconds.
    HoldOff(u64),
}

#[derive(Default)]
struct Log {
    window_start: Option<Instant>,
    lines: u32,
    suppressed: u64,
}

/// Wrong credentials per client address (see the module docs).
#[derive(Default)]
pub struct Throttle {
    entries: Mutex<HashMap<IpAddr, Entry>>,
    log: Mutex<Log>,
    failures: AtomicU64,
    held_off: AtomicU64,
}

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64, IPv4-mapped IPv6 as
/// the IPv4 address.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

/// Where the newcomers go when the table is full of busy addresses.
const OVERFLOW: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

impl Throttle {
    /// Records a wrong credential from `ip` (`None`: the address is unknown) at `now`.
    pub fn failed(&self, ip: Option<IpAddr>, now: Instant) -> Verdict {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let key = ip.map_or(OVERFLOW, bucket);
        let verdict = {
            let mut entries = lock(&self.entries);
            let key = if entries.contains_key(&key) || entries.len() < MAX_ADDRESSES {
                key
            } else {
                entries.retain(|_, e| !e.forgettable(now));
                if entries.len() < MAX_ADDRESSES {
                    key
                } else {
                    OVERFLOW
                }
            };
            let entry = entries.entry(key).or_insert_with(|| Entry::new(now));
            judge(entry, now)
        };
        if let Verdict::HoldOff(_) = verdict {
            self.held_off.fetch_add(1, Ordering::Relaxed);
        }
        self.log_failure(ip, verdict, now);
        verdict
    }

    /// Wrong credentials seen, and how many of them were answered 429.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.failures.load(Ordering::Relaxed),
            self.held_off.load(Ordering::Relaxed),
        )
    }

    /// Addresses held off now.
    pub fn held_addresses(&self, now: Instant) -> usize {
        lock(&self.entries)
            .values()
            .filter(|e| e.held_until.is_some_and(|t| t > now))
            .count()
    }

    fn log_failure(&self, ip: Option<IpAddr>, verdict: Verdict, now: Instant) {
        let mut log = lock(&self.log);
        let fresh = log
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LOG_WINDOW);
        if fresh {
            log.window_start = Some(now);
            log.lines = 0;
        }
        if log.lines >= LOG_LINES {
            log.suppressed += 1;
            return;
        }
        log.lines += 1;
        let suppressed = std::mem::take(&mut log.suppressed);
        drop(log);
        let from = ip.map_or("an unknown address".to_string(), |ip| ip.to_string());
        let more = match suppressed {
            0 => String::new(),
            n => format!(" ({n} more wrong credentials not logged before this one)"),
        };
        match verdict {
            Verdict::Refuse => log::warn!("wrong API key or ticket from {from}{more}"),
            Verdict::HoldOff(s) => {
                log::warn!("wrong API key or ticket from {from}: held off for {s} s{more}")
            }
        }
    }
}

/// The verdict on one more wrong credential of `entry`.
fn judge(entry: &mut Entry, now: Instant) -> Verdict {
    entry.last_seen = now;
    if let Some(until) = entry.held_until {
        if until > now {
            entry.hold = (entry.hold * 2).min(MAX_HOLD);
            let until = now + entry.hold;
            entry.held_until = Some(until);
            return Verdict::HoldOff(seconds(until - now));
        }
        // The hold is over; the allowance went on refilling meanwhile (one every REFILL).
        entry.held_until = None;
    }
    entry.refill(now);
    if entry.allowance >= 1.0 {
        entry.allowance -= 1.0;
        if entry.allowance >= BURST - 1.0 {
            // A fresh allowance: the next hold starts short again.
            entry.hold = FIRST_HOLD;
        }
        return Verdict::Refuse;
    }
    let until = now + entry.hold;
    entry.held_until = Some(until);
    Verdict::HoldOff(seconds(entry.hold))
}

/// Whole seconds, rounded up (what `Retry-After` says).
fn seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)))
    }

    #[test]
    fn an_address_gets_a_few_tries_then_waits_longer_and_longer() {
        let t = Throttle::default();
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(t.failed(ip(1), start), Verdict::Refuse);
        }
        assert_eq!(t.failed(ip(1), start), Verdict::HoldOff(3));
        assert_eq!(t.failed(ip(1), start), Verdict::HoldOff(6));
        assert_eq!(t.failed(ip(1), start), Verdict::HoldOff(12));
        // Another address is not affected.
        assert_eq!(t.failed(ip(2), start), Verdict::Refuse);
        // Hammering goes up to the cap.
        let mut last = Verdict::Refuse;
        for _ in 0..20 {
            last = t.failed(ip(1), start);
        }
        assert_eq!(last, Verdict::HoldOff(MAX_HOLD.as_secs()));
        assert_eq!(t.held_addresses(start), 1);
        assert_eq!(t.counts(), (5 + 3 + 1 + 20, 3 + 20));
    }

    #[test]
    fn sustained_guessing_is_held_to_twenty_a_minute() {
        // A guesser that waits exactly as long as it is told, for an hour.
        let t = Throttle::default();
        let start = Instant::now();
        let mut now = start;
        let mut answered_401 = 0u64;
        while now < start + Duration::from_secs(3600) {
            match t.failed(ip(9), now) {
                Verdict::Refuse => {
                    answered_401 += 1;
                    now += Duration::from_millis(10);
                }
                Verdict::HoldOff(s) => now += Duration::from_secs(s),
            }
        }
        let per_minute = answered_401 as f64 / 60.0;
        assert!(per_minute <= 20.0 + BURST / 60.0, "{per_minute} a minute");
        assert!(
            per_minute >= 5.0,
            "a patient client is let back: {per_minute}"
        );
    }

    #[test]
    fn a_quiet_address_starts_afresh() {
        let t = Throttle::default();
        let start = Instant::now();
        for _ in 0..8 {
            t.failed(ip(1), start);
        }
        let later = start + MAX_HOLD + REFILL * 10;
        assert_eq!(t.failed(ip(1), later), Verdict::Refuse);
        for _ in 0..4 {
            t.failed(ip(1), later);
        }
        assert_eq!(t.failed(ip(1), later), Verdict::HoldOff(3));
    }

    #[test]
    fn ipv6_clients_count_by_their_64_and_the_table_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        let v6 = |host: u16| Some(IpAddr::V6([0x2001, 0xdb8, 0, 1, 0, 0, 0, host].into()));
        for host in 0..5 {
            assert_eq!(t.failed(v6(host), now), Verdict::Refuse);
        }
        assert_eq!(t.failed(v6(77), now), Verdict::HoldOff(3));
        // Many busy addresses: the table stays bounded; newcomers share the overflow entry.
        for i in 0..(MAX_ADDRESSES as u32 + 100) {
            let a = Some(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)));
            t.failed(a, now);
        }
        assert!(lock(&t.entries).len() <= MAX_ADDRESSES + 1);
    }
}
