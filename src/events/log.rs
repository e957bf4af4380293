//! The local event log: every event the dispatcher resolves (attendance, unknown, ambiguous),
//! with its decision and what became of its delivery, kept on the box so that a school whose
//! main API was down for a day can still see who came (`GET /events`).
//!
//! Contract:
//! - Files `data/events/YYYY-MM-DD.jsonl`, one per UTC day of the records they hold; append
//!   only; one JSON object per line; one write and one fsync per batch the dispatcher resolves
//!   (a new day's file also fsyncs the folder).
//! - An event record: `{"at_ms":…,"event_id":…,"kind":"attendance"|"unknown"|"ambiguous",
//!   "student_id":…,"distance":…,"ts":…,"candidates":[…]?,"decision":{…}?,
//!   "delivery":{"status":"sent"|"queued"|"failed"|"disabled","http_status"?,"message"?}}`.
//!   Repeats within the cooldown are not logged (with or without a webhook).
//! - A status record, when an event answered `queued` (or dropped from a full outbox) is
//!   settled later: `{"at_ms":…,"event_id":…,"delivery":{…}}`, in the file of its own day.
//!   Reading merges the latest status into its event.
//! - A torn last line (a kill or power cut mid-write) is skipped when read, and the next write
//!   starts on a new line; any line that does not read (or is longer than [`MAX_LINE`]) is
//!   skipped and counted, never fatal. Files whose names are not days are left alone.
//! - Files more than `EVENTS_KEEP_DAYS` days before today (UTC) are removed at start and then
//!   at most hourly, on a write; 0 keeps them forever.
//! - A log that cannot be written costs a log line and a counter (`/health` `event_log`), never
//!   an event: the webhook and the WebSocket go on as before.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::civil::Date;
use jiff::Span;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::utc;
use super::{Event, Punch, Report, Status};
use crate::clock::unix_ms;
use crate::fsutil;
use crate::gallery::UNKNOWN;
use crate::locks::lock;

/// Longest line read back: records are a few hundred bytes (a main API's message is cut to
/// 512 characters); anything longer is damage.
pub const MAX_LINE: usize = 64 * 1024;

/// How often old day files are looked for while the service runs.
const SWEEP_EVERY_MS: u64 = 3_600_000;

/// What an event was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A recognized person (`attendance`).
    Attendance,
    /// A face recognized as nobody (`attendance.unknown`).
    Unknown,
    /// A face as close to two people (`attendance.ambiguous`).
    Ambiguous,
}

impl Kind {
    /// The kind of `event`.
    pub fn of(event: &Event) -> Kind {
        if event.candidates().is_some() {
            Kind::Ambiguous
        } else if event.student_id == UNKNOWN {
            Kind::Unknown
        } else {
            Kind::Attendance
        }
    }

    /// The kind as `/events` spells it (`attendance`, `unknown`, `ambiguous`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Attendance => "attendance",
            Kind::Unknown => "unknown",
            Kind::Ambiguous => "ambiguous",
        }
    }

    /// The kind `text` names, if any.
    pub fn parse(text: &str) -> Option<Kind> {
        [Kind::Attendance, Kind::Unknown, Kind::Ambiguous]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One event as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// When the event was logged, Unix milliseconds.
    pub at_ms: u64,
    /// The event's id (its webhook `Idempotency-Key`).
    pub event_id: String,
    /// Attendance, unknown or ambiguous.
    pub kind: Kind,
    /// The person, or `Unknown`.
    pub student_id: String,
    /// The face's distance to the person's closest sample.
    pub distance: Option<f64>,
    /// When the face was seen, Unix seconds.
    pub ts: i64,
    /// The two people an ambiguous face was as close to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<String>>,
    /// What a camera decision rested on (camera events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Value>,
    /// The camera that saw the face (camera events only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// That camera's direction, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The person's display name, when the gallery had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The person's group, when the gallery had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// In or out (attendance events; none in logs written before punches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub punch: Option<Punch>,
    /// What became of the event when it was logged.
    pub delivery: Report,
}

