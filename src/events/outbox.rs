//! The durable outbox: attendance events not yet delivered to the main API, kept in an
//! append-only journal (`data/outbox/journal.jsonl`) so that a crash, `kill -9` or a power cut
//! loses none of them.
//!
//! One JSON object per line: `{"event_id":…,"payload":"<webhook body>","accepted_ms":…}` when an event is accepted (written
//! and fsync'd before anything else happens to it), `{"done":"<event_id>"}` once the main API
//! answered 2xx (not fsync'd: after a power cut a delivered event may be sent again, with the same
//! `event_id` / `Idempotency-Key`, so delivery is at least once and the main API can drop the
//! duplicate). A torn last line (power cut mid-write) is skipped when the journal is read.
//!
//! Bounds: at most `max_pending` events wait; past that the oldest is dropped, logged and counted
//! (a stated trade: a box cut off from its main API for weeks keeps the most recent attendance).
//! The journal is rewritten with only the pending events when it is opened and whenever it holds
//! more delivered records than max(1000, pending), so its size stays proportional to the backlog.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::fsutil;

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub event_id: String,
    /// The webhook body, as sent (JSON text: a backlog of 100,000 events stays ~30 MB).
    pub payload: String,
    /// Unix ms when the event was accepted (for the age of the oldest).
    pub accepted_ms: u64,
}

pub struct Outbox {
    path: PathBuf,
    file: File,
    pending: VecDeque<Pending>,
    max_pending: usize,
    /// `done` records in the journal since it was last rewritten.
    done_records: usize,
    dropped: u64,
}

/// What opening the journal found.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    pub pending: usize,
    /// Lines that could not be read (a torn write at a power cut).
    pub unreadable: usize,
    pub dropped: usize,
}

use crate::clock::unix_ms as now_ms;

const MIN_COMPACT_RECORDS: usize = 1000;

impl Outbox {
    /// Opens (or creates) the journal in `dir`, reads back the events still pending, and
    /// rewrites the journal with only those.
    pub fn open(dir: &Path, max_pending: usize) -> io::Result<(Outbox, Recovered)> {
        fs::create_dir_all(dir)?;
        fsutil::remove_stale_temps(dir, fsutil::STALE_TEMP_AGE);
        let path = dir.join("journal.jsonl");
        let mut recovered = Recovered::default();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(record) => apply(&mut pending, record),
                        Err(_) => recovered.unreadable += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let max_pending = max_pending.max(1);
        while pending.len() > max_pending {
            pending.pop_front();
            recovered.dropped += 1;
        }
        recovered.pending = pending.len();
        let file = rewrite(&path, &pending)?;
        Ok((
            Outbox {
                path,
                file,
                pending,
                max_pending,
                done_records: 0,
                dropped: recovered.dropped as u64,
            },
            recovered,
        ))
    }

    /// Appends events and makes them durable (one fsync for the lot). Returns the events
    /// dropped to stay within the bound (oldest first).
    pub fn accept(&mut self, events: Vec<Pending>) -> io::Result<Vec<Pending>> {
        let mut lines = Vec::new();
        for e in &events {
            let record =
                json!({"event_id": e.event_id, "payload": e.payload, "accepted_ms": e.accepted_ms});
            lines.extend_from_slice(record.to_string().as_bytes());
            lines.push(b'\n');
        }
        if let Err(e) = self
            .file
            .write_all(&lines)
            .and_then(|()| self.file.sync_data())
        {
            self.repair();
            return Err(e);
        }
        self.pending.extend(events);
        let mut dropped = Vec::new();
        while self.pending.len() > self.max_pending {
            if let Some(old) = self.pending.pop_front() {
                dropped.push(old);
            }
        }
        if !dropped.is_empty() {
            self.dropped += dropped.len() as u64;
            // Recorded as done so a restart does not bring them back.
            for d in &dropped {
                self.write_done(&d.event_id)?;
            }
        }
        Ok(dropped)
    }

    /// The oldest pending event, next to deliver.
    pub fn head(&self) -> Option<&Pending> {
        self.pending.front()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How long the oldest pending event has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.pending
            .front()
            .map(|p| Duration::from_millis(now_ms().saturating_sub(p.accepted_ms)))
    }

    /// Records that the head was delivered and removes it.
    pub fn delivered(&mut self) -> io::Result<Option<Pending>> {
        let Some(head) = self.pending.pop_front() else {
            return Ok(None);
        };
        self.write_done(&head.event_id)?;
        if self.done_records > MIN_COMPACT_RECORDS.max(self.pending.len()) {
            self.compact()?;
        }
        Ok(Some(head))
    }

    fn write_done(&mut self, event_id: &str) -> io::Result<()> {
        let mut line = json!({"done": event_id}).to_string().into_bytes();
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            self.repair();
            return Err(e);
        }
        self.done_records += 1;
        Ok(())
    }

    /// After a failed write (disk full): a half-written line must not swallow the next record,
    /// so the journal is rewritten from memory when that is possible again.
    fn repair(&mut self) {
        match rewrite(&self.path, &self.pending) {
            Ok(file) => {
                self.file = file;
                self.done_records = 0;
            }
            Err(e) => log::warn!("outbox: cannot rewrite the journal yet: {e}"),
        }
    }

    /// Rewrites the journal with only the pending events.
    pub fn compact(&mut self) -> io::Result<()> {
        let before = self.done_records;
        self.file = rewrite(&self.path, &self.pending)?;
        self.done_records = 0;
        log::debug!(
            "outbox: journal rewritten ({before} delivered records dropped, {} pending kept)",
            self.pending.len()
        );
        Ok(())
    }
}

