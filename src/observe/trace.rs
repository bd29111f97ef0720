//! Request tracing (`--trace`): one line per proxied request and/or health check, as
//! text or JSON (`--json`), with headers under `--debug` (secrets redacted), filtered
//! by `--errors` and `--status-code`. Lines go through a bounded channel to a writer
//! thread: when the output cannot keep up they are dropped and counted, and requests
//! never wait. With tracing off, the hooks cost one branch.

use std::fmt::Display;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header::HeaderMap;
use actix_web::http::{StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{json, Map, Value};

use crate::config::trace_flags::{Args, Mode};
use crate::observe::metrics::TRACE_DROPPED;
use crate::pool::backend::Backend;
use crate::pool::health::CheckDone;

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;
const REDACTED: &str = "*REDACTED*";

/// One traced exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: Kind,
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    pub method: String,
    pub path: String,
    /// 0 when no response arrived.
    pub status: u16,
    pub error: Option<String>,
    pub backend: Option<String>,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Health,
}

pub struct Tracer {
    requests: bool,
    health: bool,
    json: bool,
    debug: bool,
    errors: bool,
    codes: Vec<u16>,
    queue: SyncSender<Event>,
    dropped: &'static AtomicU64,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts tracing to stdout when `--trace` is given (and not `--quiet`).
pub fn init(args: &Args, json: bool, quiet: bool) {
    let Some(mode) = args.trace.filter(|_| !quiet) else {
        return;
    };
    let (tracer, lines) = Tracer::new(mode, args, json, QUEUE, &TRACE_DROPPED);
    let json = tracer.json;
    let spawned = std::thread::Builder::new()
        .name("trace".into())
        .spawn(move || write_lines(lines, std::io::stdout(), json));
    match spawned {
        Ok(_) => {
            let _ = TRACER.set(tracer);
        }
        Err(e) => log::error!("tracing disabled: {e}"),
    }
}

fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// True when proxied requests are traced (the server then installs `middleware`).
pub fn requests_on() -> bool {
    tracer().is_some_and(|t| t.requests)
}

impl Tracer {
    fn new(
        mode: Mode,
        args: &Args,
        json: bool,
        capacity: usize,
        dropped: &'static AtomicU64,
    ) -> (Tracer, Receiver<Event>) {
        let (queue, lines) = sync_channel(capacity);
        let tracer = Tracer {
            requests: matches!(mode, Mode::All | Mode::Application),
            health: matches!(mode, Mode::All | Mode::Minio),
            json,
            debug: args.debug,
            errors: args.errors,
            codes: args.status_code.clone(),
            queue,
            dropped,
        };
        (tracer, lines)
    }

    /// `--errors` and `--status-code` must both let the event through.
    fn wanted(&self, status: u16, error: bool) -> bool {
        let failed = error || status == 0 || status >= 400;
        (!self.errors || failed) && (self.codes.is_empty() || self.codes.contains(&status))
    }

