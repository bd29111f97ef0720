//! Tracing proxied requests: the middleware that wraps each exchange, counts its
//! bytes and sends its event when the response body ends, and the hooks the proxy
//! calls to say which backend served and why a request failed.

use std::fmt::Display;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::Stream;

use crate::observe::trace::event::{Event, Kind};
use crate::observe::trace::redact::{redact_headers, redact_target};
use crate::observe::trace::{requests_on, tracer};
use crate::pool::backend::Backend;

/// What the proxy tells the trace middleware about a request, in its extensions.
struct Served {
    backend: Arc<Backend>,
    error: Option<String>,
    /// Whose answer a hedged request used.
    hedged: Option<&'static str>,
    /// The backend that shed the request (`503 SlowDown`).
    slowdown: Option<String>,
}

/// The proxy picked `backend` for the request (again, on a retry: the error before
/// goes, what was noted of a hedge or a SlowDown stays).
#[inline]
pub fn attempt(req: &HttpRequest, backend: &Arc<Backend>) {
    if requests_on() {
        let mut ext = req.extensions_mut();
        match ext.get_mut::<Served>() {
            Some(served) => {
                served.backend = backend.clone();
                served.error = None;
            }
            None => {
                ext.insert(Served {
                    backend: backend.clone(),
                    error: None,
                    hedged: None,
                    slowdown: None,
                });
            }
        }
    }
}

/// The request was hedged and `backend`'s answer is used: the first request's or
/// the hedge's (`won`). An error of the other one is not the request's.
#[inline]
pub fn hedged(req: &HttpRequest, backend: &Arc<Backend>, won: &'static str) {
    if requests_on() {
        attempt(req, backend);
        if let Some(served) = req.extensions_mut().get_mut::<Served>() {
            served.hedged = Some(won);
        }
    }
}

/// `backend` answered `503 SlowDown`, and the request goes to another one.
#[inline]
pub fn slowdown(req: &HttpRequest, backend: &Backend) {
    if requests_on() {
        if let Some(served) = req.extensions_mut().get_mut::<Served>() {
            served.slowdown = Some(backend.name.clone());
        }
    }
}

/// The request failed on the backend last picked before a response head arrived.
#[inline]
pub fn failed(req: &HttpRequest, error: &dyn Display) {
    if requests_on() {
        if let Some(served) = req.extensions_mut().get_mut::<Served>() {
            served.error = Some(error.to_string());
        }
    }
}

/// Traces every request except sidekick's own paths; installed only with
/// `--trace application|all`.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<Traced>, actix_web::Error> {
    let tracer = match tracer() {
        Some(t) if t.requests && !crate::config::paths::is_own(req.request()) => t,
        _ => return Ok(next.call(req).await?.map_body(|_, b| Traced::off(b))),
    };
    let time = SystemTime::now();
    let started = Instant::now();
    let client = req.peer_addr();
    let source = source(req.headers(), client);
    let method = req.method().to_string();
    let path = redact_target(
        req.uri()
            .path_and_query()
            .map_or(req.path(), |p| p.as_str()),
    );
    let request_headers = tracer.debug.then(|| redact_headers(req.headers()));
    let bytes_in = Arc::new(AtomicU64::new(0));
    let (http_req, payload) = req.into_parts();
    let counted: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(CountIn {
        inner: payload,
        n: bytes_in.clone(),
    });
    let req = ServiceRequest::from_parts(http_req, Payload::from(counted));
    let res = next.call(req).await?;
    let mut served = res.request().extensions_mut().remove::<Served>();
    let (hedged, slowdown) = match served.as_mut() {
        Some(s) => (s.hedged, s.slowdown.take()),
        None => (None, None),
    };
    let event = Event {
        kind: Kind::Request,
        time,
        client,
        source,
        method,
        path,
        status: res.status().as_u16(),
        error: served.as_ref().and_then(|s| s.error.clone()),
        backend: served.map(|s| s.backend.name.clone()),
        duration: Duration::ZERO,
        first_byte: None,
        bytes_in: 0,
        bytes_out: 0,
        cache: cache_result(res.headers()),
        hedged,
        slowdown,
        request_headers,
        response_headers: tracer.debug.then(|| redact_headers(res.headers())),
    };
    let bodiless =
        event.method == "HEAD" || event.status < 200 || event.status == 204 || event.status == 304;
    Ok(res.map_body(|_, body| {
        let promised = match body.size() {
            BodySize::Sized(n) if !bodiless => n,
            _ => 0,
        };
        Traced {
            body: body.boxed(),
            pending: Some(Pending {
                event,
                started,
                bytes_in,
                promised,
            }),
        }
    }))
}

