//! The data folder's format marker: the file `<FACE_DATA_DIR>/data-format`, one number and a
//! newline (`1\n`): the [`DATA_FORMAT`] of the files in the folder. A version that changes how
//! the folder is laid out raises [`DATA_FORMAT`] (and migrates a lower one); an older binary
//! that finds a higher number refuses to start instead of misreading or damaging the newer
//! files, and the package's preinst refuses such a downgrade before unpacking (scripts/package
//! reads the `pub const DATA_FORMAT: u32 = N;` line below: keep that form).
//!
//! Format 1 is the folder as the original Python service and every release before the marker
//! wrote it: a folder without the marker is format 1, and writing the marker changes nothing
//! else in it.
//!
//! [`check`] is called by every command that uses the data folder, before anything else touches
//! it (before the gallery is opened, which may already tidy files):
//! - the marker equals [`DATA_FORMAT`]: go on;
//! - it is higher: [`DataFormatError::Newer`] (the command exits with status 2 and that one line,
//!   naming the file, both numbers and what to do; nothing in the folder is touched);
//! - it is not a number this or an earlier version writes (garbage, empty, 0, too long) or cannot
//!   be read: [`DataFormatError::Garbled`] / [`DataFormatError::Io`], status 2 as well;
//! - it is absent: with [`Access::Write`] (`serve`, `enroll`, `people set|delete|rename|reject`,
//!   `gallery import`, `box key`, `box trust add|remove` on the folder's trust list) it is
//!   written, atomically and fsync'd ([`crate::fsutil::atomic_write`]), the folder made first if
//!   it is new, and given to the folder's owner when root wrote it (as `box key`'s key). `box key`
//!   checks once the box id is found good, so a refused one writes nothing. With [`Access::Read`] (`recognize`, `report daily`, `people list|show|export`,
//!   `gallery export`, `unknowns list`, `cam-demo`, `box trust list`) it is left absent: those
//!   commands change no file the format is about, are often run by another user than the
//!   service's on a folder they may only read, and must not fail there; the next command that
//!   writes (the service at its start) writes it. A newer or garbled marker stops them too: what
//!   they would read could be misread.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::fsutil;

/// The format of the data folder this version reads and writes.
pub const DATA_FORMAT: u32 = 1;

/// The marker's file name inside the data folder.
pub const MARKER_FILE: &str = "data-format";

/// The most bytes a marker holds (a `u32` and a newline, with room for a `\r` or spaces).
const MARKER_MAX_BYTES: u64 = 16;

/// Whether the command writes the data folder (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads it: an absent marker is left absent.
    Read,
    /// Writes it: an absent marker is written.
    Write,
}

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// The marker, equal to [`DATA_FORMAT`].
    Current,
    /// No marker (a new folder or one from before it): written now.
    Written,
    /// No marker, left so ([`Access::Read`]).
    Absent,
}

/// Why the data folder cannot be used by this version.
#[derive(Debug, thiserror::Error)]
pub enum DataFormatError {
    /// A newer version wrote the folder.
    #[error(
        "{path}: the data folder is in format {found}, newer than this version's {ours}: a newer \
         face-attendance wrote it; install that version (or a newer one) again, or restore the \
         backup of the data folder made before that upgrade"
    )]
    Newer {
        /// The marker file.
        path: PathBuf,
        /// The number in it.
        found: u32,
        /// [`DATA_FORMAT`].
        ours: u32,
    },
    /// The marker holds something no version writes.
    #[error(
        "{path}: not a data format number ({what}); it holds one number and a newline (this \
         version's is {ours}): restore the file from a backup of the data folder, or, if \
         only this version or an older one ever used the folder, write {ours} into it",
        ours = DATA_FORMAT
    )]
    Garbled {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The marker (or the folder) cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Checks the data folder `data_dir`'s marker and, for [`Access::Write`], writes an absent one
/// (see the module docs).
pub fn check(data_dir: &Path, access: Access) -> Result<Found, DataFormatError> {
    let path = data_dir.join(MARKER_FILE);
    match read(&path)? {
        Some(found) if found == DATA_FORMAT => Ok(Found::Current),
        Some(found) if found > DATA_FORMAT => Err(DataFormatError::Newer {
            path,
            found,
            ours: DATA_FORMAT,
        }),
        // Below the current format: no version wrote one yet (the first is 1, and 0 is refused
        // as garbled); a future format will migrate here.
        Some(found) => Err(DataFormatError::Garbled {
            path,
            what: format!("format {found} is older than any version wrote"),
        }),
        None if access == Access::Read => Ok(Found::Absent),
        None => {
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| DataFormatError::Io { path, source }
            };
            if !data_dir.is_dir() {
                std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
                if let Some(parent) = data_dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fsutil::sync_dir(parent).map_err(io(parent))?;
                }
            }
            fsutil::atomic_write(&path, format!("{DATA_FORMAT}\n").as_bytes())
                .map_err(io(&path))?;
            give_to_folder_owner(&path, data_dir).map_err(io(&path))?;
            // Debug only: a command that then stops on a bad setting prints just that one line.
            log::debug!("{}: data format {DATA_FORMAT} written", path.display());
            Ok(Found::Written)
        }
    }
}

