//! Writing one person's archive ([`export_person`]; the format is in [`super`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::lines::{audit_lines, day_files, event_lines};
use super::{PrivacyError, FORMAT, VERSION};
use crate::fsutil::Counting;
use crate::gallery::{Gallery, PersonFiles, StudentId};
use crate::unknowns::{self, KeptFace};

/// What an export wrote (the CLI's and the log's summary; the manifest says more).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportedPerson {
    /// The person.
    pub student_id: String,
    /// Whether they are enrolled.
    pub enrolled: bool,
    /// Their samples.
    pub samples: usize,
    /// Their face crops.
    pub crops: usize,
    /// Faces rejected as not them.
    pub rejected: usize,
    /// Unknown faces within the tolerance of their samples.
    pub unknown_faces: usize,
    /// Event log records naming them.
    pub events: usize,
    /// Audit lines naming them.
    pub audit_lines: usize,
    /// The archive's size.
    pub bytes: u64,
}

/// Where an entry's bytes come from.
enum Source<'a> {
    Bytes(Vec<u8>),
    /// A file and its size (a crop, under the gallery's lock; a temp file of log lines).
    File(&'a Path, u64),
    Temp(File, u64),
}

struct Entry<'a> {
    path: String,
    what: &'static str,
    source: Source<'a>,
}

impl Entry<'_> {
    fn len(&self) -> u64 {
        match &self.source {
            Source::Bytes(b) => b.len() as u64,
            Source::File(_, n) | Source::Temp(_, n) => *n,
        }
    }
}

/// Writes to `out` the archive of everything the box with data folder `data_dir` (the
/// gallery's) holds about `id` (see [`super`]): unknown faces within `tolerance` of their
/// samples are theirs. The gallery's write lock is held throughout: give a fast sink.
pub fn export_person(
    gallery: &Gallery,
    id: &StudentId,
    tolerance: f64,
    out: &mut dyn Write,
) -> Result<ExportedPerson, PrivacyError> {
    gallery.with_person_files(id, |files| write(gallery, id, files, tolerance, out))?
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PrivacyError + '_ {
    move |source| PrivacyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A temp file in the data folder holding what `fill` writes, rewound, with its size.
fn scratch(
    data_dir: &Path,
    fill: impl FnOnce(&mut io::BufWriter<&mut File>) -> io::Result<usize>,
) -> Result<(File, u64, usize), PrivacyError> {
    let mut file =
        crate::fsutil::unlinked_temp(data_dir, "person-export").map_err(io_err(data_dir))?;
    let mut writer = io::BufWriter::new(&mut file);
    let n = fill(&mut writer).map_err(io_err(data_dir))?;
    writer.flush().map_err(io_err(data_dir))?;
    drop(writer);
    let len = file.seek(SeekFrom::End(0)).map_err(io_err(data_dir))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err(data_dir))?;
    Ok((file, len, n))
}

