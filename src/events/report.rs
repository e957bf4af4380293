//! The day's attendance report (`GET /reports/daily`, `face-attendance report daily`): for
//! every enrolled person (of one group when asked), their first `in` and last `out` of a local
//! day, how often they were seen, and who was not seen at all.
//!
//! Contract (pure: no files, no clock; the caller gives the date, the zone, the roster and the
//! records):
//! - The day is the box's local day `date` in `zone`: `[local midnight, next local midnight)`,
//!   23 or 25 hours on a daylight-saving change day ([`BoxZone::day_bounds`]). Records outside
//!   it, of another kind than `attendance`, or of someone not on the roster are not counted.
//! - A sighting is an attendance record of the day (repeats within the cooldown were never
//!   logged). `first_in` is the earliest sighting punched `in`, `last_out` the latest punched
//!   `out`. A record without `punch` (a log written before punches) gets the default rule:
//!   the person's first sighting of the day is `in`, any later one `out`. The answer does not
//!   depend on the order records are given in.
//! - Times are local RFC 3339 with their offset, to the second (`2026-10-25T02:30:00+01:00`:
//!   the offset tells the two 02:30 of a change day apart).
//! - People are listed by id; `present` is seen at least once; `not_seen` lists the others.

use std::collections::BTreeMap;
use std::io::Write;

use jiff::civil::Date;
use serde::Serialize;

use super::csv;
use super::log::{EventRecord, Kind};
use super::Punch;
use crate::gallery::label::{self, Field, GROUP_MAX};
use crate::localtime::BoxZone;

/// A person on the roster: every enrolled person, with the name and group the gallery has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Their id.
    pub student_id: String,
    /// Their display name, when set.
    pub name: Option<String>,
    /// Their group (a class, a department), when set.
    pub group: Option<String>,
}

/// One person's day in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonDay {
    /// Their id.
    pub student_id: String,
    /// Their display name (`null` when none).
    pub name: Option<String>,
    /// Their group (`null` when none).
    pub group: Option<String>,
    /// Seen at least once on the day.
    pub present: bool,
    /// The first sighting punched `in`.
    pub first_in: Option<String>,
    /// The last sighting punched `out`.
    pub last_out: Option<String>,
    /// The first sighting, in or out.
    pub first_seen: Option<String>,
    /// The last sighting, in or out.
    pub last_seen: Option<String>,
    /// Sightings on the day.
    pub sightings: u64,
}

/// The local day a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// Its first instant, local RFC 3339.
    pub start: String,
    /// The next day's first instant, local RFC 3339.
    pub end: String,
}

/// The report, as `GET /reports/daily` answers it in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyReport {
    /// Always `true` (the API's answers all have it).
    pub ok: bool,
    /// The local date, `YYYY-MM-DD`.
    pub date: String,
    /// The box's time zone (`BOX_TIMEZONE`).
    pub timezone: String,
    /// The group asked for (`null`: everyone).
    pub group: Option<String>,
    /// The local day's bounds.
    pub day: Day,
    /// People on the report.
    pub total: usize,
    /// Of them, seen.
    pub present: usize,
    /// Of them, not seen.
    pub absent: usize,
    /// Every person of the report, by id.
    pub people: Vec<PersonDay>,
    /// The ids of those not seen.
    pub not_seen: Vec<String>,
    /// Lines of the day's log files that did not read (a write cut by a power cut).
    pub unreadable_lines: u64,
}

/// The columns of the report's CSV.
pub const CSV_HEADER: [&str; 8] = [
    "date",
    "student_id",
    "name",
    "group",
    "present",
    "first_in",
    "last_out",
    "sightings",
];

/// The longest group asked for, in characters (a person's group is at most this long).
pub const MAX_GROUP_CHARS: usize = GROUP_MAX;

/// A group as asked for (`?group=`, `--group`): the rules of a person's group
/// ([`crate::gallery::label`]: trimmed, 1 to [`MAX_GROUP_CHARS`] characters, no control or
/// invisible formatting characters); or why not (`group: ...`).
pub fn parse_group(text: &str) -> Result<String, String> {
    label::check(Field::Group, text).map_err(|e| e.to_string())
}

/// One person's sightings so far (Unix ms).
#[derive(Debug, Default, Clone)]
struct Seen {
    sightings: u64,
    /// The earliest sighting, and whether it had no punch.
    first: Option<(u64, bool)>,
    last: Option<u64>,
    first_in: Option<u64>,
    last_out: Option<u64>,
    /// Sightings without a punch, and the latest of them.
    unpunched: u64,
    unpunched_last: Option<u64>,
}

