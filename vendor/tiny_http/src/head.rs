//! face-attendance patch (PATCHED.md, change 3): the request head reader, a pure function over
//! a `BufRead` with the server's [`Limits`], and the checks of a head's body framing
//! (`Content-Length`, `Transfer-Encoding`).
//!
//! It is strict where leniency lets a client cost memory or time, or lets two parsers disagree
//! about where a request ends (request smuggling): lines end with CRLF only, bytes are visible
//! ASCII (plus SP, and HT in header lines), a header name is followed by its colon at once, no
//! line folding, one `Content-Length` value, `Transfer-Encoding: chunked` only and never with a
//! `Content-Length`. No more than a limit's worth of bytes is ever taken from the reader.

use std::convert::TryFrom;
use std::fmt;
use std::io::{self, BufRead, Write};
use std::str::FromStr;

use ascii::AsciiString;

use crate::common::{HTTPVersion, Header, HeaderField, Method};
use crate::limits::Limits;

/// A request head: request line and headers.
#[derive(Debug)]
pub(crate) struct Head {
    pub method: Method,
    pub path: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

/// Why a request head (or its framing) was refused. Each has the status code of its answer.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// Reading failed: `TimedOut` when the head deadline passed, `UnexpectedEof` when the
    /// client closed the connection before the end of the head.
    Io(io::Error),
    RequestLineTooLong(usize),
    HeaderLineTooLong(usize),
    TooManyHeaders(usize),
    HeadTooLarge(usize),
    BareLf,
    BareCr,
    InvalidByte {
        byte: u8,
        in_header: bool,
    },
    BadRequestLine,
    BadHeader,
    UnsupportedVersion,
    UnsupportedTransferEncoding,
    LengthAndTransferEncoding,
    BadContentLength,
    ConflictingContentLength,
    BodyTooLarge,
}

impl HeadError {
    /// The status code of the answer (`Io` errors get none: 408 for a timeout is decided by
    /// the caller, anything else closes the connection silently).
    pub(crate) fn status(&self) -> u16 {
        match self {
            HeadError::Io(_) => 400,
            HeadError::RequestLineTooLong(_) => 414,
            HeadError::HeaderLineTooLong(_)
            | HeadError::TooManyHeaders(_)
            | HeadError::HeadTooLarge(_) => 431,
            HeadError::BareLf
            | HeadError::BareCr
            | HeadError::InvalidByte { .. }
            | HeadError::BadRequestLine
            | HeadError::BadHeader
            | HeadError::LengthAndTransferEncoding
            | HeadError::BadContentLength
            | HeadError::ConflictingContentLength => 400,
            HeadError::UnsupportedVersion => 505,
            HeadError::UnsupportedTransferEncoding => 501,
            HeadError::BodyTooLarge => 413,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Io(e) => write!(f, "reading the request head failed: {}", e),
            HeadError::RequestLineTooLong(n) => {
                write!(f, "request line longer than {} bytes", n)
            }
            HeadError::HeaderLineTooLong(n) => {
                write!(f, "request header line longer than {} bytes", n)
            }
            HeadError::TooManyHeaders(n) => write!(f, "more than {} request header lines", n),
            HeadError::HeadTooLarge(n) => write!(f, "request head larger than {} bytes", n),
            HeadError::BareLf => f.write_str("request head line ending in LF without CR"),
            HeadError::BareCr => f.write_str("CR not followed by LF in the request head"),
            HeadError::InvalidByte { byte, in_header } => write!(
                f,
                "byte 0x{:02x} not allowed in a request {}",
                byte,
                if *in_header { "header" } else { "line" }
            ),
            HeadError::BadRequestLine => f.write_str("malformed request line"),
            HeadError::BadHeader => f.write_str("malformed request header line"),
            HeadError::UnsupportedVersion => {
                f.write_str("HTTP version not supported (only HTTP/1.0 and HTTP/1.1 are)")
            }
            HeadError::UnsupportedTransferEncoding => {
                f.write_str("Transfer-Encoding not supported (only chunked is)")
            }
            HeadError::LengthAndTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding in one request")
            }
            HeadError::BadContentLength => f.write_str("invalid Content-Length"),
            HeadError::ConflictingContentLength => f.write_str("conflicting Content-Length values"),
            HeadError::BodyTooLarge => f.write_str("Content-Length too large for this server"),
        }
    }
}

