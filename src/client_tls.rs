//! The clients' side of HTTPS (`rt-client`, `face-attendance-bench http`, tests): which server
//! certificates a client accepts, for ureq (HTTP) and tungstenite (the WebSocket) alike.
//!
//! Contract: [`Trust::config`] gives a rustls client configuration (ring provider) that
//! - with a fingerprint (`--tls-fingerprint`): accepts exactly the certificate whose SHA-256 it
//!   is, whatever its names, issuer or dates, and refuses any other (the server must still prove
//!   it holds that certificate's key: the handshake signature is checked);
//! - with a CA file (`--ca-file`): accepts a certificate for the host name that chains to one of
//!   the file's certificates, or that is one of them (a self-signed box certificate made by
//!   `openssl req -x509`, which marks it as a CA: webpki alone refuses those as servers');
//! - with both: needs both;
//! - with neither: the system's CA certificates.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// What a client trusts of an HTTPS server.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// PEM CA certificates to trust instead of the system's (`MQTT_CA_FILE`).
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server's certificate.
    pub fingerprint: Option<[u8; 32]>,
}

/// A SHA-256 fingerprint as `openssl x509 -noout -fingerprint -sha256` prints it
/// (`sha256 Fingerprint=AB:CD:...`), or as plain hex; case and `:` do not matter.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    let text = text.rsplit_once('=').map_or(text, |(_, f)| f);
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bad = || format!("--tls-fingerprint: expected 64 hex digits (SHA-256), got {text:?}");
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(out)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca-file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

impl Trust {
    /// The rustls client configuration for this trust (files are read now).
    pub fn config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let provider = provider();
        let roots = match &self.ca_file {
            Some(path) => {
                let certs = read_certs(path)?;
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs.iter().cloned());
                if added == 0 {
                    return Err(format!(
                        "--ca-file {}: no usable certificate in it",
                        path.display()
                    ));
                }
                Some((roots, certs))
            }
            None => None,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match (roots, self.fingerprint) {
            (None, None) => {
                let mut roots = RootCertStore::empty();
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                webpki(roots, &provider)?
            }
            (roots, fingerprint) => Arc::new(BoxVerifier {
                fingerprint,
                ca: roots
                    .map(|(roots, certs)| Ok::<_, String>((webpki(roots, &provider)?, certs)))
                    .transpose()?,
                provider: provider.clone(),
            }),
        };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| format!("no usable CA certificate: {e}"))
}

/// A pinned certificate and/or the certificates of a CA file.
#[derive(Debug)]
struct BoxVerifier {
    fingerprint: Option<[u8; 32]>,
    /// The CA file's verifier, and its certificates as they are.
    ca: Option<(Arc<WebPkiServerVerifier>, Vec<CertificateDer<'static>>)>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BoxVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(pin) = &self.fingerprint {
            if Sha256::digest(end_entity.as_ref()).as_slice() != pin {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        let Some((webpki, certs)) = &self.ca else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Ok(verified) => Ok(verified),
            // The server's certificate is itself in the CA file (self-signed, marked as a CA by
            // `openssl req -x509`): trusted as given, for the names it has.
            Err(e) if certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
                rustls::client::verify_server_name(&parsed, server_name).map_err(|_| e)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The host of a URL's authority, without brackets around an IPv6 address.
fn host_of(authority: &str) -> &str {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.split(':').next().unwrap_or(host)
}

/// A TLS connection to `authority` (`host:port`) over `tcp`, the handshake done.
pub fn connect(
    config: Arc<rustls::ClientConfig>,
    authority: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String> {
    let name = ServerName::try_from(host_of(authority).to_string())
        .map_err(|e| format!("{authority}: {e}"))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("TLS handshake with {authority}: {e}"))?;
    }
    Ok(stream)
}

/// ureq's HTTPS through [`Trust::config`]'s configuration.
pub mod ureq_tls {
    use super::*;
    use ureq::unversioned::transport::{
        Buffers, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout, Transport,
        TransportAdapter,
    };

    /// Wraps the TCP connection of `https://` URLs in TLS with a given rustls configuration.
    #[derive(Debug)]
    pub struct TlsConnector(pub Arc<rustls::ClientConfig>);

    impl<In: Transport> Connector<In> for TlsConnector {
        type Out = Either<In, TlsTransport>;

        fn connect(
            &self,
            details: &ConnectionDetails,
            chained: Option<In>,
        ) -> Result<Option<Self::Out>, ureq::Error> {
            let Some(transport) = chained else {
                return Ok(None);
            };
            if !details.needs_tls() || transport.is_tls() {
                return Ok(Some(Either::A(transport)));
            }
            let authority = details
                .uri
                .authority()
                .ok_or(ureq::Error::Tls("no host in the URL"))?;
            let name = ServerName::try_from(host_of(authority.as_str()).to_string())
                .map_err(|_| ureq::Error::Tls("not a valid TLS server name"))?;
            let mut conn = rustls::ClientConnection::new(self.0.clone(), name)
                .map_err(|e| ureq::Error::Io(std::io::Error::other(e)))?;
            let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
            sock.set_timeout(details.timeout);
            while conn.is_handshaking() {
                conn.complete_io(&mut sock)?;
            }
            let buffers = LazyBuffers::new(
                details.config.input_buffer_size(),
                details.config.output_buffer_size(),
            );
            Ok(Some(Either::B(TlsTransport {
                buffers,
                stream: rustls::StreamOwned::new(conn, sock),
            })))
        }
    }

    /// An HTTPS connection of ureq.
    pub struct TlsTransport {
        buffers: LazyBuffers,
        stream: rustls::StreamOwned<rustls::ClientConnection, TransportAdapter>,
    }

    impl std::fmt::Debug for TlsTransport {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("TlsTransport")
        }
    }

    impl Transport for TlsTransport {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }

        fn transmit_output(
            &mut self,
            amount: usize,
            timeout: NextTimeout,
        ) -> Result<(), ureq::Error> {
            self.stream.get_mut().set_timeout(timeout);
            let output = &self.buffers.output()[..amount];
            self.stream.write_all(output)?;
            Ok(())
        }

        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
            self.stream.get_mut().set_timeout(timeout);
            let input = self.buffers.input_append_buf();
            let amount = self.stream.read(input)?;
            self.buffers.input_appended(amount);
            Ok(amount > 0)
        }

        fn is_open(&mut self) -> bool {
            self.stream.get_mut().get_mut().is_open()
        }

        fn is_tls(&self) -> bool {
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_as_openssl_prints_them() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert_eq!(
            parse_fingerprint(&format!("sha256 Fingerprint={colons}\n")).unwrap(),
            [0xab; 32]
        );
        for bad in [
            "",
            "ab",
            &"ab".repeat(31),
            &"zz".repeat(32),
            &"ab".repeat(33),
        ] {
            assert!(parse_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_come_without_port_or_brackets() {
        assert_eq!(host_of("box.lan:8443"), "box.lan");
        assert_eq!(host_of("[::1]:8443"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_of("user@box:1"), "box");
    }
}
