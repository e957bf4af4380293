//! The Rust version check of `scripts/setup` and `scripts/install-deps` (`check_rust_version` in
//! `scripts/lib.sh`), run for real: the scripts themselves with a fake old `rustc` and `cargo`
//! first on PATH (Debian 12's 1.63) fail before anything is installed or built, naming both versions and the
//! commands that get a newer Rust; with no Rust at all, Debian's packaged Rust is installed only
//! when `apt-cache policy` offers one new enough; the real toolchain passes. `apt-get` and `sudo`
//! are stand-ins that fail loudly, so no test installs anything. And `Cargo.toml`'s
//! `rust-version` is at least what every locked dependency declares.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the stand-ins for `apt-get` and `sudo` print: the script tried to install something.
const INSTALLING: &str = "STAND-IN apt-get/sudo called";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo.toml's `rust-version` ("1.89").
fn rust_version() -> String {
    let toml = fs::read_to_string(repo().join("Cargo.toml")).expect("read Cargo.toml");
    toml.lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("Cargo.toml has a rust-version line")
        .to_string()
}

fn numbers(version: &str) -> Vec<u64> {
    version
        .split('.')
        .map(|n| n.parse().unwrap_or_else(|_| panic!("version {version:?}")))
        .collect()
}

fn write_tool(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A folder of stand-ins: `apt-get` and `sudo` that fail loudly, and the given tools.
fn stand_ins(tools: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // `apt-get update` passes (so the install that follows is seen); `sudo` runs its command.
    write_tool(
        dir.path(),
        "apt-get",
        &format!("echo '{INSTALLING}: apt-get' \"$@\" >&2; [ \"$1\" = update ] && exit 0; exit 97"),
    );
    write_tool(
        dir.path(),
        "sudo",
        &format!("echo '{INSTALLING}: sudo' \"$@\" >&2; exec \"$@\""),
    );
    for (name, body) in tools {
        write_tool(dir.path(), name, body);
    }
    dir
}

/// Debian 12's Rust, as `rustc --version` and `cargo --version` print it.
const OLD_RUST: [(&str, &str); 2] = [
    ("rustc", "echo 'rustc 1.63.0'"),
    ("cargo", "echo 'cargo 1.63.0'"),
];

/// Runs `script` (from `root`) with PATH = the stand-ins, then only the system's folders (no
/// `~/.cargo/bin`: HOME is an empty folder), so the Rust it finds is the stand-ins'.
fn run_isolated(root: &Path, script: &str, args: &[&str], fakes: &Path) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(root.join(script))
        .args(args)
        .env(
            "PATH",
            format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", fakes.display()),
        )
        .env("HOME", home.path())
        .env_remove("RUSTUP_HOME")
        .env_remove("CARGO_HOME")
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"))
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The script stopped at the Rust check: status 1 and the message, nothing installed or built.
fn assert_refused_old_rust(out: &Output, need: &str) -> String {
    let err = stderr(out);
    assert!(
        !err.contains(INSTALLING),
        "the scripts went on to install packages with a Rust too old: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        // "rustc 1.63.0 (", then the path of the stand-in.
        err.contains("rustc 1.63.0 (")
            && err.contains(&format!(
                "is too old: this project needs Rust {need} or newer (rust-version in Cargo.toml)"
            )),
        "{err}"
    );
    assert!(!err.contains("building the release binary"), "{err}");
    err
}

#[test]
fn an_old_rust_is_refused_with_how_to_get_a_newer_one() {
    let need = rust_version();
    let fakes = stand_ins(&OLD_RUST);
    // No rustup: how to install it.
    for script in ["scripts/install-deps", "scripts/setup"] {
        let args: &[&str] = if script == "scripts/setup" {
            &["--no-run"]
        } else {
            &[]
        };
        let out = run_isolated(repo(), script, args, fakes.path());
        let err = assert_refused_old_rust(&out, &need);
        assert!(
            err.contains("curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y")
                && err.contains(". \"$HOME/.cargo/env\""),
            "{script}: {err}"
        );
        assert!(!err.contains("rustup update"), "{script}: {err}");
    }
    // rustup there: update it.
    write_tool(
        fakes.path(),
        "rustup",
        "echo 'rustup was called' >&2; exit 98",
    );
    let out = run_isolated(repo(), "scripts/install-deps", &[], fakes.path());
    let err = assert_refused_old_rust(&out, &need);
    assert!(
        err.contains("  rustup update stable\n  rustup default stable\n"),
        "{err}"
    );
    assert!(
        !err.contains("sh.rustup.rs") && !err.contains("rustup was called"),
        "{err}"
    );
}

#[test]
fn the_version_needed_is_read_from_cargo_toml() {
    // A copy of the scripts beside a Cargo.toml that asks for 1.64, then for 1.63.
    let copy = tempfile::tempdir().unwrap();
    fs::create_dir(copy.path().join("scripts")).unwrap();
    for script in ["scripts/lib.sh", "scripts/install-deps"] {
        fs::copy(repo().join(script), copy.path().join(script)).unwrap();
    }
    let toml = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = format!("rust-version = \"{}\"", rust_version());
    assert!(toml.contains(&line));
    let fakes = stand_ins(&OLD_RUST);
    fs::write(
        copy.path().join("Cargo.toml"),
        toml.replace(&line, "rust-version = \"1.64\""),
    )
    .unwrap();
    let out = run_isolated(copy.path(), "scripts/install-deps", &[], fakes.path());
    assert_refused_old_rust(&out, "1.64");
    fs::write(
        copy.path().join("Cargo.toml"),
        toml.replace(&line, "rust-version = \"1.63\""),
    )
    .unwrap();
    let out = run_isolated(copy.path(), "scripts/install-deps", &[], fakes.path());
    let err = stderr(&out);
    // Past the check, on to the system packages (which may be missing here: not this test's).
    assert!(
        err.contains("rust: rustc 1.63.0 cargo 1.63.0, at least 1.63 (Cargo.toml's rust-version)")
            && (err.contains("system packages: all present") || err.contains(INSTALLING)),
        "{err}"
    );
    assert!(!err.contains("too old"), "{err}");
}

#[test]
fn without_rust_debian_s_is_installed_only_when_new_enough() {
    let need = rust_version();
    let policy = |candidate: &str| {
        format!(
            "cat <<EOF\nrustc:\n  Installed: (none)\n  Candidate: {candidate}\n  Version table:\nEOF"
        )
    };
    // Debian 12: too old; the way to install rustup, and apt-get never called.
    let old = policy("1.63.0+dfsg1-2");
    let fakes = stand_ins(&[("apt-cache", &old)]);
    let out = run_isolated(repo(), "scripts/install-deps", &[], fakes.path());
    let err = stderr(&out);
    assert!(!err.contains(INSTALLING), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "error: no cargo and no rustup; this project needs Rust {need} or newer and Debian \
             offers 1.63.0+dfsg1-2"
        )) && err.contains("https://sh.rustup.rs"),
        "{err}"
    );
    // No candidate at all (no package lists yet): the same.
    let none = policy("(none)");
    let fakes = stand_ins(&[("apt-cache", &none)]);
    let out = run_isolated(repo(), "scripts/install-deps", &[], fakes.path());
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Debian offers (none)"), "{err}");
    // A Debian whose Rust is new enough: installed with apt (the stand-in apt-get is called).
    let new = policy("1:99.0.0+dfsg1-1");
    let fakes = stand_ins(&[("apt-cache", &new)]);
    let out = run_isolated(repo(), "scripts/install-deps", &[], fakes.path());
    let err = stderr(&out);
    assert!(
        err.contains("installing Debian's Rust 1:99.0.0+dfsg1-1")
            && err.contains(&format!("{INSTALLING}: "))
            && err.contains("cargo rustc rustfmt rust-clippy"),
        "{err}"
    );
    assert!(!out.status.success());
}

