//! The real binary and API keys: where `serve` listens by default, the warning when it is open to
//! the network without a key, bad key settings stopping the start, and the clients sending the key.

mod common;

use std::process::Command;

const KEY: &str = "binary-test-key-0123456789abcdef0123";

use common::serve_process::{serve_command, start, Running};

/// Either it serves on `addr`, or `addr` was taken by someone else (port 8000 is shared on a
/// test machine): both show which address the default picked.
fn assert_default_address(run: &Running, addr: &str) {
    let text = run.early.join("\n");
    assert!(
        text.contains(&format!("serving on http://{addr}"))
            || text.contains(&format!("cannot serve on {addr}")),
        "expected {addr}: {text}"
    );
}

#[test]
fn without_a_key_it_listens_on_loopback_by_default() {
    let site = tempfile::tempdir().unwrap();
    let run = start(site.path(), &[]);
    assert_default_address(&run, "127.0.0.1:8000");
    assert!(
        run.early.iter().all(|l| !l.starts_with("WARN")),
        "{:?}",
        run.early
    );
}

#[test]
fn with_a_key_it_listens_on_every_interface_by_default() {
    let site = tempfile::tempdir().unwrap();
    let run = start(site.path(), &[("FACE_API_KEY", KEY)]);
    assert_default_address(&run, "0.0.0.0:8000");
}

#[test]
fn open_to_the_network_without_a_key_is_refused_unless_deliberate() {
    let site = tempfile::tempdir().unwrap();
    // Refused, with one line that names the deliberate override.
    for bind in ["0.0.0.0:0", "[::]:0"] {
        let out = serve_command(site.path(), &[("FACE_BIND", bind)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bind}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("refusing"))
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(line.contains("FACE_ALLOW_OPEN_LAN=true"), "{line}");
        assert!(line.contains("FACE_API_KEYS_FILE"), "{line}");
    }
    // Deliberately open: served, and warned about.
    let open = start(
        site.path(),
        &[("FACE_BIND", "0.0.0.0:0"), ("FACE_ALLOW_OPEN_LAN", "true")],
    );
    let text = open.early.join("\n");
    assert!(text.contains("serving on http://0.0.0.0:"), "{text}");
    let warning = open
        .early
        .iter()
        .find(|l| l.starts_with("WARN"))
        .unwrap_or_else(|| panic!("no warning: {text}"));
    assert!(warning.contains("no API key"), "{warning}");
    assert!(warning.contains("FACE_ALLOW_OPEN_LAN"), "{warning}");

    let keyed = start(
        site.path(),
        &[("FACE_BIND", "0.0.0.0:0"), ("FACE_API_KEY", KEY)],
    );
    let text = keyed.early.join("\n");
    assert!(text.contains("serving on http://0.0.0.0:"), "{text}");
    assert!(text.contains("1 admin key"), "{text}");
    assert!(keyed.early.iter().all(|l| !l.starts_with("WARN")), "{text}");

    // A key too short to be beyond guessing is warned about, by where it was written.
    let short = start(
        site.path(),
        &[
            ("FACE_BIND", "127.0.0.1:0"),
            ("FACE_API_KEY", "short-but-allowed-key"),
        ],
    );
    let text = short.early.join("\n");
    assert!(text.contains("serving on"), "{text}");
    let warning = short
        .early
        .iter()
        .find(|l| l.starts_with("WARN"))
        .unwrap_or_else(|| panic!("no warning: {text}"));
    assert!(
        warning.contains("FACE_API_KEY") && warning.contains("32"),
        "{warning}"
    );
    assert!(
        !warning.contains("short-but-allowed-key"),
        "the key was printed"
    );
}

#[test]
fn bad_key_settings_stop_the_start_with_exit_status_2() {
    let site = tempfile::tempdir().unwrap();
    let empty = site.path().join("empty-keys");
    std::fs::write(&empty, "# no keys yet\n\n").unwrap();
    let short = site.path().join("short-keys");
    std::fs::write(&short, format!("{KEY}\ntooshort\n")).unwrap();
    let missing = site.path().join("missing-keys");
    let cases = [
        (("FACE_API_KEY", "tooshort".to_string()), "at least 16"),
        (
            ("FACE_API_KEYS_FILE", missing.display().to_string()),
            "cannot read FACE_API_KEYS_FILE",
        ),
        (
            ("FACE_API_KEYS_FILE", empty.display().to_string()),
            "holds no keys",
        ),
        (
            ("FACE_API_KEYS_FILE", short.display().to_string()),
            "line 2",
        ),
    ];
    for ((name, value), says) in cases {
        let out = serve_command(site.path(), &[("FACE_BIND", "127.0.0.1:0"), (name, &value)])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(stderr.contains(says), "{name}={value}: {stderr}");
        assert!(!stderr.contains("tooshort"), "a key was printed: {stderr}");
    }
}

#[test]
fn rt_client_and_bench_http_send_the_key() {
    let site = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let bind = format!("127.0.0.1:{port}");
    let _server = start(site.path(), &[("FACE_BIND", &bind), ("FACE_API_KEY", KEY)]);
    let base = format!("http://{bind}");
    let probe = common::faces_dir().join("probe/obama/obama_4.jpg");
    let client = |args: &[&str], key: Option<&str>| {
        // The benchmarks are a binary of their own.
        let binary = match args[0] {
            "http" => env!("CARGO_BIN_EXE_face-attendance-bench"),
            _ => env!("CARGO_BIN_EXE_face-attendance"),
        };
        let mut command = Command::new(binary);
        command.args(args).env_remove("FACE_API_KEY");
        if let Some(key) = key {
            command.env("FACE_API_KEY", key);
        }
        command.output().unwrap()
    };
    let rt = [
        "rt-client",
        "--server",
        &base,
        "--rate",
        "5",
        probe.to_str().unwrap(),
    ];
    let refused = client(&rt, None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
    let ok = client(&rt, Some(KEY));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("\"ok\":true"), "{stdout}");

    let bench = |key| {
        let out = client(
            &[
                "http",
                "--server",
                &base,
                "--clients",
                "1",
                "--requests",
                "2",
                probe.to_str().unwrap(),
            ],
            key,
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        // The last column of the result row is the error count.
        let errors = stdout
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string);
        (errors, stdout)
    };
    let (errors, text) = bench(Some(KEY));
    assert_eq!(errors.as_deref(), Some("0"), "{text}");
    let (errors, text) = bench(None);
    assert_eq!(errors.as_deref(), Some("2"), "{text}");
}
