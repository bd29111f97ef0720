//! A raw S3-like cache store that honours conditional writes as AWS S3 and MinIO do
//! (`If-None-Match: *` and `If-Match` on PUT, `412` when they fail), unlike Garage.
//! Objects live in memory; signatures are not checked; `/health` answers 200. It
//! counts the conditional PUTs it refused.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use super::cache_store::store_flags;
use super::raw_server::{no_body, serve_requests, RawServer, Request};

#[derive(Default)]
struct State {
    /// Path (`/bucket/key`) -> (body, ETag).
    objects: Mutex<HashMap<String, (Vec<u8>, String)>>,
    versions: AtomicU64,
    refused: AtomicU64,
}

/// Killed (listener and connections) on drop.
pub struct ConditionalStore {
    pub addr: SocketAddr,
    state: Arc<State>,
    _server: RawServer,
}

impl ConditionalStore {
    pub fn start() -> ConditionalStore {
        let state = Arc::new(State::default());
        let s = state.clone();
        let server = RawServer::on_free_port(move |conn| {
            serve_requests(conn, |req, w| answer(req, w, &s).map(|()| true))
        });
        ConditionalStore {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    /// The `--cache-*` flags that point sidekick at this store, small blocks.
    pub fn flags(&self, bucket: &str) -> Vec<String> {
        let endpoint = format!("http://{}", self.addr);
        store_flags(
            &endpoint,
            bucket,
            ("GKconditional", "secret"),
            &["--cache-region", "us-east-1"],
        )
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

fn answer(req: Request, w: &mut BufWriter<TcpStream>, state: &State) -> std::io::Result<()> {
    let path = req.path().to_string();
    if path == "/health" {
        return no_body(w, "200 OK");
    }
    let method = req.method.as_str();
    let mut objects = state.objects.lock().unwrap();
    match method {
        "PUT" => {
            let current = objects.get(&path).map(|(_, etag)| etag.clone());
            let refused = match (req.header("if-none-match"), req.header("if-match")) {
                (Some("*"), _) => current.is_some(),
                (_, Some(want)) => current.as_deref() != Some(want),
                _ => false,
            };
            if refused {
                state.refused.fetch_add(1, SeqCst);
                return no_body(w, "412 Precondition Failed");
            }
            let etag = format!("\"v{}\"", state.versions.fetch_add(1, SeqCst));
            objects.insert(path, (req.body, etag.clone()));
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
            None => no_body(w, "404 Not Found"),
        },
        _ => no_body(w, "405 Method Not Allowed"),
    }
}
