//! The catch-all forwarding handler: refuse what must not pass, pick a backend from
//! the Pool's view, forward, retry elsewhere when that is safe, stream the answer.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use actix::Addr;
use actix_web::body::{BodyStream, BoxBody, None as NoBody, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::{Method, StatusCode, Version};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::future::{select, Either};
use futures_util::stream;
use log::debug;

use crate::config::paths::is_own;
use crate::config::{Balance, Config};
use crate::pool::backend::{Backend, InFlight};
use crate::pool::messages::{Eject, Failure};
use crate::pool::view::SharedView;
use crate::pool::Pool;
use crate::proxy::closing;
use crate::proxy::conn_info::ConnInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Target};
use crate::proxy::relay::Relay;
use crate::proxy::request_body::read_ahead;
use crate::proxy::retry;
use crate::proxy::upgrade;
use crate::proxy::validate::{self, Limits};
use crate::upstream::request::Body;
use crate::upstream::{self, Reply, Response, Upstream};

/// Settings and state every worker shares.
pub struct Shared {
    pub view: SharedView,
    pub pool: Addr<Pool>,
    pub balance: Balance,
    pub limits: Limits,
    pub max_retries: usize,
    pub retry_buffer: u64,
    pub max_5xx: u32,
    pub upgrade_idle_timeout: Duration,
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
            max_5xx: cfg.max_5xx,
            upgrade_idle_timeout: cfg.upgrade_idle_timeout,
        }
    }
}

/// What each worker owns: its backend client and retry budget.
pub struct Worker {
    upstream: Upstream,
    budget: retry::Budget,
}

impl Worker {
    pub fn new(cfg: &Config) -> Self {
        Worker {
            upstream: Upstream::new(cfg),
            budget: retry::Budget::new(cfg.retry_budget),
        }
    }
}

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let conn = req.conn_data::<ConnInfo>();
    let h1 = req.version() < Version::HTTP_2;
    if h1 && conn.is_some_and(ConnInfo::closing) {
        return closing::unanswered().await;
    }
    let mut res = answer(&req, payload, &shared, &worker, conn).await;
    if h1 && closing::closes(&req, &res) {
        closing::close(&mut res);
        if let Some(conn) = conn {
            conn.mark_closing();
        }
    }
    res
}

