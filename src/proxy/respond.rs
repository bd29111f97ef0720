//! The client's answer from a backend's: its head as the backend sent it (less the
//! hop-by-hop headers), its body relayed, and the backend's 5xx streak kept.

use std::sync::atomic::Ordering::Relaxed;

use actix_web::body::{BodyStream, BoxBody, None as NoBody, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::stream;

use crate::cache::fill::{Filler, Tee};
use crate::pool::backend::{Backend, InFlight};
use crate::pool::messages::Eject;
use crate::proxy::relay::Relay;
use crate::proxy::shared::Shared;
use crate::upstream::{Reply, Response};

/// The client's answer from a backend's. `tee` carries a cacheable request's body
/// through the cache (counted, and copied into a fill when there is one).
pub fn respond(
    head_request: bool,
    res: Response,
    guard: InFlight,
    shared: &Shared,
    tee: Option<Option<Filler>>,
) -> HttpResponse {
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
            if let Some(filler) = tee {
                crate::cache::fill::whole(&bytes, filler);
            }
            HttpResponse::with_body(head.status, BoxBody::new(bytes))
        }
        Reply::Stream(stream) => {
            let relay = Relay::new(stream, guard, head.length);
            match (head.length, tee) {
                (Some(n), None) => {
                    HttpResponse::with_body(head.status, BoxBody::new(SizedStream::new(n, relay)))
                }
                (None, None) => {
                    HttpResponse::with_body(head.status, BoxBody::new(BodyStream::new(relay)))
                }
                (Some(n), Some(filler)) => {
                    let tee = Tee::new(relay, filler);
                    HttpResponse::with_body(head.status, BoxBody::new(SizedStream::new(n, tee)))
                }
                (None, Some(filler)) => {
                    let tee = Tee::new(relay, filler);
                    HttpResponse::with_body(head.status, BoxBody::new(BodyStream::new(tee)))
                }
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
