//! UTC days and RFC 3339 times for the event log, by `jiff`: the day files are named by UTC
//! day (`YYYY-MM-DD.jsonl`, whatever `BOX_TIMEZONE` says), and `/events` and its CSV write
//! instants as UTC RFC 3339 with milliseconds (`2024-09-29T03:20:00.123Z`).
//!
//! Contract: instants are Unix milliseconds (`u64`: nothing before 1970); days are
//! [`jiff::civil::Date`]s; nothing here panics on what a file or a client gives (instants past
//! jiff's range, year 9999, are clamped).

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// The jiff instant of `ms`, clamped to jiff's range.
fn timestamp(ms: u64) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The UTC day of a Unix-ms instant.
pub fn day_of(ms: u64) -> Date {
    timestamp(ms).to_zoned(TimeZone::UTC).date()
}

/// The Unix ms of a UTC day's midnight (0 for days before 1970).
pub fn midnight_ms(day: Date) -> u64 {
    day.to_zoned(TimeZone::UTC)
        .ok()
        .and_then(|z| u64::try_from(z.timestamp().as_millisecond()).ok())
        .unwrap_or(0)
}

/// `2024-09-29T03:20:00.123Z` of a Unix-ms instant.
pub fn format_rfc3339(ms: u64) -> String {
    format!("{:.3}", timestamp(ms))
}

/// The day of `YYYY-MM-DD` (exactly that form, 1970 or later, a real date), else `None`.
pub fn parse_day(text: &str) -> Option<Date> {
    crate::localtime::parse_date(text)
        .ok()
        .filter(|d| d.year() >= 1970)
}

/// An instant as `/events` takes it: Unix milliseconds (digits), a `YYYY-MM-DD` date (its
/// UTC midnight) or an RFC 3339 time with its offset (`2024-09-29T07:30:00+07:00`, `…Z`,
/// fractions allowed; jiff reads it). `None` for anything else or a time before 1970.
pub fn parse_instant(text: &str) -> Option<u64> {
    if !text.is_empty() && text.len() <= 20 && text.bytes().all(|c| c.is_ascii_digit()) {
        return text.parse().ok();
    }
    if text.len() == 10 {
        return parse_day(text).map(midnight_ms);
    }
    // Longer than any RFC 3339 time: not worth parsing.
    if text.len() > 64 {
        return None;
    }
    let instant: Timestamp = text.parse().ok()?;
    u64::try_from(instant.as_millisecond()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_file_names_agree_both_ways() {
        assert_eq!(day_of(0).to_string(), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(day_of(0)));
        assert_eq!(day_of(1_727_580_000_123).to_string(), "2024-09-29");
        assert_eq!(midnight_ms(day_of(1_727_580_000_123)), 1_727_568_000_000);
        for ms in (0..17_000_000_000_000u64).step_by(8_380_000_000_123) {
            let day = day_of(ms);
            assert_eq!(parse_day(&day.to_string()), Some(day), "{ms}");
            assert!(midnight_ms(day) <= ms && ms < midnight_ms(day) + 86_400_000);
        }
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "1969-12-31",
            "2024-1-01",
            "x",
        ] {
            assert_eq!(parse_day(bad), None, "{bad}");
        }
        // Past jiff's range: clamped, not a panic.
        assert!(format_rfc3339(u64::MAX).starts_with("9999-12-3"));
        assert_eq!(day_of(u64::MAX).year(), 9999);
    }

    #[test]
    fn instants_read_as_documented() {
        assert_eq!(
            format_rfc3339(1_727_580_000_123),
            "2024-09-29T03:20:00.123Z"
        );
        assert_eq!(
            format_rfc3339(1_727_580_000_000),
            "2024-09-29T03:20:00.000Z"
        );
        assert_eq!(parse_instant("1727580000123"), Some(1_727_580_000_123));
        assert_eq!(parse_instant("2024-09-29"), Some(1_727_568_000_000));
        assert_eq!(
            parse_instant("2024-09-29T03:20:00.123Z"),
            Some(1_727_580_000_123)
        );
        assert_eq!(
            parse_instant("2024-09-29T10:20:00+07:00"),
            Some(1_727_580_000_000)
        );
        assert_eq!(
            parse_instant("2024-09-28t23:20:00.5-04:00"),
            Some(1_727_580_000_500)
        );
        for bad in [
            "",
            "-5",
            "99999999999999999999999",
            "2024-09-29T25:00:00Z",
            "2024-09-29T03:20:00",
            "2024-09-29T03:20:00+7",
            "2024-09-29T03:20:00.Z",
            "1970-01-01T00:00:00+01:00",
            "yesterday",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
    }
}
