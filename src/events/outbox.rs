//! The durable outbox: attendance events not yet taken by every durable sink (the webhook, the
//! MQTT broker: events/sink.rs), kept in one append-only journal (`data/outbox/journal.jsonl`)
//! so that a crash, `kill -9` or a power cut loses none of them.
//!
//! One JSON object per line: `{"event_id":…,"payload":"<webhook body>","accepted_ms":…}` when an
//! event is accepted (written and fsync'd before anything else happens to it), then one
//! `{"done":"<event_id>","sink":"<name>"}` per sink that took it (the webhook's is written
//! `{"done":"<event_id>"}`, as before sinks had names, so an older release reads it). Done
//! records are not fsync'd: after a power cut an event may be delivered again, with the same
//! `event_id`, so delivery is at least once and the receiver drops the duplicate. A torn last
//! line (power cut mid-write) is skipped when the journal is read.
//!
//! Each sink has its own cursor: the oldest event it has not taken. Sinks deliver in journal
//! order, each at its own pace; an event leaves memory (and, at the next rewrite, the journal)
//! once every configured sink took it. A sink that is added later starts with what is pending;
//! done records of a sink no longer configured are ignored. The journal's first line names the
//! sinks it was written for (`{"sinks":[…]}`), so that events all of them took stay gone when
//! the set changes.
//!
//! Bounds: at most `max_pending` events wait; past that the oldest is dropped for every sink,
//! logged and counted (`{"dropped":…}`: a stated trade, a box cut off from its main API for weeks
//! keeps the most recent attendance). The journal is rewritten with only the pending events
//! when it is opened and whenever it holds more done records than max(1000, pending), so its
//! size stays proportional to the backlog.
//!
//! When the journal cannot be written (disk full), accepted events are still kept in memory
//! and delivered; the error is returned so that callers know they are not durable yet, and the
//! journal is rewritten from memory (making them durable) as soon as it can be.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::fsutil;

/// An event waiting for delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// The event's id (its `Idempotency-Key`).
    pub event_id: String,
    /// The webhook body, as sent (JSON text: a backlog of 100,000 events stays ~30 MB).
    pub payload: String,
    /// Unix ms when the event was accepted (for the age of the oldest).
    pub accepted_ms: u64,
}

/// A pending event and the sinks that took it (bit `i`: `sinks[i]`).
#[derive(Debug)]
struct Entry {
    event: Pending,
    done: u64,
}

/// The webhook's cursor name; its done records keep the form they had before sinks had names.
pub const WEBHOOK: &str = "webhook";
/// At most this many durable sinks (one bit each).
pub const MAX_SINKS: usize = 64;

/// The outbox: events not yet taken by every durable sink, in a journal
/// (`data/outbox/journal.jsonl`) that survives restarts and power cuts, with one cursor per sink.
pub struct Outbox {
    path: PathBuf,
    file: File,
    pending: VecDeque<Entry>,
    /// The durable sinks, in cursor order.
    sinks: Vec<String>,
    /// Per sink: index in `pending` before which it took everything.
    cursors: Vec<usize>,
    /// Per sink: events it has not taken.
    waiting: Vec<usize>,
    max_pending: usize,
    /// Done records in the journal since it was last rewritten.
    done_records: usize,
    dropped: u64,
    /// The journal lacks some pending events (a failed write); rewrite at the next chance.
    needs_rewrite: bool,
}

/// What opening the journal found.
#[derive(Debug, Default, PartialEq)]
pub struct Recovered {
    /// Events still to deliver.
    pub pending: usize,
    /// Lines that could not be read (a torn write at a power cut).
    pub unreadable: usize,
    /// Oldest events dropped to stay within `OUTBOX_MAX_EVENTS`.
    pub dropped: usize,
}

use crate::clock::unix_ms as now_ms;

const MIN_COMPACT_RECORDS: usize = 1000;

