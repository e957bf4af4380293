//! In or out: what an attendance event says the person did, and `PUNCH_SCHEDULE`, which
//! says it by the local time of day (punches.rs decides each event's).
//!
//! Contract: a schedule covers 00:00 to 24:00 exactly, its parts in order, each starting where
//! the one before ended (a part's end is not in it); anything else is refused with one line
//! saying what is wrong, the text given quoted, escaped and cut short.

use std::fmt;

use jiff::civil::Time;
use serde::{Deserialize, Serialize};

use crate::camera::Direction;

/// Whether a person came in or went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Punch {
    /// Came in.
    In,
    /// Went out.
    Out,
}

impl Punch {
    /// As JSON, CSV and `FACE_PUNCH` spell it: `in`, `out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Punch::In => "in",
            Punch::Out => "out",
        }
    }
}

impl From<Direction> for Punch {
    fn from(direction: Direction) -> Punch {
        match direction {
            Direction::In => Punch::In,
            Direction::Out => Punch::Out,
        }
    }
}

/// Minutes in a day: a schedule's end.
const DAY_MINUTES: u16 = 24 * 60;

/// Longest `PUNCH_SCHEDULE` read (a part a minute would be far more than anyone needs).
const MAX_SCHEDULE_LEN: usize = 2000;

/// `PUNCH_SCHEDULE`: which punch each local time of day gives, like a terminal's automatic
/// punch states (`00:00-10:30 in, 10:30-24:00 out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// In order, from 00:00 to 24:00, each starting where the one before ended.
    parts: Vec<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Part {
    /// Minutes since local midnight, inclusive.
    start: u16,
    /// Minutes since local midnight, exclusive (1440 for 24:00).
    end: u16,
    punch: Punch,
}

impl Schedule {
    /// The schedule `text` writes (`HH:MM-HH:MM in|out`, comma separated), `None` when it is
    /// blank, or why it is not one (one line; the text quoted, escaped and cut short).
    pub fn parse(text: &str) -> Result<Option<Schedule>, String> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        if text.len() > MAX_SCHEDULE_LEN {
            return Err(format!("longer than {MAX_SCHEDULE_LEN} characters"));
        }
        let mut parts = Vec::new();
        let mut covered = 0;
        for piece in text.split(',').map(str::trim) {
            let part = Part::parse(piece)?;
            if part.start > covered {
                return Err(format!(
                    "nothing says in or out from {} to {} (a gap before {})",
                    hhmm(covered),
                    hhmm(part.start),
                    quote(piece)
                ));
            }
            if part.start < covered {
                return Err(format!(
                    "{} overlaps the part before it, which ends at {}",
                    quote(piece),
                    hhmm(covered)
                ));
            }
            covered = part.end;
            parts.push(part);
        }
        if covered != DAY_MINUTES {
            return Err(format!(
                "nothing says in or out from {} to 24:00 (the last part must end at 24:00)",
                hhmm(covered)
            ));
        }
        Ok(Some(Schedule { parts }))
    }

    /// The punch at local time of day `time`.
    pub fn at(&self, time: Time) -> Punch {
        let minute = u16::try_from(time.hour()).unwrap_or(0) * 60
            + u16::try_from(time.minute()).unwrap_or(0);
        self.parts
            .iter()
            .find(|p| p.start <= minute && minute < p.end)
            // Unreachable: the parts cover the day.
            .map_or(Punch::In, |p| p.punch)
    }
}

/// `00:00-10:30 in, 10:30-24:00 out`: the form `/config` shows.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let (start, end, punch) = (hhmm(p.start), hhmm(p.end), p.punch.as_str());
            write!(f, "{sep}{start}-{end} {punch}")?;
        }
        Ok(())
    }
}

impl Part {
    fn parse(piece: &str) -> Result<Part, String> {
        let shape = || {
            format!(
                "{} is not a part of the form HH:MM-HH:MM in (or out)",
                quote(piece)
            )
        };
        let (range, punch) = piece.split_once(char::is_whitespace).ok_or_else(shape)?;
        let (start, end) = range.split_once('-').ok_or_else(shape)?;
        let (start, end) = (minutes(start, false)?, minutes(end, true)?);
        if end <= start {
            return Err(format!("{} ends before it starts", quote(piece)));
        }
        let punch = match punch.trim().to_ascii_lowercase().as_str() {
            "in" => Punch::In,
            "out" => Punch::Out,
            _ => {
                return Err(format!(
                    "{} says {}, not in or out",
                    quote(piece),
                    quote(punch.trim())
                ))
            }
        };
        Ok(Part { start, end, punch })
    }
}