impl From<io::Error> for HeadError {
    fn from(e: io::Error) -> HeadError {
        HeadError::Io(e)
    }
}

/// How many empty lines may come before a request line (RFC 9112 section 2.2 asks servers to
/// skip at least one, which some clients send after a body).
const MAX_LEADING_EMPTY_LINES: usize = 4;

/// Reads a request head from `r`, up to and including the empty line that ends it, and no
/// further. Never takes more than `limits.max_head_bytes` bytes from `r`, nor keeps a line
/// longer than its limit.
pub(crate) fn read_head<R: BufRead>(r: &mut R, limits: &Limits) -> Result<Head, HeadError> {
    // Bytes of the head left before `max_head_bytes`.
    let mut budget = limits.max_head_bytes;
    let mut line = Vec::new();

    let mut empty_lines = 0;
    loop {
        read_line(
            r,
            &mut line,
            limits.max_request_line,
            &mut budget,
            limits,
            false,
        )?;
        if !line.is_empty() {
            break;
        }
        empty_lines += 1;
        if empty_lines > MAX_LEADING_EMPTY_LINES {
            return Err(HeadError::BadRequestLine);
        }
    }
    // Before the headers, so that a client that is not speaking HTTP/1 (an HTTP/2 preface,
    // `PRI * HTTP/2.0`) is answered at once.
    let (method, path, version) = parse_request_line(&line)?;

    let mut headers = Vec::new();
    loop {
        read_line(
            r,
            &mut line,
            limits.max_header_line,
            &mut budget,
            limits,
            true,
        )?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= limits.max_headers {
            return Err(HeadError::TooManyHeaders(limits.max_headers));
        }
        headers.push(parse_header(&line)?);
    }

    Ok(Head {
        method,
        path,
        version,
        headers,
    })
}

/// Reads one line into `line` (without its CRLF), taking its bytes from `budget`.
fn read_line<R: BufRead>(
    r: &mut R,
    line: &mut Vec<u8>,
    max_len: usize,
    budget: &mut usize,
    limits: &Limits,
    in_header: bool,
) -> Result<(), HeadError> {
    line.clear();
    let mut after_cr = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        if buf.is_empty() {
            return Err(HeadError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the client closed the connection in the middle of a request head",
            )));
        }
        let mut used = 0;
        let mut result = None;
        for &byte in buf {
            if *budget == 0 {
                result = Some(Err(HeadError::HeadTooLarge(limits.max_head_bytes)));
                break;
            }
            *budget -= 1;
            used += 1;
            if after_cr {
                result = Some(if byte == b'\n' {
                    Ok(())
                } else {
                    Err(HeadError::BareCr)
                });
                break;
            }
            match byte {
                b'\r' => after_cr = true,
                b'\n' => {
                    result = Some(Err(HeadError::BareLf));
                    break;
                }
                b' '..=b'~' => {}
                b'\t' if in_header => {}
                _ => {
                    result = Some(Err(HeadError::InvalidByte { byte, in_header }));
                    break;
                }
            }
            if byte != b'\r' {
                if line.len() >= max_len {
                    result = Some(Err(if in_header {
                        HeadError::HeaderLineTooLong(max_len)
                    } else {
                        HeadError::RequestLineTooLong(max_len)
                    }));
                    break;
                }
                line.push(byte);
            }
        }
        r.consume(used);
        if let Some(result) = result {
            return result;
        }
    }
}

/// RFC 9110 `tchar`: what a method or a header name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `METHOD SP request-target SP HTTP-version`, with single spaces.
fn parse_request_line(line: &[u8]) -> Result<(Method, String, HTTPVersion), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) => (m, t, v),
        _ => return Err(HeadError::BadRequestLine),
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) || target.is_empty() {
        return Err(HeadError::BadRequestLine);
    }
    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HTTPVersion(major - b'0', minor - b'0')
        }
        _ => return Err(HeadError::BadRequestLine),
    };
    if version != HTTPVersion(1, 0) && version != HTTPVersion(1, 1) {
        return Err(HeadError::UnsupportedVersion);
    }
    // Only visible ASCII gets here (read_line): these conversions do not fail.
    let method = std::str::from_utf8(method)
        .ok()
        .and_then(|m| Method::from_str(m).ok())
        .ok_or(HeadError::BadRequestLine)?;
    let target = String::from_utf8(target.to_vec()).map_err(|_| HeadError::BadRequestLine)?;
    Ok((method, target, version))
}

