//! Follows the HTTP/1 request framing of a client connection (request heads,
//! `Content-Length` and chunked bodies, trailer sections) the way actix-http reads it,
//! to find the one fault actix-http lets through: a bare LF in a chunked trailer
//! section. actix-http reads a trailer line up to its CR and skips any LF before it,
//! so with `0\r\nX-T: v\n\r\n` the message does not end at the empty line and the
//! request behind it is read as trailer lines (never answered, never forwarded); a
//! peer that ends lines at a bare LF (RFC 9112 §2.2 allows it) sees that request.
//! RFC 9112 §7.1 ends each trailer field line and the section with CRLF, so the
//! message is invalid: `conn::watched` has actix-http refuse it.
//!
//! Only where actix-http accepts the bytes must this agree with it; where it refuses
//! them (it answers 400 and reads no further) or the connection stops being HTTP/1
//! (a WebSocket or `CONNECT` stream), following stops.

/// The fewest bytes a request head may take that actix-http refuses as too large.
const MAX_HEAD: usize = 131_072;

/// actix-http parses at most this many header fields.
const MAX_HEADERS: usize = 96;

/// Where a connection's next byte falls.
pub struct Framing {
    state: State,
    /// A request head split over reads, kept until it is whole.
    head: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Head,
    /// Body bytes left of a `Content-Length` body.
    Length(u64),
    Chunked(Chunk),
    /// Nothing more to follow.
    Off,
}

/// The parts of a chunked body (RFC 9112 §7.1), each carrying the size it read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Chunk {
    SizeFirst,
    Size(u64),
    /// Spaces or tabs after the size.
    SizeSpace(u64),
    Extension(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer field line or of the empty line that ends the body.
    LineStart,
    Line,
    LineLf,
    EndLf,
}

impl Default for Framing {
    fn default() -> Self {
        Framing {
            state: State::Head,
            head: Vec::new(),
        }
    }
}

impl Framing {
    /// Follows `bytes`, the next ones read from the client. Returns where in them a
    /// bare LF sits in a trailer section, if one does; what comes after it is not
    /// followed.
    pub fn scan(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            match self.state {
                State::Head => at += self.head(rest),
                State::Length(left) => {
                    let take = left.min(rest.len() as u64);
                    self.state = match left - take {
                        0 => State::Head,
                        left => State::Length(left),
                    };
                    at += take as usize;
                }
                State::Chunked(Chunk::Data(left)) => {
                    let take = left.min(rest.len() as u64);
                    self.state = State::Chunked(match left - take {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    });
                    at += take as usize;
                }
                State::Chunked(Chunk::Line) => {
                    // Most of a trailer section is field lines: skip to their end.
                    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
                        Some(i) => at += i,
                        None => at = bytes.len(),
                    }
                    if at < bytes.len() {
                        if bytes[at] == b'\n' {
                            self.state = State::Off;
                            return Some(at);
                        }
                        self.state = State::Chunked(Chunk::LineLf);
                        at += 1;
                    }
                }
                State::Chunked(chunk) => {
                    let byte = rest[0];
                    if chunk == Chunk::LineStart && byte == b'\n' {
                        self.state = State::Off;
                        return Some(at);
                    }
                    self.state = chunk.next(byte);
                    at += 1;
                }
                State::Off => return None,
            }
        }
        None
    }

    /// Takes the request head from `bytes`; returns how many of them it took.
    fn head(&mut self, bytes: &[u8]) -> usize {
        if self.head.is_empty() {
            return match parse(bytes) {
                Some(Parsed::Whole(len, next)) => {
                    self.state = next;
                    len
                }
                Some(Parsed::Partial) => {
                    self.head.extend_from_slice(bytes);
                    self.check_size();
                    bytes.len()
                }
                None => {
                    self.state = State::Off;
                    bytes.len()
                }
            };
        }
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        // A head ends with a LF: without a new one it is still partial.
        if !bytes.contains(&b'\n') {
            self.check_size();
            return bytes.len();
        }
        match parse(&self.head) {
            Some(Parsed::Whole(len, next)) => {
                self.state = next;
                self.head = Vec::new();
                len.saturating_sub(before)
            }
            Some(Parsed::Partial) => {
                self.check_size();
                bytes.len()
            }
            None => {
                self.state = State::Off;
                self.head = Vec::new();
                bytes.len()
            }
        }
    }

    fn check_size(&mut self) {
        if self.head.len() >= MAX_HEAD {
            self.state = State::Off;
            self.head = Vec::new();
        }
    }
}

