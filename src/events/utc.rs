//! UTC calendar days and RFC 3339 times for the event log (no date crate: the proleptic
//! Gregorian calendar from a day count, by the usual era arithmetic).

const MS_PER_DAY: u64 = 86_400_000;

/// The UTC day (days since 1970-01-01) of a Unix-ms instant.
pub fn day_of(ms: u64) -> i64 {
    (ms / MS_PER_DAY) as i64
}

/// The Unix ms of a UTC day's midnight (0 for days before 1970).
pub fn midnight_ms(day: i64) -> u64 {
    u64::try_from(day).map_or(0, |d| d.saturating_mul(MS_PER_DAY))
}

/// Days since 1970-01-01 of a civil date (month 1-12, day 1-31; not checked here).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` of a day count.
pub fn format_day(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2024-09-29T03:20:00.123Z` of a Unix-ms instant.
pub fn format_rfc3339(ms: u64) -> String {
    let in_day = ms % MS_PER_DAY;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        format_day(day_of(ms)),
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// The day count of `YYYY-MM-DD` (1970 to 9999, a real date), else `None`.
pub fn parse_day(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = field(text, 0..4)?;
    let (month, day) = (field(text, 5..7)?, field(text, 8..10)?);
    if year < 1970 || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let (month, day) = (month as u32, day as u32);
    let days = days_from_civil(year as i64, month, day);
    // 2023-02-30 would land in March: only real dates come back unchanged.
    (civil_from_days(days) == (year as i64, month, day)).then_some(days)
}

/// The digits at `range` of `text` as a number (`None` past its end or off a char boundary).
fn field(text: &str, range: std::ops::Range<usize>) -> Option<u64> {
    text.get(range).and_then(digits)
}

/// A whole number written with ASCII digits only.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// An instant as `/events` takes it: Unix milliseconds (digits), a `YYYY-MM-DD` date (its
/// UTC midnight) or an RFC 3339 time (`2024-09-29T07:30:00+07:00`, `…Z`, fractions allowed).
/// `None` for anything else or a time before 1970.
pub fn parse_instant(text: &str) -> Option<u64> {
    if let Some(ms) = digits(text) {
        return Some(ms);
    }
    if text.len() == 10 {
        return parse_day(text).map(midnight_ms);
    }
    let (date, rest) = (text.get(..10)?, text.get(10..)?);
    let day = parse_day(date)?;
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let b = rest.as_bytes();
    if b.len() < 9 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let (h, m, s) = (field(rest, 0..2)?, field(rest, 3..5)?, field(rest, 6..8)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut rest = rest.get(8..)?;
    let mut frac_ms = 0;
    if let Some(after_dot) = rest.strip_prefix('.') {
        let n = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return None;
        }
        // Milliseconds: the first three digits, padded.
        let first: String = after_dot[..n].chars().chain("00".chars()).take(3).collect();
        frac_ms = digits(&first)?;
        rest = &after_dot[n..];
    }
    let offset_ms: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let b = rest.as_bytes();
            if b.len() != 6 || b[3] != b':' {
                return None;
            }
            let (oh, om) = (field(rest, 1..3)?, field(rest, 4..6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * (oh * 3_600_000 + om * 60_000) as i64
        }
    };
    let local = midnight_ms(day) + h * 3_600_000 + m * 60_000 + s * 1000 + frac_ms;
    u64::try_from(local as i64 - offset_ms).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_agree_both_ways() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(format_day(19_995), "2024-09-29");
        for day in (0..200_000).step_by(97) {
            assert_eq!(parse_day(&format_day(day)), Some(day), "{day}");
        }
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
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
    }

    #[test]
    fn instants_read_as_documented() {
        assert_eq!(
            format_rfc3339(1_727_580_000_123),
            "2024-09-29T03:20:00.123Z"
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
