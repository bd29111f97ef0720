//! A raw S3-like cache store that honours conditional writes as AWS S3 and MinIO do
//! (`If-None-Match: *` and `If-Match` on PUT, `412` when they fail), unlike Garage.
//! Objects live in memory; signatures are not checked; `/health` answers 200. It
//! counts the conditional PUTs it refused.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;

use super::read_head;

#[derive(Default)]
struct State {
    /// Path (`/bucket/key`) -> (body, ETag).
    objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    versions: AtomicU64,
    refused: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

pub struct ConditionalStore {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl ConditionalStore {
    pub fn start() -> ConditionalStore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind store");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let s = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    s.conns.lock().unwrap().push(c);
                }
                let s = s.clone();
                thread::spawn(move || serve(conn, &s));
            }
        });
        ConditionalStore { addr, state }
    }

    /// The `--cache-*` flags that point sidekick at this store, small blocks.
    pub fn flags(&self, bucket: &str) -> Vec<String> {
        [
            "--cache-endpoint",
            &format!("http://{}", self.addr),
            "--cache-bucket",
            bucket,
            "--cache-access-key",
            "GKconditional",
            "--cache-secret-key",
            "secret",
            "--cache-region",
            "us-east-1",
            "--cache-health-path",
            "/health",
            "--cache-min-size",
            "0",
            "--cache-block-size",
            "64KiB",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Conditional PUTs answered `412`.
    pub fn refused(&self) -> u64 {
        self.state.refused.load(SeqCst)
    }

    /// Names of the stored objects that start with `prefix` (after the bucket).
    pub fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let start = format!("/{bucket}/{prefix}");
        let objects = self.state.objects.lock().unwrap();
        objects
            .keys()
            .filter(|k| k.starts_with(&start))
            .cloned()
            .collect()
    }
}

impl Drop for ConditionalStore {
    fn drop(&mut self) {
        self.state.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr);
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn serve(conn: TcpStream, state: &State) {
    let Ok(w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut w = BufWriter::new(w);
    while serve_one(&mut r, &mut w, state).is_ok() {
        if w.flush().is_err() {
            break;
        }
    }
    let _ = w.get_ref().shutdown(Shutdown::Both);
}

fn serve_one(
    r: &mut BufReader<TcpStream>,
    w: &mut BufWriter<TcpStream>,
    state: &State,
) -> std::io::Result<()> {
    let (start, headers) = read_head(r)?;
    let mut parts = start.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("").to_string();
    let get = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<u64>().ok()) {
        r.by_ref().take(len).read_to_end(&mut body)?;
    }
    if path == "/health" {
        return write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    }
    let mut objects = state.objects.lock().unwrap();
    match method.as_str() {
        "PUT" => {
            let current = objects.get(&path).map(|(_, etag)| etag.clone());
            let refused = match (get("if-none-match"), get("if-match")) {
                (Some(v), _) if v == "*" => current.is_some(),
                (_, Some(want)) => current.as_deref() != Some(want.as_str()),
                _ => false,
            };
            if refused {
                state.refused.fetch_add(1, SeqCst);
                return write!(
                    w,
                    "HTTP/1.1 412 Precondition Failed\r\nContent-Length: 0\r\n\r\n"
                );
            }
            let etag = format!("\"v{}\"", state.versions.fetch_add(1, SeqCst));
            objects.insert(path, (body, etag.clone()));
            write!(
                w,
                "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: 0\r\n\r\n"
            )
        }
        "GET" | "HEAD" => match objects.get(&path) {
            Some((data, etag)) => {
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                )?;
                if method == "GET" {
                    w.write_all(data)?;
                }
                Ok(())
            }
            None => write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        },
        _ => write!(
            w,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n"
        ),
    }
}
