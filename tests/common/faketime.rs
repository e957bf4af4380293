//! Debian's faketime (libfaketime) under the real binary: a clock a test moves while the box
//! runs, by rewriting a time file. No time override in the product.
//!
//! Contract:
//! - [`Clock::apply`] preloads the library Debian's `faketime -m` wrapper preloads (its
//!   multi-threaded variant: time calls serialized, as the service reads the clock from many
//!   threads) and points it at the clock's file with `FAKETIME_NO_CACHE=1` (the file is read at
//!   every time call, so a change applies at once) and `FAKETIME_DONT_FAKE_MONOTONIC=1` (only the
//!   wall clock moves: `Instant`, timeouts and sleeps stay real).
//! - The file holds a libfaketime spec: `@2020-01-01 12:00:00` (starts there when the process
//!   starts, then runs), `+0` (real time). It is replaced atomically (temp file + rename), so a
//!   running box never reads half a spec.
//! - Known limit of libfaketime 0.9.10 (Debian 12) with `FAKETIME_DONT_FAKE_MONOTONIC=1`: an
//!   absolute `clock_nanosleep` on the monotonic clock fails with EINVAL (Python's
//!   `time.sleep` does that); Rust's `thread::sleep` (relative `nanosleep`) and its futex-based
//!   waits are not affected.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The library `faketime -m` preloads, or None when faketime is not installed.
fn preload() -> Option<String> {
    static PRELOAD: OnceLock<Option<String>> = OnceLock::new();
    PRELOAD
        .get_or_init(|| {
            let out = Command::new("faketime")
                .args(["-m", "-f", "+0", "printenv", "LD_PRELOAD"])
                .output()
                .ok()?;
            let lib = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // A path with the loader's `$LIB` (e.g. /usr/$LIB/faketime/...), as the wrapper sets it.
            (out.status.success() && !lib.is_empty()).then_some(lib)
        })
        .clone()
}

/// Whether Debian's faketime is installed: when not, the test is skipped with a message, or
/// fails under `FACE_TESTS_REQUIRE_TOOLS` (scripts/install-test-deps installs it).
pub fn available() -> bool {
    let found = preload().is_some();
    if !found {
        super::skip_unless_required("faketime (Debian's libfaketime) is not installed");
    }
    found
}

/// A clock in a file of its own: what every process started with [`Clock::apply`] reads.
pub struct Clock {
    file: PathBuf,
}

impl Clock {
    /// A clock in `dir` (a test's temporary folder) that reads `spec` (see the module's doc).
    pub fn new(dir: &Path, spec: &str) -> Clock {
        let clock = Clock {
            file: dir.join("faketime.rc"),
        };
        clock.set(spec);
        clock
    }

    /// A clock that starts at `when` (`YYYY-MM-DD hh:mm:ss`, UTC) when a process starts, then runs.
    pub fn starting_at(dir: &Path, when: &str) -> Clock {
        Clock::new(dir, &format!("@{when}"))
    }

    /// Sets the spec every process under this clock reads from its next time call on.
    pub fn set(&self, spec: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{spec}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// Real time from now on (the box's clock "set by NTP").
    pub fn real(&self) {
        self.set("+0");
    }

    /// The environment that puts a process under this clock.
    pub fn env(&self) -> Vec<(String, String)> {
        let lib = preload().expect("faketime is not installed: check faketime::available() first");
        vec![
            ("LD_PRELOAD".into(), lib),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
        ]
    }

    /// Puts `command` under this clock (its environment; nothing else of it changes). The
    /// `FAKETIME` variable, which would win over the file, is removed.
    pub fn apply<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        command.env_remove("FAKETIME").envs(self.env())
    }
}
