//! Raw HTTP/1.1 backends that record exactly what reaches them, with switches for
//! the faults the tests need (health, hangs, held responses, kills).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::raw_server::RawServer;
use super::*;

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
    /// The address that connection came from.
    pub peer: Option<IpAddr>,
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
    pub(crate) healthy: AtomicBool,
    pub(crate) hits: AtomicUsize,
    pub(crate) health_checks: AtomicUsize,
    pub(crate) failed_checks: AtomicUsize,
    pub(crate) seen: Mutex<Vec<Seen>>,
    /// Requests to /hold wait until this is true.
    pub(crate) release: (Mutex<bool>, Condvar),
    pub(crate) held: AtomicUsize,
    /// Readiness checks hang (until the backend is dropped).
    pub(crate) hang_health: AtomicBool,
    /// When set, readiness means "this address accepts connections".
    pub(crate) probe: Mutex<Option<SocketAddr>>,
    /// TLS handshakes completed, and how many of them resumed a session.
    pub(crate) tls_handshakes: AtomicUsize,
    pub(crate) tls_resumed: AtomicUsize,
    /// Connections served so far.
    pub(crate) connections: AtomicUsize,
}

/// A small HTTP/1.1 server on loopback that can be killed and restarted on its port.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    /// None while killed.
    server: Option<RawServer>,
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
            server: None,
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
        let shared = self.shared.clone();
        let name = self.name.clone();
        let tls = self.tls.clone();
        let server = RawServer::start(self.addr, move |conn| match tls.clone() {
            Some(config) => tls::serve(conn, config, &shared, &name),
            None => serve(conn, &shared, &name),
        });
        self.addr = server.addr;
        self.server = Some(server);
    }

    /// Closes the listener and every open connection, like a crashed process.
    pub fn kill(&mut self) {
        self.server = None;
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
    /// The address the connection came from.
    fn peer(&self) -> Option<IpAddr>;
}

impl Conn for TcpStream {
    fn cut(&self) {
        let _ = self.shutdown(Shutdown::Both);
    }

    fn peer(&self) -> Option<IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
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
        peer: r.get_ref().peer(),
    };
    while serve_one(&mut r, &mut w, shared, name, &mut conn).is_ok() && w.flush().is_ok() {}
}

/// One connection's state.
struct Served {
    id: usize,
    /// The next request on this connection gets no answer: the connection closes,
    /// as when a server times an idle connection out just as a request arrives.
    close_next: bool,
    peer: Option<IpAddr>,
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
        peer: conn.peer,
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
                    peer: conn.peer,
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
