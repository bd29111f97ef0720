//! sidekick's HTTP/1.1 client towards backends, one per worker: keep-alive
//! connections pooled per backend, the request head written in one piece, the
//! response head parsed in place and small bodies handed on without a stream.
//! Health checks go through it too (`probe.rs`), from the Pool's thread.

pub mod body;
mod conn;
mod error;
pub mod head;
mod idle;
pub mod peer;
pub mod probe;
pub mod request;
pub mod upgrade;

use std::future::poll_fn;
use std::io::ErrorKind::WriteZero;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use actix_web::error::PayloadError;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_util::io::poll_read_buf;

pub use body::ResponseBody;
use conn::{Conn, Dest};
pub use error::Error;
use head::{Framing, ResponseHead};
use idle::{Idle, IdleKey};
pub use peer::Peer;

use crate::config::Config;
use request::Body;

/// Read size for response heads (and the small bodies that come with them).
const HEAD_READ: usize = 16 * 1024;
/// Buffered bodies up to this size go out in the same write as the head.
const INLINE_BODY: usize = 16 * 1024;
/// A body sent only once may reuse a connection idle for less than this: backends
/// time idle connections out after seconds, not within one.
const STREAM_REUSE: Duration = Duration::from_secs(1);
/// Pooled connections are closed after this long, whatever their use.
const LIFETIME: Duration = Duration::from_secs(3600);

pub struct Upstream {
    idle: Rc<Idle>,
    tls: Option<TlsConnector>,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// Acknowledge each answer's first bytes at once (`Conn::ack_now`).
    ack_now: bool,
}

/// A backend's answer: its head and what carries the body.
pub struct Response {
    pub head: ResponseHead,
    pub body: Reply,
}

pub enum Reply {
    Empty,
    /// The whole body arrived with the head; the connection is back in the pool.
    Whole(Bytes),
    Stream(ResponseBody),
}

impl Upstream {
    pub fn new(cfg: &Config) -> Self {
        Upstream {
            idle: Idle::new(cfg.backend_idle_timeout, LIFETIME),
            tls: conn::tls_connector(cfg.tls.client.as_ref()),
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            ack_now: false,
        }
    }

    /// The client towards the cache store. Its answers are mostly small (metadata,
    /// pieces of a block), and a store that writes a head and then its body with
    /// Nagle's algorithm on (Garage does) holds a body shorter than a segment until
    /// the head is acknowledged, which a delayed ACK puts off by 40 ms: so this
    /// client acknowledges at once.
    pub fn for_cache_store(cfg: &Config) -> Self {
        Upstream {
            ack_now: true,
            ..Upstream::new(cfg)
        }
    }