impl EventRecord {
    /// The record of `event`, delivered as `delivery` says, logged at `at_ms`.
    pub fn new(event: &Event, delivery: &Report, at_ms: u64) -> EventRecord {
        EventRecord {
            at_ms,
            event_id: event.event_id.clone(),
            kind: Kind::of(event),
            student_id: event.student_id.clone(),
            distance: event.distance,
            ts: event.ts,
            candidates: event.candidates().map(|c| c.to_vec()),
            decision: event.decision().map(|d| json!(d)),
            camera: event.camera().map(|c| c.name.clone()),
            direction: event
                .camera()
                .and_then(|c| c.direction)
                .map(|d| d.as_str().to_string()),
            name: event.name().map(str::to_string),
            group: event.group().map(str::to_string),
            punch: event.punch(),
            delivery: delivery.clone(),
        }
    }
}

/// A later delivery status of a logged event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// When the status was logged, Unix milliseconds.
    pub at_ms: u64,
    /// The event it is about.
    pub event_id: String,
    /// Its delivery since.
    pub delivery: Report,
}

/// A line of the log.
// Lines live only while a batch is written or a file is read, one at a time: boxing the
// record would cost an allocation per event for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Line {
    /// An event as first logged.
    Event(EventRecord),
    /// A later delivery status of one.
    Status(StatusRecord),
}

impl Line {
    fn at_ms(&self) -> u64 {
        match self {
            Line::Event(e) => e.at_ms,
            Line::Status(s) => s.at_ms,
        }
    }
}