fn write(
    gallery: &Gallery,
    id: &StudentId,
    files: Option<&PersonFiles>,
    tolerance: f64,
    out: &mut dyn Write,
) -> Result<ExportedPerson, PrivacyError> {
    let data_dir = gallery.data_dir();
    let mut summary = ExportedPerson {
        student_id: id.to_string(),
        enrolled: files.is_some(),
        ..ExportedPerson::default()
    };
    let mut entries: Vec<Entry<'_>> = Vec::new();
    if let Some(files) = files {
        summary.samples = files.encodings.len();
        summary.crops = files.crops.len();
        summary.rejected = files.rejected;
        entries.push(Entry {
            path: format!("embeddings/{id}.npy"),
            what: "the encodings of their samples (numpy float64, one row of 128 per sample)",
            source: Source::Bytes(files.encodings_npy.clone()),
        });
        entries.push(Entry {
            path: format!("people/{id}.json"),
            what: "each sample's enrollment time, crop name and measured quality",
            source: Source::Bytes(files.samples_json.clone()),
        });
        if let Some(rejected) = &files.rejected_npy {
            entries.push(Entry {
                path: format!("rejected/{id}.npy"),
                what: "faces an operator said are not them (numpy float64 encodings)",
                source: Source::Bytes(rejected.clone()),
            });
        }
        for (name, path, len) in &files.crops {
            entries.push(Entry {
                path: format!("faces/{id}/{name}"),
                what: "a face crop of a sample",
                source: Source::File(path, *len),
            });
        }
        let kept: Vec<KeptFace> = unknowns::matching(data_dir, &files.encodings, tolerance)?;
        summary.unknown_faces = kept.len();
        if !kept.is_empty() {
            let listed = serde_json::to_vec_pretty(&kept)
                .map_err(|e| io_err(data_dir)(io::Error::other(e)))?;
            entries.push(Entry {
                path: "unknowns/faces.json".into(),
                what: "unknown faces the camera kept that match their samples",
                source: Source::Bytes(listed),
            });
            for face in kept {
                if let Some(jpeg) = face.crop {
                    entries.push(Entry {
                        path: format!("unknowns/crops/{}.jpg", face.id),
                        what: "the crop of an unknown face that matches them",
                        source: Source::Bytes(jpeg),
                    });
                }
            }
        }
    }
    let events_dir = data_dir.join("events");
    let mut event_ids = HashSet::new();
    for (day, path) in day_files(&events_dir) {
        let (file, len, n) = scratch(data_dir, |w| {
            event_lines(&path, id.as_str(), &mut event_ids, w)
        })?;
        if len > 0 {
            summary.events += n;
            entries.push(Entry {
                path: format!("events/{day}.jsonl"),
                what: "event log records naming them, and their delivery status",
                source: Source::Temp(file, len),
            });
        }
    }
    let audit = data_dir.join("audit.jsonl");
    let (file, len, n) = scratch(data_dir, |w| audit_lines(&audit, id.as_str(), w))?;
    summary.audit_lines = n;
    if len > 0 {
        entries.push(Entry {
            path: "audit.jsonl".into(),
            what: "the audit log's lines about changes to them",
            source: Source::Temp(file, len),
        });
    }
    if !summary.enrolled && entries.is_empty() {
        return Err(PrivacyError::NotFound(id.to_string()));
    }

    let now = crate::clock::unix_secs();
    let listed: Vec<Value> = entries
        .iter()
        .map(|e| json!({"path": e.path, "bytes": e.len(), "what": e.what}))
        .collect();
    let manifest = json!({
        "format": FORMAT,
        "version": VERSION,
        "student_id": id.as_str(),
        "exported_at": now,
        "enrolled": summary.enrolled,
        "samples": summary.samples,
        "crops": summary.crops,
        "rejected": summary.rejected,
        "unknown_faces": summary.unknown_faces,
        "events": summary.events,
        "audit_lines": summary.audit_lines,
        "files": listed,
        "not_included": [
            "events and audit lines under an id they had before a rename (export that id too)",
            "what other boxes of the site hold, and what the main API or the broker received",
            "the service's own log (journald), which names ids in some lines",
        ],
    });
    let sink_err = |e: io::Error| PrivacyError::Io {
        path: PathBuf::from("(export archive)"),
        source: e,
    };
    let mut tar = tar::Builder::new(Counting::new(out));
    let manifest =
        serde_json::to_vec_pretty(&manifest).map_err(|e| sink_err(io::Error::other(e)))?;
    append(
        &mut tar,
        "manifest.json",
        manifest.len() as u64,
        &manifest[..],
        now,
    )
    .map_err(sink_err)?;
    for entry in entries {
        let len = entry.len();
        match entry.source {
            Source::Bytes(bytes) => {
                append(&mut tar, &entry.path, len, &bytes[..], now).map_err(sink_err)?
            }
            Source::File(path, _) => {
                let file = File::open(path).map_err(io_err(path))?;
                append(&mut tar, &entry.path, len, file.take(len), now).map_err(sink_err)?
            }
            Source::Temp(file, _) => {
                append(&mut tar, &entry.path, len, file.take(len), now).map_err(sink_err)?
            }
        }
    }
    let mut counting = tar.into_inner().map_err(sink_err)?;
    counting.flush().map_err(sink_err)?;
    summary.bytes = counting.bytes();
    Ok(summary)
}

/// A regular file of `len` bytes read from `data`: mode 0644, owner 0, mtime `now`.
fn append(
    tar: &mut tar::Builder<Counting<'_>>,
    path: &str,
    len: u64,
    data: impl Read,
    now: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(len);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(now);
    tar.append_data(&mut header, path, data)
}