/// `name: value`: the colon right after the name, optional spaces or tabs around the value.
fn parse_header(line: &[u8]) -> Result<Header, HeadError> {
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::BadHeader)?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    // Also refuses a line that starts with a space or tab (obsolete line folding), and
    // `Name : value`, which some parsers read as `Name` and others do not.
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HeadError::BadHeader);
    }
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    let field = HeaderField::from_bytes(name.to_vec()).map_err(|_| HeadError::BadHeader)?;
    let value =
        AsciiString::from_ascii(value[start..end].to_vec()).map_err(|_| HeadError::BadHeader)?;
    Ok(Header { field, value })
}

/// Where a request body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Reads the framing of a request body from its headers, refusing what is ambiguous.
pub(crate) fn body_framing(headers: &[Header]) -> Result<Framing, HeadError> {
    let mut transfer_encoding = None;
    let mut content_length = None;
    for header in headers {
        if header.field.equiv("Transfer-Encoding") {
            for coding in header.value.as_str().split(',') {
                let coding = coding.trim_matches(|c| c == ' ' || c == '\t');
                // One coding, chunked: gzip and the like (or chunked twice) are not supported.
                if !coding.eq_ignore_ascii_case("chunked") || transfer_encoding.is_some() {
                    return Err(HeadError::UnsupportedTransferEncoding);
                }
                transfer_encoding = Some(());
            }
        } else if header.field.equiv("Content-Length") {
            // A list of identical values (`5, 5`, or the header repeated) is one value.
            for value in header.value.as_str().split(',') {
                let value = value.trim_matches(|c| c == ' ' || c == '\t');
                let n = parse_content_length(value)?;
                match content_length {
                    Some(m) if m != n => return Err(HeadError::ConflictingContentLength),
                    _ => content_length = Some(n),
                }
            }
        }
    }
    match (transfer_encoding, content_length) {
        (Some(()), Some(_)) => Err(HeadError::LengthAndTransferEncoding),
        (Some(()), None) => Ok(Framing::Chunked),
        (None, Some(n)) => usize::try_from(n)
            .map(Framing::Length)
            .map_err(|_| HeadError::BodyTooLarge),
        (None, None) => Ok(Framing::None),
    }
}

/// Plain decimal digits (no sign, no spaces), that fit in 64 bits.
fn parse_content_length(value: &str) -> Result<u64, HeadError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeadError::BadContentLength);
    }
    value.parse().map_err(|_| HeadError::BadContentLength)
}

