//! The catch-all forwarding handler: refuse what must not pass, pick a backend from
//! the Pool's view, forward, retry elsewhere when that is safe, stream the answer.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::body::{None as NoBody, SizedStream};
use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH, TRANSFER_ENCODING};
use actix_web::http::{uri, Method, StatusCode, Uri, Version};
use actix_web::{web, HttpRequest, HttpResponse};
use awc::error::SendRequestError;
use bytes::{Bytes, BytesMut};
use futures_util::future::{select, Either};
use futures_util::{stream, Stream, StreamExt};
use log::debug;

use crate::backend::{Backend, InFlight};
use crate::cli::{Balance, Config};
use crate::conn_info::ConnInfo;
use crate::error::ProxyError;
use crate::headers;
use crate::metrics::CountRx;
use crate::pool::{Eject, Failure, Pool, SharedView};
use crate::relay::{Relay, Upload};
use crate::retry;
use crate::validate::{self, Limits};

/// Settings and state every worker shares.
pub struct Shared {
    pub view: SharedView,
    pub pool: Addr<Pool>,
    pub balance: Balance,
    pub limits: Limits,
    pub max_retries: usize,
    pub retry_buffer: u64,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub max_5xx: u32,
}

impl Shared {
    pub fn new(cfg: &Config, view: SharedView, pool: Addr<Pool>) -> Self {
        Shared {
            view,
            pool,
            balance: cfg.balance,
            limits: Limits {
                max_header_size: cfg.max_header_size,
                max_headers: usize::from(cfg.max_headers),
            },
            max_retries: cfg.max_retries as usize,
            retry_buffer: cfg.retry_buffer,
            connect_timeout: cfg.connect_timeout,
            response_timeout: cfg.response_timeout,
            max_5xx: cfg.max_5xx,
        }
    }
}

/// What each worker owns: its client (awc clients are `!Send`) and retry budget.
pub struct Worker {
    client: awc::Client,
    budget: retry::Budget,
    /// Clients of backends pinned to one address of a name (`--rr-dns-mode`), made
    /// on first use; each keeps its own connection pool.
    pinned: RefCell<HashMap<usize, awc::Client>>,
    cfg: Config,
}

impl Worker {
    /// Pooled keep-alive connections, no redirects, no timeout on bodies, no
    /// decompression, no headers of its own.
    pub fn new(cfg: &Config) -> Self {
        Worker {
            client: Self::client(cfg, None),
            budget: retry::Budget::new(cfg.retry_budget),
            pinned: RefCell::new(HashMap::new()),
            cfg: cfg.clone(),
        }
    }

    fn client(cfg: &Config, address: Option<IpAddr>) -> awc::Client {
        let mut connector = awc::Connector::new()
            .connector(crate::dns::connector(address))
            .limit(0)
            .timeout(cfg.connect_timeout)
            .handshake_timeout(cfg.connect_timeout)
            .conn_keep_alive(cfg.backend_idle_timeout)
            .conn_lifetime(Duration::from_secs(3600));
        // One TLS config for the process: its session cache serves every worker.
        if let Some(tls) = &cfg.tls.client {
            connector = connector.rustls_0_23(tls.clone());
        }
        awc::Client::builder()
            .no_default_headers()
            .disable_redirects()
            .disable_timeout()
            .connector(connector)
            .finish()
    }

    /// The client that reaches `backend`.
    fn client_for(&self, backend: &Backend) -> awc::Client {
        let Some(address) = backend.address else {
            return self.client.clone();
        };
        let mut pinned = self.pinned.borrow_mut();
        pinned
            .entry(backend.id)
            .or_insert_with(|| Self::client(&self.cfg, Some(address)))
            .clone()
    }
}

/// The request body, read ahead when it is small enough to be sent again.
enum Body {
    None,
    /// Whole body in memory; `chunked` keeps the client's framing.
    Buffered {
        bytes: Bytes,
        chunked: bool,
    },
    /// Streamed with a Content-Length; sent once.
    Sized(u64, Option<Payload>),
    /// Streamed chunked (what was read ahead, then the rest); sent once.
    Chunked(Option<Box<dyn Stream<Item = Result<Bytes, PayloadError>> + Unpin>>),
}

