//! The catch-all forwarding handler and its header rules (DESIGN.md "Forwarding rules").

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use actix::Addr;
use actix_web::body::{None as NoBody, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use actix_web::http::{uri, Method, StatusCode, Uri};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::{ConnectError, SendRequestError};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use log::warn;

use crate::backend::{Backend, InFlight};
use crate::cli::Balance;
use crate::error::ProxyError;
use crate::metrics::CountRx;
use crate::pool::{Failure, Pool, SharedView};

/// How many backends one request may try when a retry is safe.
const MAX_ATTEMPTS: usize = 3;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// State every worker shares: the Pool's published view and its address.
pub struct Shared {
    pub view: SharedView,
    pub pool: Addr<Pool>,
    pub balance: Balance,
}

/// One client per worker (awc clients are `!Send`): pooled keep-alive connections,
/// no redirects, no timeout on bodies, no decompression, no headers of its own.
pub fn client() -> awc::Client {
    let connector = awc::Connector::new()
        .limit(0)
        .conn_keep_alive(std::time::Duration::from_secs(4))
        .conn_lifetime(std::time::Duration::from_secs(3600));
    awc::Client::builder()
        .no_default_headers()
        .disable_redirects()
        .disable_timeout()
        .connector(connector)
        .finish()
}

/// The request body as the client framed it; kept the same way towards the backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Sized(u64),
    Chunked,
}

impl Body {
    fn of(headers: &HeaderMap) -> Body {
        if headers.contains_key(TRANSFER_ENCODING) {
            return Body::Chunked;
        }
        headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .map_or(Body::None, Body::Sized)
    }

    /// Can be sent again: nothing of it was consumed.
    fn replayable(self) -> bool {
        matches!(self, Body::None | Body::Sized(0))
    }
}

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    client: web::Data<awc::Client>,
) -> HttpResponse {
    if let Some(response) = crate::admin::route(&req, &shared.view, &shared.pool).await {
        return response;
    }
    let Some(path) = req.uri().path_and_query().cloned() else {
        return ProxyError::BadRequest.response(req.path());
    };
    let body = Body::of(req.headers());
    let mut payload = Some(payload.into_inner());
    let mut failed: Vec<usize> = Vec::new();
    loop {
        let Some(backend) = shared.view.load().pick(shared.balance, &failed) else {
            return ProxyError::BackendDown.response(path.path());
        };
        let guard = InFlight::new(backend);
        crate::trace::attempt(&req, guard.backend());
        let Some(request) = build_request(&client, &req, guard.backend(), path.clone()) else {
            return ProxyError::BadRequest.response(path.path());
        };
        let sent = match (body, payload.take()) {
            (Body::Sized(0), _) => request.send_body(Bytes::new()).await,
            (Body::Sized(n), Some(p)) => {
                let p = CountRx::new(p, guard.backend());
                request.send_body(SizedStream::new(n, p)).await
            }
            (Body::Chunked, Some(p)) => request.send_stream(CountRx::new(p, guard.backend())).await,
            // `NoBody` rather than `send()`, which would add `Content-Length: 0`.
            _ => request.send_body(NoBody::new()).await,
        };
        let error = match sent {
            Ok(res) => return respond(req.method() == Method::HEAD, res, guard),
            // The client's own body failed: it went away, the backend did nothing wrong.
            Err(SendRequestError::Body(_)) => return ProxyError::BadRequest.response(path.path()),
            Err(e) => e,
        };
        crate::trace::failed(&req, &error);
        let backend = guard.backend();
        shared.pool.do_send(Failure {
            id: backend.id,
            error: error.to_string(),
        });
        failed.push(backend.id);
        if !body.replayable()
            || failed.len() >= MAX_ATTEMPTS
            || !retry_is_safe(req.method(), &error)
        {
            return ProxyError::BadGateway.response(path.path());
        }
        backend.stats.retries.fetch_add(1, Relaxed);
    }
}

