//! Wall-clock time as the service writes it: Unix milliseconds and seconds. A clock set before
//! 1970 (a board without RTC before NTP answers) reads 0 rather than failing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    unix_ms() / 1000
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_and_milliseconds_agree_and_are_after_2024() {
        let (ms, s) = (super::unix_ms(), super::unix_secs());
        assert!(s >= 1_704_067_200, "{s}");
        assert!(ms / 1000 >= s - 1 && ms / 1000 <= s + 1);
    }
}
