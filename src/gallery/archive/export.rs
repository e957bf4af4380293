//! Writing the whole gallery as one archive ([`Gallery::export`]), under the write lock: one
//! consistent state, in the order the format gives ([`super`]).

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use super::format::{FORMAT, MARKER, VERSION};
use crate::engine::Encoding;
use crate::fsutil::Counting;
use crate::gallery::samples::SamplesFile;
use crate::gallery::{now_secs, npy, Gallery, GalleryError, Rows, StudentId};

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// People written.
    pub people: usize,
    /// Samples (rows) written, all people together.
    pub samples: usize,
    /// Face crops written.
    pub crops: usize,
    /// Size of the archive.
    pub bytes: u64,
    /// People left out because their `.npy` is damaged (an import would refuse it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A regular file of the archive: mode 0644, owner 0, mtime `now`.
pub(super) fn append(
    tar: &mut tar::Builder<Counting<'_>>,
    path: &str,
    data: &[u8],
    now: u64,
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(now);
    tar.append_data(&mut header, path, data)
}

impl Gallery {
    /// Writes the whole gallery to `out` as one archive (format in the module docs). The write
    /// lock is held throughout, so the archive is one consistent state: give a fast sink (a
    /// file, memory), not a slow client's socket.
    pub fn export(&self, out: &mut dyn Write) -> Result<ExportSummary, GalleryError> {
        let _writing = self.writing()?;
        let stream_err = |e: io::Error| GalleryError::Io {
            path: PathBuf::from("(export archive)"),
            source: e,
        };
        let mut summary = ExportSummary::default();
        let mut people: Vec<(StudentId, Rows)> = Vec::new();
        for id in self.ids_on_disk(true)? {
            match self.read_person(&id) {
                Ok(Some(rows)) => people.push((id, rows)),
                Ok(None) => {}
                Err(GalleryError::Damaged { path, reason }) => {
                    log::warn!("export: {} left out: {reason}", path.display());
                    summary.skipped.push(id.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        summary.people = people.len();
        summary.samples = people.iter().map(|(_, rows)| rows.len()).sum();
        let now = now_secs();
        let mut tar = tar::Builder::new(Counting::new(out));
        let marker = serde_json::json!({
            "format": FORMAT,
            "version": VERSION,
            "exported_at": now,
            "people": summary.people,
            "samples": summary.samples,
        });
        append(&mut tar, MARKER, marker.to_string().as_bytes(), now).map_err(stream_err)?;
        for (id, mut rows) in people {
            // Crops read first: a description names only a crop that is in the archive.
            let dir = self.crops_dir(&id);
            let mut crops: Vec<(String, Vec<u8>)> = Vec::new();
            for (_, sample) in rows.iter_mut() {
                let Some(name) = sample.crop.clone() else {
                    continue;
                };
                match fs::read(dir.join(&name)) {
                    Ok(bytes) => crops.push((name, bytes)),
                    Err(e) => {
                        log::warn!("export: {id}/{name} left out: {e}");
                        sample.crop = None;
                    }
                }
            }
            let encodings: Vec<Encoding> = rows.iter().map(|(e, _)| *e).collect();
            let meta = serde_json::to_vec(&SamplesFile {
                samples: rows.into_iter().map(|(_, s)| s).collect(),
                label: self.read_label(&id),
            })
            .map_err(|e| stream_err(io::Error::other(e)))?;
            append(
                &mut tar,
                &format!("embeddings/{id}.npy"),
                &npy::write_encodings(&encodings),
                now,
            )
            .map_err(stream_err)?;
            append(&mut tar, &format!("people/{id}.json"), &meta, now).map_err(stream_err)?;
            let rejected = self.read_rejected(&id).unwrap_or_else(|e| {
                log::warn!("export: rejections of {id} left out: {e}");
                Vec::new()
            });
            if !rejected.is_empty() {
                let bytes = npy::write_encodings(&rejected);
                append(&mut tar, &format!("rejected/{id}.npy"), &bytes, now).map_err(stream_err)?;
            }
            for (name, bytes) in &crops {
                append(&mut tar, &format!("faces/{id}/{name}"), bytes, now).map_err(stream_err)?;
            }
            summary.crops += crops.len();
        }
        let mut counting = tar.into_inner().map_err(stream_err)?;
        counting.flush().map_err(stream_err)?;
        summary.bytes = counting.bytes();
        Ok(summary)
    }
}
