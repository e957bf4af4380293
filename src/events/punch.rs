//! In or out: what an attendance event says the person did, and how the dispatcher decides it.
//!
//! Contract:
//! - Only attendance events (a recognized person; not strangers, not ambiguous faces) that the
//!   cooldown let through get a punch; the dispatcher asks [`Punches::decide`] once per such
//!   event, in the order it accepts them. A repeat within the cooldown gets none.
//! - The punch is, in order: the camera's direction (`CAMERA_DIRECTION`, when the event's
//!   camera has one); else the schedule (`PUNCH_SCHEDULE`) at the local time of day the face
//!   was seen (the event's `ts` in `BOX_TIMEZONE`); else `in` for the person's first counted
//!   sighting of the local day and `out` for every later one.
//! - Every counted attendance event marks its person seen for its local day, whichever rule
//!   gave its punch. The people seen are read again from the event log whenever the local day
//!   changes: at start (a restart keeps the day's first sightings), at local midnight (nobody
//!   then), and when the clock is set to another day. Records are matched by the local day of
//!   their `ts`; a log that cannot be read costs a warning, never an event.
//! - A schedule covers 00:00 to 24:00 exactly, its parts in order, each starting where the one
//!   before ended; anything else is refused with one line saying what is wrong.

use std::collections::HashSet;
use std::fmt;

use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};

use super::log::{EventLogReader, Kind, Query};
use super::Event;
use crate::camera::Direction;
use crate::localtime::BoxZone;

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

/// The dispatcher's punch rule and the people seen on the current local day.
pub struct Punches {
    zone: BoxZone,
    schedule: Option<Schedule>,
    log: Option<EventLogReader>,
    /// The local day `seen` is of (none until the first look).
    day: Option<Date>,
    /// The people with a counted sighting on `day`.
    seen: HashSet<String>,
}

/// Event log records read per query while the day's sightings are read again.
const READ_PAGE: usize = 5_000;

/// How long after the face was seen (`ts`) its record may have been logged (`at_ms`: a
/// caller's wait for the sinks, a busy disk), with room to spare.
const LOGGED_WITHIN_MS: u64 = 10 * 60_000;

impl Punches {
    /// The rule in the box's `zone`, with its `schedule` when there is one.
    pub fn new(zone: BoxZone, schedule: Option<Schedule>) -> Punches {
        Punches {
            zone,
            schedule,
            log: None,
            day: None,
            seen: HashSet::new(),
        }
    }

    /// Reads today's sightings from `log` (and again from it whenever the day changes).
    pub(crate) fn start(&mut self, log: Option<EventLogReader>, now_ms: u64) {
        self.log = log;
        let today = self.zone.date_of(now_ms);
        self.roll(today);
        if !self.seen.is_empty() {
            log::info!(
                "punches: seen today ({today} in {}) before this start: {}; their next sighting \
                 is out (unless a camera direction or PUNCH_SCHEDULE says otherwise)",
                self.zone.name(),
                self.seen.len()
            );
        }
    }

    /// Sets `event`'s punch when it is an attendance event (see the module's contract).
    pub(crate) fn decide(&mut self, event: &mut Event) {
        if Kind::of(event) != Kind::Attendance {
            return;
        }
        let seen_ms = u64::try_from(event.ts).unwrap_or(0).saturating_mul(1000);
        let day = self.zone.date_of(seen_ms);
        if self.day != Some(day) {
            self.roll(day);
        }
        let first = self.seen.insert(event.student_id.clone());
        let punch = match (event.camera().and_then(|c| c.direction), &self.schedule) {
            (Some(direction), _) => direction.into(),
            (None, Some(schedule)) => schedule.at(self.zone.time_of_day(seen_ms)),
            (None, None) if first => Punch::In,
            (None, None) => Punch::Out,
        };
        event.set_punch(Some(punch));
    }