impl Seen {
    fn add(&mut self, at_ms: u64, punch: Option<Punch>) {
        self.sightings += 1;
        if self.first.is_none_or(|(t, _)| at_ms < t) {
            self.first = Some((at_ms, punch.is_none()));
        }
        self.last = Some(self.last.map_or(at_ms, |t| t.max(at_ms)));
        match punch {
            Some(Punch::In) => self.first_in = Some(self.first_in.map_or(at_ms, |t| t.min(at_ms))),
            Some(Punch::Out) => self.last_out = Some(self.last_out.map_or(at_ms, |t| t.max(at_ms))),
            None => {
                self.unpunched += 1;
                self.unpunched_last = Some(self.unpunched_last.map_or(at_ms, |t| t.max(at_ms)));
            }
        }
    }

    /// First in and last out, the default rule applied to the records without a punch.
    fn in_out(&self) -> (Option<u64>, Option<u64>) {
        let mut first_in = self.first_in;
        let mut last_out = self.last_out;
        let mut later_unpunched = self.unpunched;
        if let Some((t, true)) = self.first {
            // The day's first sighting had no punch: it is the `in`.
            first_in = Some(first_in.map_or(t, |f| f.min(t)));
            later_unpunched -= 1;
        }
        if later_unpunched > 0 {
            // Any other sighting without a punch is an `out`; the latest of them is not the
            // first sighting (or shares its millisecond).
            if let Some(t) = self.unpunched_last {
                last_out = Some(last_out.map_or(t, |o| o.max(t)));
            }
        }
        (first_in, last_out)
    }
}

/// A report being made: give it the records of the day's files one by one, then
/// [`Tally::finish`].
pub struct Tally<'z> {
    zone: &'z BoxZone,
    date: Date,
    start_ms: u64,
    end_ms: u64,
    group: Option<String>,
    roster: BTreeMap<String, (Member, Seen)>,
}

impl<'z> Tally<'z> {
    /// The report of `date` in `zone` for the `roster` (only the members of `group` when one
    /// is given).
    pub fn new(
        zone: &'z BoxZone,
        date: Date,
        roster: Vec<Member>,
        group: Option<&str>,
    ) -> Tally<'z> {
        let (start_ms, end_ms) = zone.day_bounds(date);
        let roster = roster
            .into_iter()
            .filter(|m| group.is_none_or(|g| m.group.as_deref() == Some(g)))
            .map(|m| (m.student_id.clone(), (m, Seen::default())))
            .collect();
        Tally {
            zone,
            date,
            start_ms,
            end_ms,
            group: group.map(str::to_string),
            roster,
        }
    }

    /// The instants whose records count: `[start, end)`, Unix ms.
    pub fn bounds(&self) -> (u64, u64) {
        (self.start_ms, self.end_ms)
    }

    /// Counts `record` when it is a sighting of someone on the roster on the day.
    pub fn add(&mut self, record: &EventRecord) {
        if record.kind != Kind::Attendance
            || record.at_ms < self.start_ms
            || record.at_ms >= self.end_ms
        {
            return;
        }
        if let Some((_, seen)) = self.roster.get_mut(&record.student_id) {
            seen.add(record.at_ms, record.punch);
        }
    }

    /// The report (`unreadable_lines`: what the reading skipped).
    pub fn finish(self, unreadable_lines: u64) -> DailyReport {
        let zone = self.zone;
        let time = |ms: Option<u64>| ms.map(|t| zone.rfc3339(t));
        let people: Vec<PersonDay> = self
            .roster
            .into_values()
            .map(|(member, seen)| {
                let (first_in, last_out) = seen.in_out();
                PersonDay {
                    student_id: member.student_id,
                    name: member.name,
                    group: member.group,
                    present: seen.sightings > 0,
                    first_in: time(first_in),
                    last_out: time(last_out),
                    first_seen: time(seen.first.map(|(t, _)| t)),
                    last_seen: time(seen.last),
                    sightings: seen.sightings,
                }
            })
            .collect();
        let not_seen: Vec<String> = people
            .iter()
            .filter(|p| !p.present)
            .map(|p| p.student_id.clone())
            .collect();
        DailyReport {
            ok: true,
            date: self.date.to_string(),
            timezone: zone.name().to_string(),
            group: self.group,
            day: Day {
                start: zone.rfc3339(self.start_ms),
                end: zone.rfc3339(self.end_ms),
            },
            total: people.len(),
            present: people.len() - not_seen.len(),
            absent: not_seen.len(),
            people,
            not_seen,
            unreadable_lines,
        }
    }
}

