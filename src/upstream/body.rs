//! A backend's response body as a stream for the client: decoded from its framing
//! (length, chunked or until close) straight out of the connection's read buffer,
//! and the connection handed back to the worker's idle pool once it is read whole.

use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio_util::io::poll_read_buf;

use super::conn::Conn;
use super::head::Framing;
use super::idle::{Idle, IdleKey};

/// Read sizes while a body streams: starting small keeps short bodies cheap in
/// memory, doubling up to the largest means few system calls per GiB.
const FIRST_READ: usize = 32 * 1024;
const BODY_READ: usize = 256 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

pub struct ResponseBody {
    conn: Option<Conn>,
    decoder: Decoder,
    keep_alive: bool,
    idle: Rc<Idle>,
    backend: IdleKey,
    read_size: usize,
}

impl ResponseBody {
    pub fn new(
        conn: Conn,
        framing: Framing,
        keep_alive: bool,
        idle: Rc<Idle>,
        backend: IdleKey,
    ) -> Self {
        ResponseBody {
            conn: Some(conn),
            decoder: Decoder::new(framing),
            keep_alive,
            idle,
            backend,
            read_size: FIRST_READ,
        }
    }

    /// The rest of a body of announced length, at most `max` bytes, read straight
    /// into one buffer (no copy per read): for callers that keep a body whole anyway.
    /// `None` when the framing announces no length or more than `max`.
    pub async fn whole(&mut self, max: usize) -> Option<Result<Bytes, PayloadError>> {
        let Decoder::Length(left) = self.decoder else {
            return None;
        };
        let left = usize::try_from(left).ok().filter(|&n| n <= max)?;
        let Some(conn) = self.conn.as_mut() else {
            return Some(Ok(Bytes::new()));
        };
        conn.buf.reserve(left.saturating_sub(conn.buf.len()));
        while conn.buf.len() < left {
            let read = poll_fn(|cx| poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf)).await;
            match read {
                Ok(0) => {
                    self.conn = None;
                    return Some(Err(PayloadError::Incomplete(None)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.conn = None;
                    return Some(Err(PayloadError::Io(e)));
                }
            }
        }
        let data = conn.buf.split_to(left).freeze();
        self.decoder = Decoder::Length(0);
        self.finish();
        Some(Ok(data))
    }

    /// The whole body, read ahead into the connection's buffer and decoded from a
    /// copy, so that the stream still yields every byte as the backend sent it.
    /// `None` when it takes more than `max` bytes on the wire, is framed by the
    /// connection's end, or the backend stops sending before its end (the stream
    /// then ends as it would have). Meant for small error bodies: each read decodes
    /// what is buffered again.
    pub async fn peek_whole(&mut self, max: usize) -> Option<Bytes> {
        poll_fn(|cx| self.poll_peek(cx, max)).await
    }

    fn poll_peek(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Bytes>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let mut decoder = self.decoder.clone();
            let mut buf = conn.buf.clone();
            let mut body = BytesMut::new();
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(bytes)) => body.extend_from_slice(&bytes),
                    Ok(Decoded::Done) => return Poll::Ready(Some(body.freeze())),
                    Ok(Decoded::More) => break,
                    Err(_) => return Poll::Ready(None),
                }
            }
            if conn.buf.len() >= max || matches!(self.decoder, Decoder::Close) {
                return Poll::Ready(None);
            }
            conn.buf.reserve(max - conn.buf.len());
            match poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
            }
        }
    }

    /// The body read whole: the connection goes back to the pool if it can carry
    /// another request and the backend sent nothing more.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buf.is_empty() {
                self.idle.put(&self.backend, conn);
            }
        }
    }
}

impl Stream for ResponseBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.decoder.decode(&mut conn.buf) {
                Ok(Decoded::Data(bytes)) => return Poll::Ready(Some(Ok(bytes))),
                Ok(Decoded::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::More) => {}
                Err(why) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(invalid(why))));
                }
            }
            conn.buf.reserve(this.decoder.read_size(this.read_size));
            this.read_size = (this.read_size * 2).min(BODY_READ);
            match poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    this.conn = None;
                    return Poll::Ready(match this.decoder {
                        Decoder::Close => None,
                        // Short of its framing: an error, so the client sees a cut.
                        _ => Some(Err(PayloadError::Incomplete(None))),
                    });
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(PayloadError::Io(e))));
                }
            }
        }
    }
}

