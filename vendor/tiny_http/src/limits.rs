//! face-attendance patch (PATCHED.md, change 3): the limits a server puts on its clients, and
//! the count of open connections they are checked against.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Limits a [`Server`](crate::Server) puts on its clients, so that a hostile or broken client
/// costs a bounded amount of memory, threads and time.
///
/// `Limits::default()` is what [`Server::from_listener`](crate::Server::from_listener) and the
/// other constructors use; [`Server::from_listener_with_limits`](crate::Server::from_listener_with_limits)
/// takes others. Every refusal is answered with a short `text/plain` body naming the problem
/// and `Connection: close`, then the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (`GET /path HTTP/1.1`, without its CRLF), in bytes. Longer: `414`.
    pub max_request_line: usize,
    /// Longest header line (without its CRLF), in bytes. Longer: `431`.
    pub max_header_line: usize,
    /// Most header lines in one request head. More: `431`.
    pub max_headers: usize,
    /// Largest request head: request line, header lines and the empty line that ends the head,
    /// line endings included, in bytes. Larger: `431`.
    pub max_head_bytes: usize,
    /// Time a client has to send a whole request head, counted from its first byte: an absolute
    /// deadline, not a per-read timeout. Past it: `408`.
    pub head_timeout: Duration,
    /// Time a new connection, or a kept-alive one after its last answer, may stay open without
    /// sending a byte of a (next) request. Past it the connection is closed without an answer.
    pub idle_timeout: Duration,
    /// Reading a request body (by the application through `Request::as_reader`, or by tiny_http
    /// itself), the client gets this long for free...
    pub body_grace: Duration,
    /// ... and must then keep up this average rate, in bytes per second: after waiting `t` in
    /// reads of a body, at least `(t - body_grace) * body_min_rate` bytes must have come. A read
    /// that would wait longer fails with `io::ErrorKind::TimedOut` (and so do later ones). Only
    /// time spent waiting for the client counts, not time the application spends between
    /// reads. `0` turns the rule off (body reads then wait without limit).
    pub body_min_rate: u64,
    /// Longest a single write to a client may block (`SO_SNDTIMEO`); then it fails.
    pub write_timeout: Duration,
    /// After refusing a request, or answering one whose body was left unread, the connection
    /// is closed with a lingering close: its sending side is shut down, then what the client
    /// still sends is read and thrown away for at most `linger_time` and `linger_bytes`, so that
    /// the client gets the answer rather than a reset. A client that sends a whole body before
    /// reading the answer (many scripts and simple clients do) gets the answer only if the rest
    /// of its body fits in these: raise them to the largest upload such clients should hear a
    /// `413` for.
    pub linger_time: Duration,
    /// See `linger_time`.
    pub linger_bytes: usize,
    /// Most connections open at once. One more is answered `503` by the accept thread itself
    /// and closed, before any thread is spent on it.
    pub max_connections: usize,
    /// Most connections open at once from one IP address; more are answered `503` likewise.
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_header_line: 8 * 1024,
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            body_grace: Duration::from_secs(10),
            body_min_rate: 16 * 1024,
            write_timeout: Duration::from_secs(15),
            linger_time: Duration::from_secs(2),
            linger_bytes: 1024 * 1024,
            max_connections: 512,
            max_connections_per_ip: 32,
        }
    }
}

/// Why a connection was refused at accept time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManyConnections,
    TooManyFromAddress,
}

impl Refusal {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too many connections",
            Refusal::TooManyFromAddress => "too many connections from this address",
        }
    }
}

/// The connections a server has open, in all and per client address.
#[derive(Debug, Default)]
pub(crate) struct ConnCounter {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnCounter {
    /// Counts a new connection from `ip` (`None` for UNIX sockets), unless that would go over
    /// a cap. The connection counts until the returned guard is dropped.
    pub(crate) fn open(
        self: &Arc<Self>,
        ip: Option<IpAddr>,
        limits: &Limits,
    ) -> Result<ConnGuard, Refusal> {
        // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d: count it as a.b.c.d.
        let ip = ip.map(|ip| ip.to_canonical());
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.total >= limits.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        if let Some(ip) = ip {
            let n = counts.per_ip.entry(ip).or_insert(0);
            if *n >= limits.max_connections_per_ip {
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
                return Err(Refusal::TooManyFromAddress);
            }
            *n += 1;
        }
        counts.total += 1;
        Ok(ConnGuard {
            counter: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub(crate) fn total(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

/// One open connection, counted until this is dropped (when its socket is closed).
#[derive(Debug)]
pub(crate) struct ConnGuard {
    counter: Arc<ConnCounter>,
    ip: Option<IpAddr>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    // Keeps the map as small as the set of addresses connected right now.
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_in_all_and_per_address() {
        let limits = Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..Limits::default()
        };
        let counter = Arc::new(ConnCounter::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let a6: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = counter.open(Some(a), &limits).unwrap();
        let g2 = counter.open(Some(a6), &limits).unwrap();
        assert_eq!(
            counter.open(Some(a), &limits).unwrap_err(),
            Refusal::TooManyFromAddress
        );
        let g3 = counter.open(Some(b), &limits).unwrap();
        assert_eq!(
            counter.open(None, &limits).unwrap_err(),
            Refusal::TooManyConnections
        );
        assert_eq!(counter.total(), 3);
        drop(g1);
        let g4 = counter.open(Some(a), &limits).unwrap();
        drop((g2, g3, g4));
        assert_eq!(counter.total(), 0);
        assert!(counter.counts.lock().unwrap().per_ip.is_empty());
    }
}