/// Gives the marker just written at `path` to the owner of `data_dir` when they differ: root
/// running a command on the service's folder (`sudo face-attendance enroll`) leaves a file the
/// service's user owns, as `box key` does with the key. Only root may give a file away; another
/// user's marker stays theirs (readable by all: mode 0644 under the usual umask).
fn give_to_folder_owner(path: &Path, data_dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let folder = std::fs::metadata(data_dir)?;
    let file = std::fs::metadata(path)?;
    if (file.uid(), file.gid()) == (folder.uid(), folder.gid()) {
        return Ok(());
    }
    match std::os::unix::fs::chown(path, Some(folder.uid()), Some(folder.gid())) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// The number in the marker at `path`; `None` when there is no marker.
fn read(path: &Path) -> Result<Option<u32>, DataFormatError> {
    let io = |source| DataFormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MARKER_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    parse(&bytes)
        .map(Some)
        .map_err(|what| DataFormatError::Garbled {
            path: path.to_path_buf(),
            what,
        })
}

/// A marker's bytes: ASCII digits, then optional white space; a number from 1.
fn parse(bytes: &[u8]) -> Result<u32, String> {
    if bytes.len() as u64 > MARKER_MAX_BYTES {
        return Err(format!("longer than {MARKER_MAX_BYTES} bytes"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
    let number = text.trim_end();
    if number.is_empty() {
        return Err("empty".into());
    }
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{:?} is not a number", number));
    }
    match number.parse::<u32>() {
        Ok(0) => Err("0 is no format".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{number} is out of range")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_parse_as_one_number() {
        assert_eq!(parse(b"1\n"), Ok(1));
        assert_eq!(parse(b"1"), Ok(1));
        assert_eq!(parse(b"2\r\n"), Ok(2));
        assert_eq!(parse(b"4294967295\n"), Ok(u32::MAX));
        for bad in [
            &b""[..],
            b"\n",
            b"0\n",
            b"-1\n",
            b"+1\n",
            b" 1\n",
            b"1.0\n",
            b"one\n",
            b"1 2\n",
            b"4294967296\n",
            b"\xff\n",
            b"00000000000000001\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_fresh_folder_gets_the_marker_and_a_read_leaves_none() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("new/data");
        assert_eq!(check(&data, Access::Read).unwrap(), Found::Absent);
        assert!(!data.exists());
        assert_eq!(check(&data, Access::Write).unwrap(), Found::Written);
        assert_eq!(std::fs::read(data.join(MARKER_FILE)).unwrap(), b"1\n");
        assert_eq!(check(&data, Access::Write).unwrap(), Found::Current);
        assert_eq!(check(&data, Access::Read).unwrap(), Found::Current);
        // Nothing but the marker: no temp file left beside it.
        assert_eq!(std::fs::read_dir(&data).unwrap().count(), 1);
    }

    #[test]
    fn a_newer_or_garbled_marker_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join(MARKER_FILE);
        for access in [Access::Read, Access::Write] {
            std::fs::write(&marker, "2\n").unwrap();
            let e = check(dir.path(), access).unwrap_err();
            assert!(
                matches!(
                    e,
                    DataFormatError::Newer {
                        found: 2,
                        ours: 1,
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e
                .to_string()
                .contains("format 2, newer than this version's 1"));
            std::fs::write(&marker, "garbage").unwrap();
            let e = check(dir.path(), access).unwrap_err();
            assert!(matches!(e, DataFormatError::Garbled { .. }), "{e}");
            assert_eq!(std::fs::read(&marker).unwrap(), b"garbage");
        }
    }
}
