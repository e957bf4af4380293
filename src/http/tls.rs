//! HTTPS: the certificate chain and private key of `FACE_TLS_CERT` and `FACE_TLS_KEY` (PEM)
//! read into the rustls server configuration of the HTTPS listener (ring provider, TLS 1.2 and
//! 1.3, no client certificates).
//!
//! Contract: [`server_config`] reads both files now and either returns a configuration the
//! listener can use (the key matches the first certificate) or a [`TlsError`] naming the
//! setting and the file, for `serve` to refuse to start with. The vendored tiny_http does the
//! rest (handshakes on the connections' own threads, under their deadlines: its PATCHED.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Why the certificate or key cannot serve HTTPS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{setting}: cannot read {}: {source}", path.display())]
    Read {
        /// The setting that named it (`FACE_TLS_CERT` or `FACE_TLS_KEY`).
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{setting}: {} is not valid PEM: {detail}", path.display())]
    Pem {
        /// The setting that named it.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The certificate file holds no certificate.
    #[error("FACE_TLS_CERT: {} holds no PEM certificate", .0.display())]
    NoCertificate(PathBuf),
    #[error(
        "FACE_TLS_KEY: {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1; encrypted keys are \
         not supported)",
        .0.display()
    )]
    /// The key file holds no private key of a supported kind.
    NoKey(PathBuf),
    /// The key does not go with the certificate, or rustls cannot use them.
    #[error("FACE_TLS_KEY does not go with FACE_TLS_CERT (or is not usable): {0}")]
    Unusable(rustls::Error),
}

/// The certificate and key read, checked, ready for the listener.
#[derive(Clone)]
pub struct TlsSetup {
    /// The listener's TLS configuration.
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the box's certificate (the first of the chain), as
    /// `openssl x509 -noout -fingerprint -sha256` shows it: what a client pins.
    pub fingerprint: String,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(setting: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TlsError {
    let path = path.to_path_buf();
    move |e| TlsError::Pem {
        setting,
        path,
        detail: e.to_string(),
    }
}

/// Reads `cert` (PEM chain, the box's certificate first) and `key` (PEM private key) into a
/// server configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<TlsSetup, TlsError> {
    let cert_pem = read("FACE_TLS_CERT", cert)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(pem_error("FACE_TLS_CERT", cert))?;
    let Some(first) = chain.first() else {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    };
    let fingerprint = fingerprint(first);
    let key_pem = read("FACE_TLS_KEY", key)?;
    let private_key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(pem_error("FACE_TLS_KEY", key))?
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Unusable)?
        .with_no_client_auth()
        // Fails unless the key is usable and matches the first certificate's public key.
        .with_single_cert(chain, private_key)
        .map_err(TlsError::Unusable)?;
    Ok(TlsSetup {
        config: Arc::new(config),
        fingerprint,
    })
}

/// `AB:CD:...`, the SHA-256 of a DER certificate in openssl's notation.
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &empty).unwrap_err().to_string();
        assert!(e.starts_with("FACE_TLS_CERT: cannot read"), "{e}");
        let e = server_config(&empty, &empty).unwrap_err().to_string();
        assert!(
            e.starts_with("FACE_TLS_CERT:") && e.contains("no PEM certificate"),
            "{e}"
        );
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = server_config(&bad, &empty).unwrap_err().to_string();
        assert!(
            e.starts_with("FACE_TLS_CERT:") && e.contains("not valid PEM"),
            "{e}"
        );
    }

    #[test]
    fn fingerprints_are_in_openssl_notation() {
        let f = fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF:"), "{f}");
    }
}
