//! A raw S3-like origin for the cache tests: objects with fixed ETags, conditional
//! and ranged GETs answered as S3 answers them (or `If-None-Match` ignored, when a
//! test asks), and every request recorded with the answer it got.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::raw_server::{no_body, serve_requests, RawServer, Request};

/// One object version as the origin serves it.
#[derive(Clone, Debug)]
pub struct Object {
    pub body: Vec<u8>,
    /// Sent as is: `"abc"` (strong) or `W/"abc"` (weak); empty: no ETag.
    pub etag: String,
    /// Extra response headers (Cache-Control, Content-Type, x-amz-meta-*, ...).
    pub headers: Vec<(String, String)>,
    /// Sent chunked, with no Content-Length.
    pub chunked: bool,
    /// Its `Last-Modified`, in every answer (304s too, as MinIO and AWS send it).
    pub last_modified: String,
}

impl Object {
    pub fn new(body: Vec<u8>, etag: &str) -> Object {
        Object {
            body,
            etag: format!("\"{etag}\""),
            headers: vec![("Content-Type".into(), "application/octet-stream".into())],
            chunked: false,
            last_modified: "Mon, 01 Jan 2024 00:00:00 GMT".into(),
        }
    }

    /// Written at another time (the same bytes may keep the same ETag).
    pub fn modified(mut self, last_modified: &str) -> Object {
        self.last_modified = last_modified.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Object {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request the origin received and what it answered.
#[derive(Clone, Debug)]
pub struct Asked {
    pub method: String,
    pub target: String,
    /// Names lower-cased, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// Body bytes the answer carried (or was to carry, if the reader went away).
    pub body_len: u64,
}

impl Asked {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    objects: Mutex<HashMap<String, Object>>,
    asked: Mutex<Vec<Asked>>,
    ignore_inm: AtomicBool,
    /// Pause after each 16 KiB of body, in microseconds (0: none): paces traffic.
    pace_us: AtomicU64,
    requests: AtomicUsize,
}

/// The origin server on loopback; killed (listener and connections) on drop.
pub struct Origin {
    pub addr: SocketAddr,
    state: Arc<State>,
    /// None while killed.
    server: Option<RawServer>,
}

impl Origin {
    pub fn start() -> Origin {
        let mut o = Origin {
            addr: "127.0.0.1:0".parse().unwrap(),
            state: Arc::default(),
            server: None,
        };
        o.restart();
        o
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stores (or overwrites) the object at `path` (`/bucket/key`).
    pub fn put(&self, path: &str, object: Object) {
        self.state
            .objects
            .lock()
            .unwrap()
            .insert(path.to_string(), object);
    }

    pub fn delete(&self, path: &str) {
        self.state.objects.lock().unwrap().remove(path);
    }

    /// From now on `If-None-Match` is ignored: a full 200 even when it matches.
    pub fn ignore_if_none_match(&self) {
        self.state.ignore_inm.store(true, SeqCst);
    }

    /// Bodies leave in 16 KiB pieces with `pause` after each (a slow link).
    pub fn pace(&self, pause: Duration) {
        self.state.pace_us.store(pause.as_micros() as u64, SeqCst);
    }

    /// Every object request so far (health checks are not recorded).
    pub fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }

    /// The object requests for `path` so far.
    pub fn asked_for(&self, path: &str) -> Vec<Asked> {
        self.asked()
            .into_iter()
            .filter(|a| a.target.split('?').next() == Some(path))
            .collect()
    }

    /// (Re)binds the port and serves until `kill`.
    pub fn restart(&mut self) {
        let state = self.state.clone();
        let server = RawServer::start(self.addr, move |conn| {
            serve_requests(conn, |req, w| answer(req, w, &state))
        });
        self.addr = server.addr;
        self.server = Some(server);
    }

    /// Closes the listener and every connection, like a crashed server.
    pub fn kill(&mut self) {
        self.server = None;
    }
}

/// Answers one request; `Ok(false)` when the connection is to close after it.
fn answer(req: Request, w: &mut BufWriter<TcpStream>, state: &State) -> std::io::Result<bool> {
    let get = |n: &str| req.header(n);
    let keep = !get("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
    // Request bodies (PUT) are dropped.
    let (method, target, headers) = (&req.method, &req.target, &req.headers);
    let path = req.path();
    if path.starts_with("/health/ready") || path.starts_with("/minio/health") {
        no_body(w, "200 OK")?;
        return Ok(keep);
    }
    let n = state.requests.fetch_add(1, SeqCst);
    let object = state.objects.lock().unwrap().get(path).cloned();
    let record = |status: u16, body_len: u64| {
        state.asked.lock().unwrap().push(Asked {
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            status,
            body_len,
        })
    };
    let request_id = format!("x-amz-request-id: req-{n}\r\n");
    let error = |w: &mut BufWriter<TcpStream>, status: &str, code: &str| {
        let body = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code></Error>");
        write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n{request_id}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };

    if method == "PUT" {
        record(200, 0);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nETag: \"put\"\r\n{request_id}Content-Length: 0\r\n\r\n"
        )?;
        return Ok(keep);
    }
    if method == "DELETE" {
        record(204, 0);
        write!(w, "HTTP/1.1 204 No Content\r\n{request_id}\r\n")?;
        return Ok(keep);
    }
    if get("authorization").is_some_and(|a| a.contains("bad")) {
        record(403, 0);
        error(w, "403 Forbidden", "AccessDenied")?;
        return Ok(keep);
    }
    let Some(obj) = object else {
        record(404, 0);
        error(w, "404 Not Found", "NoSuchKey")?;
        return Ok(keep);
    };
    let tag = obj.etag.as_str();
    let names = |list: &str| list.split(',').any(|t| t.trim() == tag || t.trim() == "*");
    if get("if-match").is_some_and(|m| !names(m)) {
        record(412, 0);
        error(w, "412 Precondition Failed", "PreconditionFailed")?;
        return Ok(keep);
    }
    let mut common = format!("Last-Modified: {}\r\n{request_id}", obj.last_modified);
    if !tag.is_empty() {
        common.push_str(&format!("ETag: {tag}\r\n"));
    }
    if get("if-none-match").is_some_and(names) && !state.ignore_inm.load(SeqCst) {
        record(304, 0);
        write!(w, "HTTP/1.1 304 Not Modified\r\n{common}\r\n")?;
        return Ok(keep);
    }
    for (name, value) in &obj.headers {
        common.push_str(&format!("{name}: {value}\r\n"));
    }
    let size = obj.body.len() as u64;
    let (status, range) = match get("range").map(|v| parse_range(v, size)) {
        Some(Some(Err(()))) => {
            record(416, 0);
            write!(
                w,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{size}\r\n{common}Content-Length: 0\r\n\r\n"
            )?;
            return Ok(keep);
        }
        Some(Some(Ok((a, b)))) => {
            common.push_str(&format!("Content-Range: bytes {a}-{b}/{size}\r\n"));
            ("206 Partial Content", a as usize..b as usize + 1)
        }
        _ => ("200 OK", 0..size as usize),
    };
    let body = &obj.body[range];
    let head_only = method == "HEAD";
    record(
        status[..3].parse().unwrap(),
        if head_only { 0 } else { body.len() as u64 },
    );
    if obj.chunked {
        write!(
            w,
            "HTTP/1.1 {status}\r\n{common}Transfer-Encoding: chunked\r\n\r\n"
        )?;
    } else {
        write!(
            w,
            "HTTP/1.1 {status}\r\n{common}Content-Length: {}\r\n\r\n",
            body.len()
        )?;
    }
    if head_only {
        return Ok(keep);
    }
    let pace = Duration::from_micros(state.pace_us.load(SeqCst));
    for piece in body.chunks(16 << 10) {
        if obj.chunked {
            write!(w, "{:x}\r\n", piece.len())?;
        }
        w.write_all(piece)?;
        if obj.chunked {
            w.write_all(b"\r\n")?;
        }
        if !pace.is_zero() {
            w.flush()?;
            // Paces the body like a slow link; no condition is waited for.
            thread::sleep(pace);
        }
    }
    if obj.chunked {
        w.write_all(b"0\r\n\r\n")?;
    }
    Ok(keep)
}

/// One byte range of an object of `size` bytes: `None` for a header to ignore
/// (several ranges, or not a range), `Some(Err)` for an unsatisfiable one.
pub fn parse_range(value: &str, size: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            return Some(Err(()));
        }
        return Some(Ok((size.saturating_sub(n), size - 1)));
    }
    let a: u64 = a.parse().ok()?;
    let b: u64 = match b {
        "" => u64::MAX,
        b => b.parse().ok()?,
    };
    if a > b {
        return None;
    }
    if a >= size {
        return Some(Err(()));
    }
    Some(Ok((a, b.min(size - 1))))
}
