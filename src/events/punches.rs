//! In or out for each counted attendance event: the dispatcher's rule and the people seen on
//! the box's current local day.
//!
//! Contract:
//! - Only attendance events (a recognized person; not strangers, not ambiguous faces) that the
//!   cooldown let through get a punch; the dispatcher asks [`Punches::decide`] once per such
//!   event, in the order it accepts them. A repeat within the cooldown gets none.
//! - The punch is, in order: the camera's direction (`CAMERA_DIRECTION`, when the event's
//!   camera has one); else the schedule (`PUNCH_SCHEDULE`, punch.rs) at the local time of day
//!   the face was seen (the event's `ts` in `BOX_TIMEZONE`); else `in` for the person's first
//!   counted sighting of the local day and `out` for every later one.
//! - Every counted attendance event marks its person seen for its local day, whichever rule
//!   gave its punch. The people seen are read again from the event log whenever the local day
//!   changes: at start (a restart keeps the day's first sightings), at local midnight (nobody
//!   then), and when the clock is set to another day. Records are matched by the local day of
//!   their `ts`; a log that cannot be read costs a warning, never an event.

use std::collections::HashSet;

use jiff::civil::Date;

use super::log::{EventLogReader, Kind, Query};
use super::punch::{Punch, Schedule};
use super::Event;
use crate::localtime::BoxZone;

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
    use crate::camera::Direction;
    use crate::events::log::{EventLog, EventRecord, Line};
    use crate::events::{test_event, Report, Seer, Status};

    fn at(event: Event, ts: i64) -> Event {
        Event { ts, ..event }
    }

    /// The punch `p` gives `id`'s event seen at `ts`.
    fn decide(p: &mut Punches, id: &str, ts: i64) -> Option<Punch> {
        decide_event(p, at(test_event(id), ts))
    }

    fn decide_event(p: &mut Punches, mut event: Event) -> Option<Punch> {
        p.decide(&mut event);
        event.punch()
    }

    /// 2026-12-06T16:59:59Z, 23:59:59 in Jakarta (UTC+7).
    const BEFORE_MIDNIGHT_JAKARTA: i64 = 1_796_576_399;

    #[test]
    fn first_sighting_of_the_local_day_is_in_then_out_and_a_new_day_starts_over() {
        let jakarta = BoxZone::named("Asia/Jakarta").unwrap();
        let p = &mut Punches::new(jakarta, None);
        let t = BEFORE_MIDNIGHT_JAKARTA;
        assert_eq!(decide(p, "alip", t - 3600), Some(Punch::In));
        assert_eq!(decide(p, "alip", t), Some(Punch::Out));
        assert_eq!(decide(p, "budi", t), Some(Punch::In));
        // One second later it is the next day in Jakarta, still the same UTC day.
        assert_eq!(decide(p, "alip", t + 1), Some(Punch::In));
        assert_eq!(decide(p, "alip", t + 2), Some(Punch::Out));
        // Strangers and ambiguous faces get none, and count for nobody.
        assert_eq!(decide(p, crate::gallery::UNKNOWN, t + 3), None);
        let mut ambiguous = at(test_event(crate::gallery::UNKNOWN), t + 3);
        ambiguous.candidates = Some(["carl".into(), "budi".into()]);
        assert_eq!(decide_event(p, ambiguous), None);
        assert_eq!(decide(p, "carl", t + 4), Some(Punch::In));
    }

    #[test]
    fn the_camera_direction_wins_then_the_schedule() {
        let utc = BoxZone::utc();
        let schedule = Schedule::parse("00:00-10:30 in, 10:30-24:00 out").unwrap();
        let p = &mut Punches::new(utc, schedule);
        // 2026-12-07T10:29:59Z and 10:30:00Z.
        let (before, after) = (1_796_639_399, 1_796_639_400);
        assert_eq!(decide(p, "alip", before), Some(Punch::In));
        assert_eq!(decide(p, "alip", before), Some(Punch::In));
        assert_eq!(decide(p, "alip", after), Some(Punch::Out));
        let door = Seer {
            name: "door".into(),
            direction: Some(Direction::In),
            own_cooldown: false,
        };
        let at_the_door = at(test_event("alip"), after).with_camera(door);
        assert_eq!(decide_event(p, at_the_door), Some(Punch::In));
        // Seen today, whichever rule gave the punch.
        assert!(p.seen.contains("alip"));
    }

    #[test]
    fn the_days_sightings_are_read_again_from_the_event_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        let t = BEFORE_MIDNIGHT_JAKARTA;
        let record = |e: Event| {
            // Logged a little after it was seen: in the next UTC second.
            let logged = e.ts as u64 * 1000 + 900;
            Line::Event(EventRecord::new(&e, &Report::status(Status::Sent), logged))
        };
        let seen = |id: &str, ts: i64| record(at(test_event(id), ts));
        let mut ambiguous = at(test_event(crate::gallery::UNKNOWN), t);
        ambiguous.candidates = Some(["dian".into(), "eko".into()]);
        log.append_at(
            &[
                seen("budi", t - 86_400),
                seen("alip", t - 60),
                seen(crate::gallery::UNKNOWN, t - 30),
                record(ambiguous),
                seen("cici", t + 60),
            ],
            t as u64 * 1000,
        );
        let jakarta = BoxZone::named("Asia/Jakarta").unwrap();
        let p = &mut Punches::new(jakarta, None);
        p.start(Some(log.reader()), t as u64 * 1000);
        assert_eq!(p.seen, HashSet::from(["alip".to_string()]));
        assert_eq!(decide(p, "alip", t), Some(Punch::Out));
        assert_eq!(decide(p, "budi", t), Some(Punch::In));
        // The next local day: cici was already seen on it.
        assert_eq!(decide(p, "cici", t + 120), Some(Punch::Out));
        assert_eq!(p.seen, HashSet::from(["cici".to_string()]));
    }
}