async fn answer(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
    worker: &Worker,
    conn: Option<&ConnInfo>,
) -> HttpResponse {
    if is_own(req) {
        // An own answer reads the body sent with it (one past --retry-buffer is
        // refused, and the connection closes): left unread, actix would close after
        // the answer and still start the requests read behind it.
        let body = read_ahead(req.headers(), payload.into_inner(), shared.retry_buffer).await;
        if !matches!(body, Ok((Body::None | Body::Buffered { .. }, _))) {
            return ProxyError::BadRequest.response(req.path());
        }
        return crate::admin::route(req, &shared.view, &shared.pool).await;
    }
    if conn.is_some_and(ConnInfo::over_limit) {
        return ProxyError::TooManyConnections.response(req.path());
    }
    if let Err(e) = validate::check(req.head(), shared.limits) {
        return e.response(req.path());
    }
    match upgrade::wanted(req.head()) {
        Ok(false) => {}
        Ok(true) => return forward_upgrade(req, payload, shared, worker).await,
        Err(e) => return e.response(req.path()),
    }
    let Some(path) = req.uri().path_and_query() else {
        return ProxyError::BadRequest.response(req.path());
    };
    let (mut body, upload) =
        match read_ahead(req.headers(), payload.into_inner(), shared.retry_buffer).await {
            Ok(read) => read,
            // The client went away or sent a broken body: nothing was forwarded.
            Err(_) => return ProxyError::BadRequest.response(path.path()),
        };
    let method = req.method();
    let head_request = method == Method::HEAD;
    // A pooled connection found closed may be replaced when sending twice is harmless.
    let idempotent = retry::idempotent(method);
    let authority = (req.version() == Version::HTTP_2)
        .then(|| req.uri().authority().map(|a| a.as_str()))
        .flatten();
    worker.budget.request();
    let mut failed: Vec<usize> = Vec::new();
    loop {
        let Some(backend) = shared.view.load().pick(shared.balance, &failed) else {
            return ProxyError::BackendDown.response(path.path());
        };
        let guard = InFlight::new(backend);
        let backend = guard.backend();
        crate::observe::trace::requests::attempt(req, backend);
        if let Body::Buffered { bytes, .. } = &body {
            backend
                .stats
                .rx_bytes
                .fetch_add(bytes.len() as u64, Relaxed);
        }
        let target = Target {
            method,
            path: path.as_str(),
            peer: conn.and_then(|c| c.peer.as_ref()),
            authority,
            backend: backend.endpoint.authority.as_str(),
            framing: body.framing(),
        };
        let head = headers::request_head(req.headers(), &target);
        let exchange =
            worker
                .upstream
                .exchange(backend, &head, &mut body, head_request, idempotent);
        let sent = match &upload {
            None => exchange.await,
            Some(upload) => {
                let broken = poll_fn(|cx| upload.poll_broken(cx));
                match select(pin!(exchange), pin!(broken)).await {
                    Either::Left((sent, _)) => sent,
                    // actix drops the connection right after it finds a chunk malformed:
                    // the 400 must be written now, not once the backend has read
                    // what came before.
                    Either::Right(_) => return ProxyError::BadRequest.response(path.path()),
                }
            }
        };
        let error = match sent {
            Ok(res) => return respond(head_request, res, guard, shared),
            // The client's own body failed: it went away, the backend did nothing wrong.
            Err(upstream::Error::Body(_)) => return ProxyError::BadRequest.response(path.path()),
            Err(e) => e,
        };
        crate::observe::trace::requests::failed(req, &error);
        if error.out_of_files() {
            // Refused here, like a connection over the limit; the backend is fine.
            return ProxyError::TooManyConnections.response(path.path());
        }
        if matches!(error, upstream::Error::Stale) {
            // Counted, but the backend stays up: the race was no sign of it failing.
            backend.stats.failures.fetch_add(1, Relaxed);
        } else {
            shared.pool.do_send(Failure {
                id: backend.id,
                error: error.to_string(),
            });
        }
        failed.push(backend.id);
        let retry = body.replayable()
            && failed.len() <= shared.max_retries
            && retry::is_safe(method, &error)
            && worker.budget.try_retry();
        if !retry {
            return ProxyError::BadGateway.response(path.path());
        }
        backend.stats.retries.fetch_add(1, Relaxed);
        debug!("retrying {method} {path} after {}: {error}", backend.name);
    }
}

/// A WebSocket request, through `proxy::upgrade`.
async fn forward_upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
    worker: &Worker,
) -> HttpResponse {
    let route = upgrade::Route {
        view: &shared.view,
        pool: &shared.pool,
        balance: shared.balance,
        max_retries: shared.max_retries,
        upstream: &worker.upstream,
        budget: &worker.budget,
        idle_timeout: shared.upgrade_idle_timeout,
    };
    match upgrade::forward(req, payload.into_inner(), route).await {
        upgrade::Outcome::Answer(res) => res,
        upgrade::Outcome::Refused(res, guard) => respond(false, res, guard, shared),
    }
}

fn respond(head_request: bool, res: Response, guard: InFlight, shared: &Shared) -> HttpResponse {
    let Response { head, body } = res;
    if shared.max_5xx > 0 {
        track_5xx(guard.backend(), head.status, shared);
    }
    let mut out = match body {
        // HEAD keeps the length of the body it would have had.
        Reply::Empty => {
            let body = match head.length {
                // HEAD keeps the length of the body it would have had.
                Some(n) if head_request => BoxBody::new(SizedStream::new(
                    n,
                    stream::empty::<Result<Bytes, PayloadError>>(),
                )),
                _ if head_request || bodiless(head.status) => BoxBody::new(NoBody::new()),
                // `Content-Length: 0`.
                _ => BoxBody::new(()),
            };
            HttpResponse::with_body(head.status, body)
        }
        Reply::Whole(bytes) => {
            let backend = guard.backend();
            backend
                .stats
                .tx_bytes
                .fetch_add(bytes.len() as u64, Relaxed);
            HttpResponse::with_body(head.status, BoxBody::new(bytes))
        }
        Reply::Stream(stream) => {
            let relay = Relay::new(stream, guard, head.length);
            match head.length {
                Some(n) => {
                    HttpResponse::with_body(head.status, BoxBody::new(SizedStream::new(n, relay)))
                }
                None => HttpResponse::with_body(head.status, BoxBody::new(BodyStream::new(relay))),
            }
        }
    };
    *out.headers_mut() = head.headers;
    out
}

/// Statuses that never have a body, whatever the headers say.
fn bodiless(status: StatusCode) -> bool {
    status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
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
