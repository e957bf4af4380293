//! Client side helpers: the multipart body curl `-F` would send, and the HTTP agent (for
//! `rt-client`, `face-attendance-bench http` and tests).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

use tungstenite::client::IntoClientRequest;
use tungstenite::WebSocket;

use crate::client_tls::{parse_fingerprint, ureq_tls::TlsConnector, Trust};

/// The header the clients send the API key in (the server also takes `Authorization: Bearer`).
pub const API_KEY_HEADER: &str = "X-API-Key";

/// Which server the clients talk to, the API key they send it, and for `https://`, which
/// certificate they accept.
#[derive(Debug, Clone)]
pub struct Server {
    /// The server's base URL (http:// or https://)
    pub server: String,
    /// The server's API key (sent as X-API-Key), when it has one
    pub api_key: Option<String>,
    /// For https://: PEM CA certificate(s) to verify the server with instead of the system's
    /// (a self-signed box certificate itself will do)
    pub ca_file: Option<PathBuf>,
    /// For https://: SHA-256 fingerprint of the server's certificate (hex, `:` allowed, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it): accept exactly that certificate
    /// and refuse any other
    pub tls_fingerprint: Option<String>,
}

/// The stream of a WebSocket client: TCP, or TLS over TCP.
pub enum WsStream {
    /// `ws://`: plain TCP.
    Plain(TcpStream),
    /// `wss://`: TLS over TCP.
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for WsStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            WsStream::Plain(s) => s.read(buf),
            WsStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for WsStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            WsStream::Plain(s) => s.write(buf),
            WsStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            WsStream::Plain(s) => s.flush(),
            WsStream::Tls(s) => s.flush(),
        }
    }
}

impl Server {
    fn key(&self) -> Option<&str> {
        self.api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }

    fn https(&self) -> bool {
        self.server
            .trim_start()
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    }

    /// The rustls configuration for `https://` (`--ca-file`, `--tls-fingerprint`).
    pub fn tls_config(&self) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
        Trust {
            ca_file: self.ca_file.clone(),
            fingerprint: self
                .tls_fingerprint
                .as_deref()
                .map(parse_fingerprint)
                .transpose()?,
        }
        .config()
    }

    /// A blocking HTTP agent for this server (its TLS trust for `https://`) that returns
    /// 4xx/5xx answers instead of failing on them.
    pub fn agent(&self, timeout: Duration) -> Result<ureq::Agent, String> {
        if !self.https() {
            if self.ca_file.is_some() || self.tls_fingerprint.is_some() {
                return Err("--ca-file and --tls-fingerprint need an https:// server".into());
            }
            return Ok(agent(timeout));
        }
        use ureq::unversioned::resolver::DefaultResolver;
        use ureq::unversioned::transport::{Connector, TcpConnector};
        let connector = TcpConnector::default().chain(TlsConnector(self.tls_config()?));
        Ok(ureq::Agent::with_parts(
            agent_config(timeout),
            connector,
            DefaultResolver::default(),
        ))
    }

    /// The URL of `path_and_query` on the server.
    pub fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{path_and_query}",
            self.server.trim().trim_end_matches('/')
        )
    }

    /// A POST to `path_and_query`, carrying the API key.
    pub fn post(
        &self,
        agent: &ureq::Agent,
        path_and_query: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let request = agent.post(self.url(path_and_query));
        match self.key() {
            Some(key) => request.header(API_KEY_HEADER, key),
            None => request,
        }
    }

    /// Opens the WebSocket at `path` (`wss://` for an `https://` server), carrying the API key
    /// in the upgrade request.
    pub fn websocket(&self, path: &str) -> Result<WebSocket<WsStream>, String> {
        let url = self.url(path);
        let tls = self.https();
        // http://... -> ws://..., https://... -> wss://...
        let url = url.replacen("http", "ws", 1);
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("{url}: {e}"))?;
        if let Some(key) = self.key() {
            let value = key
                .parse()
                .map_err(|_| "the API key is not a valid header value".to_string())?;
            request.headers_mut().insert(API_KEY_HEADER, value);
        }
        let uri = request.uri();
        let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let authority = format!("{host}:{port}");
        let tcp = TcpStream::connect(&authority).map_err(|e| format!("cannot open {url}: {e}"))?;
        let stream = if tls {
            let config = self.tls_config()?;
            WsStream::Tls(Box::new(crate::client_tls::connect(
                config, &authority, tcp,
            )?))
        } else {
            if self.ca_file.is_some() || self.tls_fingerprint.is_some() {
                return Err("--ca-file and --tls-fingerprint need an https:// server".into());
            }
            WsStream::Plain(tcp)
        };
        tungstenite::client(request, stream)
            .map(|(socket, _)| socket)
            .map_err(|e| format!("cannot open {url}: {e}"))
    }
}

fn agent_config(timeout: Duration) -> ureq::config::Config {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
}

/// A blocking HTTP agent (system CA certificates for `https://`) that returns 4xx/5xx answers
/// instead of failing on them.
pub fn agent(timeout: Duration) -> ureq::Agent {
    agent_config(timeout).new_agent()
}

/// One part of a form: text, or a file with its name and content type.
pub enum Part<'a> {
    /// A text field's value.
    Text(&'a str),
    /// A file field.
    File {
        /// The `filename` of its `Content-Disposition`.
        file_name: &'a str,
        /// Its `Content-Type`.
        content_type: &'a str,
        /// Its bytes.
        data: &'a [u8],
    },
}

/// `(content type, body)` of a `multipart/form-data` form with these fields.
pub fn multipart(fields: &[(&str, Part<'_>)]) -> (String, Vec<u8>) {
    // A boundary that cannot occur in the data: long and random enough, checked anyway.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let boundary = loop {
        let candidate = format!("----face-attendance-{seed:032x}");
        let clash = fields.iter().any(|(_, part)| match part {
            Part::Text(t) => t.contains(&candidate),
            Part::File { data, .. } => data
                .windows(candidate.len())
                .any(|w| w == candidate.as_bytes()),
        });
        if !clash {
            break candidate;
        }
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    };
    let mut body = Vec::new();
    for (name, part) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match part {
            Part::Text(text) => {
                body.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                );
                body.extend_from_slice(text.as_bytes());
            }
            Part::File {
                file_name,
                content_type,
                data,
            } => {
                body.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{}\"\r\nContent-Type: {content_type}\r\n\r\n",
                        file_name.replace('"', "")
                    )
                    .as_bytes(),
                );
                body.extend_from_slice(data);
            }
        }
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The form `curl -F image=@PATH` sends: `data` as the `image` file field.
pub fn image_form(path: &std::path::Path, data: &[u8]) -> (String, Vec<u8>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let content_type = if name.to_ascii_lowercase().ends_with(".png") {
        "image/png"
    } else {
        "image/jpeg"
    };
    multipart(&[(
        "image",
        Part::File {
            file_name: &name,
            content_type,
            data,
        },
    )])
}