/// The request's source as the Go tool's trace named it (`client`): the first
/// address of the client's `X-Forwarded-For`, else its `X-Real-IP`, else the `for=`
/// of its `Forwarded`, else the client's own IP.
fn source(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<String> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    if let Some(chain) = text("x-forwarded-for") {
        return chain
            .split(',')
            .next()
            .map(|first| first.trim().to_string());
    }
    if let Some(real) = text("x-real-ip") {
        return Some(real.to_string());
    }
    if let Some(forwarded) = text("forwarded") {
        if let Some(at) = forwarded.to_ascii_lowercase().find("for=") {
            let value = &forwarded[at + 4..];
            let end = value.find([';', ',', ' ']).unwrap_or(value.len());
            return Some(value[..end].trim_matches('"').to_string());
        }
    }
    peer.map(|p| p.ip().to_canonical().to_string())
}

/// The `X-Cache` result sidekick set on the answer.
fn cache_result(headers: &HeaderMap) -> Option<&'static str> {
    match headers.get("x-cache")?.as_bytes() {
        b"HIT" => Some("HIT"),
        b"MISS" => Some("MISS"),
        b"BYPASS" => Some("BYPASS"),
        _ => None,
    }
}

/// The request body as it streams in, counted.
struct CountIn {
    inner: Payload,
    n: Arc<AtomicU64>,
}

impl Stream for CountIn {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.n.fetch_add(chunk.len() as u64, Relaxed);
        }
        next
    }
}

struct Pending {
    event: Event,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    /// The body's announced length (0 when none): fewer bytes sent means it broke.
    promised: u64,
}

/// The response body on its way to the client: counts bytes, notes a broken body, and
/// sends the event when the body ends or is dropped (client gone).
pub struct Traced {
    body: BoxBody,
    pending: Option<Pending>,
}

impl Traced {
    fn off(body: impl MessageBody + 'static) -> Traced {
        Traced {
            body: body.boxed(),
            pending: None,
        }
    }

    fn finish(&mut self) {
        let (Some(p), Some(tracer)) = (self.pending.take(), tracer()) else {
            return;
        };
        let mut event = p.event;
        event.duration = p.started.elapsed();
        event.bytes_in = p.bytes_in.load(Relaxed);
        if event.bytes_out < p.promised && event.error.is_none() {
            event.error = Some(format!(
                "response body cut after {} of {} bytes",
                event.bytes_out, p.promised
            ));
        }
        tracer.send(event);
    }
}

impl MessageBody for Traced {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(p) = &mut self.pending {
                    p.event.bytes_out += chunk.len() as u64;
                    if !chunk.is_empty() && p.event.first_byte.is_none() {
                        p.event.first_byte = Some(p.started.elapsed());
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(p) = &mut self.pending {
                    p.event.error = Some(format!("response body: {e}"));
                }
            }
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
        }
        next
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn source_of(headers: &[(&'static str, &'static str)]) -> Option<String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        source(&map, "[::ffff:127.0.0.1]:5000".parse().ok())
    }

    #[test]
    fn the_source_is_the_first_forwarded_address_else_the_peer() {
        let chain = ("x-forwarded-for", "203.0.113.7, 10.0.0.1");
        let real = ("x-real-ip", "198.51.100.2");
        let forwarded = (
            "forwarded",
            "For=\"[2001:db8::1]\";proto=https, for=10.0.0.2",
        );
        assert_eq!(source_of(&[real, chain]).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            source_of(&[forwarded, real]).as_deref(),
            Some("198.51.100.2")
        );
        assert_eq!(source_of(&[forwarded]).as_deref(), Some("[2001:db8::1]"));
        assert_eq!(source_of(&[]).as_deref(), Some("127.0.0.1"));
    }
}