impl Outbox {
    /// Opens (or creates) the journal in `dir` for the durable sinks named `sinks` (each gets a
    /// cursor, in this order), reads back the events some of them have not taken, and rewrites
    /// the journal with only those.
    pub fn open(dir: &Path, max_pending: usize, sinks: &[&str]) -> io::Result<(Outbox, Recovered)> {
        if sinks.is_empty() || sinks.len() > MAX_SINKS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the outbox needs 1 to {MAX_SINKS} sinks, not {}",
                    sinks.len()
                ),
            ));
        }
        fs::create_dir_all(dir)?;
        fsutil::remove_stale_temps(dir, fsutil::STALE_TEMP_AGE);
        let path = dir.join("journal.jsonl");
        let sinks: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
        let mut recovered = Recovered::default();
        let mut read = Read::default();
        match File::open(&path) {
            Ok(file) => {
                for line in BufReader::new(file).split(b'\n') {
                    let line = line?;
                    if line.is_empty() {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(&line) {
                        Ok(record) => read.apply(record),
                        Err(_) => recovered.unreadable += 1,
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut pending = read.pending_for(&sinks);
        let max_pending = max_pending.max(1);
        while pending.len() > max_pending {
            pending.pop_front();
            recovered.dropped += 1;
        }
        recovered.pending = pending.len();
        let file = rewrite(&path, &pending, &sinks)?;
        let mut outbox = Outbox {
            path,
            file,
            pending,
            cursors: vec![0; sinks.len()],
            waiting: vec![0; sinks.len()],
            sinks,
            max_pending,
            done_records: 0,
            dropped: recovered.dropped as u64,
            needs_rewrite: false,
        };
        outbox.recount();
        Ok((outbox, recovered))
    }

    /// The durable sinks' names, in cursor order.
    pub fn sinks(&self) -> &[String] {
        &self.sinks
    }

    /// Appends events and makes them durable (one fsync for the lot). Returns the events
    /// dropped to stay within the bound (oldest first). On a write error the events are still
    /// kept (in memory, for delivery) and the error is returned.
    pub fn accept(&mut self, events: Vec<Pending>) -> io::Result<Vec<Pending>> {
        let mut lines = Vec::new();
        for e in &events {
            lines.extend_from_slice(event_record(e).to_string().as_bytes());
            lines.push(b'\n');
        }
        let written = if self.needs_rewrite {
            Err(io::Error::other("the journal is being repaired"))
        } else {
            self.file
                .write_all(&lines)
                .and_then(|()| self.file.sync_data())
        };
        let n = events.len();
        self.pending
            .extend(events.into_iter().map(|event| Entry { event, done: 0 }));
        for w in &mut self.waiting {
            *w += n;
        }
        let mut dropped = Vec::new();
        while self.pending.len() > self.max_pending {
            if let Some(old) = self.pop_front() {
                dropped.push(old);
            }
        }
        self.dropped += dropped.len() as u64;
        if let Err(e) = written {
            self.needs_rewrite = true;
            self.repair();
            return Err(e);
        }
        // Recorded so that a restart does not bring them back.
        for d in &dropped {
            self.write_line(json!({ "dropped": d.event_id }))?;
        }
        Ok(dropped)
    }

    /// The oldest event `sink` (its index in [`Outbox::sinks`]) has not taken.
    pub fn head(&mut self, sink: usize) -> Option<&Pending> {
        let bit = 1u64 << sink;
        let cursor = self.cursors.get_mut(sink)?;
        while let Some(e) = self.pending.get(*cursor) {
            if e.done & bit == 0 {
                break;
            }
            *cursor += 1;
        }
        self.pending.get(*cursor).map(|e| &e.event)
    }

    /// Events in the outbox: not yet taken by every sink.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether every sink took every event.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Events `sink` has not taken.
    pub fn waiting(&self, sink: usize) -> usize {
        self.waiting.get(sink).copied().unwrap_or(0)
    }

    /// Events dropped since the start to stay within the bound.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// When the oldest event not taken by every sink was accepted (Unix ms).
    pub fn oldest_accepted_ms(&self) -> Option<u64> {
        self.pending.front().map(|p| p.event.accepted_ms)
    }

    /// How long the oldest event not taken by every sink has waited.
    pub fn oldest_age(&self) -> Option<Duration> {
        self.oldest_accepted_ms()
            .map(|t| Duration::from_millis(now_ms().saturating_sub(t)))
    }

    /// Records that `sink` took `event_id` (its head, normally); the event leaves the outbox
    /// once every sink took it. Returns whether the event was pending for that sink.
    pub fn delivered(&mut self, sink: usize, event_id: &str) -> io::Result<bool> {
        let bit = 1u64 << sink;
        let Some(name) = self.sinks.get(sink).cloned() else {
            return Ok(false);
        };
        let from = self.cursors[sink];
        // Deliveries happen in order: the event is almost always the sink's head.
        let Some(i) = (from..self.pending.len()).chain(0..from).find(|&i| {
            self.pending[i].event.event_id == event_id && self.pending[i].done & bit == 0
        }) else {
            return Ok(false);
        };
        self.pending[i].done |= bit;
        self.waiting[sink] = self.waiting[sink].saturating_sub(1);
        let all = all_bits(self.sinks.len());
        while self.pending.front().is_some_and(|e| e.done & all == all) {
            self.pending.pop_front();
            for c in &mut self.cursors {
                *c = c.saturating_sub(1);
            }
        }
        let record = match name.as_str() {
            WEBHOOK => json!({ "done": event_id }),
            _ => json!({ "done": event_id, "sink": name }),
        };
        self.write_line(record)?;
        if self.needs_rewrite || self.done_records > MIN_COMPACT_RECORDS.max(self.pending.len()) {
            self.compact()?;
        }
        Ok(true)
    }

    /// Removes the oldest event for every sink.
    fn pop_front(&mut self) -> Option<Pending> {
        let entry = self.pending.pop_front()?;
        for (s, (c, w)) in self.cursors.iter_mut().zip(&mut self.waiting).enumerate() {
            *c = c.saturating_sub(1);
            if entry.done & (1u64 << s) == 0 {
                *w = w.saturating_sub(1);
            }
        }
        Some(entry.event)
    }

    fn recount(&mut self) {
        for (s, w) in self.waiting.iter_mut().enumerate() {
            *w = self
                .pending
                .iter()
                .filter(|e| e.done & (1u64 << s) == 0)
                .count();
        }
    }

    fn write_line(&mut self, record: Value) -> io::Result<()> {
        let mut line = record.to_string().into_bytes();
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            self.needs_rewrite = true;
            self.repair();
            return Err(e);
        }
        self.done_records += 1;
        Ok(())
    }

    /// After a failed write (disk full): a half-written line must not swallow the next record,
    /// and events kept only in memory must reach the journal, so the journal is rewritten from
    /// memory when that is possible again.
    fn repair(&mut self) {
        match rewrite(&self.path, &self.pending, &self.sinks) {
            Ok(file) => {
                self.file = file;
                self.done_records = 0;
                self.needs_rewrite = false;
            }
            Err(e) => log::warn!("outbox: cannot rewrite the journal yet: {e}"),
        }
    }

    /// Rewrites the journal with only the pending events (and which sinks took them).
    pub fn compact(&mut self) -> io::Result<()> {
        let before = self.done_records;
        self.file = rewrite(&self.path, &self.pending, &self.sinks)?;
        self.done_records = 0;
        self.needs_rewrite = false;
        log::debug!(
            "outbox: journal rewritten ({before} done records dropped, {} pending kept)",
            self.pending.len()
        );
        Ok(())
    }
}

fn all_bits(sinks: usize) -> u64 {
    match sinks {
        MAX_SINKS => u64::MAX,
        n => (1u64 << n) - 1,
    }
}

fn event_record(e: &Pending) -> Value {
    json!({"event_id": e.event_id, "payload": e.payload, "accepted_ms": e.accepted_ms})
}

/// The journal as it is read back: events with the names of the sinks that took them, and
/// the sinks it was written for.
#[derive(Default)]
struct Read {
    /// The sinks of the run that wrote the journal (its first line; before sinks had names:
    /// the webhook alone).
    sinks: Option<Vec<String>>,
    events: VecDeque<(Pending, Vec<String>)>,
}

impl Read {
    /// Applies one journal record.
    fn apply(&mut self, record: Value) {
        if let Some(sinks) = record.get("sinks").and_then(Value::as_array) {
            let names = sinks.iter().filter_map(Value::as_str).map(String::from);
            self.sinks = Some(names.collect());
            return;
        }
        if let Some(dropped) = record.get("dropped").and_then(Value::as_str) {
            if let Some(i) = self.events.iter().position(|p| p.0.event_id == dropped) {
                self.events.remove(i);
            }
            return;
        }
        if let Some(done) = record.get("done").and_then(Value::as_str) {
            let sink = record
                .get("sink")
                .and_then(Value::as_str)
                .unwrap_or(WEBHOOK);
            // Deliveries happen in order: the event is almost always among the first.
            if let Some(e) = self.events.iter_mut().find(|p| p.0.event_id == done) {
                e.1.push(sink.to_string());
            }
            return;
        }
        let (Some(id), Some(payload)) = (
            record.get("event_id").and_then(Value::as_str),
            record.get("payload").and_then(Value::as_str),
        ) else {
            return;
        };
        let event = Pending {
            event_id: id.to_string(),
            payload: payload.to_string(),
            accepted_ms: record
                .get("accepted_ms")
                .and_then(Value::as_u64)
                .unwrap_or_else(now_ms),
        };
        self.events.push_back((event, Vec::new()));
    }

    /// What is still pending for `sinks`: events every sink of the run that wrote the journal
    /// took are gone (a sink added since does not get them), and so are those every one of
    /// `sinks` took.
    fn pending_for(self, sinks: &[String]) -> VecDeque<Entry> {
        let writers = self.sinks.unwrap_or_else(|| vec![WEBHOOK.to_string()]);
        let all = all_bits(sinks.len());
        self.events
            .into_iter()
            .filter(|(_, done)| !writers.iter().all(|w| done.contains(w)))
            .map(|(event, done)| {
                let bits = sinks
                    .iter()
                    .enumerate()
                    .filter(|(_, name)| done.contains(name))
                    .fold(0u64, |bits, (i, _)| bits | 1u64 << i);
                Entry { event, done: bits }
            })
            .filter(|e| e.done & all != all)
            .collect()
    }
}

/// Writes `pending` as a fresh journal (atomically: the old one stays whole until the new one
/// is complete and durable) and opens it for appending.
fn rewrite(path: &Path, pending: &VecDeque<Entry>, sinks: &[String]) -> io::Result<File> {
    let mut bytes = json!({ "sinks": sinks }).to_string().into_bytes();
    bytes.push(b'\n');
    for p in pending {
        bytes.extend_from_slice(event_record(&p.event).to_string().as_bytes());
        bytes.push(b'\n');
        for (s, name) in sinks.iter().enumerate() {
            if p.done & (1u64 << s) != 0 {
                let done = json!({"done": p.event.event_id, "sink": name});
                bytes.extend_from_slice(done.to_string().as_bytes());
                bytes.push(b'\n');
            }
        }
    }
    fsutil::atomic_write(path, &bytes)?;
    OpenOptions::new().append(true).open(path)
}

/// A random version-4 UUID: event ids must stay unique across restarts and boxes.
pub fn new_event_id() -> String {
    uuid::Uuid::new_v4().to_string()
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
        outbox
            .pending
            .iter()
            .map(|p| p.event.event_id.clone())
            .collect()
    }

    fn head_id(outbox: &mut Outbox, sink: usize) -> Option<String> {
        outbox.head(sink).map(|p| p.event_id.clone())
    }

    /// Delivers the sink's head.
    fn deliver(outbox: &mut Outbox, sink: usize) -> String {
        let id = head_id(outbox, sink).unwrap();
        assert!(outbox.delivered(sink, &id).unwrap());
        id
    }

    #[test]
    fn pending_events_survive_a_reopen_and_delivered_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        assert_eq!(r, Recovered::default());
        o.accept(vec![event(1), event(2)]).unwrap();
        o.accept(vec![event(3)]).unwrap();
        assert_eq!(deliver(&mut o, 0), "id-1");
        drop(o);
        let (mut o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        assert_eq!(r.pending, 2);
        assert_eq!(ids(&o), ["id-2", "id-3"]);
        assert_eq!(o.head(0).unwrap().payload, r#"{"student_id":"s2"}"#);
        assert_eq!(o.head(0).unwrap().accepted_ms, 1_002);
    }

    #[test]
    fn the_webhooks_done_records_keep_the_form_an_older_release_reads() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 100, &[WEBHOOK, "mqtt"]).unwrap();
        o.accept(vec![event(1)]).unwrap();
        deliver(&mut o, 0);
        deliver(&mut o, 1);
        let text = fs::read_to_string(dir.path().join("journal.jsonl")).unwrap();
        assert!(text.contains(r#"{"done":"id-1"}"#), "{text}");
        assert!(text.contains(r#"{"done":"id-1","sink":"mqtt"}"#), "{text}");
    }

    #[test]
    fn each_sink_has_its_own_cursor_and_an_event_leaves_when_all_took_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 100, &[WEBHOOK, "mqtt"]).unwrap();
        o.accept((1..=4).map(event).collect()).unwrap();
        // The webhook runs ahead; the broker is down.
        assert_eq!(deliver(&mut o, 0), "id-1");
        assert_eq!(deliver(&mut o, 0), "id-2");
        assert_eq!(deliver(&mut o, 0), "id-3");
        assert_eq!((o.len(), o.waiting(0), o.waiting(1)), (4, 1, 4));
        assert_eq!(head_id(&mut o, 1).as_deref(), Some("id-1"));
        // A restart keeps both cursors.
        drop(o);
        let (mut o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK, "mqtt"]).unwrap();
        assert_eq!(r.pending, 4);
        assert_eq!((o.waiting(0), o.waiting(1)), (1, 4));
        assert_eq!(head_id(&mut o, 0).as_deref(), Some("id-4"));
        assert_eq!(head_id(&mut o, 1).as_deref(), Some("id-1"));
        assert_eq!(deliver(&mut o, 1), "id-1");
        assert_eq!(ids(&o), ["id-2", "id-3", "id-4"]);
        assert_eq!(head_id(&mut o, 0).as_deref(), Some("id-4"));
        assert_eq!(deliver(&mut o, 1), "id-2");
        assert_eq!(deliver(&mut o, 1), "id-3");
        assert_eq!(deliver(&mut o, 0), "id-4");
        assert_eq!(ids(&o), ["id-4"]);
        assert_eq!(deliver(&mut o, 1), "id-4");
        assert!(o.is_empty() && head_id(&mut o, 0).is_none() && head_id(&mut o, 1).is_none());
        // Nothing comes back; the webhook's taken events are not sent to it again after the
        // rewrite that opening does.
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK, "mqtt"]).unwrap();
        assert_eq!((r.pending, o.len()), (0, 0));
    }

    #[test]
    fn a_sink_added_later_gets_what_is_pending_and_a_removed_one_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        o.accept((1..=2).map(event).collect()).unwrap();
        deliver(&mut o, 0);
        drop(o);
        let (mut o, _) = Outbox::open(dir.path(), 100, &["mqtt", WEBHOOK]).unwrap();
        assert_eq!((o.waiting(0), o.waiting(1)), (1, 1));
        assert_eq!(head_id(&mut o, 0).as_deref(), Some("id-2"));
        assert_eq!(deliver(&mut o, 0), "id-2");
        drop(o);
        // The webhook is no longer configured: what only it lacked is gone.
        let (o, r) = Outbox::open(dir.path(), 100, &["mqtt"]).unwrap();
        assert_eq!((r.pending, o.len()), (0, 0));
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_journal_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        o.accept(vec![event(1), event(2)]).unwrap();
        drop(o);
        let path = dir.path().join("journal.jsonl");
        let mut bytes = fs::read(&path).unwrap();
        bytes.extend_from_slice(br#"{"event_id":"id-3","payl"#);
        fs::write(&path, &bytes).unwrap();
        let (mut o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        assert_eq!((r.pending, r.unreadable), (2, 1));
        // Appending after the repair gives whole lines again.
        o.accept(vec![event(4)]).unwrap();
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 100, &[WEBHOOK]).unwrap();
        assert_eq!((r.pending, r.unreadable), (3, 0));
        assert_eq!(ids(&o), ["id-1", "id-2", "id-4"]);
    }

    #[test]
    fn the_oldest_events_are_dropped_past_the_bound_and_stay_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 3, &[WEBHOOK, "mqtt"]).unwrap();
        o.accept((1..=3).map(event).collect()).unwrap();
        deliver(&mut o, 0);
        let dropped = o.accept(vec![event(4), event(5)]).unwrap();
        let dropped: Vec<_> = dropped.into_iter().map(|p| p.event_id).collect();
        assert_eq!(dropped, ["id-1", "id-2"]);
        assert_eq!(o.dropped(), 2);
        assert_eq!((o.waiting(0), o.waiting(1)), (3, 3));
        assert_eq!(head_id(&mut o, 0).as_deref(), Some("id-3"));
        drop(o);
        let (o, r) = Outbox::open(dir.path(), 3, &[WEBHOOK, "mqtt"]).unwrap();
        assert_eq!(ids(&o), ["id-3", "id-4", "id-5"]);
        assert_eq!(r.dropped, 0);
    }

    #[test]
    fn the_journal_is_compacted_as_deliveries_pile_up() {
        let dir = tempfile::tempdir().unwrap();
        let (mut o, _) = Outbox::open(dir.path(), 10_000, &[WEBHOOK, "mqtt"]).unwrap();
        let path = dir.path().join("journal.jsonl");
        for n in 0..3000 {
            o.accept(vec![event(n)]).unwrap();
            deliver(&mut o, 0);
            deliver(&mut o, 1);
        }
        // Never more than ~1000 done records (and their events) in the file.
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 3 * (MIN_COMPACT_RECORDS + 1), "{lines} lines");
        o.accept(vec![event(9999)]).unwrap();
        deliver(&mut o, 1);
        drop(o);
        let (mut o, _) = Outbox::open(dir.path(), 10_000, &[WEBHOOK, "mqtt"]).unwrap();
        assert_eq!(ids(&o), ["id-9999"]);
        assert_eq!(head_id(&mut o, 1), None);
        // The rewrite keeps which sink took it (after the line naming the sinks).
        assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
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
