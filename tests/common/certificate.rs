//! A self-signed box certificate made the way an installer makes one (`openssl req -x509`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed certificate for localhost and 127.0.0.1 (`openssl req -x509`, as the install
/// helper makes one: marked as a CA by openssl's defaults) and its key, in `dir`.
pub struct Cert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Cert {
    pub fn make(dir: &Path, name: &str) -> Cert {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .arg("ec_paramgen_curve:prime256v1")
            .args([
                "-nodes",
                "-days",
                "3650",
                "-subj",
                "/CN=face-attendance test",
            ])
            .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Cert { cert, key }
    }

    /// What `openssl x509 -noout -fingerprint -sha256` prints (`sha256 Fingerprint=AB:...`).
    pub fn fingerprint(&self) -> String {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&self.cert)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}
