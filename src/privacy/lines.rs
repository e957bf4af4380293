//! The log lines that name one person: the event log's (`data/events/<day>.jsonl`) and the
//! audit log's (`data/audit.jsonl`), copied as written into a sink, read line by line with a
//! bound on each line.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Longest line read (the event log's own bound, [`crate::events::log::MAX_LINE`]); a longer
/// one is damage, skipped.
pub const MAX_LINE: usize = crate::events::log::MAX_LINE;

/// Calls `each` with every line of `reader` (without its newline) of at most [`MAX_LINE`]
/// bytes; longer ones are skipped whole.
fn for_each_line(
    reader: impl Read,
    mut each: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE {
            // Too long: skip to the end of the line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                let m = (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)?;
                if m == 0 || rest.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        each(&line)?;
    }
}

/// Copies into `out` the lines of the event log file `path` about `id`: its events whose
/// `student_id` is `id` or whose `candidates` hold it, and the status lines of the events
/// `events` already holds (filled as they are found, across a person's day files in order).
/// Returns how many event lines were copied. A missing file copies nothing.
pub(super) fn event_lines(
    path: &Path,
    id: &str,
    events: &mut HashSet<String>,
    out: &mut impl Write,
) -> io::Result<usize> {
    let Some(file) = open_if_there(path)? else {
        return Ok(0);
    };
    let mut copied = 0;
    for_each_line(file, |line| {
        // Every line is read: a delivery status line names its event, not the person.
        let Ok(value) = serde_json::from_slice::<Value>(line) else {
            return Ok(());
        };
        let event_id = value.get("event_id").and_then(Value::as_str);
        let is_event = value.get("kind").is_some();
        let names = value.get("student_id").and_then(Value::as_str) == Some(id)
            || value
                .get("candidates")
                .and_then(Value::as_array)
                .is_some_and(|c| c.iter().any(|v| v.as_str() == Some(id)));
        let keep = if is_event {
            if names {
                if let Some(e) = event_id {
                    events.insert(e.to_string());
                }
                copied += 1;
            }
            names
        } else {
            event_id.is_some_and(|e| events.contains(e))
        };
        if keep {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })?;
    Ok(copied)
}

/// The file at `path`, or `None` when there is none.
fn open_if_there(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Copies into `out` the lines of the audit log `path` naming `id` (`student_id`, or `from`
/// for a rename); returns how many. A missing file copies nothing.
pub(super) fn audit_lines(path: &Path, id: &str, out: &mut impl Write) -> io::Result<usize> {
    let Some(file) = open_if_there(path)? else {
        return Ok(0);
    };
    let mut copied = 0;
    for_each_line(file, |line| {
        let Ok(value) = serde_json::from_slice::<Value>(line) else {
            return Ok(());
        };
        let names = ["student_id", "from"]
            .iter()
            .any(|k| value.get(*k).and_then(Value::as_str) == Some(id));
        if names {
            out.write_all(line)?;
            out.write_all(b"\n")?;
            copied += 1;
        }
        Ok(())
    })?;
    Ok(copied)
}

/// The event log's day files in `dir` (`YYYY-MM-DD.jsonl`), oldest first, with their day.
pub(super) fn day_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut days: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let day = name.strip_suffix(".jsonl")?;
            let is_day = day.len() == 10
                && day.bytes().enumerate().all(|(i, b)| match i {
                    4 | 7 => b == b'-',
                    _ => b.is_ascii_digit(),
                });
            is_day.then(|| (day.to_string(), e.path()))
        })
        .collect();
    days.sort();
    days
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_naming_the_person_are_copied_and_long_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let day = dir.path().join("2024-09-29.jsonl");
        let long = format!(
            "{{\"kind\":\"attendance\",\"student_id\":\"alip\",\"x\":\"{}\"}}",
            "a".repeat(MAX_LINE)
        );
        let text = [
            r#"{"at_ms":1,"event_id":"e1","kind":"attendance","student_id":"alip"}"#,
            r#"{"at_ms":2,"event_id":"e2","kind":"attendance","student_id":"alipa"}"#,
            r#"{"at_ms":3,"event_id":"e3","kind":"ambiguous","student_id":"Unknown","candidates":["budi","alip"]}"#,
            &long,
            r#"{"at_ms":4,"event_id":"e1","delivery":{"status":"sent"}}"#,
            r#"{"at_ms":5,"event_id":"e2","delivery":{"status":"sent"}}"#,
            "not json alip",
            r#"{"at_ms":6,"event_id":"e4","kind":"attendance","student_id":"alip"}"#,
        ]
        .join("\n");
        std::fs::write(&day, text).unwrap();
        std::fs::write(dir.path().join("notes.jsonl"), "x").unwrap();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        assert_eq!(event_lines(&day, "alip", &mut seen, &mut out).unwrap(), 3);
        let got = String::from_utf8(out).unwrap();
        let ids: Vec<&str> = got
            .lines()
            .map(|l| {
                l.split("\"event_id\":\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
            })
            .collect();
        assert_eq!(ids, ["e1", "e3", "e1", "e4"]);
        assert_eq!(day_files(dir.path()), [("2024-09-29".to_string(), day)]);

        let audit = dir.path().join("audit.jsonl");
        std::fs::write(
            &audit,
            concat!(
                r#"{"time":1,"action":"enroll","student_id":"ali","samples":1,"by":"k"}"#, "\n",
                r#"{"time":2,"action":"rename","student_id":"alip","from":"ali","samples":1,"by":"k"}"#, "\n",
                r#"{"time":3,"action":"enroll","student_id":"budi","samples":1,"by":"k"}"#, "\n",
                r#"{"time":4,"action":"rename","student_id":"zed","from":"alip","samples":1,"by":"k"}"#, "\n",
            ),
        )
        .unwrap();
        let mut out = Vec::new();
        assert_eq!(audit_lines(&audit, "alip", &mut out).unwrap(), 2);
        let mut out = Vec::new();
        assert_eq!(
            audit_lines(&dir.path().join("none"), "alip", &mut out).unwrap(),
            0
        );
    }
}
