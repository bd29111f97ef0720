//! What the raw HTTP/1.1 servers of the tests share: a listener on loopback that
//! serves each connection on a thread of its own and is killed like a crashed
//! process (listener and every open connection), and, for the S3-like ones, the
//! loop that reads a request (head and whole body) and writes its answer.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use super::read_head;

/// A listener on loopback whose connections are each served on a thread of their
/// own; killed on drop.
pub struct RawServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// The connections open now, by accept order, for `kill` to cut.
    conns: Arc<Mutex<HashMap<usize, TcpStream>>>,
}

impl RawServer {
    /// On a free port of 127.0.0.1.
    pub fn on_free_port(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        Self::start(([127, 0, 0, 1], 0).into(), serve)
    }

    /// Binds `addr` (port 0: a free one) and hands each connection to `serve`.
    pub fn start(addr: SocketAddr, serve: impl Fn(TcpStream) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(HashMap::new()));
        let serve = Arc::new(serve);
        let (stopped, open) = (stop.clone(), conns.clone());
        thread::spawn(move || {
            for (key, conn) in listener.incoming().enumerate() {
                if stopped.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    open.lock().unwrap().insert(key, c);
                }
                let (serve, open) = (serve.clone(), open.clone());
                thread::spawn(move || {
                    serve(conn);
                    // Closed: a long test must not run out of files.
                    open.lock().unwrap().remove(&key);
                });
            }
        });
        RawServer { addr, stop, conns }
    }

    /// Closes the listener and cuts every open connection, like a crashed process.
    pub fn kill(&self) {
        if !self.stop.swap(true, SeqCst) {
            let _ = TcpStream::connect(self.addr); // wakes the accept loop
        }
        for (_, c) in self.conns.lock().unwrap().drain() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A request as an S3-like raw server reads it, its body whole (test objects are
/// small).
pub struct Request {
    pub method: String,
    /// As sent, query included.
    pub target: String,
    /// Names lower-cased, in arrival order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn read(r: &mut impl BufRead) -> std::io::Result<Request> {
        let (start, headers) = read_head(r)?;
        let mut parts = start.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut request = Request {
            method,
            target,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = request
            .header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
        {
            r.by_ref().take(len).read_to_end(&mut request.body)?;
        }
        Ok(request)
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Serves the requests on `conn` one after another, each answer flushed, until
/// one cannot be read or answered or `answer` says the connection is to close
/// (`Ok(false)`); then closes it.
pub fn serve_requests(
    conn: TcpStream,
    mut answer: impl FnMut(Request, &mut BufWriter<TcpStream>) -> std::io::Result<bool>,
) {
    let Ok(w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut w = BufWriter::with_capacity(1 << 16, w);
    while let Ok(keep) = Request::read(&mut r).and_then(|req| answer(req, &mut w)) {
        if w.flush().is_err() || !keep {
            break;
        }
    }
    let _ = w.flush();
    let _ = w.get_ref().shutdown(Shutdown::Both);
}

/// Writes an answer with no body; `status` is the code and reason (`404 Not Found`).
pub fn no_body(w: &mut impl Write, status: &str) -> std::io::Result<()> {
    write!(w, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n")
}
