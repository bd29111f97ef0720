//! Sending one HTTP request to a backend: the head written by the header rules, the
//! body as read ahead or streamed; the retry engine (`attempts`) picks the backend
//! and retries elsewhere when that is safe. A read without a body can be sent twice
//! at once (a hedge), and an answer shedding load (`429`, `503`) is told to the
//! backend's stats; S3's `503 SlowDown` may go to another backend.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::http::{Method, StatusCode, Version};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::{select, Either};

use crate::conn::conn_info::ConnInfo;
use crate::pool::backend::{Backend, InFlight};
use crate::pool::load::retry_after;
use crate::proxy::attempts::{Attempt, Attempts, Failed};
use crate::proxy::headers::{self, Target};
use crate::proxy::request_body::Upload;
use crate::proxy::retry;
use crate::proxy::shared::{Shared, Worker};
use crate::proxy::slowdown;
use crate::upstream::request::Body;
use crate::upstream::Response;

/// One client request on its way to a backend.
pub struct Exchange<'a> {
    pub req: &'a HttpRequest,
    /// Path and query, byte-exact.
    pub path: &'a str,
    pub conn: Option<&'a ConnInfo>,
    pub shared: &'a Shared,
    pub worker: &'a Worker,
}

impl Exchange<'_> {
    /// The raw path without the query, as error bodies name it.
    pub fn resource(&self) -> &str {
        self.path.split_once('?').map_or(self.path, |(p, _)| p)
    }

    /// Sends the request to a backend picked from the view, retrying elsewhere when
    /// that is safe, with `extra` added to its head. `Err` is the answer for the
    /// client when no backend gave one.
    pub async fn forward(
        &self,
        body: &mut Body,
        upload: Option<&Upload>,
        extra: Option<(&str, &str)>,
    ) -> Result<(Response, InFlight), HttpResponse> {
        let req = self.req;
        let mut http = Http {
            ex: self,
            body: Some(body),
            upload,
            extra,
            head_request: req.method() == Method::HEAD,
            // A pooled connection found closed may be replaced when sending twice is
            // harmless.
            idempotent: retry::idempotent(req.method()),
            authority: (req.version() == Version::HTTP_2)
                .then(|| req.uri().authority().map(|a| a.as_str()))
                .flatten(),
        };
        let attempts = Attempts {
            req,
            resource: self.resource(),
            shared: self.shared,
            worker: self.worker,
        };
        attempts.run(&mut http).await
    }
}

/// An HTTP request as the retry engine sends it.
struct Http<'a, 'x> {
    ex: &'a Exchange<'x>,
    /// `None`: no body (a hedge, which holds none of the client's).
    body: Option<&'a mut Body>,
    upload: Option<&'a Upload>,
    extra: Option<(&'a str, &'a str)>,
    head_request: bool,
    idempotent: bool,
    authority: Option<&'a str>,
}

impl Attempt for Http<'_, '_> {
    type Answer = Response;

    fn replayable(&self) -> bool {
        self.body.as_deref().map_or(true, Body::replayable)
    }

    /// Only a GET or HEAD without a body: nothing but the head is sent, so the two
    /// exchanges share nothing of the client's, and sending it twice is harmless.
    fn hedge(&self) -> Option<Self> {
        let read = matches!(*self.ex.req.method(), Method::GET | Method::HEAD);
        (read && self.bodiless() && self.upload.is_none()).then_some(Http {
            ex: self.ex,
            body: None,
            upload: None,
            extra: self.extra,
            head_request: self.head_request,
            idempotent: self.idempotent,
            authority: self.authority,
        })
    }

    /// A `429` or a `503` says the backend sheds load (p2c leaves it alone for its
    /// `Retry-After`); only S3's `503 SlowDown`, to an idempotent request without a
    /// body, may go to another backend (a `429` is as often a limit on this client,
    /// which another node would enforce too). The body is looked at only then.
    async fn shedding(&mut self, answer: &mut Response, backend: &Backend) -> bool {
        let status = answer.head.status;
        if !matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            return false;
        }
        backend.stats.shedding(retry_after(&answer.head.headers));
        status == StatusCode::SERVICE_UNAVAILABLE
            && self.idempotent
            && self.bodiless()
            && slowdown::is_slowdown(answer, self.head_request).await
    }

    async fn send(&mut self, backend: &Arc<Backend>) -> Result<Response, Failed> {
        let ex = self.ex;
        let mut none = Body::None;
        let body = match &mut self.body {
            Some(body) => &mut **body,
            None => &mut none,
        };
        if let Body::Buffered { bytes, .. } = body {
            backend
                .stats
                .rx_bytes
                .fetch_add(bytes.len() as u64, Relaxed);
        }
        let target = Target {
            method: ex.req.method(),
            path: ex.path,
            peer: ex.conn.and_then(|c| c.peer.as_ref()),
            authority: self.authority,
            backend: backend.endpoint.authority.as_str(),
            framing: body.framing(),
            extra: self.extra,
        };
        let head = |local: Option<&str>| headers::request_head(ex.req.headers(), &target, local);
        let upstream = &ex.worker.upstream;
        let (head_request, idempotent) = (self.head_request, self.idempotent);
        // Made where it is awaited: a future kept in a variable first would take
        // room of its own in this one's state too.
        let Some(upload) = self.upload else {
            return Ok(upstream
                .exchange(backend, head, body, head_request, idempotent)
                .await?);
        };
        let exchange = pin!(upstream.exchange(backend, head, body, head_request, idempotent));
        let broken = poll_fn(|cx| upload.poll_broken(cx));
        let sent = match select(exchange, pin!(broken)).await {
            Either::Left((sent, _)) => Ok(sent?),
            // actix drops the connection right after it finds a chunk malformed: the
            // 400 must be written now, not once the backend has read what came before.
            Either::Right(_) => Err(Failed::Client),
        };
        sent
    }
}

impl Http<'_, '_> {
    fn bodiless(&self) -> bool {
        matches!(self.body.as_deref(), None | Some(Body::None))
    }
}