#[test]
fn the_real_toolchain_passes() {
    let need = rust_version();
    // Only apt-get and sudo stood in for; the Rust is the one building these tests.
    let fakes = stand_ins(&[]);
    let cargo_dir = Path::new(env!("CARGO")).parent().map(PathBuf::from);
    let path = std::env::var("PATH").unwrap_or_default();
    let path = match cargo_dir {
        Some(dir) => format!("{}:{}:{path}", fakes.path().display(), dir.display()),
        None => format!("{}:{path}", fakes.path().display()),
    };
    let out = Command::new(repo().join("scripts/install-deps"))
        .env("PATH", &path)
        .output()
        .expect("run scripts/install-deps");
    let err = stderr(&out);
    let passed = format!(", at least {need} (Cargo.toml's rust-version)");
    assert!(
        err.contains(&passed)
            && (err.contains("system packages: all present") || err.contains(INSTALLING)),
        "{err}"
    );
    assert!(!err.contains("too old"), "{err}");
    // The helper itself, as scripts/setup calls it right before building.
    let out = Command::new("bash")
        .args(["-c", "source scripts/lib.sh && check_rust_version"])
        .current_dir(repo())
        .env("PATH", &path)
        .output()
        .expect("run check_rust_version");
    let err = stderr(&out);
    assert!(out.status.success() && err.contains(&passed), "{err}");
}

/// The highest `rust_version` of the locked packages, from `cargo metadata`.
#[test]
fn rust_version_is_at_least_every_dependency_s() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(repo())
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "{}", stderr(&out));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (highest, who) = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["name"] != "face-attendance")
        .filter_map(|p| {
            let v = p["rust_version"].as_str()?;
            Some((numbers(v), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some package declares a rust_version");
    let need = numbers(&rust_version());
    // Cargo.lock's version 4 needs cargo 1.78.
    assert!(need >= vec![1, 78], "{need:?}");
    assert!(
        need.as_slice() >= &highest[..2],
        "Cargo.toml's rust-version {need:?} is below {who}'s {highest:?}: raise it (and its comment)"
    );
    // The declared figure is that maximum (Cargo.toml's comment says how it was found).
    assert_eq!(need.as_slice(), &highest[..2], "{who} needs {highest:?}");
}
