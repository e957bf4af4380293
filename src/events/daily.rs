//! The daily report from the box's files ([`super::report`] makes it): the roster from the
//! gallery (every enrolled person, with the name and group it has for them), the sightings
//! from the event log's day files that overlap the local day. Used by `GET /reports/daily` and
//! by `face-attendance report daily` (the same answer, with or without the service).

use jiff::civil::Date;

use super::log::EventLogReader;
use super::report::{DailyReport, Member, Tally};
use super::Label;
use crate::gallery::Gallery;
use crate::localtime::BoxZone;

/// Every enrolled person, by id, with their name and group.
pub fn roster(gallery: &Gallery) -> Vec<Member> {
    gallery
        .people()
        .into_iter()
        .map(|(student_id, _)| {
            let label = label_of(gallery, &student_id);
            Member {
                student_id,
                name: label.name,
                group: label.group,
            }
        })
        .collect()
}

/// A person's name and group as the gallery has them (its label map).
fn label_of(gallery: &Gallery, student_id: &str) -> Label {
    gallery.label(student_id).unwrap_or_default()
}

/// The report of the local day `date` in `zone` (of `group`'s members when given).
pub fn daily_report(
    log: &EventLogReader,
    gallery: &Gallery,
    zone: &BoxZone,
    date: Date,
    group: Option<&str>,
) -> DailyReport {
    let mut tally = Tally::new(zone, date, roster(gallery), group);
    let (start, end) = tally.bounds();
    let unreadable = log.each_event(start, end, |record| tally.add(record));
    tally.finish(unreadable)
}