impl DailyReport {
    /// The report as one line of JSON (the route's answer and the command's output).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and booleans always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Writes the report as CSV ([`CSV_HEADER`]; spreadsheet formulas neutralised).
    pub fn write_csv(&self, out: impl Write) -> std::io::Result<()> {
        let mut out = csv::writer(out);
        out.write_record(CSV_HEADER)?;
        for p in &self.people {
            let sightings = p.sightings.to_string();
            out.write_record([
                self.date.as_str(),
                &csv::cell(&p.student_id),
                &csv::cell(p.name.as_deref().unwrap_or_default()),
                &csv::cell(p.group.as_deref().unwrap_or_default()),
                if p.present { "yes" } else { "no" },
                p.first_in.as_deref().unwrap_or_default(),
                p.last_out.as_deref().unwrap_or_default(),
                &sightings,
            ])?;
        }
        out.flush()
    }

    /// The report as CSV text.
    pub fn to_csv(&self) -> String {
        let mut bytes = Vec::new();
        // Writing to memory does not fail.
        let _ = self.write_csv(&mut bytes);
        String::from_utf8(bytes).unwrap_or_default()
    }

    /// The report for a terminal: a summary line, then one line per person (times as
    /// `HH:MM:SS+01:00`; `-` for none).
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} ({}, {} to {}){}: {} present, {} absent of {}\n",
            self.date,
            self.timezone,
            self.day.start,
            self.day.end,
            self.group
                .as_deref()
                .map(|g| format!(", group {}", printable(g)))
                .unwrap_or_default(),
            self.present,
            self.absent,
            self.total
        );
        let rows: Vec<[String; 6]> = self
            .people
            .iter()
            .map(|p| {
                let clock = |t: &Option<String>| {
                    t.as_deref()
                        .and_then(|t| t.get(11..))
                        .unwrap_or("-")
                        .to_string()
                };
                let text = |t: &Option<String>| t.as_deref().map_or("-".into(), printable);
                [
                    printable(&p.student_id),
                    text(&p.name),
                    text(&p.group),
                    clock(&p.first_in),
                    clock(&p.last_out),
                    if p.present {
                        p.sightings.to_string()
                    } else {
                        "not seen".to_string()
                    },
                ]
            })
            .collect();
        let head = [
            "student_id",
            "name",
            "group",
            "first in",
            "last out",
            "sightings",
        ]
        .map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&head).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&head).chain(&rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Text shown on a terminal with its control characters (escape sequences) replaced.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Report, Status};
    use crate::localtime::parse_date;

    fn ms(rfc3339: &str) -> u64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    fn member(id: &str, group: Option<&str>) -> Member {
        Member {
            student_id: id.into(),
            name: None,
            group: group.map(str::to_string),
        }
    }

    fn record(id: &str, at: &str, punch: Option<Punch>) -> EventRecord {
        EventRecord {
            at_ms: ms(at),
            event_id: format!("{id}-{at}"),
            kind: Kind::Attendance,
            student_id: id.into(),
            distance: Some(0.3),
            ts: 0,
            candidates: None,
            decision: None,
            camera: None,
            direction: None,
            name: None,
            group: None,
            punch,
            delivery: Report::status(Status::Disabled),
        }
    }

    fn report(zone: &str, date: &str, records: &[EventRecord], group: Option<&str>) -> DailyReport {
        let zone = BoxZone::named(zone).unwrap();
        let roster = vec![
            member("alip", Some("7A")),
            member("budi", Some("7B")),
            member("citra", Some("7A")),
        ];
        let mut tally = Tally::new(&zone, parse_date(date).unwrap(), roster, group);
        for r in records {
            tally.add(r);
        }
        tally.finish(0)
    }

    #[test]
    fn groups_are_checked() {
        assert_eq!(parse_group(" 7A "), Ok("7A".to_string()));
        assert_eq!(parse_group(&"x".repeat(64)).map(|g| g.len()), Ok(64));
        for bad in ["", "  ", &"x".repeat(65), "7\u{202E}A", "7\nA", "\u{200B}"] {
            assert!(
                parse_group(bad).unwrap_err().starts_with("group"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn first_sighting_is_in_and_later_ones_out_when_records_have_no_punch() {
        let records = [
            // Berlin, the night the clocks go back: 00:30+02:00 and 02:30 twice.
            record("alip", "2026-10-24T22:30:00Z", None),
            record("alip", "2026-10-25T00:30:00Z", None),
            record("alip", "2026-10-25T01:30:00Z", None),
            // The next local day (23:00 UTC is midnight +01:00).
            record("alip", "2026-10-25T23:00:00Z", None),
            // The day before.
            record("budi", "2026-10-24T21:59:59Z", None),
        ];
        let r = report("Europe/Berlin", "2026-10-25", &records, None);
        assert_eq!(r.day.start, "2026-10-25T00:00:00+02:00");
        assert_eq!(r.day.end, "2026-10-26T00:00:00+01:00");
        let alip = &r.people[0];
        assert_eq!(alip.first_in.as_deref(), Some("2026-10-25T00:30:00+02:00"));
        assert_eq!(alip.last_out.as_deref(), Some("2026-10-25T02:30:00+01:00"));
        assert_eq!(alip.sightings, 3);
        assert_eq!((r.present, r.absent, r.total), (1, 2, 3));
        assert_eq!(r.not_seen, ["budi", "citra"]);
        // In any order, the same answer.
        let mut reversed = records.to_vec();
        reversed.reverse();
        assert_eq!(report("Europe/Berlin", "2026-10-25", &reversed, None), r);
    }

    #[test]
    fn punches_decide_when_records_have_them_and_one_sighting_has_no_out() {
        let records = [
            record("alip", "2026-03-29T05:00:00Z", Some(Punch::Out)),
            record("alip", "2026-03-29T06:00:00Z", Some(Punch::In)),
            record("alip", "2026-03-29T07:00:00Z", Some(Punch::In)),
            record("citra", "2026-03-29T06:00:00Z", None),
            // Not attendance, or not on the roster: not counted.
            EventRecord {
                kind: Kind::Unknown,
                ..record("budi", "2026-03-29T06:00:00Z", None)
            },
            record("dewi", "2026-03-29T06:00:00Z", None),
        ];
        let r = report("Europe/Berlin", "2026-03-29", &records, None);
        assert_eq!(r.day.end, "2026-03-30T00:00:00+02:00");
        let alip = &r.people[0];
        assert_eq!(alip.first_in.as_deref(), Some("2026-03-29T08:00:00+02:00"));
        assert_eq!(alip.last_out.as_deref(), Some("2026-03-29T07:00:00+02:00"));
        assert_eq!(
            alip.first_seen.as_deref(),
            Some("2026-03-29T07:00:00+02:00")
        );
        assert_eq!(alip.last_seen.as_deref(), Some("2026-03-29T09:00:00+02:00"));
        let citra = &r.people[2];
        assert_eq!(citra.first_in.as_deref(), Some("2026-03-29T08:00:00+02:00"));
        assert_eq!((citra.last_out.as_deref(), citra.sightings), (None, 1));
        assert_eq!(r.not_seen, ["budi"]);
    }

    #[test]
    fn a_log_that_gained_punches_mid_day_mixes_both_rules() {
        let records = [
            record("alip", "2026-12-07T01:00:00Z", None),
            record("alip", "2026-12-07T02:00:00Z", None),
            record("alip", "2026-12-07T09:00:00Z", Some(Punch::Out)),
        ];
        let r = report("Asia/Jakarta", "2026-12-07", &records, None);
        let alip = &r.people[0];
        assert_eq!(alip.first_in.as_deref(), Some("2026-12-07T08:00:00+07:00"));
        assert_eq!(alip.last_out.as_deref(), Some("2026-12-07T16:00:00+07:00"));
        let r = report("Asia/Jakarta", "2026-12-07", &records[..2], None);
        assert_eq!(
            r.people[0].last_out.as_deref(),
            Some("2026-12-07T09:00:00+07:00")
        );
    }

    #[test]
    fn a_group_keeps_its_members_only_and_the_csv_and_text_say_the_same() {
        let records = [record("alip", "2026-12-07T03:00:00Z", None)];
        let mut r = report("America/Bogota", "2026-12-06", &records, Some("7A"));
        assert_eq!(r.group.as_deref(), Some("7A"));
        assert_eq!((r.present, r.absent, r.total), (1, 1, 2));
        assert_eq!(
            r.people[0].first_in.as_deref(),
            Some("2026-12-06T22:00:00-05:00")
        );
        r.people[1].name = Some("=Citra, \"C\"".into());
        assert_eq!(
            r.to_csv(),
            "date,student_id,name,group,present,first_in,last_out,sightings\r\n\
             2026-12-06,alip,,7A,yes,2026-12-06T22:00:00-05:00,,1\r\n\
             2026-12-06,citra,\"'=Citra, \"\"C\"\"\",7A,no,,,0\r\n"
        );
        r.people[1].name = Some("Citra\u{1b}[2J".into());
        let text = r.to_text();
        assert!(
            text.starts_with("2026-12-06 (America/Bogota, 2026-12-06T00:00:00-05:00 to 2026-12-07T00:00:00-05:00), group 7A: 1 present, 1 absent of 2\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "student_id  name       group  first in        last out  sightings\n\
                 alip        -          7A     22:00:00-05:00  -         1\n\
                 citra       Citra\u{fffd}[2J  7A     -               -         not seen\n"
            ),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'));
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["people"][0]["first_in"], "2026-12-06T22:00:00-05:00");
        assert_eq!(json["not_seen"], serde_json::json!(["citra"]));
    }
}