fn invalid(why: &'static str) -> PayloadError {
    PayloadError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, why))
}

#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    /// Needs more bytes from the backend.
    More,
    Done,
}

#[derive(Clone, Debug)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunked),
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunked {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    Trailers,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => Decoder::Length(0),
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(Chunked::Size),
            Framing::Close => Decoder::Close,
        }
    }

    /// How much to read next, at most `size`: no more than a known length needs.
    fn read_size(&self, size: usize) -> usize {
        match self {
            Decoder::Length(left) => usize::try_from(*left).map_or(size, |n| n.min(size)),
            Decoder::Chunked(_) | Decoder::Close => size,
        }
    }

    /// Takes what the framing allows out of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
        match self {
            Decoder::Length(0) => Ok(Decoded::Done),
            Decoder::Length(left) => Ok(take(buf, left)),
            Decoder::Close if buf.is_empty() => Ok(Decoded::More),
            Decoder::Close => Ok(Decoded::Data(buf.split().freeze())),
            Decoder::Chunked(state) => loop {
                match state {
                    Chunked::Data(0) => *state = Chunked::DataEnd,
                    Chunked::Data(left) => {
                        let data = take(buf, left);
                        return Ok(data);
                    }
                    Chunked::Size => {
                        let Some(line) = line(buf)? else {
                            return Ok(Decoded::More);
                        };
                        let size = chunk_size(&line).ok_or("bad chunk size")?;
                        *state = if size == 0 {
                            Chunked::Trailers
                        } else {
                            Chunked::Data(size)
                        };
                    }
                    Chunked::DataEnd => match line(buf)? {
                        None => return Ok(Decoded::More),
                        Some(l) if l.is_empty() => *state = Chunked::Size,
                        Some(_) => return Err("chunk longer than its size"),
                    },
                    // Trailers are dropped: the client's response is already framed.
                    Chunked::Trailers => match line(buf)? {
                        None => return Ok(Decoded::More),
                        Some(l) if l.is_empty() => return Ok(Decoded::Done),
                        Some(_) => {}
                    },
                }
            },
        }
    }
}

/// Up to `left` bytes of `buf`, without copying.
fn take(buf: &mut BytesMut, left: &mut u64) -> Decoded {
    if buf.is_empty() {
        return Decoded::More;
    }
    let n = buf.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
    *left -= n as u64;
    Decoded::Data(buf.split_to(n).freeze())
}

/// One line without its CRLF (a bare LF is accepted), consumed from `buf`.
fn line(buf: &mut BytesMut) -> Result<Option<BytesMut>, &'static str> {
    match buf.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err("chunk line too long"),
        None => Ok(None),
    }
}

/// The hexadecimal size before any `;extension`.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let digits = line[..end].trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut size = 0u64;
    for &d in digits {
        size = size * 16 + u64::from(char::from(d).to_digit(16)?);
    }
    Some(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(decoder: &mut Decoder, input: &[u8]) -> (Vec<u8>, Result<Decoded, &'static str>) {
        // Fed one byte at a time: every state must cope with a split anywhere.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &b in input {
            buf.extend_from_slice(&[b]);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(d)) => out.extend_from_slice(&d),
                    Ok(Decoded::More) => break,
                    other => return (out, other),
                }
            }
        }
        (out, Ok(Decoded::More))
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let mut d = Decoder::Chunked(Chunked::Size);
        let (out, end) = decode_all(&mut d, b"5;ext=1\r\nhello\r\n1\nx\n0\r\nTrailer: t\r\n\r\n");
        assert_eq!((out.as_slice(), end), (&b"hellox"[..], Ok(Decoded::Done)));
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for raw in [&b"z\r\n"[..], b"5\r\nhelloX\r\n", b"fffffffffffffffff\r\n"] {
            let mut d = Decoder::Chunked(Chunked::Size);
            assert!(decode_all(&mut d, raw).1.is_err(), "{raw:?}");
        }
        let mut d = Decoder::Chunked(Chunked::Size);
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(decode_all(&mut d, &long).1.is_err());
    }

    #[test]
    fn length_bodies_stop_at_their_length() {
        let mut d = Decoder::Length(3);
        let mut buf = BytesMut::from(&b"abcdef"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(d.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], b"def");
    }
}
