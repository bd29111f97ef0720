//! Test harness: the real sidekick binary, raw HTTP/1.1 backends that record exactly
//! what reaches them, and a raw client that sees exactly what sidekick sends back.
#![allow(dead_code)]

pub mod garage;
pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_sidekick");

/// Polls `cond` until it holds or `limit` passes; the pause only paces the polling.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port free on `ip` right now, for processes that must be told their port
/// (the rest bind port 0 and report it).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- sidekick process

pub struct Sidekick {
    child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Sidekick {
    /// Starts sidekick on a kernel-chosen port with `args` and waits until it listens.
    pub fn start(args: &[&str]) -> Sidekick {
        let mut cmd = Command::new(BIN);
        cmd.args(["--address", "127.0.0.1:0", "--log"]).args(args);
        Self::spawn(cmd)
    }

    /// Starts sidekick with its own `/etc/hosts` (a private mount namespace; needs
    /// root), so that test names resolve to test addresses.
    pub fn start_with_hosts(hosts: &std::path::Path, args: &[&str]) -> Sidekick {
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--mount",
            "sh",
            "-c",
            "mount --bind \"$0\" /etc/hosts && exec \"$@\"",
        ])
        .arg(hosts)
        .arg(BIN)
        .args(["--address", "127.0.0.1:0", "--log"])
        .args(args);
        Self::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Sidekick {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sidekick");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let lines = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("sidekick listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("address"));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("sidekick did not start: {:?}", log.lock().unwrap()));
        Sidekick { child, addr, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "sidekick did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn health(&self) -> u16 {
        self.get("/v1/health").status
    }

    /// Peak resident memory (VmHWM) in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Waits until `n` backends have been logged up.
    pub fn wait_up(&self, n: usize) {
        wait_for("backends up", Duration::from_secs(30), || {
            let log = self.log.lock().unwrap();
            log.iter().filter(|l| l.contains(" is up")).count() >= n
        });
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

impl Drop for Sidekick {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------- raw HTTP client

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`), response read whole.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_request(addr, &raw, method == "HEAD")
}

/// Sends raw bytes and parses the response, which must be complete: a body shorter
/// than its framing panics.
pub fn raw_request(addr: SocketAddr, raw: &[u8], head: bool) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connect to sidekick");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream.write_all(raw).expect("send");
    let mut reader = BufReader::new(stream);
    read_response(&mut reader, head).expect("complete response")
}

/// Reads one response; `Err` when the connection ends before the framing says.
pub fn read_response(r: &mut impl BufRead, head: bool) -> std::io::Result<Response> {
    let (status, headers) = loop {
        let (status, headers) = read_head(r)?;
        let status: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        if status != 100 {
            break (status, headers);
        }
    };
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp.header("transfer-encoding") == Some("chunked") {
        resp.body = read_chunked(r, |_| {})?;
    } else if let Some(len) = resp.header("content-length") {
        let mut body = vec![0; len.parse().expect("length")];
        r.read_exact(&mut body)?;
        resp.body = body;
    } else {
        r.read_to_end(&mut resp.body)?;
    }
    Ok(resp)
}

/// Reads a start line and headers (names lower-cased).
pub fn read_head(r: &mut impl BufRead) -> std::io::Result<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let start = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((start, headers));
        }
        let (n, v) = l.split_once(':').expect("header line");
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
}

/// Decodes a chunked body, handing each chunk to `each` and returning the whole
/// body only when `each` does not consume it (small bodies).
pub fn read_chunked(r: &mut impl BufRead, mut each: impl FnMut(&[u8])) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
        let mut chunk = vec![0; size + 2];
        r.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        each(&chunk[..size]);
        if body.len() < 1 << 20 {
            body.extend_from_slice(&chunk[..size]);
        }
    }
}

// ---------------------------------------------------------------- pattern data

/// 1 MiB of pseudo-random bytes; chunk `k` of a large body is this block with `k`
/// in its first 8 bytes, so lost, repeated or reordered chunks change the hash.
pub fn block() -> &'static [u8] {
    static BLOCK: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BLOCK.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..1 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    })
}

/// Writes `len` bytes of pattern data (a multiple of 1 MiB) to `w`, returning its SHA-256.
pub fn write_pattern(w: &mut impl Write, len: u64) -> std::io::Result<String> {
    let mut chunk = block().to_vec();
    let mut hash = Sha256::new();
    for k in 0..len >> 20 {
        chunk[..8].copy_from_slice(&k.to_le_bytes());
        hash.update(&chunk);
        w.write_all(&chunk)?;
    }
    Ok(hex(&hash.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

// ---------------------------------------------------------------- raw backend

/// What a backend received: the request line and headers exactly as sent, and the
/// body's length and hash.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub raw_head: String,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body_sha: String,
    /// Which of the backend's connections carried the request (numbered from 0).
    pub conn: usize,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub(crate) struct Shared {
    healthy: AtomicBool,
    hits: AtomicUsize,
    health_checks: AtomicUsize,
    failed_checks: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    conns: Mutex<Vec<TcpStream>>,
    /// Requests to /hold wait until this is true.
    release: (Mutex<bool>, Condvar),
    held: AtomicUsize,
    /// Readiness checks hang (until the backend is dropped).
    hang_health: AtomicBool,
    /// When set, readiness means "this address accepts connections".
    probe: Mutex<Option<SocketAddr>>,
    /// TLS handshakes completed, and how many of them resumed a session.
    tls_handshakes: AtomicUsize,
    tls_resumed: AtomicUsize,
    /// Connections served so far.
    connections: AtomicUsize,
}

/// A small HTTP/1.1 server on loopback that can be killed and restarted on its port.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<Arc<AtomicBool>>,
    /// Serves HTTPS with this config.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Backend {
    pub fn start(name: &str) -> Backend {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    pub fn start_on(name: &str, addr: SocketAddr) -> Backend {
        Self::start_with(name, addr, None)
    }

    /// An HTTPS backend on a free port, presenting what `config` says.
    pub fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> Backend {
        Self::start_with(name, "127.0.0.1:0".parse().unwrap(), Some(config))
    }

    /// An HTTPS backend on `addr`.
    pub fn start_tls_on(
        name: &str,
        addr: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> Backend {
        Self::start_with(name, addr, Some(config))
    }

    fn start_with(name: &str, addr: SocketAddr, tls: Option<Arc<rustls::ServerConfig>>) -> Backend {
        let shared = Arc::new(Shared::default());
        shared.healthy.store(true, SeqCst);
        let mut b = Backend {
            name: name.to_string(),
            addr,
            shared,
            stop: None,
            tls,
        };
        b.restart();
        b
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// (Re)binds the port and serves until `kill`.
    pub fn restart(&mut self) {
        let listener = TcpListener::bind(self.addr).expect("bind backend");
        self.addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        self.stop = Some(stop.clone());
        let shared = self.shared.clone();
        let name = self.name.clone();
        let tls = self.tls.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    shared.conns.lock().unwrap().push(c);
                }
                let (shared, name) = (shared.clone(), name.clone());
                match &tls {
                    Some(config) => {
                        let config = config.clone();
                        thread::spawn(move || tls::serve(conn, config, &shared, &name))
                    }
                    None => thread::spawn(move || serve(conn, &shared, &name)),
                };
            }
        });
    }

    /// Closes the listener and every open connection, like a crashed process.
    pub fn kill(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.store(true, SeqCst);
            let _ = TcpStream::connect(self.addr); // wakes the accept loop
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Readiness follows whether `target` accepts connections (a readiness
    /// responder for a server that has no readiness path of its own).
    pub fn probe(&self, target: SocketAddr) {
        *self.shared.probe.lock().unwrap() = Some(target);
    }

    /// Readiness checks get no answer at all.
    pub fn hang_health_checks(&self) {
        self.shared.hang_health.store(true, SeqCst);
    }

    pub fn set_healthy(&self, up: bool) {
        self.shared.healthy.store(up, SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.load(SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.shared.health_checks.load(SeqCst)
    }

    /// Health checks answered with 503.
    pub fn failed_checks(&self) -> usize {
        self.shared.failed_checks.load(SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn last_seen(&self) -> Seen {
        self.seen().pop().expect("a request reached the backend")
    }

    /// Requests to `/hold` currently waiting.
    pub fn held(&self) -> usize {
        self.shared.held.load(SeqCst)
    }

    /// TLS handshakes completed, and how many resumed an earlier session.
    pub fn tls_handshakes(&self) -> (usize, usize) {
        (
            self.shared.tls_handshakes.load(SeqCst),
            self.shared.tls_resumed.load(SeqCst),
        )
    }

    pub fn release_held(&self) {
        let (lock, cv) = &self.shared.release;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.release_held();
        self.kill();
    }
}

/// Sends what is buffered, then drops the connection like a crashing server.
fn die<S: Conn>(w: &mut std::io::BufWriter<S>) -> std::io::Result<()> {
    w.flush()?;
    w.get_ref().cut();
    Err(std::io::ErrorKind::ConnectionAborted.into())
}

/// A backend connection, plain or TLS: read and written, and cut like a crash.
pub trait Conn: Read + Write {
    fn cut(&self);
}

impl Conn for TcpStream {
    fn cut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

fn serve(conn: TcpStream, shared: &Shared, name: &str) {
    let w = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    serve_conn(conn, w, shared, name);
}

/// Serves requests until the connection ends; `r` and `w` are two handles on it.
pub(crate) fn serve_conn<S: Conn>(r: S, w: S, shared: &Shared, name: &str) {
    // Buffered so that a small response leaves in one write, as real servers do.
    let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
    let mut r = BufReader::with_capacity(1 << 16, r);
    let mut conn = Served {
        id: shared.connections.fetch_add(1, SeqCst),
        close_next: false,
    };
    while serve_one(&mut r, &mut w, shared, name, &mut conn).is_ok() && w.flush().is_ok() {}
}

/// One connection's state.
struct Served {
    id: usize,
    /// The next request on this connection gets no answer: the connection closes,
    /// as when a server times an idle connection out just as a request arrives.
    close_next: bool,
}

fn serve_one<S: Conn>(
    r: &mut BufReader<S>,
    w: &mut std::io::BufWriter<S>,
    shared: &Shared,
    name: &str,
    conn: &mut Served,
) -> std::io::Result<()> {
    // Keep the raw head bytes: tests compare them byte for byte.
    let mut raw_head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut raw_head)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if raw_head.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let raw_head = String::from_utf8_lossy(&raw_head).into_owned();
    let (start, headers) = read_head(&mut BufReader::new(raw_head.as_bytes()))?;
    let mut parts = start.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    if conn.close_next {
        return die(w);
    }

    if target.starts_with("/health/ready") {
        shared.health_checks.fetch_add(1, SeqCst);
        if shared.hang_health.load(SeqCst) {
            let (lock, cv) = &shared.release;
            let mut released = lock.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
        }
        let probe = *shared.probe.lock().unwrap();
        let ready = match probe {
            Some(target) => TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok(),
            None => shared.healthy.load(SeqCst),
        };
        if !ready {
            shared.failed_checks.fetch_add(1, SeqCst);
        }
        let status = if ready {
            "200 OK"
        } else {
            "503 Service Unavailable"
        };
        write!(w, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")?;
        return w.flush();
    }
    shared.hits.fetch_add(1, SeqCst);

    // Request body: hashed as it streams, never held whole.
    let mut hash = Sha256::new();
    let mut body_len = 0u64;
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(r, |c| {
            hash.update(c);
            body_len += c.len() as u64;
        })?;
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<u64>().ok()) {
        let mut left = len;
        let mut buf = vec![0; 1 << 16];
        while left > 0 {
            let n = r.read(&mut buf[..left.min(1 << 16) as usize])?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            hash.update(&buf[..n]);
            body_len += n as u64;
            left -= n as u64;
        }
    }
    let body_sha = hex(&hash.finalize());
    shared.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        target: target.clone(),
        raw_head,
        headers: headers.clone(),
        body_len,
        body_sha: body_sha.clone(),
        conn: conn.id,
    });

    let path = target.split('?').next().unwrap_or("");
    let query: HashMap<&str, &str> = target
        .split_once('?')
        .map(|(_, q)| q.split('&').filter_map(|kv| kv.split_once('=')).collect())
        .unwrap_or_default();
    match path {
        "/big" => {
            let size: u64 = query.get("size").and_then(|s| s.parse().ok()).unwrap_or(1 << 20);
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nX-Backend: {name}\r\n\r\n")?;
            if method != "HEAD" {
                let sha = write_pattern(w, size)?;
                shared.seen.lock().unwrap().push(Seen {
                    method: "SENT".into(),
                    target: target.clone(),
                    raw_head: String::new(),
                    headers: vec![],
                    body_len: size,
                    body_sha: sha,
                    conn: conn.id,
                });
            }
            Ok(())
        }
        "/upload" => {
            let body = format!("{body_len} {body_sha}");
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        }
        "/head" => write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nETag: \"x\"\r\n\r\n"),
        "/range" => {
            let data = b"0123456789abcdefghij";
            match get("range").and_then(|r| {
                let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?))
            }) {
                Some((a, b)) => {
                    write!(w, "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/20\r\nContent-Length: {}\r\n\r\n", b - a + 1)?;
                    w.write_all(&data[a..=b])
                }
                None => {
                    write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n")?;
                    w.write_all(data)
                }
            }
        }
        "/not-modified" => {
            write!(w, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 42\r\n\r\n")
        }
        "/no-content" => write!(w, "HTTP/1.1 204 No Content\r\nX-Backend: {name}\r\n\r\n"),
        "/hop" => write!(
            w,
            "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok"
        ),
        "/chunked" => write!(
            w,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        ),
        "/close-next" => {
            conn.close_next = true;
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        }
        "/interim" => write!(
            w,
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
        ),
        "/trailers" => write!(
            w,
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
        ),
        "/until-close" => {
            // No length, no chunks: the body ends when the connection does.
            write!(w, "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\n\r\nall of it")?;
            die(w)
        }
        "/cut" => {
            // Promises 1000 bytes, sends 10, dies.
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")?;
            die(w)
        }
        "/garbage" => {
            write!(w, "THIS IS NOT HTTP\r\n\r\n")?;
            die(w)
        }
        "/bad-chunk" => {
            write!(w, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nnope\r\n")?;
            die(w)
        }
        "/long" => {
            // Five bytes promised, more sent: the extra must not become the next response.
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        }
        "/status" => {
            let code = query.get("code").copied().unwrap_or("500");
            write!(w, "HTTP/1.1 {code} Status\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n{name}", name.len())
        }
        "/hold" => {
            shared.held.fetch_add(1, SeqCst);
            let (lock, cv) = &shared.release;
            let mut released = lock.lock().unwrap();
            while !*released {
                released = cv.wait(released).unwrap();
            }
            drop(released);
            shared.held.fetch_sub(1, SeqCst);
            write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld")
        }
        _ => write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n{name}",
            name.len()
        ),
    }
}
