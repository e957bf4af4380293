//! `scripts/install` into a staging root (`--dest-root`): what lands where, with which modes; the
//! settings file is never overwritten; models that do not verify are refused. And the `--ssh`
//! path: the bundle it sends and the command it runs on the board, with `ssh` and `sudo`
//! replaced by stand-ins that run locally (this machine has no board to reach).
//!
//! Keys and TLS: a fresh install makes one admin key (printed once) and a self-signed
//! certificate (its fingerprint printed) and keeps both on the next run; an upgrade over the
//! settings template from before keys (`tests/fixtures/install/env-before-keys`, which opened the
//! LAN without a key) ends with a key and a service that runs with it: the staged binary,
//! started with the staged settings as systemd would, answers 401 without the key and 200 with
//! it; settings that already have a key, or do not open the LAN, only ever get lines appended.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn install(args: &[&str], path_prefix: Option<&Path>) -> Output {
    let mut cmd = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install"));
    cmd.args(args)
        .args(["--binary", env!("CARGO_BIN_EXE_face-attendance")])
        .env_remove("FACE_MODELS_DIR");
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd.output().expect("run scripts/install")
}

/// `scripts/install ARGS` run by a caller whose umask lets nobody else read what it creates.
fn install_under_strict_umask(args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install");
    Command::new("bash")
        .args(["-c", r#"umask 077 && exec "$0" "$@""#])
        .arg(script)
        .args(args)
        .args(["--binary", env!("CARGO_BIN_EXE_face-attendance")])
        .env_remove("FACE_MODELS_DIR")
        .output()
        .expect("run scripts/install")
}

fn models() -> String {
    common::models_dir().display().to_string()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "scripts/install failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The staged tree is what the unit expects.
fn assert_staged(root: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("usr/local/bin/face-attendance");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_face-attendance")).unwrap()
    );
    let unit = root.join("etc/systemd/system/face-attendance.service");
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(
        std::fs::read(&unit).unwrap(),
        std::fs::read(repo.join("systemd/face-attendance.service")).unwrap()
    );
    assert_eq!(mode(&root.join("etc/face-attendance/env")), 0o600);
    assert_eq!(mode(&root.join("etc/face-attendance/env.example")), 0o600);
    // The secrets: root and the service's group only; the certificate is public.
    for secret in [
        "etc/face-attendance/api-keys",
        "etc/face-attendance/tls/key.pem",
    ] {
        assert_eq!(mode(&root.join(secret)), 0o640, "{secret}");
        if let Some(gid) = service_gid() {
            let meta = std::fs::metadata(root.join(secret)).unwrap();
            assert_eq!(meta.gid(), gid, "{secret}: group face-attendance");
        }
    }
    assert_eq!(mode(&root.join("etc/face-attendance/tls/cert.pem")), 0o644);
    // The service user gets through to its models, key and TLS key.
    for dir in [
        "etc/face-attendance",
        "etc/face-attendance/tls",
        "usr/share/face-attendance/models",
    ] {
        assert_eq!(mode(&root.join(dir)), 0o755, "{dir}");
    }
    // The installed binary starts from the installed models (their SHA-256 checked on start).
    let models = root.join("usr/share/face-attendance/models");
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(unit_text.contains("FACE_MODELS_DIR=/usr/share/face-attendance/models"));
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .args(["recognize", "missing.jpg"])
        .current_dir(empty.path())
        .env("FACE_MODELS_DIR", &models)
        .env("FACE_DATA_DIR", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("missing.jpg"),
        "models did not load: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn staging_install_places_files_and_keeps_the_settings() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().display().to_string();
    assert_ok(&install(
        &["--dest-root", &dest, "--models", &models()],
        None,
    ));
    assert_staged(root.path());

    // A second install (an upgrade) keeps the site's settings: the template, edited.
    let env = root.path().join("etc/face-attendance/env");
    let edited = std::fs::read_to_string(&env)
        .unwrap()
        .replace("#CAMERA_DEVICE=/dev/video0", "CAMERA_DEVICE=/dev/video2");
    std::fs::write(&env, &edited).unwrap();
    assert_ok(&install(
        &["--dest-root", &dest, "--models", &models()],
        None,
    ));
    assert_eq!(std::fs::read_to_string(&env).unwrap(), edited);
}

#[test]
fn models_that_do_not_verify_are_refused() {
    let bad = tempfile::tempdir().unwrap();
    for name in [
        "shape_predictor_5_face_landmarks.dat",
        "dlib_face_recognition_resnet_model_v1.dat",
    ] {
        std::fs::copy(common::models_dir().join(name), bad.path().join(name)).unwrap();
    }
    let encoder = bad.path().join("dlib_face_recognition_resnet_model_v1.dat");
    let mut bytes = std::fs::read(&encoder).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&encoder, bytes).unwrap();

    let root = tempfile::tempdir().unwrap();
    let out = install(
        &[
            "--dest-root",
            &root.path().display().to_string(),
            "--models",
            &bad.path().display().to_string(),
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dlib_face_recognition_resnet_model_v1.dat does not have the SHA-256"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "nothing may be installed"
    );
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn ssh_install_sends_a_bundle_and_installs_it_on_the_board() {
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("ssh.log");
    // ssh [-t] HOST COMMAND...: like ssh, joins COMMAND into one line for the remote shell.
    script(
        shims.path(),
        "ssh",
        &format!(
            r#"[ "$1" = -t ] && shift
host="$1"; shift
echo "$host: $*" >> {log}
exec bash -c "$*""#,
            log = log.display()
        ),
    );
    script(shims.path(), "sudo", r#"exec "$@""#);
    let root = tempfile::tempdir().unwrap();
    let out = install(
        &[
            "--ssh",
            "pi@board",
            "--target",
            "aarch64",
            "--dest-root",
            &root.path().display().to_string(),
            "--models",
            &models(),
        ],
        Some(shims.path()),
    );
    assert_ok(&out);
    assert_staged(root.path());
    // The key made on the board is shown on the laptop.
    let key = the_admin_key(&root.path().join("etc/face-attendance/api-keys"));
    assert!(text(&out.stdout).contains(&key), "{}", text(&out.stdout));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.lines().all(|l| l.starts_with("pi@board: ")), "{log}");
    assert!(log.contains("sudo "), "the install runs as root: {log}");
    // The board's temporary copy is removed afterwards.
    let remote = log
        .lines()
        .find_map(|l| l.strip_prefix("pi@board: rm -rf "))
        .unwrap_or_else(|| panic!("no clean-up: {log}"));
    assert!(!Path::new(remote.trim()).exists());
}

/// The gid the staged secrets get: group face-attendance when it exists and the test runs as
/// root (a staging install changes the group only then), else none to check.
fn service_gid() -> Option<u32> {
    if !common::is_root() {
        return None;
    }
    let out = Command::new("getent")
        .args(["group", "face-attendance"])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    line.split(':').nth(2)?.trim().parse().ok()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines of a keys or settings file that are neither blank nor comments.
fn setting_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The one admin key of a keys file made by the install.
fn the_admin_key(keys_file: &Path) -> String {
    let lines = setting_lines(&std::fs::read_to_string(keys_file).unwrap());
    assert_eq!(lines.len(), 1, "one key line: {lines:?}");
    let words: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(words.len(), 3, "LABEL ROLE KEY: {}", lines[0]);
    assert_eq!(&words[..2], ["admin", "admin"]);
    let key = words[2];
    assert!(
        key.len() == 64
            && key
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "64 hex digits: {key}"
    );
    key.to_string()
}

/// Runs openssl; its stdout.
fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn hostname(args: &[&str]) -> String {
    let out = Command::new("hostname")
        .args(args)
        .output()
        .expect("hostname");
    text(&out.stdout).trim().to_string()
}

/// The certificate's subjectAltName entries as `DNS:name` and `IP:address` (IPv6 in Rust's
/// form, whatever openssl prints).
fn sans(cert: &Path) -> Vec<String> {
    let shown = openssl(&[
        "x509",
        "-noout",
        "-ext",
        "subjectAltName",
        "-in",
        &cert.display().to_string(),
    ]);
    let list = shown.lines().nth(1).unwrap_or_default();
    list.split(',')
        .map(str::trim)
        .map(|entry| match entry.strip_prefix("IP Address:") {
            Some(ip) => format!("IP:{}", ip.parse::<std::net::IpAddr>().unwrap()),
            None => entry.to_string(),
        })
        .collect()
}

/// The certificate's SHA-256 fingerprint, `AB:CD:...`.
fn fingerprint(cert: &Path) -> String {
    let out = openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        &cert.display().to_string(),
    ]);
    out.trim()
        .split_once('=')
        .map(|(_, f)| f.to_string())
        .unwrap()
}

#[test]
fn a_fresh_install_makes_an_admin_key_and_a_certificate_once() {
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().display().to_string();
    let out = install_under_strict_umask(&["--dest-root", &dest, "--models", &models()]);
    assert_ok(&out);
    assert_staged(root.path());
    let conf = root.path().join("etc/face-attendance");

    // The settings are the template, which names the key and the certificate.
    let env = std::fs::read_to_string(conf.join("env")).unwrap();
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/env.example"))
            .unwrap();
    assert_eq!(env, template);
    let settings = setting_lines(&env);
    for line in [
        "FACE_BIND=0.0.0.0:8000",
        "FACE_API_KEYS_FILE=/etc/face-attendance/api-keys",
        "FACE_TLS_BIND=0.0.0.0:8443",
        "FACE_TLS_CERT=/etc/face-attendance/tls/cert.pem",
        "FACE_TLS_KEY=/etc/face-attendance/tls/key.pem",
    ] {
        assert!(
            settings.iter().any(|l| l == line),
            "{line} missing: {settings:?}"
        );
    }

    // One admin key, shown with how to read it again and what clients send.
    let key = the_admin_key(&conf.join("api-keys"));
    let keys_text = std::fs::read_to_string(conf.join("api-keys")).unwrap();
    for word in [
        "LABEL ROLE KEY",
        "kiosk",
        "viewer",
        "operator",
        "admin",
        "Rotate",
    ] {
        assert!(
            keys_text.contains(word),
            "the header explains {word}: {keys_text}"
        );
    }
    let stdout = text(&out.stdout);
    assert_eq!(stdout.matches(&key).count(), 1, "the key once: {stdout}");
    assert!(stdout.contains(&format!("sudo cat {}", conf.join("api-keys").display())));
    assert!(stdout.contains("X-API-Key: <key>"), "{stdout}");
    assert!(!env.contains(&key) && !text(&out.stderr).contains(&key));

    // The certificate: P-256, not a CA, ten years, for this machine's names and addresses; its
    // key is the one beside it; its fingerprint printed.
    let cert = conf.join("tls/cert.pem");
    let cert_arg = cert.display().to_string();
    let shown = openssl(&["x509", "-noout", "-text", "-in", &cert_arg]);
    assert!(shown.contains("NIST CURVE: P-256"), "{shown}");
    assert!(shown.contains("CA:FALSE"), "{shown}");
    assert!(shown.contains("TLS Web Server Authentication"), "{shown}");
    let nine_years = (9 * 365 * 86400).to_string();
    openssl(&["x509", "-noout", "-checkend", &nine_years, "-in", &cert_arg]);
    let host = hostname(&[]);
    let mut expected = vec![
        format!("DNS:{host}"),
        format!("DNS:{host}.local"),
        "DNS:localhost".to_string(),
        "IP:127.0.0.1".to_string(),
    ];
    for ip in hostname(&["-I"]).split_whitespace() {
        expected.push(format!("IP:{}", ip.parse::<std::net::IpAddr>().unwrap()));
    }
    let names = sans(&cert);
    for name in &expected {
        assert!(names.contains(name), "{name} not in {names:?}");
    }
    let key_arg = conf.join("tls/key.pem").display().to_string();
    assert_eq!(
        openssl(&["pkey", "-pubout", "-in", &key_arg]),
        openssl(&["x509", "-noout", "-pubkey", "-in", &cert_arg]),
        "the key belongs to the certificate"
    );
    let print = fingerprint(&cert);
    assert!(
        stdout.contains(&print),
        "fingerprint {print} not shown: {stdout}"
    );

    // A second run keeps both, shows the fingerprint again and the key no more.
    let keys_before = std::fs::read(conf.join("api-keys")).unwrap();
    let cert_before = std::fs::read(&cert).unwrap();
    let tls_key_before = std::fs::read(conf.join("tls/key.pem")).unwrap();
    let again = install(&["--dest-root", &dest, "--models", &models()], None);
    assert_ok(&again);
    assert_eq!(std::fs::read(conf.join("api-keys")).unwrap(), keys_before);
    assert_eq!(std::fs::read(&cert).unwrap(), cert_before);
    assert_eq!(
        std::fs::read(conf.join("tls/key.pem")).unwrap(),
        tls_key_before
    );
    assert_eq!(std::fs::read_to_string(conf.join("env")).unwrap(), template);
    let stdout = text(&again.stdout);
    assert!(
        !stdout.contains(&key),
        "the key is shown only once: {stdout}"
    );
    assert!(stdout.contains(&print), "{stdout}");
    assert_staged(root.path());
}

/// Stages an install over `env` (the settings already on the box); returns the staging root and
/// the install's output.
fn install_over(env: &[u8]) -> (tempfile::TempDir, Output) {
    let root = tempfile::tempdir().unwrap();
    let conf = root.path().join("etc/face-attendance");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("env"), env).unwrap();
    std::fs::set_permissions(conf.join("env"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = install(
        &[
            "--dest-root",
            &root.path().display().to_string(),
            "--models",
            &models(),
        ],
        None,
    );
    assert_ok(&out);
    (root, out)
}

/// What the install appended to `before`: the settings it added (comments and blanks dropped),
/// after checking that `after` starts with `before` byte for byte, and that every addition
/// follows a dated `# Added by scripts/install on` comment.
fn appended(before: &[u8], after: &[u8]) -> Vec<String> {
    assert!(
        after.starts_with(before),
        "the site's settings were changed, not appended to:\n{}",
        text(after)
    );
    let mut rest = text(&after[before.len()..]);
    if !rest.is_empty() && !before.is_empty() && !before.ends_with(b"\n") {
        rest = rest
            .strip_prefix('\n')
            .expect("a newline ends the site's last line")
            .to_string();
    }
    if !rest.is_empty() {
        let first = rest.lines().find(|l| !l.trim().is_empty()).unwrap();
        assert!(
            first.starts_with("# Added by scripts/install on 20"),
            "undated addition: {rest}"
        );
    }
    setting_lines(&rest)
}

const TLS_LINES: [&str; 3] = [
    "FACE_TLS_BIND=0.0.0.0:8443",
    "FACE_TLS_CERT=/etc/face-attendance/tls/cert.pem",
    "FACE_TLS_KEY=/etc/face-attendance/tls/key.pem",
];

/// The settings as systemd gives them to the service: the unit's `Environment=` lines, then the
/// settings file's `VAR=value` lines (the last assignment wins), with the box's own paths moved
/// into the staging root.
fn service_environment(root: &Path) -> BTreeMap<String, String> {
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/face-attendance.service")).unwrap();
    let env = std::fs::read_to_string(root.join("etc/face-attendance/env")).unwrap();
    let mut vars = BTreeMap::new();
    let unit_lines = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Environment="));
    for line in unit_lines.chain(setting_lines(&env).iter().map(String::as_str)) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        let value = if [
            "/etc/face-attendance/",
            "/usr/share/face-attendance/",
            "/var/lib/face-attendance",
        ]
        .iter()
        .any(|p| value.starts_with(p))
        {
            format!("{}{value}", root.display())
        } else {
            value.to_string()
        };
        vars.insert(name.trim().to_string(), value);
    }
    vars
}

/// The status curl gets for `url` (with `X-API-Key: key` when given, and `extra` arguments).
fn status(url: &str, key: Option<&str>, extra: &[&str]) -> u16 {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "20",
    ])
    .args(extra);
    if let Some(key) = key {
        cmd.args(["-H", &format!("X-API-Key: {key}")]);
    }
    let out = cmd.arg(url).output().expect("curl");
    text(&out.stdout).trim().parse().unwrap_or_else(|_| {
        panic!("curl {url}: {}", text(&out.stderr));
    })
}

/// A child process killed when dropped.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_upgrade_over_the_open_template_ends_with_a_key_and_a_running_service() {
    // The settings the install wrote before keys: FACE_BIND=0.0.0.0:8000 and no key.
    let before = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/install/env-before-keys"),
    )
    .unwrap();
    assert!(text(&before).lines().any(|l| l == "FACE_BIND=0.0.0.0:8000"));
    let (root, out) = install_over(&before);
    assert_staged(root.path());
    let conf = root.path().join("etc/face-attendance");
    let after = std::fs::read(conf.join("env")).unwrap();
    let mut expected = vec!["FACE_API_KEYS_FILE=/etc/face-attendance/api-keys".to_string()];
    expected.extend(TLS_LINES.map(String::from));
    assert_eq!(appended(&before, &after), expected);
    let key = the_admin_key(&conf.join("api-keys"));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&key), "the new key is shown: {stdout}");
    assert!(stdout.contains(&fingerprint(&conf.join("tls/cert.pem"))));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("every client must now send X-API-Key"),
        "{stderr}"
    );

    // The staged binary, started as systemd would start it with these settings, on every
    // interface (as FACE_BIND says) but on a free port.
    let mut vars = service_environment(root.path());
    let port = common::free_port();
    vars.insert("FACE_BIND".into(), format!("0.0.0.0:{port}"));
    let tls_port = common::free_port();
    vars.insert("FACE_TLS_BIND".into(), format!("127.0.0.1:{tls_port}"));
    vars.insert("RUST_LOG".into(), "info".into());
    std::fs::create_dir_all(root.path().join("var/lib/face-attendance")).unwrap();
    let bin = root.path().join("usr/local/bin/face-attendance");
    let mut command = Command::new(&bin);
    command
        .arg("serve")
        .current_dir(root.path().join("var/lib/face-attendance"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(&vars);
    let _service = Service(common::spawn_until_serving(command));
    let people = format!("http://127.0.0.1:{port}/people");
    assert_eq!(status(&people, None, &[]), 401, "open without the key");
    assert_eq!(status(&people, Some(&"0".repeat(64)), &[]), 401);
    assert_eq!(
        status(&people, Some(&key), &[]),
        200,
        "the printed key works"
    );

    // A binary that serves HTTPS (it reads FACE_TLS_BIND) does so with the certificate made for
    // this machine's name, which a client checks against the certificate file.
    let help = Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    if text(&help.stdout).contains("FACE_TLS_BIND") {
        let host = hostname(&[]);
        let url = format!("https://{host}:{tls_port}/people");
        let resolve = format!("{host}:{tls_port}:127.0.0.1");
        let cert = conf.join("tls/cert.pem").display().to_string();
        let trust = ["--resolve", &resolve, "--cacert", &cert];
        common::wait_for(
            "the HTTPS listener",
            std::time::Duration::from_secs(30),
            || std::net::TcpStream::connect(("127.0.0.1", tls_port)).is_ok(),
        );
        assert_eq!(status(&url, None, &trust), 401);
        assert_eq!(status(&url, Some(&key), &trust), 200);
    }
}

#[test]
fn settings_with_a_key_or_without_the_lan_are_only_appended_to() {
    let key_line = "FACE_API_KEY=site-key-0123456789abcdef";
    // (settings on the box, what the install appends, whether it makes a keys file)
    let cases: Vec<(String, Vec<String>, bool)> = vec![
        // A key already: HTTPS added, nothing else.
        (
            format!("FACE_BIND=0.0.0.0:9000\n{key_line}\n"),
            TLS_LINES.map(String::from).to_vec(),
            false,
        ),
        // A key, and HTTPS deliberately off (commented out): not a byte changes.
        (
            format!("{key_line}\n#FACE_TLS_BIND=0.0.0.0:8443\n"),
            vec![],
            false,
        ),
        // Loopback without a key: not open to the LAN, kept as it is (no key, no HTTPS).
        ("FACE_BIND=127.0.0.1:8000\n".into(), vec![], false),
        ("RUST_LOG=info".into(), vec![], false),
        ("FACE_BIND=[::1]:8000\n".into(), vec![], false),
        // The deliberate override: kept (with a warning).
        (
            "FACE_BIND=0.0.0.0:8000\nFACE_ALLOW_OPEN_LAN=true\n".into(),
            vec![],
            false,
        ),
        // Open to the LAN: quoted, a blank key, HTTPS commented out, no newline at the end.
        (
            "FACE_API_KEY=\n#FACE_TLS_BIND=\nFACE_BIND = \"0.0.0.0:9000\"".into(),
            vec!["FACE_API_KEYS_FILE=/etc/face-attendance/api-keys".into()],
            true,
        ),
        // The last assignment wins, as systemd reads it.
        (
            "FACE_BIND=127.0.0.1:8000\nFACE_BIND=192.168.1.20:8000\n".into(),
            std::iter::once("FACE_API_KEYS_FILE=/etc/face-attendance/api-keys".to_string())
                .chain(TLS_LINES.map(String::from))
                .collect(),
            true,
        ),
    ];
    for (before, additions, makes_key) in cases {
        let (root, out) = install_over(before.as_bytes());
        let conf = root.path().join("etc/face-attendance");
        let after = std::fs::read(conf.join("env")).unwrap();
        assert_eq!(
            appended(before.as_bytes(), &after),
            additions,
            "over {before:?}"
        );
        assert_eq!(mode(&conf.join("env")), 0o600);
        assert_eq!(conf.join("api-keys").exists(), makes_key, "over {before:?}");
        if makes_key {
            let key = the_admin_key(&conf.join("api-keys"));
            assert!(text(&out.stdout).contains(&key));
        }
        let tls = additions.iter().any(|l| l.starts_with("FACE_TLS_BIND="));
        if tls {
            assert_eq!(mode(&conf.join("tls/key.pem")), 0o640);
        }
        if before.contains("FACE_ALLOW_OPEN_LAN=true") {
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("without an API key, open to anyone"),
                "{stderr}"
            );
        }
        // A second run adds nothing more.
        let again = install(
            &[
                "--dest-root",
                &root.path().display().to_string(),
                "--models",
                &models(),
            ],
            None,
        );
        assert_ok(&again);
        assert_eq!(
            std::fs::read(conf.join("env")).unwrap(),
            after,
            "over {before:?}"
        );
    }
}
