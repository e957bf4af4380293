//! The previous release's binary, for a fleet of mixed versions: `scripts/previous-release`
//! builds the commit of `tests/fixtures/previous-release.txt` into
//! `<target dir>/previous-release/face-attendance` (with a `.stamp` file naming the commit);
//! `FACE_PREVIOUS_RELEASE` names another binary instead (not checked against the fixture).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The commit the fixture names (its one line that is not a `#` comment).
pub fn commit() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-release.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or_else(|| panic!("{}: no commit", path.display()))
        .to_string()
}

/// Where the binary is looked for: `FACE_PREVIOUS_RELEASE`, else `previous-release/face-attendance`
/// in the target dir this test was built in (the current binary's `release/..`).
pub fn path() -> PathBuf {
    if let Some(path) = std::env::var_os("FACE_PREVIOUS_RELEASE") {
        return PathBuf::from(path);
    }
    let current = Path::new(env!("CARGO_BIN_EXE_face-attendance"));
    let target = current
        .parent()
        .and_then(Path::parent)
        .expect("the current binary is in <target>/release");
    target.join("previous-release/face-attendance")
}

/// Why the binary cannot be used (missing, or built from another commit than the fixture's), or
/// None when it can.
fn unusable() -> Option<String> {
    let path = path();
    if !path.is_file() {
        return Some(format!(
            "no previous release at {} (scripts/previous-release builds it)",
            path.display()
        ));
    }
    if std::env::var_os("FACE_PREVIOUS_RELEASE").is_some() {
        return None;
    }
    let stamp = PathBuf::from(format!("{}.stamp", path.display()));
    let built = std::fs::read_to_string(&stamp).unwrap_or_default();
    let want = format!("commit {}", commit());
    if built.lines().next() != Some(want.as_str()) {
        return Some(format!(
            "{} was not built from the fixture's {want} ({}): run scripts/previous-release",
            path.display(),
            stamp.display()
        ));
    }
    None
}

/// Whether the previous release's binary is there: when not, the test is skipped with a
/// message, or fails under `FACE_TESTS_REQUIRE_TOOLS` (scripts/test builds it first).
pub fn available() -> bool {
    match unusable() {
        None => true,
        Some(why) => {
            super::skip_unless_required(&why);
            false
        }
    }
}

/// The previous release's binary; panics (saying how to build it) when it is not usable.
/// Tests that may skip call [`available`] first.
pub fn binary() -> PathBuf {
    if let Some(why) = unusable() {
        panic!("{why}");
    }
    path()
}
