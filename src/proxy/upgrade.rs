//! WebSocket pass-through. An HTTP/1.1 `GET` with `Connection: upgrade` and
//! `Upgrade: websocket` goes to a backend picked as usual, those two headers kept; a
//! `101 Switching Protocols` answer joins the client's connection to the backend's
//! until either side closes or no byte has passed either way for
//! `--upgrade-idle-timeout`. Any other answer is relayed as an ordinary response.
//!
//! actix keeps the client's connection and still does the joining: it reads the body
//! of a WebSocket request as a stream that ends with the connection (everything the
//! client sends after its head), and after a 101 it writes a streamed body as raw
//! bytes. So the request payload is the client's side of the tunnel and the 101's
//! body the backend's, both with actix's bounded buffers and back-pressure.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_rt::task::JoinHandle;
use actix_rt::time::{sleep_until, Sleep};
use actix_web::body::{BodyStream, BoxBody};
use actix_web::dev::{Payload, RequestHead};
use actix_web::http::header::{HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING, UPGRADE};
use actix_web::http::{ConnectionType, Method, StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use log::debug;
use tokio::io::AsyncWriteExt;
use tokio_util::io::poll_read_buf;

use crate::conn::client_addr::ClientAddr;
use crate::conn::conn_info::ConnInfo;
use crate::pool::backend::{Backend, InFlight};
use crate::proxy::attempts::{Attempt, Attempts, Failed};
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Target};
use crate::proxy::shared::{Shared, Worker};
use crate::upstream::request::Framing;
use crate::upstream::upgrade::{ReadSide, Switched, Upgraded, WriteSide};
use crate::upstream::{Response, Upstream};

/// Bytes read from the backend at a time; actix holds at most about this much more
/// for a client that reads slowly.
const READ: usize = 64 * 1024;

/// Whether the request asks for a WebSocket. `Err` for one actix reads as such (its
/// body runs to the end of the connection) but that cannot be a WebSocket handshake.
pub fn wanted(head: &RequestHead) -> Result<bool, ProxyError> {
    // actix's own test for a WebSocket request.
    let websocket = |v: &HeaderValue| {
        v.to_str()
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    };
    if !head.headers.get_all(UPGRADE).any(websocket) {
        return Ok(false);
    }
    let handshake = head.version == Version::HTTP_11
        && head.method == Method::GET
        && head.upgrade()
        && head.headers.get_all(UPGRADE).count() == 1
        && !head.headers.contains_key(TRANSFER_ENCODING)
        && (!head.headers.contains_key(CONTENT_LENGTH)
            || headers::content_length(&head.headers) == Some(0));
    match handshake {
        true => Ok(true),
        false => Err(ProxyError::BadRequest),
    }
}

pub enum Outcome {
    /// The 101 carrying the tunnel, or sidekick's own error.
    Answer(HttpResponse),
    /// The backend answered without switching: an ordinary response to relay.
    Refused(Response, InFlight),
}

/// Forwards a WebSocket request through the retry engine: a connection failure
/// before the answer tries another backend like any GET.
pub async fn forward(
    req: &HttpRequest,
    payload: Payload,
    shared: &Shared,
    worker: &Worker,
) -> Outcome {
    let Some(path) = req.uri().path_and_query() else {
        return Outcome::Answer(ProxyError::BadRequest.response(req.path()));
    };
    let mut handshake = Handshake {
        req,
        path: path.as_str(),
        peer: req.conn_data::<ConnInfo>().and_then(|c| c.peer.as_ref()),
        upstream: &worker.upstream,
    };
    let attempts = Attempts {
        req,
        resource: path.path(),
        shared,
        worker,
    };
    match attempts.run(&mut handshake).await {
        Ok((Upgraded::Switched(switched), guard)) => Outcome::Answer(switch(
            switched,
            payload,
            guard,
            shared.upgrade_idle_timeout,
        )),
        Ok((Upgraded::Refused(res), guard)) => Outcome::Refused(res, guard),
        Err(res) => Outcome::Answer(res),
    }
}

/// An upgrade request as the retry engine sends it.
struct Handshake<'a> {
    req: &'a HttpRequest,
    /// Path and query, byte-exact.
    path: &'a str,
    peer: Option<&'a ClientAddr>,
    upstream: &'a Upstream,
}

impl Attempt for Handshake<'_> {
    type Answer = Upgraded;

    /// It has no body; what the client sends after its head waits in the payload
    /// until the switch.
    fn replayable(&self) -> bool {
        true
    }

    async fn send(&mut self, backend: &Arc<Backend>) -> Result<Upgraded, Failed> {
        let target = Target {
            method: self.req.method(),
            path: self.path,
            peer: self.peer,
            authority: None,
            backend: backend.endpoint.authority.as_str(),
            framing: Framing::None,
            extra: None,
        };
        let head = |local: Option<&str>| request_head(self.req, &target, local);
        Ok(self.upstream.upgrade(backend, head).await?)
    }
}