    /// A new local day: the people already seen on it, from the event log.
    fn roll(&mut self, day: Date) {
        self.day = Some(day);
        self.seen.clear();
        let Some(log) = &self.log else {
            return;
        };
        let (start, end) = self.zone.day_bounds(day);
        let mut query = Query {
            since_ms: Some(start),
            until_ms: Some(end.saturating_add(LOGGED_WITHIN_MS)),
            kind: Some(Kind::Attendance),
            ..Query::all(READ_PAGE)
        };
        loop {
            let found = log.query(&query);
            for record in &found.events {
                let seen_ms = u64::try_from(record.ts).unwrap_or(0).saturating_mul(1000);
                if (start..end).contains(&seen_ms) {
                    self.seen.insert(record.student_id.clone());
                }
            }
            match found.next_since {
                // Records of that very millisecond come again: a set takes them twice.
                Some(next) if found.truncated && Some(next) > query.since_ms => {
                    query.since_ms = Some(next);
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::log::{EventLog, EventRecord, Line};
    use crate::events::{test_event, Report, Seer, Status};

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

    fn at(event: Event, ts: i64) -> Event {
        Event { ts, ..event }
    }

    /// 2026-12-06T16:59:59Z, 23:59:59 in Jakarta (UTC+7).
    const BEFORE_MIDNIGHT_JAKARTA: i64 = 1_796_576_399;

    #[test]
    fn first_sighting_of_the_local_day_is_in_then_out_and_a_new_day_starts_over() {
        let jakarta = BoxZone::named("Asia/Jakarta").unwrap();
        let mut p = Punches::new(jakarta, None);
        let mut decide = |id: &str, ts: i64| {
            let mut e = at(test_event(id), ts);
            p.decide(&mut e);
            e.punch()
        };
        let t = BEFORE_MIDNIGHT_JAKARTA;
        assert_eq!(decide("alip", t - 3600), Some(Punch::In));
        assert_eq!(decide("alip", t), Some(Punch::Out));
        assert_eq!(decide("budi", t), Some(Punch::In));
        // One second later it is the next day in Jakarta, still the same UTC day.
        assert_eq!(decide("alip", t + 1), Some(Punch::In));
        assert_eq!(decide("alip", t + 2), Some(Punch::Out));
        // Strangers and ambiguous faces get none.
        let mut stranger = test_event(crate::gallery::UNKNOWN);
        p.decide(&mut stranger);
        assert_eq!(stranger.punch(), None);
    }

    #[test]
    fn the_camera_direction_wins_then_the_schedule() {
        let utc = BoxZone::utc();
        let schedule = Schedule::parse("00:00-10:30 in, 10:30-24:00 out").unwrap();
        let mut p = Punches::new(utc, schedule);
        // 2026-12-07T10:29:59Z and 10:30:00Z.
        let (before, after) = (1_796_639_399, 1_796_639_400);
        let mut e = at(test_event("alip"), before);
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::In));
        let mut e = at(test_event("alip"), after);
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::Out));
        let mut e = at(test_event("alip"), after).with_camera(Seer {
            name: "door".into(),
            direction: Some(Direction::In),
            own_cooldown: false,
        });
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::In));
        // The schedule's first sighting counted too: without the schedule it would be out.
        assert!(p.seen.contains("alip"));
    }

    #[test]
    fn the_days_sightings_are_read_again_from_the_event_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        let t = BEFORE_MIDNIGHT_JAKARTA;
        let record = |id: &str, ts: i64| {
            let e = at(test_event(id), ts);
            // Logged a little after it was seen: alip's record is in the next UTC second.
            Line::Event(EventRecord::new(
                &e,
                &Report::status(Status::Sent),
                ts as u64 * 1000 + 900,
            ))
        };
        let mut unknown = at(test_event(crate::gallery::UNKNOWN), t);
        unknown.student_id = crate::gallery::UNKNOWN.into();
        log.append_at(
            &[
                record("budi", t - 86_400),
                record("alip", t - 60),
                Line::Event(EventRecord::new(&unknown, &Report::status(Status::Sent), 1)),
                record("cici", t + 60),
            ],
            t as u64 * 1000,
        );
        let jakarta = BoxZone::named("Asia/Jakarta").unwrap();
        let mut p = Punches::new(jakarta, None);
        p.start(Some(log.reader()), t as u64 * 1000);
        assert_eq!(p.seen, HashSet::from(["alip".to_string()]));
        let mut e = at(test_event("alip"), t);
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::Out));
        let mut e = at(test_event("budi"), t);
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::In));
        // The next local day: cici was already seen on it.
        let mut e = at(test_event("cici"), t + 120);
        p.decide(&mut e);
        assert_eq!(e.punch(), Some(Punch::Out));
        assert_eq!(p.seen, HashSet::from(["cici".to_string()]));
    }
}