impl Body {
    fn replayable(&self) -> bool {
        matches!(self, Body::None | Body::Buffered { .. })
    }
}

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    if let Some(response) = crate::admin::route(&req, &shared.view, &shared.pool).await {
        return response;
    }
    let conn = req.conn_data::<ConnInfo>();
    if conn.is_some_and(ConnInfo::over_limit) {
        return ProxyError::TooManyConnections.response(req.path());
    }
    if let Err(e) = validate::check(req.head(), shared.limits) {
        return e.response(req.path());
    }
    let Some(path) = req.uri().path_and_query().cloned() else {
        return ProxyError::BadRequest.response(req.path());
    };
    let mut body = match read_ahead(req.headers(), payload.into_inner(), shared.retry_buffer).await
    {
        Ok(body) => body,
        // The client went away or sent a broken body: nothing was forwarded.
        Err(_) => return ProxyError::BadRequest.response(path.path()),
    };
    worker.budget.request();
    let mut failed: Vec<usize> = Vec::new();
    loop {
        let Some(backend) = shared.view.load().pick(shared.balance, &failed) else {
            return ProxyError::BackendDown.response(path.path());
        };
        let guard = InFlight::new(backend);
        crate::trace::attempt(&req, guard.backend());
        let client = worker.client_for(guard.backend());
        let Some(request) = build(&client, &req, guard.backend(), path.clone()) else {
            return ProxyError::BadRequest.response(path.path());
        };
        let error = match send(request, &mut body, &shared, guard.backend()).await {
            Ok(res) => return respond(req.method() == Method::HEAD, res, guard, &shared),
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
        let retry = body.replayable()
            && failed.len() <= shared.max_retries
            && retry::is_safe(req.method(), &error)
            && worker.budget.try_retry();
        if !retry {
            return ProxyError::BadGateway.response(path.path());
        }
        backend.stats.retries.fetch_add(1, Relaxed);
        debug!(
            "retrying {} {} after {}: {error}",
            req.method(),
            path,
            backend.name
        );
    }
}

/// Reads a body of at most `limit` bytes whole, so that it can be sent again.
/// HTTP/2 frames bodies itself: without a Content-Length, the body is whatever DATA
/// frames come (none for most GETs), sent on chunked when there is any.
async fn read_ahead(
    headers: &HeaderMap,
    mut payload: Payload,
    limit: u64,
) -> Result<Body, PayloadError> {
    let h2 = matches!(payload, Payload::H2 { .. });
    let h2_unsized = h2 && !headers.contains_key(CONTENT_LENGTH);
    if headers.contains_key(TRANSFER_ENCODING) || h2_unsized {
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while size <= limit {
            match payload.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    size += chunk.len() as u64;
                    chunks.push(Ok(chunk));
                }
                None if h2_unsized && size == 0 => return Ok(Body::None),
                None => {
                    let mut bytes = BytesMut::with_capacity(size as usize);
                    for chunk in chunks.into_iter().flatten() {
                        bytes.extend_from_slice(&chunk);
                    }
                    let bytes = bytes.freeze();
                    return Ok(Body::Buffered {
                        bytes,
                        chunked: true,
                    });
                }
            }
        }
        let rest = stream::iter(chunks).chain(payload);
        return Ok(Body::Chunked(Some(Box::new(rest))));
    }
    match headers
        .contains_key(CONTENT_LENGTH)
        .then(|| headers::content_length(headers))
    {
        None => Ok(Body::None),
        Some(None) => Err(PayloadError::Incomplete(None)),
        Some(Some(n)) if n > limit => Ok(Body::Sized(n, Some(payload))),
        Some(Some(n)) => {
            let mut bytes = BytesMut::with_capacity(n as usize);
            while let Some(chunk) = payload.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            if bytes.len() as u64 != n {
                return Err(PayloadError::Incomplete(None));
            }
            Ok(Body::Buffered {
                bytes: bytes.freeze(),
                chunked: false,
            })
        }
    }
}

