//! CSV as the box writes it (`GET /events?format=csv`, the daily report): RFC 4180 through the
//! `csv` crate (CRLF rows, a cell quoted when it holds a comma, a quote, a line break or a `'`,
//! quotes doubled), and safe to open in a spreadsheet: a text cell that starts with `=`, `+`,
//! `-`, `@`, a tab or a carriage return would be read as a formula, so it gets a leading `'`
//! inside quotes (OWASP's advice against CSV injection).
//!
//! Contract: the columns of `/events` are those of [`HEADER`], in that order; the first eight
//! are written byte for byte as before the `csv` crate (ids, kinds and statuses hold no `'`),
//! `name`, `group` and `punch` came after them (empty when unknown).

use std::borrow::Cow;
use std::io::Write;

use super::log::EventRecord;
use super::utc;

/// The columns of `GET /events?format=csv`, one per field of [`write_event`].
pub const HEADER: [&str; 11] = [
    "time",
    "event_id",
    "kind",
    "student_id",
    "distance",
    "delivery",
    "http_status",
    "candidates",
    "name",
    "group",
    "punch",
];

/// Candidates are ids (letters, digits, `_-.`): joined with `;` in one cell.
const CANDIDATE_SEPARATOR: &str = ";";

/// A CSV writer as the box writes them: CRLF rows, quoting where needed, and any cell holding a
/// `'` quoted (a neutralised formula is then always in quotes).
pub fn writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        // Not a comment marker for anyone reading: it makes the writer quote every cell that
        // holds a `'`, so `'=cmd` is written `"'=cmd"` as OWASP advises.
        .comment(Some(b'\''))
        .from_writer(out)
}

/// `text` as a cell: with a leading `'` when a spreadsheet would take it as a formula.
pub fn cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Writes the header row of `/events`.
pub fn write_header<W: Write>(out: &mut csv::Writer<W>) -> csv::Result<()> {
    out.write_record(HEADER)
}

/// Writes one event's row.
pub fn write_event<W: Write>(out: &mut csv::Writer<W>, e: &EventRecord) -> csv::Result<()> {
    // Numbers are written here, never taken from the log as text: nothing to neutralise.
    let distance = e.distance.map(|d| format!("{d}")).unwrap_or_default();
    let http_status = e
        .delivery
        .http_status
        .map(|c| c.to_string())
        .unwrap_or_default();
    let candidates = e
        .candidates
        .as_ref()
        .map(|c| c.join(CANDIDATE_SEPARATOR))
        .unwrap_or_default();
    let row: [Cow<'_, str>; 11] = [
        Cow::Owned(utc::format_rfc3339(e.at_ms)),
        cell(&e.event_id),
        cell(e.kind.as_str()),
        cell(&e.student_id),
        Cow::Owned(distance),
        cell(e.delivery.status.as_str()),
        Cow::Owned(http_status),
        cell(&candidates),
        cell(e.name.as_deref().unwrap_or_default()),
        cell(e.group.as_deref().unwrap_or_default()),
        Cow::Borrowed(e.punch.map_or("", |p| p.as_str())),
    ];
    out.write_record(row.iter().map(|c| c.as_bytes()))
}

/// One event's row, with its line break (the fuzz target's and the tests' way in).
#[cfg(any(fuzzing, test))]
pub fn event_row(e: &EventRecord) -> String {
    let mut out = writer(Vec::new());
    // Writing to memory fails only on a bug of the writer: then the row is empty.
    let bytes = write_event(&mut out, e)
        .ok()
        .and_then(|()| out.into_inner().ok())
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::log::Kind;
    use crate::events::{Report, Status};

    /// A cell as written alone in a row of two (an empty second cell).
    fn written(text: &str) -> String {
        let mut out = writer(Vec::new());
        out.write_record([cell(text).as_ref(), ""]).unwrap();
        let row = String::from_utf8(out.into_inner().unwrap()).unwrap();
        row.strip_suffix(",\r\n").unwrap().to_string()
    }

    #[test]
    fn formulas_are_neutralised_and_specials_quoted() {
        assert_eq!(written("alip"), "alip");
        assert_eq!(written("a.b_c-1"), "a.b_c-1");
        assert_eq!(
            written("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(written("+1"), "\"'+1\"");
        assert_eq!(written("-2+3"), "\"'-2+3\"");
        assert_eq!(written("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(written("\tx"), "\"'\tx\"");
        assert_eq!(written("\rx"), "\"'\rx\"");
        assert_eq!(written("a,b"), "\"a,b\"");
        assert_eq!(written("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(written("two\nlines"), "\"two\nlines\"");
        assert_eq!(written(""), "");
        // A `'` anywhere is quoted: harmless, and what makes the neutralised formulas quoted.
        assert_eq!(written("O'Brien"), "\"O'Brien\"");
    }

    #[test]
    fn a_row_has_every_column_in_order() {
        let e = EventRecord {
            at_ms: 1_727_580_000_123,
            event_id: "e1".into(),
            kind: Kind::Ambiguous,
            student_id: "Unknown".into(),
            distance: Some(0.38),
            ts: 1_727_580_000,
            candidates: Some(vec!["-budi".into(), "alip".into()]),
            decision: None,
            camera: None,
            direction: None,
            name: None,
            group: None,
            punch: None,
            delivery: Report {
                status: Status::Queued,
                http_status: Some(500),
                message: Some("=cmd".into()),
            },
        };
        assert_eq!(
            HEADER.join(","),
            "time,event_id,kind,student_id,distance,delivery,http_status,candidates,name,group,punch"
        );
        assert_eq!(
            event_row(&e),
            "2024-09-29T03:20:00.123Z,e1,ambiguous,Unknown,0.38,queued,500,\"'-budi;alip\",,,\r\n"
        );
        let e = EventRecord {
            kind: Kind::Attendance,
            student_id: "alip".into(),
            candidates: None,
            name: Some("=Alip, \"Nugraha\"".into()),
            group: Some("7A".into()),
            punch: Some(crate::events::Punch::Out),
            delivery: Report::status(Status::Sent),
            ..e
        };
        assert_eq!(
            event_row(&e),
            "2024-09-29T03:20:00.123Z,e1,attendance,alip,0.38,sent,,,\"'=Alip, \"\"Nugraha\"\"\",7A,out\r\n"
        );
    }
}