impl Chunk {
    /// The state after `byte`; `Off` where actix-http refuses the body.
    fn next(self, byte: u8) -> State {
        let chunk = match (self, byte) {
            (Chunk::SizeFirst, b) => match hex(b) {
                Some(d) => Chunk::Size(u64::from(d)),
                None => return State::Off,
            },
            (Chunk::Size(size), b) => match hex(b) {
                Some(d) => match size.checked_mul(16) {
                    Some(size) => Chunk::Size(size + u64::from(d)),
                    None => return State::Off,
                },
                None => return size_end(size, b),
            },
            (Chunk::SizeSpace(size), b) => return size_end(size, b),
            (Chunk::Extension(size), b'\r') => Chunk::SizeLf(size),
            (Chunk::Extension(_), 0x00..=0x08 | 0x0a..=0x1f | 0x7f) => return State::Off,
            (Chunk::Extension(size), _) => Chunk::Extension(size),
            (Chunk::SizeLf(0), b'\n') => Chunk::LineStart,
            (Chunk::SizeLf(size), b'\n') => Chunk::Data(size),
            (Chunk::DataCr, b'\r') => Chunk::DataLf,
            (Chunk::DataLf, b'\n') => Chunk::SizeFirst,
            (Chunk::LineStart, b'\r') => Chunk::EndLf,
            (Chunk::LineStart, _) => Chunk::Line,
            (Chunk::LineLf, b'\n') => Chunk::LineStart,
            (Chunk::EndLf, b'\n') => return State::Head,
            _ => return State::Off,
        };
        State::Chunked(chunk)
    }
}

/// What may follow the digits of a chunk size.
fn size_end(size: u64, byte: u8) -> State {
    State::Chunked(match byte {
        b' ' | b'\t' => Chunk::SizeSpace(size),
        b';' => Chunk::Extension(size),
        b'\r' => Chunk::SizeLf(size),
        _ => return State::Off,
    })
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

enum Parsed {
    /// The head's length and what follows it.
    Whole(usize, State),
    Partial,
}

/// Parses a request head as actix-http does (httparse, default settings); `None` when
/// actix-http refuses it.
fn parse(bytes: &[u8]) -> Option<Parsed> {
    // Left uninitialised: zeroing 96 fields per request would cost more than parsing.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(bytes, &mut headers).ok()? {
        httparse::Status::Complete(len) => Some(Parsed::Whole(len, body(&req)?)),
        httparse::Status::Partial => Some(Parsed::Partial),
    }
}

