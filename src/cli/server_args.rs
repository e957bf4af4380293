//! The clients' flags, turned into [`Server`].

use std::path::PathBuf;

use clap::Args;

use crate::client::Server;

/// The flags of the clients (`rt-client`, `face-attendance-bench http`): which server, its
/// API key, and for `https://` which certificate to accept.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The server's base URL (http:// or https://)
    #[arg(long, env = "FACE_SERVER", default_value = "http://127.0.0.1:8000")]
    pub server: String,
    /// The server's API key (sent as X-API-Key), when it has one
    #[arg(long, env = "FACE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// For https://: PEM CA certificate(s) to verify the server with instead of the system's
    /// (a self-signed box certificate itself will do)
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// For https://: SHA-256 fingerprint of the server's certificate (hex, `:` allowed, as
    /// `openssl x509 -noout -fingerprint -sha256` prints it): accept exactly that certificate
    /// and refuse any other
    #[arg(long)]
    pub tls_fingerprint: Option<String>,
}

impl From<&ServerArgs> for Server {
    fn from(a: &ServerArgs) -> Server {
        Server {
            server: a.server.clone(),
            api_key: a.api_key.clone(),
            ca_file: a.ca_file.clone(),
            tls_fingerprint: a.tls_fingerprint.clone(),
        }
    }
}