/// The log's counters, as `/health` shows them.
#[derive(Debug, Default)]
pub struct EventLogStats {
    records: AtomicU64,
    write_errors: AtomicU64,
    unreadable_lines: AtomicU64,
    files_removed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl EventLogStats {
    /// Records written since the start.
    pub fn records_written(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// Writes that failed since the start.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// The counters as `/health`'s `event_log` object.
    pub fn to_json(&self) -> Value {
        json!({
            "records_written": self.records_written(),
            "write_errors": self.write_errors(),
            "unreadable_lines": self.unreadable_lines.load(Ordering::Relaxed),
            "files_removed": self.files_removed.load(Ordering::Relaxed),
            "last_error": *lock(&self.last_error),
        })
    }

    /// Counts a failure; only the first of a run of them is logged (a full disk would otherwise
    /// log each batch).
    fn failed(&self, what: &str, e: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        let message = format!("{what}: {e}");
        let mut last = lock(&self.last_error);
        if last.is_none() {
            log::warn!("event log: {message}; events go on without it");
        }
        *last = Some(message);
    }

    fn succeeded(&self, records: usize) {
        self.records.fetch_add(records as u64, Ordering::Relaxed);
        let mut last = lock(&self.last_error);
        if last.take().is_some() {
            log::info!("event log: written again");
        }
    }
}

/// The day file being appended to.
struct DayFile {
    day: Date,
    file: File,
}

/// The writing end (the dispatcher thread owns it).
pub struct EventLog {
    dir: PathBuf,
    keep_days: u32,
    current: Option<DayFile>,
    last_sweep_ms: u64,
    stats: Arc<EventLogStats>,
}

/// The reading end, for `GET /events` and `/health` (cheap to clone).
#[derive(Clone)]
pub struct EventLogReader {
    dir: PathBuf,
    stats: Arc<EventLogStats>,
}

/// `YYYY-MM-DD.jsonl` of a day.
fn file_name(day: Date) -> String {
    format!("{day}.jsonl")
}

/// The day of a log file's name, `None` for any other file.
fn day_of_name(name: &str) -> Option<Date> {
    utc::parse_day(name.strip_suffix(".jsonl")?)
}

/// The day files in `dir`, oldest first (none when it cannot be read).
fn day_files(dir: &Path) -> Vec<(Date, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(Date, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((day_of_name(e.file_name().to_str()?)?, e.path())))
        .collect();
    files.sort();
    files
}

impl EventLog {
    /// The log in `dir` (created when missing), with files older than `keep_days` removed
    /// (0: kept forever). Never fails: trouble is logged and counted, and writes try again.
    pub fn open(dir: &Path, keep_days: u32) -> EventLog {
        let mut log = EventLog {
            dir: dir.to_path_buf(),
            keep_days,
            current: None,
            last_sweep_ms: 0,
            stats: Arc::default(),
        };
        match fs::create_dir_all(dir) {
            Ok(()) => {
                fsutil::remove_stale_temps(dir, fsutil::STALE_TEMP_AGE);
                log.sweep(unix_ms());
            }
            Err(e) => log.stats.failed("cannot create its folder", &e),
        }
        log
    }

    /// A reader of the log, for `GET /events` (it reads the files, not this writer).
    pub fn reader(&self) -> EventLogReader {
        EventLogReader {
            dir: self.dir.clone(),
            stats: self.stats.clone(),
        }
    }

    /// The log's counters.
    pub fn stats(&self) -> &EventLogStats {
        &self.stats
    }

    /// Appends `lines` (each to the file of its own day) and makes them durable. Failures are
    /// counted and logged here; the caller carries on.
    pub fn append(&mut self, lines: &[Line]) {
        self.append_at(lines, unix_ms());
    }

    /// [`EventLog::append`] with the time of day given (for the hourly sweep; tests).
    pub fn append_at(&mut self, lines: &[Line], now_ms: u64) {
        if now_ms >= self.last_sweep_ms.saturating_add(SWEEP_EVERY_MS) {
            self.sweep(now_ms);
        }
        let mut start = 0;
        while start < lines.len() {
            let day = utc::day_of(lines[start].at_ms());
            let end = lines[start..]
                .iter()
                .position(|l| utc::day_of(l.at_ms()) != day)
                .map_or(lines.len(), |n| start + n);
            match self.write_day(day, &lines[start..end]) {
                Ok(()) => self.stats.succeeded(end - start),
                Err(e) => {
                    // Reopened (and its end checked) by the next write.
                    self.current = None;
                    self.stats.failed("cannot write", &e);
                }
            }
            start = end;
        }
    }

    fn write_day(&mut self, day: Date, lines: &[Line]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut bytes, line)?;
            bytes.push(b'\n');
        }
        let current = match self.current.take() {
            Some(current) if current.day == day => current,
            _ => DayFile {
                day,
                file: self.open_day(day)?,
            },
        };
        let file = &self.current.insert(current).file;
        (&*file).write_all(&bytes)?;
        file.sync_data()
    }

    /// Opens a day's file for appending. A file cut short mid-line (a kill or power cut) gets
    /// a newline first, so the torn line stays one unreadable line and the next record whole.
    fn open_day(&self, day: Date) -> io::Result<File> {
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(file_name(day));
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)?;
        let len = file.metadata()?.len();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        if !existed {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(file)
    }

    /// Removes the day files past `keep_days`.
    fn sweep(&mut self, now_ms: u64) {
        self.last_sweep_ms = now_ms;
        if self.keep_days == 0 {
            return;
        }
        // Past jiff's span of days (far beyond EVENTS_KEEP_DAYS' bound): nothing is that old.
        let Ok(keep) = Span::new().try_days(i64::from(self.keep_days)) else {
            return;
        };
        let oldest_kept = utc::day_of(now_ms).saturating_sub(keep);
        for (day, path) in day_files(&self.dir) {
            if day >= oldest_kept {
                break;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    self.stats.files_removed.fetch_add(1, Ordering::Relaxed);
                    log::info!(
                        "event log: removed {} (past EVENTS_KEEP_DAYS)",
                        path.display()
                    );
                }
                Err(e) => log::warn!("event log: cannot remove {}: {e}", path.display()),
            }
        }
    }
}