    /// Sends one request to `backend` and reads the response head. `head` writes the
    /// request head once the connection is known, from its local address (the
    /// client's address may stand for this host's: `proxy::headers`). A pooled
    /// connection the backend had closed meanwhile is replaced by a fresh one when
    /// the request may be sent again (`retry_stale`). A request that cannot be sent
    /// again (its body streamed, or a POST) rides only a connection used moments
    /// ago, which the backend cannot be timing out as idle; otherwise it gets a new
    /// one. Should a kept connection still turn out closed, the error is
    /// `Error::Stale`: the request is lost, but the backend is not to blame.
    pub async fn exchange<P: Peer + ?Sized, H: AsRef<[u8]>>(
        &self,
        backend: &P,
        head: impl Fn(Option<&str>) -> H,
        body: &mut Body,
        head_request: bool,
        retry_stale: bool,
    ) -> Result<Response, Error> {
        loop {
            let fresh = match body.replayable() && retry_stale {
                true => Duration::MAX,
                false => STREAM_REUSE,
            };
            let pooled = self.idle.take(backend.id(), fresh);
            let (mut conn, reused) = match pooled {
                Some(conn) => (conn, true),
                // Boxed: connecting (name lookup, TLS handshake) takes more room
                // than the rest of the exchange, which mostly rides a kept connection.
                None => (
                    Box::pin(Conn::open(
                        Dest::of(backend),
                        self.tls.as_ref(),
                        self.connect_timeout,
                    ))
                    .await?,
                    false,
                ),
            };
            let head = head(conn.local.as_deref());
            match self
                .round_trip(&mut conn, backend, head.as_ref(), body, head_request)
                .await
            {
                Ok(head) => return Ok(self.response(conn, head, IdleKey::of(backend))),
                Err(e) if reused && retry_stale && body.replayable() && e.stale() => {
                    // Its siblings are likely just as dead.
                    self.idle.clear(backend.id());
                }
                Err(e) if reused && e.stale() => {
                    self.idle.clear(backend.id());
                    return Err(Error::Stale);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn round_trip<P: Peer + ?Sized>(
        &self,
        conn: &mut Conn,
        backend: &P,
        head: &[u8],
        body: &mut Body,
        head_request: bool,
    ) -> Result<ResponseHead, Error> {
        let deadline = self.response_timeout;
        if body.replayable() {
            let exchange = async {
                let sent = write_buffered(conn, head, body).await;
                if self.ack_now {
                    conn.ack_now();
                }
                answer(conn, sent, head_request).await
            };
            return actix_rt::time::timeout(deadline, exchange)
                .await
                .map_err(|_| Error::Timeout)?;
        }
        // An upload takes as long as the client sends; the deadline starts after it.
        let sent = write_streamed(conn, backend, head, body).await;
        actix_rt::time::timeout(deadline, answer(conn, sent, head_request))
            .await
            .map_err(|_| Error::Timeout)?
    }

    fn response(&self, mut conn: Conn, head: ResponseHead, backend: IdleKey) -> Response {
        let reusable = |conn: &Conn| head.keep_alive && conn.buf.is_empty();
        let body = match head.framing {
            Framing::Empty => {
                if reusable(&conn) {
                    self.idle.put(&backend, conn);
                }
                Reply::Empty
            }
            Framing::Length(n) if conn.buf.len() as u64 >= n => {
                let bytes = conn.buf.split_to(n as usize).freeze();
                if reusable(&conn) {
                    self.idle.put(&backend, conn);
                }
                Reply::Whole(bytes)
            }
            framing => Reply::Stream(ResponseBody::new(
                conn,
                framing,
                head.keep_alive,
                self.idle.clone(),
                backend,
            )),
        };
        Response { head, body }
    }
}

async fn write_buffered(conn: &mut Conn, head: &[u8], body: &Body) -> Result<(), Error> {
    let io = &mut conn.io;
    match body {
        Body::Buffered {
            bytes,
            chunked: false,
        } if bytes.len() > INLINE_BODY => {
            io.write_all(head).await.map_err(Error::Send)?;
            io.write_all(bytes).await.map_err(Error::Send)?;
        }
        Body::Buffered { bytes, chunked } => {
            let mut out = BytesMut::with_capacity(head.len() + bytes.len() + 32);
            out.extend_from_slice(head);
            if *chunked {
                chunk(&mut out, bytes);
                out.extend_from_slice(b"0\r\n\r\n");
            } else {
                out.extend_from_slice(bytes);
            }
            io.write_all(&out).await.map_err(Error::Send)?;
        }
        _ => io.write_all(head).await.map_err(Error::Send)?,
    }
    io.flush().await.map_err(Error::Send)
}

/// Sends the head, then the client's body as it arrives.
async fn write_streamed<P: Peer + ?Sized>(
    conn: &mut Conn,
    backend: &P,
    head: &[u8],
    body: &mut Body,
) -> Result<(), Error> {
    conn.io.write_all(head).await.map_err(Error::Send)?;
    match body {
        Body::Sized(_, payload) => {
            let payload = payload
                .take()
                .ok_or(Error::Body(PayloadError::Incomplete(None)))?;
            pump(conn, backend, payload, false).await?;
        }
        Body::Chunked(payload) => {
            let payload = payload
                .take()
                .ok_or(Error::Body(PayloadError::Incomplete(None)))?;
            pump(conn, backend, payload, true).await?;
            conn.io.write_all(b"0\r\n\r\n").await.map_err(Error::Send)?;
        }
        Body::None | Body::Buffered { .. } => {}
    }
    conn.io.flush().await.map_err(Error::Send)
}

async fn pump<P: Peer + ?Sized, S>(
    conn: &mut Conn,
    backend: &P,
    mut payload: S,
    chunked: bool,
) -> Result<(), Error>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let mut framed = BytesMut::new();
    while let Some(data) = payload.next().await {
        let data = data.map_err(Error::Body)?;
        if data.is_empty() {
            continue;
        }
        backend.sent(data.len() as u64);
        if chunked {
            framed.clear();
            chunk(&mut framed, &data);
            write_upload(conn, &framed).await?;
        } else {
            write_upload(conn, &data).await?;
        }
    }
    Ok(())
}

/// Writes part of an upload. While the backend is not reading, sidekick watches for
/// its answer: a server that refuses an upload from its head (413, 403) and leaves
/// the connection open unread would otherwise hold the client's answer until it
/// closes. `Error::Answered` stops the upload.
async fn write_upload(conn: &mut Conn, mut data: &[u8]) -> Result<(), Error> {
    poll_fn(|cx| {
        while !data.is_empty() {
            match Pin::new(&mut conn.io).poll_write(cx, data) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(Error::Send(WriteZero.into()))),
                Poll::Ready(Ok(n)) => data = &data[n..],
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Send(e))),
                Poll::Pending => {
                    return match conn.poll_answer(cx) {
                        Poll::Ready(()) => Poll::Ready(Err(Error::Answered)),
                        Poll::Pending => Poll::Pending,
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// One chunk of a chunked body (nothing for no data: a zero size ends the body).
fn chunk(out: &mut BytesMut, data: &[u8]) {
    use std::fmt::Write;
    if data.is_empty() {
        return;
    }
    let _ = write!(out, "{:x}\r\n", data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The response head once the request is out. A backend may answer before it has
/// read the whole body (413, 403) and close, which fails the rest of the upload, or
/// stop reading (`Error::Answered`): the answer it sent goes to the client rather
/// than a 502, and the backend is not blamed. Without one, the send error stands (a
/// stale connection, a crash).
async fn answer(
    conn: &mut Conn,
    sent: Result<(), Error>,
    head_request: bool,
) -> Result<ResponseHead, Error> {
    let unsent = match sent {
        Ok(()) => return read_head(conn, head_request).await,
        Err(e @ (Error::Send(_) | Error::Answered)) => e,
        Err(e) => return Err(e),
    };
    match read_head(conn, head_request).await {
        Ok(mut head) => {
            // Part of the request is still unsent: the connection is done.
            head.keep_alive = false;
            Ok(head)
        }
        // It closed or broke instead of answering.
        Err(e) if matches!(unsent, Error::Answered) => Err(e),
        Err(_) => Err(unsent),
    }
}

/// Reads up to a final response head, skipping interim ones (100, 103).
async fn read_head(conn: &mut Conn, head_request: bool) -> Result<ResponseHead, Error> {
    read_final(conn, |buf| head::parse(buf, head_request)).await
}

/// `read_head` with the parser given: the answer to an upgrade may be a switch.
async fn read_final<P>(conn: &mut Conn, parse: P) -> Result<ResponseHead, Error>
where
    P: Fn(&[u8]) -> Result<Option<(ResponseHead, usize)>, Error>,
{
    loop {
        if !conn.buf.is_empty() {
            if let Some((head, len)) = parse(&conn.buf)? {
                conn.buf.advance(len);
                if head.interim() {
                    continue;
                }
                return Ok(head);
            }
        }
        conn.buf.reserve(HEAD_READ);
        let n = poll_fn(|cx| poll_read_buf(Pin::new(&mut conn.io), cx, &mut conn.buf))
            .await
            .map_err(Error::Read)?;
        if n == 0 {
            return Err(if conn.buf.is_empty() {
                Error::Closed
            } else {
                Error::Invalid("connection closed inside the head")
            });
        }
    }
}