    fn send(&self, event: Event) {
        if !self.wanted(event.status, event.error.is_some()) {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.queue.try_send(event) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

/// The writer thread: flushes whenever the queue is empty, ends when the senders do.
fn write_lines(lines: Receiver<Event>, out: impl Write, json: bool) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(mut event) = lines.recv() {
        loop {
            let written = if json {
                writeln!(out, "{}", to_json(&event))
            } else {
                write_text(&mut out, &event)
            };
            if written.is_err() {
                return;
            }
            match lines.try_recv() {
                Ok(next) => event = next,
                Err(_) => break,
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `TIME CLIENT METHOD PATH STATUS BACKEND DURATION in=N out=N [error="…"]`, then with
/// `--debug` one `> name: value` line per request header and `< name: value` per
/// response header. Health checks show `health` for the client.
fn write_text(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    let client = match (e.kind, e.client) {
        (Kind::Health, _) => "health".to_string(),
        (Kind::Request, Some(c)) => c.to_string(),
        (Kind::Request, None) => "-".to_string(),
    };
    write!(
        out,
        "{} {client} {} {} {} {} {} in={} out={}",
        rfc3339(e.time),
        e.method,
        e.path,
        e.status,
        e.backend.as_deref().unwrap_or("-"),
        crate::observe::human::duration(e.duration),
        e.bytes_in,
        e.bytes_out,
    )?;
    if let Some(error) = &e.error {
        write!(out, " error={error:?}")?;
    }
    writeln!(out)?;
    for (name, value) in e.request_headers.iter().flatten() {
        writeln!(out, "  > {name}: {value}")?;
    }
    for (name, value) in e.response_headers.iter().flatten() {
        writeln!(out, "  < {name}: {value}")?;
    }
    Ok(())
}

/// The JSON form; its field names are documented in the README and kept stable.
fn to_json(e: &Event) -> Value {
    let headers = |h: &Option<Vec<(String, String)>>| {
        h.as_ref().map(|h| {
            let mut map = Map::new();
            for (name, value) in h {
                match map.get_mut(name) {
                    Some(Value::String(v)) => {
                        v.push_str(", ");
                        v.push_str(value);
                    }
                    _ => {
                        map.insert(name.clone(), Value::String(value.clone()));
                    }
                }
            }
            Value::Object(map)
        })
    };
    let mut v = json!({
        "time": rfc3339(e.time),
        "type": match e.kind { Kind::Request => "request", Kind::Health => "health" },
        "client": e.client.map(|c| c.to_string()),
        "method": e.method,
        "path": e.path,
        "status": e.status,
        "error": e.error,
        "backend": e.backend,
        "duration_ms": e.duration.as_secs_f64() * 1e3,
        "bytes_in": e.bytes_in,
        "bytes_out": e.bytes_out,
    });
    if let Value::Object(map) = &mut v {
        if let Some(h) = headers(&e.request_headers) {
            map.insert("request_headers".into(), h);
        }
        if let Some(h) = headers(&e.response_headers) {
            map.insert("response_headers".into(), h);
        }
    }
    v
}

// ------------------------------------------------------------------ redaction

/// Path and query, with the values of signature and token query parameters redacted.
pub fn redact_target(target: &str) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| {
            let name = param.split_once('=').map_or(param, |(n, _)| n);
            if secret_param(name) {
                format!("{name}={REDACTED}")
            } else {
                param.to_string()
            }
        })
        .collect();
    format!("{path}?{}", params.join("&"))
}

fn secret_param(name: &str) -> bool {
    ["X-Amz-Signature", "X-Amz-Security-Token", "Signature"]
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
}

/// Header values as text, credentials redacted: the signature of an `Authorization`
/// header (other schemes: the whole value), signature and token headers, cookies.
fn redact_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let shown = match name.as_str() {
                "authorization" | "proxy-authorization" => redact_authorization(&value),
                "x-amz-signature" | "x-amz-security-token" | "cookie" | "set-cookie" => {
                    REDACTED.to_string()
                }
                _ => value.into_owned(),
            };
            (name.as_str().to_string(), shown)
        })
        .collect()
}

/// `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…` keeps everything but
/// the signature; any other scheme keeps only the scheme name.
fn redact_authorization(value: &str) -> String {
    if let Some(at) = value.find("Signature=") {
        let end = value[at..].find(',').map_or(value.len(), |e| at + e);
        return format!("{}Signature={REDACTED}{}", &value[..at], &value[end..]);
    }
    match value.split_once(' ') {
        Some((scheme, _)) => format!("{scheme} {REDACTED}"),
        None => REDACTED.to_string(),
    }
}

// ------------------------------------------------------------------ proxy hooks

/// What the proxy tells the trace middleware about a request, in its extensions.
struct Served {
    backend: Arc<Backend>,
    error: Option<String>,
}

/// The proxy picked `backend` for the request (again, on a retry).
#[inline]
pub fn attempt(req: &HttpRequest, backend: &Arc<Backend>) {
    if requests_on() {
        req.extensions_mut().insert(Served {
            backend: backend.clone(),
            error: None,
        });
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
    let served = res.request().extensions_mut().remove::<Served>();
    let event = Event {
        kind: Kind::Request,
        time,
        client,
        method,
        path,
        status: res.status().as_u16(),
        error: served.as_ref().and_then(|s| s.error.clone()),
        backend: served.map(|s| s.backend.name.clone()),
        duration: Duration::ZERO,
        bytes_in: 0,
        bytes_out: 0,
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

// ------------------------------------------------------------------ health hook

/// A health check being traced.
struct HealthTrace {
    time: SystemTime,
    started: Instant,
    backend: String,
    path: String,
}

/// Starts tracing one health check when `--trace minio|all` is on (the Pool's check
/// hook); what it returns writes the line when the check ends.
pub fn health_check(backend: &str, url: &Result<Uri, String>) -> Option<CheckDone> {
    if !tracer().is_some_and(|t| t.health) {
        return None;
    }
    let path = match url {
        Ok(url) => url.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        Err(_) => String::new(),
    };
    let trace = HealthTrace {
        time: SystemTime::now(),
        started: Instant::now(),
        backend: backend.to_string(),
        path,
    };
    Some(Box::new(move |result| trace.finish(result)))
}

impl HealthTrace {
    fn finish(self, result: Result<StatusCode, &dyn Display>) {
        let Some(tracer) = tracer() else { return };
        let (status, error) = match result {
            Ok(status) => (status.as_u16(), None),
            Err(e) => (0, Some(e.to_string())),
        };
        tracer.send(Event {
            kind: Kind::Health,
            time: self.time,
            client: None,
            method: "GET".into(),
            path: self.path,
            status,
            error,
            backend: Some(self.backend),
            duration: self.started.elapsed(),
            bytes_in: 0,
            bytes_out: 0,
            request_headers: None,
            response_headers: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn event(status: u16) -> Event {
        Event {
            kind: Kind::Request,
            time: SystemTime::UNIX_EPOCH,
            client: "127.0.0.1:5000".parse().ok(),
            method: "GET".into(),
            path: "/b/k".into(),
            status,
            error: None,
            backend: Some("http://h1:9000".into()),
            duration: Duration::from_micros(1500),
            bytes_in: 3,
            bytes_out: 7,
            request_headers: None,
            response_headers: None,
        }
    }

    fn tracer(args: Args, capacity: usize) -> (Tracer, Receiver<Event>) {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        Tracer::new(Mode::All, &args, false, capacity, &DROPPED)
    }

    #[test]
    fn filters_errors_and_status_codes() {
        let (t, _rx) = tracer(Args::default(), 1);
        assert!(t.wanted(200, false));
        let errors = Args {
            errors: true,
            ..Args::default()
        };
        let (t, _rx) = tracer(errors, 1);
        assert!(!t.wanted(200, false) && !t.wanted(304, false));
        assert!(t.wanted(404, false) && t.wanted(502, false));
        assert!(t.wanted(200, true) && t.wanted(0, true));
        let codes = Args {
            status_code: vec![204, 404],
            ..Args::default()
        };
        let (t, _rx) = tracer(codes, 1);
        assert!(t.wanted(204, false) && t.wanted(404, false));
        assert!(!t.wanted(200, false) && !t.wanted(500, false));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        let (t, rx) = Tracer::new(Mode::All, &Args::default(), false, 2, &DROPPED);
        for _ in 0..5 {
            t.send(event(200));
        }
        assert_eq!(DROPPED.load(Relaxed), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn text_and_json_lines() {
        let mut out = Vec::new();
        write_text(&mut out, &event(200)).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z 127.0.0.1:5000 GET /b/k 200 http://h1:9000 1.5ms in=3 out=7\n"
        );
        let v = to_json(&event(404));
        assert_eq!(v["status"], 404);
        assert_eq!(v["type"], "request");
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["bytes_out"], 7);
        assert!(v.get("request_headers").is_none());
    }

    #[test]
    fn writer_writes_each_event_on_a_line() {
        let (t, rx) = tracer(Args::default(), 8);
        t.send(event(200));
        t.send(event(500));
        drop(t);
        let mut out = Vec::new();
        write_lines(rx, &mut out, true);
        let text = String::from_utf8(out).unwrap();
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(statuses, [200, 500]);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(
            redact_target("/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&x=1&X-Amz-Security-Token=t"),
            "/b/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=*REDACTED*&x=1&X-Amz-Security-Token=*REDACTED*"
        );
        assert_eq!(redact_target("/plain"), "/plain");
        let mut h = HeaderMap::new();
        let mut add = |n: &'static str, v: &'static str| {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v))
        };
        add(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeef",
        );
        add("x-amz-security-token", "tok");
        add("cookie", "session=s3cr3t");
        add("x-amz-date", "20240101T000000Z");
        let shown = redact_headers(&h);
        let text = format!("{shown:?}");
        for secret in ["deadbeef", "tok\"", "s3cr3t"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=*REDACTED*"));
        assert!(text.contains("20240101T000000Z"));
        assert_eq!(
            redact_authorization("Basic dXNlcjpwYXNz"),
            "Basic *REDACTED*"
        );
    }
}
