//! `GET /reports/daily?date=YYYY-MM-DD&group=&format=json|csv`: the day's attendance report
//! ([`crate::events::report`]) for the box's local day, as JSON or as a CSV download
//! (`format=csv`, or `Accept: text/csv` when no `format` is given).
//!
//! `date` defaults to today in the box's zone (`BOX_TIMEZONE`); `group` (`+` or `%20` for a
//! space) keeps that group's members only. A value that does not read is a 400 naming the
//! parameter. The answer is made on an upload thread (it reads a day or two of log files).

use jiff::civil::Date;

use super::app::App;
use super::call::Call;
use super::error::ApiError;
use super::form::Form;
use super::query::{self, form_decode};
use super::respond::Answer;
use crate::clock::unix_ms;
use crate::events::daily::daily_report;
use crate::events::report::parse_group;
use crate::localtime::{parse_date, BoxZone};

/// What `GET /reports/daily` was asked.
#[derive(Debug, PartialEq)]
pub struct ReportRequest {
    /// The local date; today when not given.
    pub date: Option<Date>,
    /// Only this group's members.
    pub group: Option<String>,
    /// CSV rather than JSON: `Some` when `format` said.
    pub csv: Option<bool>,
}

/// The query string of `GET /reports/daily`; a clear 400 naming the parameter for any value
/// that does not read. Other parameters are ignored.
pub fn parse_params(query: &str) -> Result<ReportRequest, ApiError> {
    let mut request = ReportRequest {
        date: None,
        group: None,
        csv: None,
    };
    for (key, raw) in query::pairs(query) {
        let bad = |what: String| ApiError::BadRequest(format!("{key} {what}"));
        let value =
            || form_decode(raw).ok_or_else(|| bad("must be valid percent-encoded UTF-8".into()));
        match key {
            "date" => {
                let value = value()?;
                let date =
                    parse_date(&value).map_err(|e| bad(format!("must be YYYY-MM-DD: {e}")))?;
                request.date = Some(date);
            }
            "group" => {
                let value = value()?;
                let group = parse_group(&value).map_err(ApiError::BadRequest)?;
                request.group = Some(group);
            }
            "format" => {
                request.csv = Some(match value()?.as_str() {
                    "json" => false,
                    "csv" => true,
                    other => return Err(bad(format!("must be json or csv, got {other:?}"))),
                })
            }
            _ => {}
        }
    }
    Ok(request)
}

/// The date asked for, else today in `zone`.
fn date_or_today(date: Option<Date>, zone: &BoxZone) -> Date {
    date.unwrap_or_else(|| zone.date_of(unix_ms()))
}

/// The route's handler.
pub fn answer(app: &App, _form: Form, call: &Call) -> Result<Answer, ApiError> {
    let request = parse_params(&call.query)?;
    let csv = request.csv.unwrap_or(call.wants_csv);
    let log = app
        .dispatcher
        .event_log()
        .ok_or_else(|| ApiError::NotFound("the event log (none is kept)".into()))?;
    let zone = app.zone();
    let date = date_or_today(request.date, zone);
    let report = daily_report(
        log,
        app.recognizer.gallery(),
        zone,
        date,
        request.group.as_deref(),
    );
    if !csv {
        return Ok(Answer::Text("application/json", report.to_json()));
    }
    let write = |e: std::io::Error| ApiError::io("daily report", e);
    let mut file = log.scratch_file().map_err(write)?;
    report.write_csv(&mut file).map_err(write)?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0)).map_err(write)?;
    Ok(Answer::File {
        content_type: "text/csv; charset=utf-8",
        file,
        name: Some(csv_file_name(date, request.group.as_deref())),
    })
}

/// `attendance-2026-03-29.csv`, or `attendance-2026-03-29-7A.csv` for a group (its letters,
/// digits, `-` and `_` only: the name goes into a header).
fn csv_file_name(date: Date, group: Option<&str>) -> String {
    match group {
        None => format!("attendance-{date}.csv"),
        Some(group) => {
            let safe: String = group
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("attendance-{date}-{safe}.csv")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_as_documented() {
        let r = parse_params("date=2026-03-29&group=Class+7A&format=csv&api_key=x").unwrap();
        assert_eq!(r.date, Some(parse_date("2026-03-29").unwrap()));
        assert_eq!(r.group.as_deref(), Some("Class 7A"));
        assert_eq!(r.csv, Some(true));
        let r = parse_params("group=%207%2FB%20").unwrap();
        assert_eq!(
            (r.date, r.group.as_deref(), r.csv),
            (None, Some("7/B"), None)
        );
        assert_eq!(
            csv_file_name(parse_date("2026-03-29").unwrap(), Some("7/B \"x\"")),
            "attendance-2026-03-29-7_B__x_.csv"
        );
    }

    #[test]
    fn bad_parameters_are_400_with_the_parameter_named() {
        for (query, name) in [
            ("date=yesterday", "date"),
            ("date=2026-02-30", "date"),
            ("date=2026-3-29", "date"),
            ("date=%zz", "date"),
            ("date=", "date"),
            ("group=", "group"),
            ("group=%E2%80%AE7A", "group"),
            ("group=7%0AA", "group"),
            ("group=%ff", "group"),
            ("format=xml", "format"),
        ] {
            let e = parse_params(query).unwrap_err();
            assert_eq!(e.status(), 400, "{query}");
            assert!(e.to_string().starts_with(name), "{query}: {e}");
        }
        let long = format!("group={}", "x".repeat(65));
        assert!(parse_params(&long)
            .unwrap_err()
            .to_string()
            .starts_with("group"));
    }
}
