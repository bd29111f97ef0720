//! A cache store that lies, for the tests: a raw S3-like server that keeps what
//! sidekick PUTs and serves it back, except where a test tells it to misbehave
//! (lengths of an exabyte, metadata edited, blocks cut short or dripped, PUTs
//! refused). Every object request is recorded with its answer; readiness checks
//! (`/health`) always pass. Killed (listener and connections) on drop.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::read_head;

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
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

pub struct HostileStore {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl HostileStore {
    pub fn start() -> HostileStore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the cache store");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            objects: Mutex::default(),
            asked: Mutex::default(),
            trick: Mutex::new(Trick::Honest),
            conns: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let shared = state.clone();
        thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                if let Ok(c) = conn.try_clone() {
                    shared.conns.lock().unwrap().push(c);
                }
                let shared = shared.clone();
                thread::spawn(move || serve(conn, &shared));
            }
        });
        HostileStore { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `--cache-*` flags that point sidekick here, for small test objects.
    pub fn flags(&self) -> Vec<String> {
        [
            "--cache-endpoint",
            &self.url(),
            "--cache-bucket",
            BUCKET,
            "--cache-access-key",
            "hostile",
            "--cache-secret-key",
            "hostile-secret",
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

impl Drop for HostileStore {
    fn drop(&mut self) {
        self.state.stop.store(true, SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        for c in self.state.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn serve(conn: TcpStream, state: &State) {
    let Ok(w) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    let mut w = BufWriter::new(w);
    while let Ok(true) = serve_one(&mut r, &mut w, state) {
        if w.flush().is_err() {
            break;
        }
    }
    let _ = w.flush();
    let _ = w.get_ref().shutdown(Shutdown::Both);
}

/// Answers one request; `Ok(false)` when the connection is to close after it.
fn serve_one(
    r: &mut BufReader<TcpStream>,
    w: &mut BufWriter<TcpStream>,
    state: &State,
) -> std::io::Result<bool> {
    let (start, headers) = read_head(r)?;
    let mut parts = start.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("");
    let path = target.split('?').next().unwrap_or("");
    let mut body = Vec::new();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<u64>().ok());
    if let Some(len) = length {
        r.by_ref().take(len).read_to_end(&mut body)?;
    }
    if path == "/health" {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(true);
    }
    let key = path
        .strip_prefix(&format!("/{BUCKET}/"))
        .unwrap_or(path)
        .to_string();
    let trick = state.trick.lock().unwrap().clone();
    let record = |status: u16| {
        state.asked.lock().unwrap().push(Asked {
            method: method.clone(),
            key: key.clone(),
            status,
        })
    };
    let block = key.starts_with("blocks/");
    if method == "PUT" {
        if block && matches!(trick, Trick::RefusedBlockPuts) {
            write!(
                w,
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
            )?;
            w.flush()?;
            record(500);
            return Ok(true);
        }
        state.objects.lock().unwrap().insert(key.clone(), body);
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
        write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
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
        Trick::DrippedBlocks if block => {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                data.len()
            )?;
            // Until sidekick gives up on it (a write fails) or the store is dropped.
            for byte in &data {
                w.write_all(std::slice::from_ref(byte))?;
                w.flush()?;
                if state.stop.load(SeqCst) {
                    break;
                }
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
