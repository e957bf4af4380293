use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::head::{read_head, write_refusal, HeadError};
use crate::limits::Limits;
use crate::request::{is_upgrade, new_request, RequestCreationError};
use crate::util::refined_tcp_stream::ConnCtl;
use crate::util::RefinedTcpStream;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::{HTTPVersion, Request};

/// Buffer of the reading side of a connection.
const READ_BUFFER: usize = 4096;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: Option<SocketAddr>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // face-attendance patch: the previous request asked for a protocol upgrade: the stream is
    // its own now (or closed with it), this thread must not touch it again.
    upgrade: bool,

    // face-attendance patch: the iterator ended (the connection is closed or given away).
    finished: bool,

    // true if the connection goes through SSL
    secure: bool,

    // face-attendance patch: the connection's shared state, and the server's limits.
    ctl: Arc<ConnCtl>,
    limits: Arc<Limits>,
}

/// face-attendance patch: how the connection ends once no more requests are read from it.
enum End {
    /// As it is: the client closed it, or left it idle, or it belongs to an upgraded stream.
    Quiet,
    /// After the answer to the last request (`Connection: close`, HTTP/1.0, a body left
    /// unread): a lingering close if a body was left unread, a plain one otherwise.
    AfterLastAnswer,
    /// With this answer (status, text), then a lingering close.
    Refuse(u16, String),
}

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub(crate) fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        ctl: Arc<ConnCtl>,
        limits: Arc<Limits>,
    ) -> ClientConnection {
        // face-attendance patch: a client that is gone already has no address; that is no
        // reason to panic later (upstream unwrapped it for each request).
        let remote_addr = read_socket.peer_addr().ok().flatten();
        let secure = read_socket.secure();

        let mut source =
            SequentialReaderBuilder::new(BufReader::with_capacity(READ_BUFFER, read_socket));
        let first_header = source.next_reader();

        ClientConnection {
            source,
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(1024, write_socket)),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            upgrade: false,
            finished: false,
            secure,
            ctl,
            limits,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, End> {
        if self.upgrade {
            return Err(End::Quiet);
        }
        if self.no_more_requests {
            return Err(End::AfterLastAnswer);
        }

        // One request at a time: the next head is read once the answer to the previous one is
        // out. Upstream read pipelined requests as fast as they came, each queued for the
        // application with its head, so a client that sent them without reading the answers
        // piled up requests without bound.
        self.wait_for_answers();

        // Our turn to read: once the previous request let go of its body.
        let limits = self.limits.clone();
        let ctl = self.ctl.clone();
        let reader = self.next_header_source.wait_turn().ok_or(End::Quiet)?;
        if ctl.must_close() {
            return Err(End::AfterLastAnswer);
        }

        // The first byte of the next request must come within the idle timeout; nothing
        // (end of stream, timeout, error) closes the connection without a word.
        ctl.set_read_deadline(Instant::now().checked_add(limits.idle_timeout));
        let first_byte = reader.fill_buf().map(|buf| !buf.is_empty());
        if !matches!(first_byte, Ok(true)) {
            ctl.set_read_deadline(None);
            return Err(End::Quiet);
        }

        // From it, the whole head within the head timeout.
        ctl.set_read_deadline(Instant::now().checked_add(limits.head_timeout));
        let head = read_head(reader, &limits);
        ctl.set_read_deadline(None);
        let head = match head {
            Ok(head) => head,
            Err(HeadError::Io(ref e)) if e.kind() == ErrorKind::TimedOut => {
                return Err(End::Refuse(
                    408,
                    format!(
                        "request head not received within {} ms",
                        limits.head_timeout.as_millis()
                    ),
                ))
            }
            Err(HeadError::Io(_)) => return Err(End::Quiet),
            Err(e) => return Err(End::Refuse(e.status(), e.to_string())),
        };

        // building the writer for the request
        let writer = self.sink.next_writer();

        // follow-up for next potential request
        let mut data_source = self.source.next_reader();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        let upgrade = is_upgrade(&head.headers);
        let version = head.version.clone();

        // building the next reader
        let request = new_request(
            self.secure,
            head.method,
            head.path,
            head.version,
            head.headers,
            self.remote_addr,
            data_source,
            writer,
            Some(ctl),
            &limits,
        )
        .map_err(|e| match e {
            RequestCreationError::CreationIoError(e) if e.kind() == ErrorKind::TimedOut => {
                End::Refuse(408, e.to_string())
            }
            RequestCreationError::CreationIoError(_) => End::Quiet,
            RequestCreationError::ExpectationFailed => {
                End::Refuse(417, "unsupported Expect header".to_owned())
            }
            RequestCreationError::Framing(e) => End::Refuse(e.status(), e.to_string()),
        })?;

        // updating the status of the connection
        let connection_header = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Connection"))
            .map(|h| h.value.as_str().to_ascii_lowercase());
        match connection_header {
            _ if upgrade => self.upgrade = true,
            Some(ref val) if val.contains("close") => self.no_more_requests = true,
            Some(ref val) if !val.contains("keep-alive") && version == HTTPVersion(1, 0) => {
                self.no_more_requests = true
            }
            None if version == HTTPVersion(1, 0) => self.no_more_requests = true,
            _ => (),
        };

        Ok(request)
    }

    /// face-attendance patch: waits until the answers to the requests read so far are written.
    fn wait_for_answers(&mut self) {
        // A writer's turn comes when the ones before it are dropped.
        let mut writer = self.sink.next_writer();
        writer.flush().ok();
    }

    /// face-attendance patch: ends the connection as `end` says.
    fn end(&mut self, end: End) {
        match end {
            End::Quiet => {}
            End::AfterLastAnswer => {
                // The last request lets go of its body (read or not) when it is dropped.
                if self.next_header_source.wait_turn().is_some() {
                    let linger = self.ctl.must_close();
                    self.close(linger);
                }
            }
            End::Refuse(status, message) => {
                log::debug!(
                    "Refusing a request from {:?}: {} {}",
                    self.remote_addr,
                    status,
                    message
                );
                let mut writer = self.sink.next_writer();
                write_refusal(&mut writer, status, &message, "").ok();
                writer.flush().ok();
                drop(writer);
                self.close(true);
            }
        }
    }

    /// Closes the connection once every answer is out. With `linger`, the client may still be
    /// sending (a body, a head too long): closing a socket with unread data sends a reset,
    /// which can destroy the answer before the client reads it. So the sending side is shut
    /// down first, then what comes is read and thrown away, for a bounded time and amount.
    fn close(&mut self, linger: bool) {
        self.wait_for_answers();

        let ctl = self.ctl.clone();
        let reader = match self.next_header_source.wait_turn() {
            Some(reader) => reader,
            None => return,
        };
        reader.get_mut().shutdown(Shutdown::Write).ok();
        if !linger {
            return;
        }
        ctl.set_read_deadline(Instant::now().checked_add(self.limits.linger_time));
        let mut buf = [0; 8192];
        let mut discarded = 0;
        while discarded < self.limits.linger_bytes {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => discarded += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        ctl.set_read_deadline(None);
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        if self.finished {
            return None;
        }
        match self.read() {
            Ok(request) => Some(request),
            Err(end) => {
                self.finished = true;
                self.end(end);
                None
            }
        }
    }
}