/// Applies one journal record to the pending list.
fn apply(pending: &mut VecDeque<Pending>, record: Value) {
    if let Some(done) = record.get("done").and_then(Value::as_str) {
        // Deliveries happen in order: the delivered event is almost always the first.
        if let Some(i) = pending.iter().position(|p| p.event_id == done) {
            pending.remove(i);
        }
        return;
    }
    let (Some(id), Some(payload)) = (
        record.get("event_id").and_then(Value::as_str),
        record.get("payload").and_then(Value::as_str),
    ) else {
        return;
    };
    pending.push_back(Pending {
        event_id: id.to_string(),
        payload: payload.to_string(),
        accepted_ms: record
            .get("accepted_ms")
            .and_then(Value::as_u64)
            .unwrap_or_else(now_ms),
    });
}

/// Writes `pending` as a fresh journal (atomically: the old one stays whole until the new one
/// is complete and durable) and opens it for appending.
fn rewrite(path: &Path, pending: &VecDeque<Pending>) -> io::Result<File> {
    let mut bytes = Vec::new();
    for p in pending {
        let record =
            json!({"event_id": p.event_id, "payload": p.payload, "accepted_ms": p.accepted_ms});
        bytes.extend_from_slice(record.to_string().as_bytes());
        bytes.push(b'\n');
    }
    fsutil::atomic_write(path, &bytes)?;
    OpenOptions::new().append(true).open(path)
}

/// A random version-4 UUID: event ids must stay unique across restarts and boxes.
pub fn new_event_id() -> String {
    let mut b = [0u8; 16];
    if File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        // No /dev/urandom (a very odd system): time, process and a counter are still unique
        // on this box.
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        b[..8].copy_from_slice(&nanos.to_le_bytes());
        b[8..12].copy_from_slice(&std::process::id().to_le_bytes());
        b[12..].copy_from_slice(&(SEQ.fetch_add(1, Ordering::Relaxed) as u32).to_le_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Pending {
        Pending {
            event_id: format!("id-{n}"),
            payload: json!({"student_id": format!("s{n}")}).to_string(),
            accepted_ms: 1_000 + u64::from(n),
        }
    }

    fn ids(outbox: &Outbox) -> Vec<String> {
        outbox.pending.iter().map(|p| p.event_id.clone()).collect()
    }

    #[test]
    fn pending_events_survive_a_reopen_and_delivered_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, r) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(r, Recovered::default());
        o.accept(vec![event(1), event(2)]).unwrap();
        o.accept(vec![event(3)]).unwrap();
        assert_eq!(o.delivered().unwrap().unwrap().event_id, "id-1");
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!(r.pending, 2);
        assert_eq!(ids(&o), ["id-2", "id-3"]);
        assert_eq!(o.head().unwrap().payload, r#"{"student_id":"s2"}"#);
        assert_eq!(o.head().unwrap().accepted_ms, 1_002);
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_journal_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 100).unwrap();
        o.accept(vec![event(1), event(2)]).unwrap();
        drop(o);
        let path = dir.path().join("journal.jsonl");
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"event_id":"id-3","payl"#);
        fs::write(&path, &bytes).unwrap();
        let (mut o, r) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!((r.pending, r.unreadable), (2, 1));
        // Appending after the repair gives whole lines again.
        o.accept(vec![event(4)]).unwrap();
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 100).unwrap();
        assert_eq!((r.pending, r.unreadable), (3, 0));
        assert_eq!(ids(&o), ["id-1", "id-2", "id-4"]);
    }

    #[test]
    fn the_oldest_events_are_dropped_past_the_bound_and_stay_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 3).unwrap();
        o.accept((1..=3).map(event).collect()).unwrap();
        let dropped = o.accept(vec![event(4), event(5)]).unwrap();
        let dropped: Vec<_> = dropped.into_iter().map(|p| p.event_id).collect();
        assert_eq!(dropped, ["id-1", "id-2"]);
        assert_eq!(o.dropped(), 2);
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 3).unwrap();
        assert_eq!(ids(&o), ["id-3", "id-4", "id-5"]);
        assert_eq!(r.dropped, 0);
    }

    #[test]
    fn the_journal_is_compacted_as_deliveries_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 10_000).unwrap();
        let path = dir.path().join("journal.jsonl");
        for n in 0..3000 {
            o.accept(vec![event(n)]).unwrap();
            o.delivered().unwrap();
        }
        // Never more than ~1000 delivered records (and their events) in the file.
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * (MIN_COMPACT_RECORDS + 1), "{lines} lines");
        o.accept(vec![event(9999)]).unwrap();
        drop(o);
        let (o, _) = Outbox::open(dir.path(), 10_000).unwrap();
        assert_eq!(ids(&o), ["id-9999"]);
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 1);
    }

    #[test]
    fn event_ids_are_version_4_uuids_and_unique() {
        let a = new_event_id();
        let b = new_event_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]));
    }
}