/// The usual request head, plus the two headers it drops as hop-by-hop that an
/// upgrade must carry: `Connection: upgrade` and the client's `Upgrade`.
fn request_head(req: &HttpRequest, target: &Target<'_>, local: Option<&str>) -> BytesMut {
    let mut head = headers::request_head(req.headers(), target, local);
    // Reopen the head before its blank line.
    head.truncate(head.len() - 2);
    head.extend_from_slice(b"connection: upgrade\r\n");
    for value in req.headers().get_all(UPGRADE) {
        head.extend_from_slice(b"upgrade: ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// The 101 for the client, whose body is the backend's side of the tunnel; the
/// client's side goes to the backend from a task of this worker.
fn switch(
    switched: Switched,
    payload: Payload,
    mut guard: InFlight,
    idle: Duration,
) -> HttpResponse {
    let Switched {
        head,
        early,
        read,
        write,
    } = switched;
    guard.settle();
    let backend = guard.backend().clone();
    backend.stats.upgrades.fetch_add(1, Relaxed);
    backend.stats.upgraded_open.fetch_add(1, Relaxed);
    let last = Rc::new(Cell::new(Instant::now()));
    let upload = actix_rt::spawn(upload(payload, write, backend, last.clone()));
    let tunnel = Tunnel {
        read,
        buf: early,
        guard,
        upload,
        last,
        idle,
        timer: Box::pin(sleep_until(after(Instant::now(), idle).into())),
    };
    let mut res = HttpResponse::with_body(
        StatusCode::SWITCHING_PROTOCOLS,
        BoxBody::new(BodyStream::new(tunnel)),
    );
    *res.headers_mut() = head.headers;
    res.head_mut().set_connection_type(ConnectionType::Upgrade);
    res
}

/// Client to backend: what the client sends, as it comes. When the client closes its
/// side, sidekick closes its side towards the backend, which then ends the session.
async fn upload(
    mut payload: Payload,
    mut write: WriteSide,
    backend: Arc<Backend>,
    last: Rc<Cell<Instant>>,
) {
    // An error is the client's connection ending; either way nothing more comes.
    while let Some(Ok(data)) = payload.next().await {
        last.set(Instant::now());
        backend.stats.rx_bytes.fetch_add(data.len() as u64, Relaxed);
        if write.write_all(&data).await.is_err() {
            // The backend is gone; the other direction sees it too and ends.
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// Backend to client, as the 101's body. Holds the backend's in-flight count for the
/// whole session, and ends it (both directions) on the backend's close, a broken
/// connection or the idle limit; the client's connection then closes once what is
/// buffered for it is sent.
struct Tunnel {
    read: ReadSide,
    /// The next bytes for the client: at first what came with the 101.
    buf: BytesMut,
    guard: InFlight,
    upload: JoinHandle<()>,
    /// When a byte last passed either way.
    last: Rc<Cell<Instant>>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Tunnel {
    fn backend(&self) -> &Backend {
        self.guard.backend()
    }

    /// Ready when nothing has passed either way for the idle limit. The timer is
    /// moved on only when it fires, not on every byte.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let deadline = after(self.last.get(), self.idle);
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            self.timer.as_mut().reset(deadline.into());
        }
    }
}

/// `from + limit`, for any limit the flag takes.
fn after(from: Instant, limit: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 86_400);
    from.checked_add(limit.min(CENTURY)).unwrap_or(from)
}

impl Stream for Tunnel {
    /// The session never fails towards actix: an error would drop what is buffered.
    type Item = Result<Bytes, std::convert::Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            this.buf.reserve(READ);
            match poll_read_buf(Pin::new(&mut this.read), cx, &mut this.buf) {
                // The backend closed: what it sent is flushed, then the client's
                // connection closes.
                Poll::Ready(Ok(0)) => return Poll::Ready(None),
                Poll::Ready(Ok(_)) => {}
                // Ended as by a close: what was read still reaches the client, which
                // an error here would drop with the connection. A TLS backend that
                // closes without close_notify reads as UnexpectedEof, no failure.
                Poll::Ready(Err(e)) => {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        this.backend().stats.failures.fetch_add(1, Relaxed);
                    }
                    debug!("{} broke an upgraded connection: {e}", this.backend().name);
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    return match this.poll_idle(cx) {
                        Poll::Ready(()) => {
                            debug!(
                                "upgraded connection to {} idle: closed",
                                this.backend().name
                            );
                            Poll::Ready(None)
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        this.last.set(Instant::now());
        let data = this.buf.split().freeze();
        this.backend()
            .stats
            .tx_bytes
            .fetch_add(data.len() as u64, Relaxed);
        Poll::Ready(Some(Ok(data)))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.upload.abort();
        self.backend().stats.upgraded_open.fetch_sub(1, Relaxed);
    }
}
