//! face-attendance patch (PATCHED.md, change 3): the reader of a request body.
//!
//! It ends where the framing says (`Content-Length`, or `chunked` with bounded chunk lines and
//! trailers), holds the client to the body rate rule of [`Limits`] with a real deadline on each
//! read, and when dropped before the end of the body it does not drain the rest (that held
//! whoever dropped the request for as long as the client kept sending): it marks the
//! connection to be closed, which its own thread then does with a bounded lingering close.

use std::convert::TryFrom;
use std::io::{self, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::head::Framing;
use crate::limits::Limits;
use crate::util::refined_tcp_stream::ConnCtl;

/// Longest chunk-size line (size, extensions) and trailer line, without the CRLF.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer lines after the last chunk.
const MAX_TRAILERS: usize = 64;

/// Holds reads from a client to the body rate rule (see [`Limits::body_min_rate`]).
struct Metered<R> {
    inner: R,
    ctl: Option<Arc<ConnCtl>>,
    grace: Duration,
    min_rate: u64,
    // Time spent in reads so far, and bytes they brought.
    waited: Duration,
    received: u64,
}

impl<R: Read> Metered<R> {
    /// How much longer reads may wait, by the rule; `None` once that time is up.
    fn time_left(&self) -> Option<Duration> {
        // received / min_rate seconds are earned by what came; in u128 so nothing overflows.
        let nanos = u128::from(self.received) * 1_000_000_000 / u128::from(self.min_rate);
        let earned = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        self.grace
            .saturating_add(earned)
            .checked_sub(self.waited)
            .filter(|left| !left.is_zero())
    }

    fn too_slow(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the request body came slower than {} bytes/s",
                self.min_rate
            ),
        )
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let rule = self.min_rate > 0;
        if rule {
            let left = self.time_left().ok_or_else(|| self.too_slow())?;
            if let Some(ctl) = &self.ctl {
                ctl.set_read_deadline(Instant::now().checked_add(left));
            }
        }
        let started = Instant::now();
        let result = self.inner.read(buf);
        self.waited += started.elapsed();
        if rule {
            if let Some(ctl) = &self.ctl {
                ctl.set_read_deadline(None);
            }
        }
        match result {
            Ok(n) => {
                self.received = self.received.saturating_add(n as u64);
                Ok(n)
            }
            Err(e) if rule && e.kind() == io::ErrorKind::TimedOut => Err(self.too_slow()),
            Err(e) => Err(e),
        }
    }
}

enum Chunked {
    /// Next: a chunk-size line.
    Size,
    /// In a chunk: this many bytes left.
    Data(u64),
    /// Next: the CRLF after a chunk's data.
    DataEnd,
    /// Next: the trailer section after the last chunk.
    Trailers,
    /// Read to the end.
    Done,
}

enum Kind {
    /// This many bytes left.
    Length(u64),
    Chunked(Chunked),
}

/// The body of one request.
pub(crate) struct Body<R: Read> {
    src: Metered<R>,
    kind: Kind,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl<R: Read> Body<R> {
    /// A body framed as `framing` (`Framing::None` reads as empty), read from `src`.
    /// `ctl` is the connection's (for deadlines, and to be closed if the body is left unread).
    pub(crate) fn new(
        src: R,
        framing: Framing,
        ctl: Option<Arc<ConnCtl>>,
        limits: &Limits,
    ) -> Body<R> {
        let kind = match framing {
            Framing::None => Kind::Length(0),
            Framing::Length(n) => Kind::Length(n as u64),
            Framing::Chunked => Kind::Chunked(Chunked::Size),
        };
        Body {
            src: Metered {
                inner: src,
                ctl,
                grace: limits.body_grace,
                min_rate: limits.body_min_rate,
                waited: Duration::ZERO,
                received: 0,
            },
            kind,
        }
    }

    /// True once the whole body was read.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.kind, Kind::Length(0) | Kind::Chunked(Chunked::Done))
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0];
        loop {
            match self.src.read(&mut b) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the client closed the connection in the middle of a chunked body",
                    ))
                }
                Ok(_) => return Ok(b[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads a line ending in CRLF, at most `MAX_CHUNK_LINE` bytes before it, into `line`.
    fn line(&mut self, line: &mut Vec<u8>) -> io::Result<()> {
        line.clear();
        loop {
            match self.byte()? {
                b'\r' => {
                    return match self.byte()? {
                        b'\n' => Ok(()),
                        _ => Err(invalid("CR not followed by LF in a chunked body")),
                    }
                }
                b'\n' => return Err(invalid("line ending in LF without CR in a chunked body")),
                _ if line.len() >= MAX_CHUNK_LINE => return Err(invalid("chunk line too long")),
                b => line.push(b),
            }
        }
    }

    /// `chunk-size [ chunk-ext ]`: hexadecimal digits, then nothing or `;` and extensions
    /// (ignored), with optional spaces or tabs before the `;`.
    fn chunk_size(&mut self) -> io::Result<u64> {
        let mut line = Vec::new();
        self.line(&mut line)?;
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(invalid("missing chunk size"));
        }
        let rest = line[digits..]
            .iter()
            .skip_while(|&&b| b == b' ' || b == b'\t');
        let mut rest = rest.peekable();
        match rest.peek() {
            None | Some(b';') => {}
            Some(_) => return Err(invalid("malformed chunk size")),
        }
        if rest.any(|&b| b != b'\t' && !(b' '..=b'~').contains(&b)) {
            return Err(invalid("invalid byte in a chunk extension"));
        }
        line[..digits].iter().try_fold(0u64, |n, &b| {
            let digit = (b as char).to_digit(16).unwrap_or(0);
            n.checked_mul(16)
                .and_then(|n| n.checked_add(u64::from(digit)))
                .ok_or_else(|| invalid("chunk size too large"))
        })
    }

    fn read_chunked(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let state = match self.kind {
                Kind::Chunked(ref mut state) => state,
                Kind::Length(_) => return Ok(0),
            };
            match *state {
                Chunked::Done => return Ok(0),
                Chunked::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.src.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the client closed the connection in the middle of a chunk",
                        ));
                    }
                    let left = left - n as u64;
                    self.kind = Kind::Chunked(if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    });
                    return Ok(n);
                }
                Chunked::Size => {
                    let size = self.chunk_size()?;
                    self.kind = Kind::Chunked(if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    });
                }
                Chunked::DataEnd => {
                    let mut line = Vec::new();
                    self.line(&mut line)?;
                    if !line.is_empty() {
                        return Err(invalid("chunk longer than its size"));
                    }
                    self.kind = Kind::Chunked(Chunked::Size);
                }
                Chunked::Trailers => {
                    // Read and ignored.
                    let mut line = Vec::new();
                    let mut count = 0;
                    loop {
                        self.line(&mut line)?;
                        if line.is_empty() {
                            break;
                        }
                        count += 1;
                        if count > MAX_TRAILERS {
                            return Err(invalid("too many trailer lines"));
                        }
                    }
                    self.kind = Kind::Chunked(Chunked::Done);
                    return Ok(0);
                }
            }
        }
    }
}