/// Minutes since midnight of `HH:MM` (00:00 to 23:59; 24:00 too when `end`).
fn minutes(text: &str, end: bool) -> Result<u16, String> {
    let bad = || {
        format!(
            "{} is not a time of day (HH:MM, 00:00 to 24:00)",
            quote(text)
        )
    };
    let b = text.as_bytes();
    let shaped = b.len() == 5
        && b[2] == b':'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit());
    if !shaped {
        return Err(bad());
    }
    let number = |r: std::ops::Range<usize>| text[r].parse::<u16>().map_err(|_| bad());
    let (h, m) = (number(0..2)?, number(3..5)?);
    match (h, m) {
        (24, 0) if end => Ok(DAY_MINUTES),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Untrusted text for a message: quoted, escaped, at most 40 characters.
fn quote(text: &str) -> String {
    format!("{:?}", text.chars().take(40).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(hhmm: &str) -> Time {
        format!("{hhmm}:00").parse().unwrap()
    }

    #[test]
    fn a_schedule_reads_and_answers_by_time_of_day() {
        let s = Schedule::parse(" 00:00-10:30 in, 10:30-12:00 OUT,12:00-13:00 in,13:00-24:00 out ")
            .unwrap()
            .unwrap();
        assert_eq!(
            s.to_string(),
            "00:00-10:30 in, 10:30-12:00 out, 12:00-13:00 in, 13:00-24:00 out"
        );
        for (at, want) in [
            ("00:00", Punch::In),
            ("10:29", Punch::In),
            ("10:30", Punch::Out),
            ("12:30", Punch::In),
            ("23:59", Punch::Out),
        ] {
            assert_eq!(s.at(time(at)), want, "{at}");
        }
        assert_eq!(Schedule::parse("  "), Ok(None));
        let whole = Schedule::parse("00:00-24:00 out").unwrap().unwrap();
        assert_eq!(whole.at(time("07:00")), Punch::Out);
    }

    #[test]
    fn a_bad_schedule_says_what_is_wrong_in_one_line() {
        for (bad, says) in [
            ("00:00-10:30 in, 11:00-24:00 out", "from 10:30 to 11:00"),
            (
                "00:00-10:30 in, 10:00-24:00 out",
                "overlaps the part before it, which ends at 10:30",
            ),
            ("00:00-10:30 in", "from 10:30 to 24:00"),
            ("06:00-24:00 in", "from 00:00 to 06:00"),
            ("10:30-24:00 out, 00:00-10:30 in", "from 00:00 to 10:30"),
            ("00:00-25:00 in", "\"25:00\" is not a time of day"),
            ("00:00-10:60 in, 10:60-24:00 out", "\"10:60\" is not a time"),
            ("24:00-24:00 in", "\"24:00\" is not a time"),
            ("00:00-7:30 in, 07:30-24:00 out", "\"7:30\" is not a time"),
            ("00:00-10:30 in 10:30-24:00 out", "not in or out"),
            ("00:00-24:00 sideways", "\"sideways\", not in or out"),
            ("00:00 24:00 in", "not a part of the form"),
            ("00:00-24:00", "not a part of the form"),
            ("10:00-09:00 in", "ends before it starts"),
            ("00:00-24:00 in,", "\"\" is not a part"),
            ("00:00-24:00\u{202e} in", "not a time"),
            (
                "00:00-12:00 in\n, 12:00-24:00 out\u{1b}[2J",
                "not in or out",
            ),
        ] {
            let err = Schedule::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
            assert!(
                !err.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{bad:?}: {err:?}"
            );
        }
        let long = vec!["00:00-24:00 in"; 200].join(",");
        assert!(Schedule::parse(&long).unwrap_err().contains("longer than"));
    }
}
