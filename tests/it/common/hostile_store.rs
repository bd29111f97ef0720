//! A cache store that lies, for the tests: a raw S3-like server that keeps what
//! sidekick PUTs and serves it back, except where a test tells it to misbehave
//! (lengths of an exabyte, metadata edited, blocks cut short or dripped, PUTs
//! refused). Every object request is recorded with its answer; readiness checks
//! (`/health`) always pass. Killed (listener and connections) on drop.

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use super::cache_store::store_flags;
use super::raw_server::{no_body, serve_requests, RawServer, Request};

pub const BUCKET: &str = "hostile-cache";

/// How the store misbehaves from now on.
#[derive(Clone)]
pub enum Trick {
    Honest,
    /// GETs of keys under this folder (`meta/`, `blocks/`) announce a length of an
    /// exabyte, send what is stored, and close.
    HugeLength(&'static str),
    /// Metadata is served with this edit made to the stored JSON.
    EditMeta(Arc<dyn Fn(&mut serde_json::Value) + Send + Sync>),
    /// GETs of blocks announce their length, send half, and close.
    TruncatedBlocks,
    /// GETs of blocks announce their length and send a byte every 20 ms.
    DrippedBlocks,
    /// PUTs of blocks are answered 500.
    RefusedBlockPuts,
    /// The next this many PUTs of blocks are answered 503 (a busy store), then
    /// the store is honest again.
    BusyBlockPuts(Arc<std::sync::atomic::AtomicUsize>),
    /// GETs of blocks get no answer until the gate opens (then the connection closes).
    SilentBlocks(Gate),
}

/// Holds what waits on it until `open`.
#[derive(Clone, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn open(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }

    fn wait(&self) {
        let mut open = self.0 .0.lock().unwrap();
        while !*open {
            open = self.0 .1.wait(open).unwrap();
        }
    }
}

/// An object request the store received and its answer's status.
#[derive(Clone, Debug)]
pub struct Asked {
    pub method: String,
    /// The key in the bucket.
    pub key: String,
    pub status: u16,
}

struct State {
    objects: Mutex<HashMap<String, Vec<u8>>>,
    asked: Mutex<Vec<Asked>>,
    trick: Mutex<Trick>,
}

pub struct HostileStore {
    pub addr: SocketAddr,
    state: Arc<State>,
    _server: RawServer,
}

impl HostileStore {
    pub fn start() -> HostileStore {
        let state = Arc::new(State {
            objects: Mutex::default(),
            asked: Mutex::default(),
            trick: Mutex::new(Trick::Honest),
        });
        let shared = state.clone();
        let server = RawServer::on_free_port(move |conn| {
            serve_requests(conn, |req, w| answer(req, w, &shared))
        });
        HostileStore {
            addr: server.addr,
            state,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `--cache-*` flags that point sidekick here, for small test objects.
    pub fn flags(&self) -> Vec<String> {
        store_flags(&self.url(), BUCKET, ("hostile", "hostile-secret"), &[])
    }

    pub fn trick(&self, trick: Trick) {
        *self.state.trick.lock().unwrap() = trick;
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.state.asked.lock().unwrap().clone()
    }

    /// Metadata objects read so far (found or not).
    pub fn meta_reads(&self) -> usize {
        let asked = self.state.asked.lock().unwrap();
        asked
            .iter()
            .filter(|a| a.method == "GET" && a.key.starts_with("meta/"))
            .count()
    }
}

/// Answers one request; `Ok(false)` when the connection is to close after it.
fn answer(req: Request, w: &mut BufWriter<TcpStream>, state: &State) -> std::io::Result<bool> {
    let path = req.path();
    if path == "/health" {
        no_body(w, "200 OK")?;
        return Ok(true);
    }
    let method = req.method.as_str();
    let key = path
        .strip_prefix(&format!("/{BUCKET}/"))
        .unwrap_or(path)
        .to_string();
    let trick = state.trick.lock().unwrap().clone();
    let record = |status: u16| {
        state.asked.lock().unwrap().push(Asked {
            method: method.to_string(),
            key: key.clone(),
            status,
        })
    };
    let block = key.starts_with("blocks/");
    if method == "PUT" {
        if let Trick::BusyBlockPuts(left) = &trick {
            let busy = block
                && left
                    .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            if busy {
                no_body(w, "503 Service Unavailable")?;
                w.flush()?;
                record(503);
                return Ok(true);
            }
        }
        if block && matches!(trick, Trick::RefusedBlockPuts) {
            no_body(w, "500 Internal Server Error")?;
            w.flush()?;
            record(500);
            return Ok(true);
        }
        state.objects.lock().unwrap().insert(key.clone(), req.body);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nETag: \"put\"\r\nContent-Length: 0\r\n\r\n"
        )?;
        w.flush()?;
        record(200);
        return Ok(true);
    }
    let stored = state.objects.lock().unwrap().get(&key).cloned();
    let Some(mut data) = stored else {
        no_body(w, "404 Not Found")?;
        record(404);
        return Ok(true);
    };
    if method == "HEAD" {
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            data.len()
        )?;
        record(200);
        return Ok(true);
    }
    record(200);
    match trick {
        Trick::HugeLength(folder) if key.starts_with(folder) => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n"
            )?;
            w.write_all(&data)?;
            return Ok(false);
        }
        Trick::EditMeta(edit) if key.starts_with("meta/") => {
            if let Ok(mut json) = serde_json::from_slice(&data) {
                edit(&mut json);
                data = serde_json::to_vec(&json).unwrap();
            }
        }
        Trick::TruncatedBlocks if block => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )?;
            w.write_all(&data[..data.len() / 2])?;
            return Ok(false);
        }
        Trick::SilentBlocks(gate) if block => {
            gate.wait();
            return Ok(false);
        }
        Trick::DrippedBlocks if block => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )?;
            // Until sidekick gives up on it or the store is dropped (a write fails).
            for byte in &data {
                w.write_all(std::slice::from_ref(byte))?;
                w.flush()?;
                thread::sleep(Duration::from_millis(20));
            }
            return Ok(false);
        }
        _ => {}
    }
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )?;
    w.write_all(&data)?;
    Ok(true)
}
