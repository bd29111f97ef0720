//! Sending one HTTP request to a backend: the head written by the header rules, the
//! body as read ahead or streamed; the retry engine (`attempts`) picks the backend
//! and retries elsewhere when that is safe.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::http::{Method, Version};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::{select, Either};

use crate::conn::conn_info::ConnInfo;
use crate::pool::backend::{Backend, InFlight};
use crate::proxy::attempts::{Attempt, Attempts, Failed};
use crate::proxy::headers::{self, Target};
use crate::proxy::request_body::Upload;
use crate::proxy::retry;
use crate::proxy::shared::{Shared, Worker};
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
            body,
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
    body: &'a mut Body,
    upload: Option<&'a Upload>,
    extra: Option<(&'a str, &'a str)>,
    head_request: bool,
    idempotent: bool,
    authority: Option<&'a str>,
}

impl Attempt for Http<'_, '_> {
    type Answer = Response;

    fn replayable(&self) -> bool {
        self.body.replayable()
    }

    async fn send(&mut self, backend: &Arc<Backend>) -> Result<Response, Failed> {
        let ex = self.ex;
        if let Body::Buffered { bytes, .. } = &self.body {
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
            framing: self.body.framing(),
            extra: self.extra,
        };
        let head = |local: Option<&str>| headers::request_head(ex.req.headers(), &target, local);
        let exchange = ex.worker.upstream.exchange(
            backend,
            head,
            self.body,
            self.head_request,
            self.idempotent,
        );
        let Some(upload) = self.upload else {
            return Ok(exchange.await?);
        };
        let broken = poll_fn(|cx| upload.poll_broken(cx));
        let sent = match select(pin!(exchange), pin!(broken)).await {
            Either::Left((sent, _)) => Ok(sent?),
            // actix drops the connection right after it finds a chunk malformed: the
            // 400 must be written now, not once the backend has read what came before.
            Either::Right(_) => Err(Failed::Client),
        };
        sent
    }
}
