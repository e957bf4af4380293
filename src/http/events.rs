//! `GET /events?since=&until=&student_id=&kind=&format=json|csv&limit=`: the local event log
//! ([`crate::events::log`]) as JSON or as a CSV download (`format=csv`, or `Accept: text/csv`
//! when no `format` is given).
//!
//! `since` (inclusive) and `until` (exclusive) are Unix milliseconds, a `YYYY-MM-DD` date (its
//! UTC midnight) or an RFC 3339 time; `student_id` matches exactly (it is a filter, never a
//! path); `kind` is attendance, unknown or ambiguous; `limit` (default 10,000, at most 100,000)
//! caps the events answered, oldest first (`truncated` says when more matched, `next_since`
//! where to go on). The answer is written to an unlinked temp file in the log's folder and
//! streamed from there, so a large one costs the box no more memory than the events read.

use std::io::{BufWriter, Seek, SeekFrom, Write};

use serde_json::json;

use super::app::App;
use super::call::Call;
use super::error::ApiError;
use super::form::Form;
use super::query::{self, percent_decode};
use super::respond::Answer;
use crate::events::csv;
use crate::events::log::{Found, Kind, Query};
use crate::events::utc;

pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;

/// What `GET /events` was asked.
#[derive(Debug, PartialEq)]
pub struct EventsRequest {
    pub query: Query,
    pub csv: bool,
    /// `format` was given (else `Accept: text/csv` asks for CSV).
    pub format_given: bool,
}

/// The query string of `GET /events`; a clear 400 for any value that does not read. Other
/// parameters are ignored.
pub fn parse_params(query: &str) -> Result<EventsRequest, ApiError> {
    let mut request = EventsRequest {
        query: Query::all(DEFAULT_LIMIT),
        csv: false,
        format_given: false,
    };
    for (key, raw) in query::pairs(query) {
        let bad = |what: &str| ApiError::BadRequest(format!("{key} must be {what}, got {raw:?}"));
        let decode = || percent_decode(raw).ok_or_else(|| bad("valid percent-encoded UTF-8"));
        let instant = || {
            let value = decode()?;
            utc::parse_instant(&value).map(Some).ok_or_else(|| {
                bad("Unix milliseconds, a YYYY-MM-DD date or an RFC 3339 time (UTC offset included)")
            })
        };
        match key {
            "since" => request.query.since_ms = instant()?,
            "until" => request.query.until_ms = instant()?,
            "student_id" => request.query.student_id = Some(decode()?),
            "kind" => {
                let kind = Kind::parse(&decode()?);
                request.query.kind =
                    Some(kind.ok_or_else(|| bad("attendance, unknown or ambiguous"))?)
            }
            "format" => {
                request.format_given = true;
                request.csv = match decode()?.as_str() {
                    "json" => false,
                    "csv" => true,
                    _ => return Err(bad("json or csv")),
                }
            }
            "limit" => {
                request.query.limit = decode()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad(&format!("a whole number from 1 to {MAX_LIMIT}")))?
            }
            _ => {}
        }
    }
    if let (Some(since), Some(until)) = (request.query.since_ms, request.query.until_ms) {
        if since > until {
            return Err(ApiError::BadRequest(format!(
                "since ({since}) is after until ({until})"
            )));
        }
    }
    Ok(request)
}