/// What `GET /events` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Unix ms, inclusive.
    pub since_ms: Option<u64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<u64>,
    /// Only this person's events.
    pub student_id: Option<String>,
    /// Only events of this kind.
    pub kind: Option<Kind>,
    /// The most events answered (oldest first).
    pub limit: usize,
}

impl Query {
    /// Every event, up to `limit`.
    pub fn all(limit: usize) -> Query {
        Query {
            since_ms: None,
            until_ms: None,
            student_id: None,
            kind: None,
            limit,
        }
    }

    fn matches(&self, e: &EventRecord) -> bool {
        self.since_ms.is_none_or(|s| e.at_ms >= s)
            && self.until_ms.is_none_or(|u| e.at_ms < u)
            && self
                .student_id
                .as_ref()
                .is_none_or(|id| *id == e.student_id)
            && self.kind.is_none_or(|k| k == e.kind)
    }

    /// Whether day files of `day` may hold events asked for.
    fn covers_day(&self, day: Date) -> bool {
        self.since_ms.is_none_or(|s| day >= utc::day_of(s))
            && self
                .until_ms
                .is_none_or(|u| u > 0 && day <= utc::day_of(u - 1))
    }
}

/// The events found, oldest first, with their latest delivery status.
#[derive(Debug, Default)]
pub struct Found {
    /// The events found, oldest first.
    pub events: Vec<EventRecord>,
    /// More events matched than `limit`.
    pub truncated: bool,
    /// When truncated: the `at_ms` of the first event left out (ask again with it as `since`;
    /// events of that very millisecond already answered come again).
    pub next_since: Option<u64>,
    /// Lines skipped because they did not read (torn, damaged, too long).
    pub unreadable_lines: u64,
}

/// Reads log lines into a [`Found`]: matching events up to the limit, then the later status
/// records of the events kept.
pub struct Scan<'q> {
    query: &'q Query,
    found: Found,
    index: HashMap<String, usize>,
}

impl<'q> Scan<'q> {
    /// A scan for what `query` asks.
    pub fn new(query: &'q Query) -> Scan<'q> {
        Scan {
            query,
            found: Found::default(),
            index: HashMap::new(),
        }
    }

    /// Whether an event kept still waits for its delivery: later files may settle it.
    fn awaits_status(&self) -> bool {
        self.found
            .events
            .iter()
            .any(|e| e.delivery.status == Status::Queued)
    }

    /// Reads lines from `reader`; past the limit only status records count.
    pub fn feed(&mut self, reader: impl BufRead) -> io::Result<()> {
        let mut lines = BoundedLines::new(reader);
        while let Some(line) = lines.next_line()? {
            let Some(bytes) = line else {
                self.found.unreadable_lines += 1;
                continue;
            };
            if bytes.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<Line>(bytes) {
                Ok(Line::Event(event)) => self.event(event),
                Ok(Line::Status(status)) => self.status(status),
                Err(_) => self.found.unreadable_lines += 1,
            }
        }
        Ok(())
    }

    fn event(&mut self, event: EventRecord) {
        if self.found.truncated || !self.query.matches(&event) {
            return;
        }
        if self.found.events.len() >= self.query.limit {
            self.found.truncated = true;
            self.found.next_since = Some(event.at_ms);
            return;
        }
        self.index
            .insert(event.event_id.clone(), self.found.events.len());
        self.found.events.push(event);
    }

    fn status(&mut self, status: StatusRecord) {
        if let Some(&i) = self.index.get(&status.event_id) {
            self.found.events[i].delivery = status.delivery;
        }
    }

    /// What the scan found.
    pub fn finish(self) -> Found {
        self.found
    }
}

impl EventLogReader {
    /// The counters of the log being read.
    pub fn stats(&self) -> &EventLogStats {
        &self.stats
    }

    /// A temp file in the log's folder, already unlinked, for a large answer.
    pub fn scratch_file(&self) -> io::Result<File> {
        fs::create_dir_all(&self.dir)?;
        fsutil::unlinked_temp(&self.dir, "events-answer")
    }

