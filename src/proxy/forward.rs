//! Sending one request to a backend: picked from the Pool's view, the head written
//! by the header rules, retried elsewhere when that is safe.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;

use actix_web::http::{Method, Version};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::{select, Either};
use log::debug;

use crate::pool::backend::InFlight;
use crate::pool::messages::Failure;
use crate::proxy::conn_info::ConnInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::{self, Target};
use crate::proxy::request_body::Upload;
use crate::proxy::retry;
use crate::proxy::shared::{Shared, Worker};
use crate::upstream::request::Body;
use crate::upstream::{self, Response};

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
        let (req, shared, worker, conn) = (self.req, self.shared, self.worker, self.conn);
        let resource = self.resource();
        let method = req.method();
        let head_request = method == Method::HEAD;
        // A pooled connection found closed may be replaced when sending twice is harmless.
        let idempotent = retry::idempotent(method);
        let authority = (req.version() == Version::HTTP_2)
            .then(|| req.uri().authority().map(|a| a.as_str()))
            .flatten();
        let mut failed: Vec<usize> = Vec::new();
        loop {
            let Some(backend) = shared.view.load().pick(shared.balance, &failed) else {
                return Err(ProxyError::BackendDown.response(resource));
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
                path: self.path,
                peer: conn.and_then(|c| c.peer.as_ref()),
                authority,
                backend: backend.endpoint.authority.as_str(),
                framing: body.framing(),
                extra,
            };
            let head = |local| headers::request_head(req.headers(), &target, local);
            let exchange = worker
                .upstream
                .exchange(backend, head, body, head_request, idempotent);
            let sent = match upload {
                None => exchange.await,
                Some(upload) => {
                    let broken = poll_fn(|cx| upload.poll_broken(cx));
                    match select(pin!(exchange), pin!(broken)).await {
                        Either::Left((sent, _)) => sent,
                        // actix drops the connection right after it finds a chunk
                        // malformed: the 400 must be written now, not once the backend
                        // has read what came before.
                        Either::Right(_) => return Err(ProxyError::BadRequest.response(resource)),
                    }
                }
            };
            let error = match sent {
                Ok(res) => return Ok((res, guard)),
                // The client's own body failed: it went away, the backend did nothing wrong.
                Err(upstream::Error::Body(_)) => {
                    return Err(ProxyError::BadRequest.response(resource))
                }
                Err(e) => e,
            };
            crate::observe::trace::requests::failed(req, &error);
            if error.out_of_files() {
                // Refused here, like a connection over the limit; the backend is fine.
                return Err(ProxyError::TooManyConnections.response(resource));
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
                return Err(ProxyError::BadGateway.response(resource));
            }
            backend.stats.retries.fetch_add(1, Relaxed);
            debug!(
                "retrying {method} {} after {}: {error}",
                self.path, backend.name
            );
        }
    }
}