/// Safe to send again elsewhere: nothing reached the backend, or the method is idempotent.
fn retry_is_safe(method: &Method, error: &SendRequestError) -> bool {
    let nothing_sent =
        matches!(error, SendRequestError::Connect(e) if !matches!(e, ConnectError::Disconnected));
    nothing_sent
        || matches!(
            *method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        )
}

fn build_request(
    client: &awc::Client,
    req: &HttpRequest,
    backend: &Backend,
    path: uri::PathAndQuery,
) -> Option<awc::ClientRequest> {
    let mut parts = uri::Parts::default();
    parts.scheme = Some(backend.endpoint.scheme.clone());
    parts.authority = Some(backend.endpoint.authority.clone());
    parts.path_and_query = Some(path);
    let uri = Uri::from_parts(parts).ok()?;
    let mut request = client.request(req.method().clone(), uri);
    let out = request.headers_mut();
    let headers = req.headers();
    for (name, value) in headers {
        // Content-Length comes from the body we send; Expect is answered by sidekick,
        // which already sent the client its 100 Continue.
        if is_hop_by_hop(name, headers)
            || name == CONTENT_LENGTH
            || name == EXPECT
            || name == X_FORWARDED_FOR
            || name == X_REAL_IP
            || name == X_FORWARDED_HOST
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(peer) = req.peer_addr() {
        let ip = peer.ip().to_canonical();
        out.insert(X_FORWARDED_FOR.clone(), forwarded_for(headers, ip)?);
        out.insert(X_REAL_IP.clone(), header_value(format_args!("{ip}"))?);
    }
    if let Some(host) = headers.get(HOST) {
        out.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    Some(request)
}

/// The client's `X-Forwarded-For` chain with its own address appended.
fn forwarded_for(headers: &HeaderMap, ip: IpAddr) -> Option<HeaderValue> {
    let mut chain = BytesMut::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        chain.extend_from_slice(value.as_bytes());
        chain.extend_from_slice(b", ");
    }
    use std::fmt::Write;
    write!(chain, "{ip}").ok()?;
    HeaderValue::from_maybe_shared(chain.freeze()).ok()
}

fn header_value(args: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    let mut buf = BytesMut::with_capacity(48).writer();
    std::io::Write::write_fmt(&mut buf, args).ok()?;
    HeaderValue::from_maybe_shared(buf.into_inner().freeze()).ok()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and every header the `Connection` header names.
fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    if name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
    {
        return true;
    }
    headers.get_all(CONNECTION).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

fn respond<S>(head_request: bool, res: awc::ClientResponse<S>, guard: InFlight) -> HttpResponse
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let status = res.status();
    let mut out = HttpResponse::build(status);
    let headers = res.headers();
    for (name, value) in headers {
        // 304 keeps the backend's Content-Length (it describes the entity, not a body).
        if is_hop_by_hop(name, headers)
            || (name == CONTENT_LENGTH && status != StatusCode::NOT_MODIFIED)
        {
            continue;
        }
        out.append_header((name.clone(), value.clone()));
    }
    let length = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return match (head_request, length) {
            // HEAD keeps the length of the body it would have had.
            (true, Some(n)) => out.body(SizedStream::new(
                n,
                futures_util::stream::empty::<Result<Bytes, PayloadError>>(),
            )),
            _ => out.body(NoBody::new()),
        };
    }
    let relay = Relay { body: res, guard };
    match length {
        Some(n) => out.body(SizedStream::new(n, relay)),
        None => out.streaming(relay),
    }
}

/// Streams a backend's response body to the client, holding the backend's
/// in-flight count until the last byte (or until the client goes away).
struct Relay<S> {
    body: S,
    guard: InFlight,
}

impl<S> Stream for Relay<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            let n = chunk.len() as u64;
            self.guard.backend().stats.tx_bytes.fetch_add(n, Relaxed);
        }
        if let Poll::Ready(Some(Err(e))) = &next {
            // Returning the error cuts the client's connection: a short body must
            // never look complete.
            let backend = self.guard.backend();
            backend.stats.failures.fetch_add(1, Relaxed);
            warn!("{} failed mid-response: {e}", backend.name);
        }
        next
    }
}