    /// The events `query` asks for. Only the day files in its range are read, then later ones
    /// only while an event kept is still `queued` (its delivery may be recorded there). A file
    /// that cannot be read is skipped (logged).
    pub fn query(&self, query: &Query) -> Found {
        let mut scan = Scan::new(query);
        let mut past_range = false;
        for (day, path) in day_files(&self.dir) {
            if !past_range && !query.covers_day(day) {
                if query.since_ms.is_some_and(|s| day < utc::day_of(s)) {
                    continue;
                }
                past_range = true;
            }
            if (past_range || scan.found.truncated) && !scan.awaits_status() {
                break;
            }
            let read = File::open(&path).and_then(|f| scan.feed(BufReader::new(f)));
            if let Err(e) = read {
                log::warn!("event log: cannot read {}: {e}", path.display());
            }
        }
        let found = scan.finish();
        self.stats
            .unreadable_lines
            .fetch_add(found.unreadable_lines, Ordering::Relaxed);
        found
    }
}

/// Reading the log for the daily report (issue 26): a reader of a data folder's log without a
/// service, and every event record of a range, one at a time.
impl EventLogReader {
    /// A reader of the log in `dir`, for a command run without the service: nothing is
    /// created, swept or written.
    pub fn at(dir: &Path) -> EventLogReader {
        EventLogReader {
            dir: dir.to_path_buf(),
            stats: Arc::default(),
        }
    }

    /// Gives `visit` every event record logged in `[since_ms, until_ms)`, file by file (the
    /// UTC day files that overlap the range), as logged; delivery statuses are not merged (a
    /// report of who came needs none). Returns the lines that did not read. A file that cannot
    /// be read is skipped (logged).
    pub fn each_event(
        &self,
        since_ms: u64,
        until_ms: u64,
        mut visit: impl FnMut(&EventRecord),
    ) -> u64 {
        let range = Query {
            since_ms: Some(since_ms),
            until_ms: Some(until_ms),
            ..Query::all(0)
        };
        let mut unreadable = 0;
        for (day, path) in day_files(&self.dir) {
            if !range.covers_day(day) {
                continue;
            }
            let read = File::open(&path).and_then(|f| {
                let mut lines = BoundedLines::new(BufReader::new(f));
                while let Some(line) = lines.next_line()? {
                    let Some(bytes) = line else {
                        unreadable += 1;
                        continue;
                    };
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Line>(bytes) {
                        Ok(Line::Event(e)) if range.matches(&e) => visit(&e),
                        Ok(_) => {}
                        Err(_) => unreadable += 1,
                    }
                }
                Ok(())
            });
            if let Err(e) = read {
                log::warn!("event log: cannot read {}: {e}", path.display());
            }
        }
        self.stats
            .unreadable_lines
            .fetch_add(unreadable, Ordering::Relaxed);
        unreadable
    }
}

/// Lines of at most [`MAX_LINE`] bytes: a damaged file without newlines costs no more memory
/// than that.
struct BoundedLines<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    fn new(reader: R) -> Self {
        BoundedLines {
            reader,
            buf: Vec::new(),
        }
    }

    /// The next line without its newline: `Some(None)` when it was too long (skipped), `None`
    /// at the end.
    fn next_line(&mut self) -> io::Result<Option<Option<&[u8]>>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                break;
            }
            any = true;
            let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            if !too_long && self.buf.len() + part.len() <= MAX_LINE {
                self.buf.extend_from_slice(part);
            } else {
                too_long = true;
                self.buf.clear();
            }
            self.reader.consume(used);
            if done {
                break;
            }
        }
        Ok(match (any, too_long) {
            (false, _) => None,
            (true, true) => Some(None),
            (true, false) => Some(Some(&self.buf)),
        })
    }
}