fn build(
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
    let peer = req.conn_data::<ConnInfo>().and_then(|c| c.peer.as_ref());
    // Sized once: growing the map header by header costs several reallocations.
    *request.headers_mut() = HeaderMap::with_capacity(req.headers().len() + 3);
    headers::to_backend(req.headers(), peer, request.headers_mut())?;
    if req.version() == Version::HTTP_2 {
        headers::host_from_authority(req.uri(), request.headers_mut())?;
    }
    Some(request)
}

/// Sends the request with its body. The response deadline covers connecting and the
/// response head; for a streamed upload it starts once the last byte is sent.
async fn send(
    request: awc::ClientRequest,
    body: &mut Body,
    shared: &Shared,
    backend: &Arc<Backend>,
) -> Result<awc::ClientResponse, SendRequestError> {
    if let Body::Buffered { bytes, .. } = body {
        backend
            .stats
            .rx_bytes
            .fetch_add(bytes.len() as u64, Relaxed);
    }
    let deadline = shared.connect_timeout + shared.response_timeout;
    match body {
        // `NoBody` rather than `send()`, which would add `Content-Length: 0`.
        Body::None => request.timeout(deadline).send_body(NoBody::new()).await,
        Body::Buffered {
            bytes,
            chunked: false,
        } => request.timeout(deadline).send_body(bytes.clone()).await,
        Body::Buffered {
            bytes,
            chunked: true,
        } => {
            let once = stream::once(std::future::ready(Ok::<_, PayloadError>(bytes.clone())));
            request.timeout(deadline).send_stream(once).await
        }
        Body::Sized(n, payload) => {
            let payload = payload.take().ok_or(SendRequestError::Timeout)?;
            let (upload, done) = Upload::new(CountRx::new(payload, backend));
            let sending = request.send_body(SizedStream::new(*n, upload));
            with_deadline(sending, done, shared.response_timeout).await
        }
        Body::Chunked(payload) => {
            let payload = payload.take().ok_or(SendRequestError::Timeout)?;
            let (upload, done) = Upload::new(CountRx::new(payload, backend));
            with_deadline(request.send_stream(upload), done, shared.response_timeout).await
        }
    }
}

async fn with_deadline(
    sending: awc::SendClientRequest,
    upload_done: futures_channel::oneshot::Receiver<()>,
    timeout: Duration,
) -> Result<awc::ClientResponse, SendRequestError> {
    let deadline = Box::pin(async move {
        let _ = upload_done.await;
        actix_rt::time::sleep(timeout).await;
    });
    match select(sending, deadline).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => Err(SendRequestError::Timeout),
    }
}

fn respond(
    head_request: bool,
    res: awc::ClientResponse,
    guard: InFlight,
    shared: &Shared,
) -> HttpResponse {
    let status = res.status();
    if shared.max_5xx > 0 {
        track_5xx(guard.backend(), status, shared);
    }
    let mut out = HttpResponse::build(status);
    headers::to_client(res.headers(), status, &mut out);
    let length = headers::content_length(res.headers());
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return match (head_request, length) {
            // HEAD keeps the length of the body it would have had.
            (true, Some(n)) => out.body(SizedStream::new(
                n,
                stream::empty::<Result<Bytes, PayloadError>>(),
            )),
            _ => out.body(NoBody::new()),
        };
    }
    let relay = Relay::new(res, guard, length);
    match length {
        Some(n) => out.body(SizedStream::new(n, relay)),
        None => out.streaming(relay),
    }
}

/// Outlier detection: `--max-5xx` consecutive 5xx answers eject the backend.
fn track_5xx(backend: &Backend, status: StatusCode, shared: &Shared) {
    let streak = &backend.stats.consecutive_5xx;
    if status.is_server_error() {
        if streak.fetch_add(1, Relaxed) + 1 == shared.max_5xx {
            shared.pool.do_send(Eject { id: backend.id });
        }
    } else if streak.load(Relaxed) != 0 {
        streak.store(0, Relaxed);
    }
}