impl<R: Read> Read for Body<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match self.kind {
            Kind::Length(0) => Ok(0),
            Kind::Length(left) => {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                // Like upstream, a body cut short by the client just ends (`Ok(0)`): the
                // application can compare its length with `Request::body_length`.
                let n = self.src.read(&mut buf[..want])?;
                self.kind = Kind::Length(left - n as u64);
                Ok(n)
            }
            Kind::Chunked(_) => self.read_chunked(buf),
        }
    }
}

impl<R: Read> Drop for Body<R> {
    fn drop(&mut self) {
        // Whatever is left unread stays in the socket: the connection cannot carry another
        // request, and is closed by its own thread (after the answer, with a lingering close).
        if !self.is_complete() {
            if let Some(ctl) = &self.src.ctl {
                ctl.set_must_close();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(data: &[u8], framing: Framing) -> io::Result<(Vec<u8>, bool)> {
        let mut body = Body::new(data, framing, None, &Limits::default());
        let mut out = Vec::new();
        body.read_to_end(&mut out)?;
        Ok((out, body.is_complete()))
    }

    #[test]
    fn length() {
        let (out, complete) = read_all(b"hello world", Framing::Length(5)).unwrap();
        assert_eq!(out, b"hello");
        assert!(complete);
        let (out, complete) = read_all(b"hel", Framing::Length(5)).unwrap();
        assert_eq!(out, b"hel");
        assert!(!complete);
        let (out, complete) = read_all(b"hello", Framing::None).unwrap();
        assert!(out.is_empty() && complete);
        // Read exactly to the end, without seeing the end: complete all the same.
        let mut body = Body::new(&b"hello"[..], Framing::Length(5), None, &Limits::default());
        let mut five = [0; 5];
        body.read_exact(&mut five).unwrap();
        assert!(body.is_complete());
    }

    #[test]
    fn chunked() {
        let data =
            b"5\r\nhello\r\n1;name=\"v\"\r\n \r\n00005 ; x\r\nworld\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let mut src = &data[..];
        let mut body = Body::new(&mut src, Framing::Chunked, None, &Limits::default());
        let mut out = Vec::new();
        body.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello world");
        assert!(body.is_complete());
        drop(body);
        // Not a byte further than the body.
        assert_eq!(src, b"NEXT");
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"5\r\nhelloX\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"x\r\n",
            b"-5\r\nhello\r\n0\r\n\r\n",
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5 5\r\nhello\r\n0\r\n\r\n",
            b"10000000000000000\r\n",
            b"5\r\nhel",
            b"5\r\nhello\r\n",
            b"0\r\n\r",
            b"5;\x01\r\nhello\r\n0\r\n\r\n",
        ] {
            let result = read_all(bad, Framing::Chunked);
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(read_all(b"ffffffffffffffff\r\nabc", Framing::Chunked).is_err());
    }

    /// An endless chunk-size line is refused at the line limit, not buffered.
    #[test]
    fn an_endless_chunk_line_is_not_buffered() {
        let mut ones = io::repeat(b'1').take(1 << 30);
        let mut body = Body::new(&mut ones, Framing::Chunked, None, &Limits::default());
        let mut buf = [0; 16];
        assert_eq!(
            body.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        drop(body);
        assert!(ones.limit() >= (1 << 30) - MAX_CHUNK_LINE as u64 - 1);
    }

    #[test]
    fn the_rate_rule_counts_time_spent_waiting() {
        // A byte every 30 ms, where the rule asks for 100 bytes/s (one every 10 ms) after
        // 100 ms of grace: each byte costs 20 ms more than it earns.
        struct Slow;
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                std::thread::sleep(Duration::from_millis(30));
                buf[0] = b'x';
                Ok(1)
            }
        }
        let limits = Limits {
            body_grace: Duration::from_millis(100),
            body_min_rate: 100,
            ..Limits::default()
        };
        let mut body = Body::new(Slow, Framing::Length(1000), None, &limits);
        let mut buf = [0; 8];
        let mut got = 0;
        let err = loop {
            match body.read(&mut buf) {
                Ok(n) => got += n,
                Err(e) => break e,
            }
            // Time the application spends between reads does not count against the client.
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!((4..=7).contains(&got), "{}", got);
        // And it stays failed.
        assert_eq!(
            body.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
    }
}
