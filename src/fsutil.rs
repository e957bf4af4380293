//! Durable file writes: a reader (or a power cut) sees the old file or the new one, never half.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// In the name of [`atomic_write`]'s temp files, after the hidden target name.
const TEMP_MARK: &str = ".tmp-";

/// A temp file older than this is what a killed process left behind: no write takes that long,
/// and another process (a CLI enroll beside the service) may be writing a younger one right now.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

/// Writes `bytes` to `path` atomically: a hidden temp file beside it, fsync, rename over the
/// target, fsync the directory so the rename itself survives a power cut.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let temp = temp_path(dir, &name.to_string_lossy());
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// A fresh hidden temp name for `name` in `dir`, unique in this process.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(
        ".{name}{TEMP_MARK}{}-{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A new, empty file for reading and writing, readable by this user only (mode 0600), that is
/// already gone from `dir`: what is written to it (a large answer before it is sent, an upload
/// being checked) is freed when it is closed, however the process ends. Made with `O_TMPFILE`
/// where the file system has it (it never has a name); elsewhere named like [`atomic_write`]'s
/// temps for an instant, so one left by a kill in between is removed at the next start
/// ([`remove_unlinked_leftovers`]).
pub fn unlinked_temp(dir: &Path, name: &str) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(file) => return Ok(file),
        // The file system (or the kernel) has no O_TMPFILE.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)
            ) => {}
        Err(e) => return Err(e),
    }
    let path = temp_path(dir, name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    match fs::remove_file(&path) {
        // Gone already: a process starting on the same folder swept it; the file is ours still.
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(file),
    }
}

/// Removes what [`unlinked_temp`] named `name` in `dir` left behind when a kill came between
/// its creation and its removal (a fraction of a millisecond), whatever their age: such a file
/// is never needed by name. Returns how many went.
pub fn remove_unlinked_leftovers(dir: &Path, name: &str) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!(".{name}{TEMP_MARK}");
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(&prefix) {
            continue;
        }
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
        }
    }
    removed
}

/// Removes the temp files of [`atomic_write`] in `dir` last modified more than `older_than` ago
/// (left by a process killed mid-write); returns how many went. Other files are not touched, and
/// a file that cannot be read or removed is left as it is.
pub fn remove_stale_temps(dir: &Path, older_than: Duration) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.contains(TEMP_MARK)) {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        let stale = meta
            .modified()
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > older_than);
        if stale && meta.is_file() {
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
    removed
}

/// Makes directory entries (creations, renames) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A writer that counts the bytes that went through it to `inner` (an archive's size, as
/// written).
pub struct Counting<'a> {
    inner: &'a mut dyn std::io::Write,
    bytes: u64,
}

impl<'a> Counting<'a> {
    /// Counts what is written to `inner`.
    pub fn new(inner: &'a mut dyn std::io::Write) -> Counting<'a> {
        Counting { inner, bytes: 0 }
    }

    /// The bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl std::io::Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        atomic_write(&path, b"first").unwrap();
        atomic_write(&path, b"second").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn unlinked_temps_are_private_and_leave_no_name() {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mut file = unlinked_temp(dir.path(), "upload").unwrap();
        file.write_all(b"secret").unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(file.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        file.seek(SeekFrom::Start(0)).unwrap();
        let mut back = String::new();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "secret");
    }

    #[test]
    fn leftovers_of_unlinked_temps_are_removed_whatever_their_age() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = temp_path(dir.path(), "gallery-import");
        let other = temp_path(dir.path(), "gallery-export.tar");
        let npy = dir.path().join("gallery-import");
        for p in [&leftover, &other, &npy] {
            fs::write(p, b"x").unwrap();
        }
        fs::create_dir(temp_path(dir.path(), "gallery-import")).unwrap();
        assert_eq!(remove_unlinked_leftovers(dir.path(), "gallery-import"), 1);
        assert!(!leftover.exists());
        assert!(other.exists() && npy.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3);
    }

    #[test]
    fn only_old_temp_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join(".alip.npy.tmp-41-0");
        let young = dir.path().join(".alip.npy.tmp-42-0");
        let hidden = dir.path().join(".keep");
        let npy = dir.path().join("alip.npy");
        for p in [&old, &young, &hidden, &npy] {
            fs::write(p, b"x").unwrap();
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for p in [&old, &hidden, &npy] {
            File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path(), STALE_TEMP_AGE), 1);
        assert!(!old.exists());
        assert!(young.exists() && hidden.exists() && npy.exists());
        assert_eq!(
            remove_stale_temps(&dir.path().join("missing"), STALE_TEMP_AGE),
            0
        );
    }

    #[test]
    fn an_unlinked_temp_is_usable_and_leaves_nothing_behind() {
        use std::io::{Read, Seek};
        let dir = tempfile::tempdir().unwrap();
        let mut file = unlinked_temp(dir.path(), "answer").unwrap();
        file.write_all(b"body").unwrap();
        file.rewind().unwrap();
        let mut back = String::new();
        file.read_to_string(&mut back).unwrap();
        assert_eq!(back, "body");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn failure_leaves_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no/such/dir/a.npy");
        assert!(atomic_write(&missing, b"x").is_err());
    }
}
