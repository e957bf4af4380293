//! TLS for the server. face-attendance patch (PATCHED.md, change 5): only rustls (0.23, ring
//! provider) remains; the OpenSSL implementation was removed.
//!
//! The implementation is re-exported as [`SslContextImpl`] and [`SslStream`].

#[cfg(feature = "ssl-rustls")]
pub(crate) mod rustls;
#[cfg(feature = "ssl-rustls")]
pub(crate) use self::rustls::RustlsContext as SslContextImpl;
#[cfg(feature = "ssl-rustls")]
pub(crate) use self::rustls::RustlsStream as SslStream;
