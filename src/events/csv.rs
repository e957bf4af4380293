//! The event log as CSV (`GET /events?format=csv`): RFC 4180 (CRLF rows, a cell quoted when it
//! holds a comma, a quote or a line break, quotes doubled), and safe to open in a spreadsheet:
//! a text cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return would be read as
//! a formula, so it gets a leading `'` inside quotes (OWASP's advice against CSV injection).

use super::log::EventRecord;
use super::utc;

/// The CSV header line of `GET /events?format=csv`: one column per field of [`event_row`].
pub const HEADER: &str = "time,event_id,kind,student_id,distance,delivery,http_status,candidates";

/// Candidates are ids (letters, digits, `_-.`): joined with `;` in one cell.
const CANDIDATE_SEPARATOR: &str = ";";

/// Appends `text` as one cell: neutralised when a spreadsheet would take it as a formula,
/// quoted when it must be.
pub fn text_cell(out: &mut String, text: &str) {
    let formula = text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = formula || text.contains([',', '"', '\r', '\n']);
    if !quote {
        out.push_str(text);
        return;
    }
    out.push('"');
    if formula {
        out.push('\'');
    }
    for c in text.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// One event's row, with its line break.
pub fn event_row(e: &EventRecord) -> String {
    let mut row = String::with_capacity(160);
    row.push_str(&utc::format_rfc3339(e.at_ms));
    for text in [&e.event_id, e.kind.as_str(), &e.student_id] {
        row.push(',');
        text_cell(&mut row, text);
    }
    row.push(',');
    if let Some(d) = e.distance {
        // Numbers are written here, never taken from the log as text: nothing to neutralise.
        row.push_str(&format!("{d}"));
    }
    row.push(',');
    text_cell(&mut row, e.delivery.status.as_str());
    row.push(',');
    if let Some(code) = e.delivery.http_status {
        row.push_str(&code.to_string());
    }
    row.push(',');
    if let Some(candidates) = &e.candidates {
        text_cell(&mut row, &candidates.join(CANDIDATE_SEPARATOR));
    }
    row.push_str("\r\n");
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::log::Kind;
    use crate::events::{Report, Status};

    fn cell(text: &str) -> String {
        let mut out = String::new();
        text_cell(&mut out, text);
        out
    }

    #[test]
    fn formulas_are_neutralised_and_specials_quoted() {
        assert_eq!(cell("alip"), "alip");
        assert_eq!(cell("a.b_c-1"), "a.b_c-1");
        assert_eq!(
            cell("=HYPERLINK(\"http://x\",\"y\")"),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""
        );
        assert_eq!(cell("+1"), "\"'+1\"");
        assert_eq!(cell("-2+3"), "\"'-2+3\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("\tx"), "\"'\tx\"");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("two\nlines"), "\"two\nlines\"");
        assert_eq!(cell(""), "");
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
        assert_eq!(HEADER.split(',').count(), 8);
        assert_eq!(
            event_row(&e),
            "2024-09-29T03:20:00.123Z,e1,ambiguous,Unknown,0.38,queued,500,\"'-budi;alip\"\r\n"
        );
    }
}