/// How the body of a parsed request is framed, by actix-http's rules: a single
/// `Transfer-Encoding: chunked` on HTTP/1.1 without `Content-Length`, else a WebSocket
/// upgrade streams to the end, else a `Content-Length`; `None` when it refuses the
/// head.
fn body(req: &httparse::Request) -> Option<State> {
    let mut length = None;
    let mut coding = None;
    let mut websocket = false;
    for field in req.headers.iter() {
        let value = field.value.trim_ascii();
        if field.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(value).ok()?;
            if length.is_some() || value.starts_with('+') {
                return None;
            }
            length = Some(value.parse::<u64>().ok()?);
        } else if field.name.eq_ignore_ascii_case("transfer-encoding") {
            if coding.replace(value).is_some() {
                return None;
            }
        } else if field.name.eq_ignore_ascii_case("upgrade") {
            websocket |= value.eq_ignore_ascii_case(b"websocket");
        }
    }
    if let Some(coding) = coding {
        let chunked = req.version == Some(1) && coding.eq_ignore_ascii_case(b"chunked");
        return (chunked && length.is_none()).then_some(State::Chunked(Chunk::SizeFirst));
    }
    Some(match length {
        _ if websocket => State::Off,
        Some(n) if n > 0 => State::Length(n),
        _ if req.method == Some("CONNECT") => State::Off,
        _ => State::Head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: &[u8] = b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n";
    const GET: &[u8] = b"GET /y HTTP/1.1\r\nHost: h\r\n\r\n";

    /// A chunked POST with `tail` after its chunks, then a GET.
    fn stream(tail: &[u8]) -> Vec<u8> {
        [POST, b"3\r\nabc\r\n0\r\n", tail, GET].concat()
    }

    /// Where `scan` finds a bare LF in `bytes`, read all at once and read one byte at
    /// a time (both must agree), and the state after.
    fn scan(bytes: &[u8]) -> (Option<usize>, State) {
        let mut whole = Framing::default();
        let found = whole.scan(bytes);
        let mut bytewise = Framing::default();
        let mut found_bytewise = None;
        for (i, b) in bytes.iter().enumerate() {
            if let Some(0) = bytewise.scan(std::slice::from_ref(b)) {
                found_bytewise = Some(i);
                break;
            }
        }
        assert_eq!(
            found,
            found_bytewise,
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
        (found, whole.state)
    }

    #[test]
    fn a_bare_lf_anywhere_in_the_trailers_is_found() {
        for tail in [
            &b"X-T: v\n\r\n"[..],
            b"\n",
            b"X-T: v\r\n\n",
            b"X-A: 1\r\nX-B: 2\nX-C: 3\r\n\r\n",
        ] {
            let bytes = stream(tail);
            let start = POST.len() + b"3\r\nabc\r\n0\r\n".len();
            let at = (start..bytes.len())
                .find(|&i| bytes[i] == b'\n' && bytes[i - 1] != b'\r')
                .unwrap();
            assert_eq!(
                scan(&bytes).0,
                Some(at),
                "{:?}",
                String::from_utf8_lossy(tail)
            );
        }
    }

    #[test]
    fn well_formed_bodies_end_where_actix_ends_them() {
        let cases: [&[u8]; 6] = [
            &stream(b"X-T: v\r\n\r\n"),
            &stream(b"\r\n"),
            &stream(b"X-A: 1\r\nX-B: 2\r\n\r\n"),
            b"PUT /x HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\na\nb\nc\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n",
            b"PUT /x HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  Chunked \r\n\r\n4;a=\"b\"\r\n\n\n\n\n\r\n10 \r\n0123456789\n\n\n\n\n\n\r\n0\r\n\r\n",
            // A bare LF ends a head line for httparse, as for actix-http.
            b"GET /y HTTP/1.1\nHost: h\n\nPOST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n\n\n",
        ];
        for bytes in cases {
            assert_eq!(
                scan(bytes),
                (None, State::Head),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn what_actix_refuses_or_streams_is_not_followed() {
        let cases: [&[u8]; 7] = [
            b"GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /x HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: v\rX",
        ];
        for bytes in cases {
            let mut framing = Framing::default();
            framing.scan(bytes);
            assert_eq!(
                framing.state,
                State::Off,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
            // What follows is not looked at, LFs and all.
            assert_eq!(framing.scan(b"0\r\n\n\n"), None);
        }
    }

    #[test]
    fn a_bare_lf_in_a_chunked_body_is_data_not_a_trailer() {
        let bytes = [POST, b"5\r\n0\r\n\n\n\r\n0\r\n\r\n", GET].concat();
        assert_eq!(scan(&bytes), (None, State::Head));
    }

    #[test]
    fn a_head_split_over_reads_is_taken_whole() {
        let bytes = stream(b"X-T: v\n\r\n");
        let bare = bytes.len() - GET.len() - 3;
        for split in 1..bytes.len() {
            let mut framing = Framing::default();
            let found = match framing.scan(&bytes[..split]) {
                Some(at) => Some(at),
                None => framing.scan(&bytes[split..]).map(|at| at + split),
            };
            assert_eq!(found, Some(bare), "split at {split}");
        }
    }

    #[test]
    fn a_head_too_large_for_actix_is_not_followed() {
        let mut framing = Framing::default();
        framing.scan(b"GET /x HTTP/1.1\r\nX-Big: ");
        framing.scan(&vec![b'a'; MAX_HEAD]);
        assert_eq!((framing.state, framing.head.len()), (State::Off, 0));
    }
}
