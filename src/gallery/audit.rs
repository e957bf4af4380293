//! `data/audit.jsonl`: one JSON line per change to the gallery (enroll, delete, rename,
//! import, reject, unreject, name or group), appended and synced before the change is answered, so who changed what survives
//! a power cut. Lines are only ever appended; a line cut by a crash is skipped when read.

use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One change. `by` is the API key's label, or `cli` for the command line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Unix seconds.
    pub time: u64,
    /// What was done: `enroll`, `replace`, `delete`, `delete_sample`, `rename`, `import`,
    /// `reject`, `unreject`, `sync`, `label` (name or group changed).
    pub action: String,
    /// The person (after the change, for a rename).
    pub student_id: String,
    /// How many samples the person has after the change (0: gone).
    pub samples: usize,
    /// Who did it (see the type's docs).
    pub by: String,
    /// For a rename: the id before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// For a sample deleted: its index then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// For a rejection (`reject`, `unreject`): how many rejected faces the person has after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<usize>,
    /// For a change of name or group (`label`, or an enrollment that set them): the name and
    /// group after it (a value absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<super::Label>,
}

/// Most entries `history` gives for one person: the newest.
pub const HISTORY_MAX: usize = 100;

/// The log file of one data folder.
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// The log of `data_dir` (`audit.jsonl`; made at the first change).
    pub fn new(data_dir: &Path) -> AuditLog {
        AuditLog {
            path: data_dir.join("audit.jsonl"),
        }
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` and syncs it. Callers hold the gallery's write locks, so lines never
    /// interleave. After a line cut by a crash, the entry starts on a line of its own.
    pub fn append(&self, entry: &Entry) -> io::Result<()> {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        let len = file.metadata()?.len();
        let mut line = Vec::new();
        if len > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(len - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                line.push(b'\n');
            }
        }
        serde_json::to_writer(&mut line, entry).map_err(io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()
    }

    /// The newest [`HISTORY_MAX`] entries about `student_id` (under that id: a rename shows
    /// under the new one with `from`), oldest first.
    pub fn history(&self, student_id: &str) -> Vec<Entry> {
        let Ok(file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let mut found: Vec<Entry> = BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter(|line| line.contains(student_id))
            .filter_map(|line| serde_json::from_str::<Entry>(&line).ok())
            .filter(|e| e.student_id == student_id)
            .collect();
        let skip = found.len().saturating_sub(HISTORY_MAX);
        found.drain(..skip);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_back_per_person() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path());
        let entry = |action: &str, id: &str, samples| Entry {
            time: 1,
            action: action.into(),
            student_id: id.into(),
            samples,
            by: "cli".into(),
            from: None,
            index: None,
            rejected: None,
            label: None,
        };
        assert!(log.history("alip").is_empty());
        log.append(&entry("enroll", "alip", 1)).unwrap();
        log.append(&entry("enroll", "alipa", 1)).unwrap();
        log.append(&entry("delete", "alip", 0)).unwrap();
        // A line cut by a crash is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap()
            .write_all(b"{\"time\":3,\"action\":\"enr")
            .unwrap();
        log.append(&entry("rename", "alip", 2)).unwrap();
        let got: Vec<_> = log.history("alip").into_iter().map(|e| e.action).collect();
        assert_eq!(got, ["enroll", "delete", "rename"]);
    }
}