/// The route's handler (an upload route with no body: it runs on a thread of its own, as
/// reading many day files may take a while on a small board).
pub fn answer(app: &App, _form: Form, call: &Call) -> Result<Answer, ApiError> {
    let mut request = parse_params(&call.query)?;
    request.csv |= !request.format_given && call.wants_csv;
    let log = app
        .dispatcher
        .event_log()
        .ok_or_else(|| ApiError::NotFound("the event log (none is kept)".into()))?;
    let found = log.query(&request.query);
    let file = log
        .scratch_file()
        .map_err(|e| ApiError::io("event log answer", e))?;
    let write = |e: std::io::Error| ApiError::io("event log answer", e);
    let mut out = BufWriter::new(file);
    let (content_type, name) = if request.csv {
        write_csv(&mut out, &found).map_err(write)?;
        (
            "text/csv; charset=utf-8",
            Some(csv_file_name(&request.query)),
        )
    } else {
        write_json(&mut out, &found).map_err(write)?;
        ("application/json", None)
    };
    let mut file = out.into_inner().map_err(|e| write(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(write)?;
    Ok(Answer::File {
        content_type,
        file,
        name,
    })
}

/// `{"ok":true,"count":N,"truncated":…,"next_since":…,"unreadable_lines":…,"events":[…]}`,
/// one event at a time.
fn write_json(out: &mut impl Write, found: &Found) -> std::io::Result<()> {
    let head = json!({
        "ok": true,
        "count": found.events.len(),
        "truncated": found.truncated,
        "next_since": found.next_since,
        "unreadable_lines": found.unreadable_lines,
    })
    .to_string();
    // The head object without its closing brace, then the events.
    out.write_all(&head.as_bytes()[..head.len() - 1])?;
    out.write_all(b",\"events\":[")?;
    for (i, event) in found.events.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, event)?;
    }
    out.write_all(b"]}")
}

fn write_csv(out: &mut impl Write, found: &Found) -> std::io::Result<()> {
    let mut out = csv::writer(out);
    csv::write_header(&mut out)?;
    for event in &found.events {
        csv::write_event(&mut out, event)?;
    }
    out.flush()
}

/// `events-2024-09-29.csv` for one day, `events-2024-09-01_2024-09-30.csv` for a range
/// (`start` / `now` for an open end).
fn csv_file_name(query: &Query) -> String {
    let from = query.since_ms.map(|s| utc::day_of(s).to_string());
    let to = query
        .until_ms
        .map(|u| utc::day_of(u.saturating_sub(1)).to_string());
    match (from, to) {
        (Some(a), Some(b)) if a == b => format!("events-{a}.csv"),
        (a, b) => format!(
            "events-{}_{}.csv",
            a.as_deref().unwrap_or("start"),
            b.as_deref().unwrap_or("now")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_read_as_documented() {
        let r = parse_params("").unwrap();
        assert_eq!((r.query, r.csv), (Query::all(DEFAULT_LIMIT), false));
        let r = parse_params(
            "since=2024-09-29&until=1727654400000&student_id=..%2F..%2Fetc&kind=unknown&format=csv&limit=5&api_key=x",
        )
        .unwrap();
        assert!(r.csv);
        assert_eq!(r.query.since_ms, Some(1_727_568_000_000));
        assert_eq!(r.query.until_ms, Some(1_727_654_400_000));
        assert_eq!(r.query.student_id.as_deref(), Some("../../etc"));
        assert_eq!(r.query.kind, Some(Kind::Unknown));
        assert_eq!(r.query.limit, 5);
        assert_eq!(csv_file_name(&r.query), "events-2024-09-29.csv");
        let r = parse_params("since=2024-09-29T07:00:00%2B07:00").unwrap();
        assert_eq!(r.query.since_ms, Some(1_727_568_000_000));
        assert_eq!(csv_file_name(&r.query), "events-2024-09-29_now.csv");
    }

    #[test]
    fn bad_parameters_are_400_with_the_parameter_named() {
        for (query, name) in [
            ("since=yesterday", "since"),
            ("until=2024-02-30", "until"),
            ("format=xml", "format"),
            ("kind=teacher", "kind"),
            ("limit=0", "limit"),
            ("limit=100001", "limit"),
            ("limit=-1", "limit"),
            ("student_id=%zz", "student_id"),
            ("since=2024-09-30&until=2024-09-29", "since"),
        ] {
            let e = parse_params(query).unwrap_err();
            assert_eq!(e.status(), 400, "{query}");
            assert!(e.to_string().starts_with(name), "{query}: {e}");
        }
    }

    #[test]
    fn the_json_answer_is_one_object() {
        let mut out = Vec::new();
        write_json(&mut out, &Found::default()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"ok": true, "count": 0, "truncated": false, "next_since": null,
                   "unreadable_lines": 0, "events": []})
        );
    }
}