/// Log lines as `/events` reads them, for the fuzz target ([`crate::fuzzing`]): whatever reads
/// must write back and read the same, and nothing panics. Gives the events read.
#[cfg(any(fuzzing, test))]
pub(crate) fn fuzz_lines(data: &[u8]) -> Vec<EventRecord> {
    let query = Query::all(1000);
    let mut scan = Scan::new(&query);
    if scan.feed(data).is_err() {
        return Vec::new();
    }
    let first = scan.finish();
    let mut bytes = Vec::new();
    for e in &first.events {
        if serde_json::to_writer(&mut bytes, &Line::Event(e.clone())).is_err() {
            return Vec::new();
        }
        bytes.push(b'\n');
    }
    let mut again = Scan::new(&query);
    assert!(again.feed(&bytes[..]).is_ok());
    let again = again.finish();
    assert_eq!(again.unreadable_lines, 0);
    assert_eq!(again.events.len(), first.events.len());
    first.events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::test_event;

    const DAY: u64 = 86_400_000;
    /// 2024-09-29T00:00:00Z.
    const T0: u64 = 1_727_568_000_000;

    fn record(id: &str, at_ms: u64, status: Status) -> Line {
        let mut event = test_event(id);
        event.event_id = format!("{id}-{at_ms}");
        Line::Event(EventRecord::new(&event, &Report::status(status), at_ms))
    }

    fn ids(found: &Found) -> Vec<String> {
        found.events.iter().map(|e| e.event_id.clone()).collect()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn records_go_to_the_file_of_their_utc_day_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        log.append_at(
            &[
                record("alip", T0 - 1, Status::Sent),
                record("budi", T0, Status::Disabled),
            ],
            T0,
        );
        log.append_at(&[record("alip", T0 + DAY + 5, Status::Sent)], T0 + DAY);
        assert_eq!(
            names(dir.path()),
            ["2024-09-28.jsonl", "2024-09-29.jsonl", "2024-09-30.jsonl"]
        );
        assert_eq!(log.stats().records_written(), 3);
        let reader = log.reader();
        let all = reader.query(&Query::all(100));
        assert_eq!(
            ids(&all),
            [
                "alip-1727567999999",
                "budi-1727568000000",
                "alip-1727654400005"
            ]
        );
        let day = Query {
            since_ms: Some(T0),
            until_ms: Some(T0 + DAY),
            ..Query::all(100)
        };
        assert_eq!(ids(&reader.query(&day)), ["budi-1727568000000"]);
        let alip = Query {
            student_id: Some("alip".into()),
            ..Query::all(100)
        };
        assert_eq!(reader.query(&alip).events.len(), 2);
        let nobody = Query {
            student_id: Some("../../etc".into()),
            ..Query::all(100)
        };
        assert!(reader.query(&nobody).events.is_empty());
        let first = reader.query(&Query::all(1));
        assert!(first.truncated);
        assert_eq!(first.next_since, Some(T0));
    }

    #[test]
    fn old_day_files_go_at_open_and_on_the_hourly_sweep_only_past_the_keep() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "2024-06-01.jsonl",
            "2024-09-20.jsonl",
            "notes.txt",
            "2024-13-01.jsonl",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        // Opened "now" (years after these days) with 0: nothing goes.
        drop(EventLog::open(dir.path(), 0));
        assert_eq!(names(dir.path()).len(), 4);
        let mut log = EventLog::open(dir.path(), 3650);
        assert_eq!(names(dir.path()).len(), 4);
        // The keep counted from the write's day: 10 days keep 2024-09-20 on 2024-09-29 (the
        // clock turned back to then: the next write sweeps).
        log.keep_days = 10;
        log.last_sweep_ms = 0;
        log.append_at(&[record("a", T0, Status::Sent)], T0);
        assert_eq!(
            names(dir.path()),
            [
                "2024-09-20.jsonl",
                "2024-09-29.jsonl",
                "2024-13-01.jsonl",
                "notes.txt"
            ]
        );
        // Within the hour no sweep; the next one takes 2024-09-20 on 2024-10-01.
        log.append_at(&[record("a", T0 + 1, Status::Sent)], T0 + 1000);
        log.append_at(&[record("a", T0 + 2 * DAY, Status::Sent)], T0 + 2 * DAY);
        assert!(!names(dir.path()).contains(&"2024-09-20.jsonl".to_string()));
        assert_eq!(log.stats().to_json()["files_removed"], 2);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_next_record_starts_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        log.append_at(&[record("a", T0, Status::Sent)], T0);
        drop(log);
        let path = dir.path().join("2024-09-29.jsonl");
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"at_ms":1727568000001,"event_id":"torn","kin"#);
        fs::write(&path, &bytes).unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        let found = log.reader().query(&Query::all(100));
        assert_eq!((found.events.len(), found.unreadable_lines), (1, 1));
        log.append_at(&[record("b", T0 + 2, Status::Sent)], T0 + 2);
        let found = log.reader().query(&Query::all(100));
        assert_eq!(ids(&found), ["a-1727568000000", "b-1727568000002"]);
        assert_eq!(found.unreadable_lines, 1);
        assert_eq!(log.stats().to_json()["unreadable_lines"], 2);
    }

    #[test]
    fn damaged_and_overlong_lines_are_skipped() {
        let good = serde_json::to_string(&record("a", T0, Status::Sent)).unwrap();
        let mut data = Vec::new();
        data.extend_from_slice(b"\xff\xfe not json\n");
        data.extend_from_slice(&vec![b'x'; MAX_LINE + 10]);
        data.extend_from_slice(b"\n\n{\"at_ms\":-1}\n");
        data.extend_from_slice(good.as_bytes());
        let query = Query::all(10);
        let mut scan = Scan::new(&query);
        scan.feed(&data[..]).unwrap();
        let found = scan.finish();
        assert_eq!((found.events.len(), found.unreadable_lines), (1, 3));
    }

    #[test]
    fn the_latest_delivery_status_is_merged_even_from_a_later_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = EventLog::open(dir.path(), 0);
        log.append_at(
            &[
                record("a", T0 + DAY - 10, Status::Queued),
                record("b", T0 + DAY - 5, Status::Disabled),
            ],
            T0,
        );
        let sent = Report {
            status: Status::Sent,
            http_status: Some(200),
            message: Some("stored".into()),
        };
        let status = |at_ms: u64, delivery: Report| {
            Line::Status(StatusRecord {
                at_ms,
                event_id: format!("a-{}", T0 + DAY - 10),
                delivery,
            })
        };
        let mut failing = Report::status(Status::Queued);
        failing.http_status = Some(500);
        log.append_at(&[status(T0 + DAY - 1, failing)], T0 + DAY);
        // Delivered after midnight: the status is in the next day's file.
        log.append_at(&[status(T0 + DAY + 60_000, sent.clone())], T0 + DAY);
        let reader = log.reader();
        let day = Query {
            since_ms: Some(T0),
            until_ms: Some(T0 + DAY),
            ..Query::all(100)
        };
        let found = reader.query(&day);
        assert_eq!(found.events.len(), 2);
        assert_eq!(found.events[0].delivery, sent);
        assert_eq!(found.events[1].delivery.status, Status::Disabled);
    }

    #[test]
    fn a_folder_that_cannot_be_made_costs_a_counter_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        let mut log = EventLog::open(&blocker.join("events"), 90);
        log.append_at(&[record("a", T0, Status::Sent)], T0);
        assert_eq!(log.stats().write_errors(), 2);
        assert_eq!(log.stats().records_written(), 0);
        assert!(log.stats().to_json()["last_error"].is_string());
        assert!(log.reader().query(&Query::all(10)).events.is_empty());
    }

    #[test]
    fn fuzz_entry_takes_what_the_log_writes() {
        let mut data = Vec::new();
        for line in [
            record("a", T0, Status::Sent),
            record("b", T0 + 1, Status::Queued),
        ] {
            data.extend_from_slice(serde_json::to_string(&line).unwrap().as_bytes());
            data.push(b'\n');
        }
        for cut in 0..data.len() {
            fuzz_lines(&data[..cut]);
        }
    }
}
