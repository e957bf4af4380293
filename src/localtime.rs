//! The box's local time: its time zone (`BOX_TIMEZONE`, an IANA name, default the system's),
//! the local day an instant falls in, a local day's bounds, and local times as people read
//! them (`07:42`, `2026-10-25T00:30:00+02:00`).
//!
//! Contract:
//! - Instants are Unix milliseconds (what the event log keeps); local days are civil dates in
//!   the box's zone, computed by `jiff` from the system's time-zone database, so daylight-saving
//!   changes are the zone's own: a local day is 23 or 25 hours long on a change day.
//! - [`BoxZone::day_bounds`] is `[first instant of the day, first instant of the next)`: the
//!   first instant is local midnight, or the first time that exists when a change skips
//!   midnight.
//! - Instants outside what jiff represents (before year -9999 or after 9999) are clamped, never
//!   a panic: they come from files and clocks.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// The box's time zone.
#[derive(Debug, Clone)]
pub struct BoxZone {
    zone: TimeZone,
    name: String,
}

impl BoxZone {
    /// The system's zone (`TZ`, else `/etc/localtime`); UTC, with a warning, when it cannot be
    /// found.
    pub fn system() -> BoxZone {
        match TimeZone::try_system() {
            Ok(zone) => {
                let name = zone.iana_name().unwrap_or("system").to_string();
                BoxZone { zone, name }
            }
            Err(e) => {
                log::warn!("the system's time zone could not be read ({e}); using UTC");
                BoxZone::utc()
            }
        }
    }

    /// UTC.
    pub fn utc() -> BoxZone {
        BoxZone {
            zone: TimeZone::UTC,
            name: "UTC".to_string(),
        }
    }

    /// The IANA zone `name` (`Asia/Jakarta`, `Europe/Berlin`, `UTC`), or why not.
    pub fn named(name: &str) -> Result<BoxZone, String> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(|c| c.is_control()) {
            return Err(format!(
                "{:?} is not a time zone name (an IANA name such as Asia/Jakarta)",
                clip(name)
            ));
        }
        match TimeZone::get(name) {
            Ok(zone) => Ok(BoxZone {
                zone,
                name: name.to_string(),
            }),
            Err(_) => Err(format!(
                "unknown time zone {:?} (an IANA name such as Asia/Jakarta, Europe/Berlin or UTC)",
                clip(name)
            )),
        }
    }

    /// The zone's name (`Asia/Jakarta`; `system` when the system's has none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The jiff zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The instant `unix_ms` in this zone.
    pub fn zoned(&self, unix_ms: u64) -> Zoned {
        timestamp(unix_ms).to_zoned(self.zone.clone())
    }

    /// The local date of the instant `unix_ms`.
    pub fn date_of(&self, unix_ms: u64) -> Date {
        self.zoned(unix_ms).date()
    }

    /// The local time of day of the instant `unix_ms`.
    pub fn time_of_day(&self, unix_ms: u64) -> Time {
        self.zoned(unix_ms).time()
    }

    /// The local day `date` as Unix milliseconds: its first instant and the next day's.
    pub fn day_bounds(&self, date: Date) -> (u64, u64) {
        let start = self.start_of(date);
        let end = date.tomorrow().map_or(u64::MAX, |next| self.start_of(next));
        (start, end)
    }

    fn start_of(&self, date: Date) -> u64 {
        let first = date
            .to_zoned(self.zone.clone())
            .and_then(|z| z.start_of_day());
        match first {
            Ok(z) => u64::try_from(z.timestamp().as_millisecond()).unwrap_or(0),
            // Only at the ends of jiff's range.
            Err(_) => 0,
        }
    }

    /// The instant as local RFC 3339 with its offset, to the second:
    /// `2026-10-25T00:30:00+02:00`.
    pub fn rfc3339(&self, unix_ms: u64) -> String {
        self.zoned(unix_ms)
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    /// The local time of day as `HH:MM`.
    pub fn hhmm(&self, unix_ms: u64) -> String {
        self.zoned(unix_ms).strftime("%H:%M").to_string()
    }
}

/// The jiff instant of `unix_ms`, clamped to jiff's range.
fn timestamp(unix_ms: u64) -> Timestamp {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

/// A date written `YYYY-MM-DD` (exactly that form), or why not.
pub fn parse_date(text: &str) -> Result<Date, String> {
    let b = text.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shaped {
        return Err(format!("{:?} is not a date (YYYY-MM-DD)", clip(text)));
    }
    text.parse::<Date>()
        .map_err(|_| format!("{:?} is not a date of the calendar", clip(text)))
}

/// At most 40 characters of untrusted text, for messages.
fn clip(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> u64 {
        rfc3339.parse::<Timestamp>().unwrap().as_millisecond() as u64
    }

    #[test]
    fn berlin_change_days_are_23_and_25_hours() {
        let berlin = BoxZone::named("Europe/Berlin").unwrap();
        let (s, e) = berlin.day_bounds(parse_date("2026-03-29").unwrap());
        assert_eq!(
            (s, e),
            (ms("2026-03-28T23:00:00Z"), ms("2026-03-29T22:00:00Z"))
        );
        assert_eq!(e - s, 23 * 3_600_000);
        let (s, e) = berlin.day_bounds(parse_date("2026-10-25").unwrap());
        assert_eq!(
            (s, e),
            (ms("2026-10-24T22:00:00Z"), ms("2026-10-25T23:00:00Z"))
        );
        assert_eq!(
            berlin.rfc3339(ms("2026-10-24T22:30:00Z")),
            "2026-10-25T00:30:00+02:00"
        );
        assert_eq!(
            berlin.rfc3339(ms("2026-10-25T22:30:00Z")),
            "2026-10-25T23:30:00+01:00"
        );
    }

    #[test]
    fn a_box_east_or_west_of_utc_has_its_own_day() {
        let jakarta = BoxZone::named("Asia/Jakarta").unwrap();
        let instant = ms("2026-12-06T18:30:00Z");
        assert_eq!(jakarta.date_of(instant).to_string(), "2026-12-07");
        assert_eq!(jakarta.hhmm(instant), "01:30");
        let bogota = BoxZone::named("America/Bogota").unwrap();
        assert_eq!(
            bogota.date_of(ms("2026-12-07T03:00:00Z")).to_string(),
            "2026-12-06"
        );
        assert_eq!(
            bogota.rfc3339(ms("2026-12-07T03:00:00Z")),
            "2026-12-06T22:00:00-05:00"
        );
    }

    #[test]
    fn bad_names_and_dates_say_what_they_are() {
        assert!(BoxZone::named("Mars/Base")
            .unwrap_err()
            .contains("unknown time zone"));
        assert!(BoxZone::named("").is_err());
        assert!(BoxZone::named("../../etc/passwd").is_err());
        for bad in [
            "2026-02-30",
            "2026-3-29",
            "20260329",
            "2026-03-29T00:00",
            "yesterday",
            "",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_date("2024-02-29").unwrap().to_string(), "2024-02-29");
    }

    #[test]
    fn instants_beyond_the_range_are_clamped() {
        let utc = BoxZone::utc();
        let _ = utc.rfc3339(u64::MAX);
        let _ = utc.day_bounds(Date::MAX);
        assert_eq!(utc.rfc3339(0), "1970-01-01T00:00:00+00:00");
    }
}