/// Writes the answer tiny_http itself gives to a request it refuses: `status`, a `text/plain`
/// body of one line, `Connection: close`. `extra_headers` are whole lines, each ending in CRLF.
pub(crate) fn write_refusal<W: Write>(
    w: &mut W,
    status: u16,
    message: &str,
    extra_headers: &str,
) -> io::Result<()> {
    let reason = crate::common::StatusCode(status).default_reason_phrase();
    let date = httpdate::HttpDate::from(std::time::SystemTime::now());
    write!(
        w,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{}\r\n{}\n",
        status,
        reason,
        date,
        message.len() + 1,
        extra_headers,
        message
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Read};

    fn limits() -> Limits {
        Limits {
            max_request_line: 64,
            max_header_line: 32,
            max_headers: 4,
            max_head_bytes: 256,
            ..Limits::default()
        }
    }

    fn head(data: &[u8]) -> Result<Head, HeadError> {
        read_head(&mut &data[..], &limits())
    }

    fn status(data: &[u8]) -> u16 {
        match head(data) {
            Ok(_) => 200,
            Err(HeadError::Io(e)) => panic!("{:?}: i/o error {}", String::from_utf8_lossy(data), e),
            Err(e) => e.status(),
        }
    }

    #[test]
    fn reads_a_head_and_leaves_the_body() {
        let data = b"POST /enroll?x=1 HTTP/1.1\r\nHost: box\r\nContent-Length:  4 \r\nX-Empty:\r\n\r\nbody";
        let mut input = &data[..];
        let h = read_head(&mut input, &limits()).unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path, "/enroll?x=1");
        assert_eq!(h.version, HTTPVersion(1, 1));
        assert_eq!(h.headers.len(), 3);
        assert!(h.headers[1].field.equiv("content-length"));
        assert_eq!(h.headers[1].value.as_str(), "4");
        assert_eq!(h.headers[2].value.as_str(), "");
        assert_eq!(input, b"body");
        assert_eq!(body_framing(&h.headers).unwrap(), Framing::Length(4));
    }

    #[test]
    fn leading_empty_lines_are_skipped_a_few_times() {
        assert_eq!(status(b"\r\n\r\nGET / HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status(b"\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.0\r\n\r\n"), 400);
    }

    /// `prefix` + `n` bytes + `suffix`.
    fn with_len(prefix: &str, n: usize, suffix: &str) -> Vec<u8> {
        let mut v = prefix.as_bytes().to_vec();
        v.resize(prefix.len() + n, b'a');
        v.extend_from_slice(suffix.as_bytes());
        v
    }

    #[test]
    fn request_line_limit() {
        // "GET /aaa HTTP/1.1": 14 bytes besides the path.
        let at = with_len("GET /", 64 - 14, " HTTP/1.1\r\n\r\n");
        assert_eq!(status(&at), 200);
        let past = with_len("GET /", 64 - 13, " HTTP/1.1\r\n\r\n");
        assert_eq!(status(&past), 414);
        assert_eq!(
            head(&past).unwrap_err().to_string(),
            "request line longer than 64 bytes"
        );
    }

    #[test]
    fn header_line_limit() {
        let at = with_len("GET / HTTP/1.1\r\nX: ", 32 - 3, "\r\n\r\n");
        assert_eq!(status(&at), 200);
        let past = with_len("GET / HTTP/1.1\r\nX: ", 32 - 2, "\r\n\r\n");
        assert_eq!(status(&past), 431);
        assert_eq!(
            head(&past).unwrap_err().to_string(),
            "request header line longer than 32 bytes"
        );
    }

    #[test]
    fn header_count_limit() {
        let at = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert_eq!(status(at), 200);
        let past = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n";
        assert_eq!(status(past), 431);
        assert_eq!(
            head(past).unwrap_err().to_string(),
            "more than 4 request header lines"
        );
    }

    #[test]
    fn head_size_limit() {
        let limits = Limits {
            max_head_bytes: 40,
            ..limits()
        };
        let at = b"GET / HTTP/1.1\r\nA: 123456\r\nB: 123456\r\n\r\n";
        assert_eq!(at.len(), 40);
        let mut input = &at[..];
        assert!(read_head(&mut input, &limits).is_ok());
        let past = b"GET / HTTP/1.1\r\nA: 123456\r\nB: 1234567\r\n\r\n";
        let err = read_head(&mut &past[..], &limits).unwrap_err();
        assert_eq!(err.status(), 431);
        assert_eq!(err.to_string(), "request head larger than 40 bytes");
    }

    /// An endless header line: the reader stops taking bytes at the limit.
    #[test]
    fn an_endless_line_is_not_buffered() {
        struct Endless(usize);
        impl Read for Endless {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let start = b"GET / HTTP/1.1\r\nX: ";
                for (i, b) in buf.iter_mut().enumerate() {
                    *b = *start.get(self.0 + i).unwrap_or(&b'a');
                }
                self.0 += buf.len();
                Ok(buf.len())
            }
        }
        let limits = Limits::default();
        let mut r = BufReader::with_capacity(4096, Endless(0));
        let err = read_head(&mut r, &limits).unwrap_err();
        assert_eq!(err.status(), 431);
        assert!(r.get_ref().0 <= limits.max_header_line + 4096 + 20);
        // With a longer line limit, the head limit stops it.
        let limits = Limits {
            max_header_line: 1 << 30,
            ..Limits::default()
        };
        let mut r = BufReader::with_capacity(4096, Endless(0));
        let err = read_head(&mut r, &limits).unwrap_err();
        assert_eq!(err.to_string(), "request head larger than 65536 bytes");
        assert!(r.get_ref().0 <= limits.max_head_bytes + 4096);
    }

    #[test]
    fn line_endings_must_be_crlf() {
        assert_eq!(status(b"GET / HTTP/1.1\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\rHost: x\r\n\r\n"), 400);
        assert!(matches!(
            head(b"GET / HTTP/1.1\n").unwrap_err(),
            HeadError::BareLf
        ));
        // Refused at the bare LF: nothing after it is needed (nor waited for).
        let mut input = &b"GET / HTTP/1.1\nHost: x"[..];
        assert!(read_head(&mut input, &limits()).is_err());
        assert_eq!(input, b"Host: x");
    }

    #[test]
    fn bytes_must_be_visible_ascii() {
        assert_eq!(status("GET /é HTTP/1.1\r\n\r\n".as_bytes()), 400);
        assert_eq!(status("GET / HTTP/1.1\r\nX: é\r\n\r\n".as_bytes()), 400);
        assert_eq!(status(b"GET /\x00 HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n"), 400);
        assert_eq!(status(b"GET\t/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\tb\r\n\r\n"), 200);
        assert_eq!(
            head(b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n")
                .unwrap_err()
                .to_string(),
            "byte 0xff not allowed in a request header"
        );
    }

    #[test]
    fn request_line_shape() {
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 \r\n\r\n",
            b" GET / HTTP/1.1\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1\r\n\r\n",
            b"GET / http/1.1\r\n\r\n",
            b"GET / HTTP/1.10\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(status(b"OPTIONS * HTTP/1.0\r\n\r\n"), 200);
        assert_eq!(status(b"PURGE /x HTTP/1.1\r\n\r\n"), 200);
    }

    #[test]
    fn only_http_1_0_and_1_1() {
        // The HTTP/2 preface is refused at its request line, before its `SM` part.
        let mut input = &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..];
        let err = read_head(&mut input, &limits()).unwrap_err();
        assert_eq!(err.status(), 505);
        assert_eq!(input, b"\r\nSM\r\n\r\n");
        assert_eq!(status(b"GET / HTTP/0.9\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.2\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/3.0\r\n\r\n"), 505);
    }

    #[test]
    fn header_shape() {
        for bad in [
            &b"GET / HTTP/1.1\r\nNo colon\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX\t: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA(b): 1\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        let h = head(b"GET / HTTP/1.1\r\nTime: 20: 34\r\n\r\n").unwrap();
        assert_eq!(h.headers[0].value.as_str(), "20: 34");
    }

    #[test]
    fn eof_and_errors_in_a_head_are_io_errors() {
        assert!(matches!(
            head(b"GET / HTTP/1.1\r\nHost"),
            Err(HeadError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        assert!(matches!(
            head(b""),
            Err(HeadError::Io(ref e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
    }

    fn framing(data: &[u8]) -> Result<Framing, HeadError> {
        body_framing(
            &read_head(&mut &data[..], &Limits::default())
                .unwrap()
                .headers,
        )
    }

    fn framing_status(data: &[u8]) -> u16 {
        framing(data).map_or_else(|e| e.status(), |_| 200)
    }

    #[test]
    fn content_length() {
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap(),
            Framing::Length(0)
        );
        // 64 bits fit (on a 32-bit target, more than usize::MAX is 413).
        let max = framing(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n");
        match usize::try_from(u64::MAX) {
            Ok(n) => assert_eq!(max.unwrap(), Framing::Length(n)),
            Err(_) => assert_eq!(max.unwrap_err().status(), 413),
        }
        // Repeats that agree are one value.
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1 0\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n",
        ] {
            assert_eq!(
                framing_status(bad),
                400,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            framing(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")
                .unwrap_err()
                .to_string(),
            "conflicting Content-Length values"
        );
    }

    #[test]
    fn transfer_encoding() {
        for good in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\ntransfer-encoding: CHUNKED\r\n\r\n",
        ] {
            assert_eq!(framing(good).unwrap(), Framing::Chunked);
        }
        for unsupported in [
            &b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n",
        ] {
            assert_eq!(
                framing_status(unsupported),
                501,
                "{:?}",
                String::from_utf8_lossy(unsupported)
            );
        }
        assert_eq!(
            framing_status(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
            ),
            400
        );
        assert_eq!(
            framing_status(
                b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            400
        );
    }

    #[test]
    fn refusals_name_the_problem_and_close() {
        let mut out = Vec::new();
        write_refusal(
            &mut out,
            431,
            "request header line longer than 8192 bytes",
            "",
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n"));
        assert!(text.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert!(text.contains("\r\nContent-Length: 43\r\n"));
        assert!(text.ends_with("\r\n\r\nrequest header line longer than 8192 bytes\n"));
    }
}
