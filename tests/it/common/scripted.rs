//! Raw backends whose every answer the test scripts: each request (health checks
//! are answered apart) goes to a closure with the node it reached and how many
//! times the same method and target had arrived at any node before. Arrivals and
//! connections are counted, and a held answer notices the connection closing.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::raw_server::{serve_requests, RawServer, Request};

/// What a node does with a request.
pub enum Act {
    /// Writes these bytes (a whole response) at once.
    Send(Vec<u8>),
    /// Writes the first, flushes, then the second.
    SendInTwo(Vec<u8>, Vec<u8>),
    /// Writes nothing until the test calls `release` (then these bytes) or the
    /// client closes the connection (counted in `closed_while_held`).
    Hold(Vec<u8>),
    /// Writes these bytes after this long.
    After(Duration, Vec<u8>),
}

/// A response with a body and its Content-Length; `extra` are header lines.
pub fn response(status: &str, extra: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

type Script = dyn Fn(&Request, usize, usize) -> Act + Send + Sync;

#[derive(Default)]
pub struct State {
    arrivals: Mutex<HashMap<String, usize>>,
    conns: Vec<AtomicUsize>,
    closed_while_held: AtomicUsize,
    released: AtomicBool,
}

pub struct Scripted {
    servers: Vec<RawServer>,
    state: Arc<State>,
}

impl Scripted {
    /// `n` nodes on free ports; `script(request, node, arrival)` decides each answer
    /// (`arrival` counts from 1 over every node).
    pub fn start(
        n: usize,
        script: impl Fn(&Request, usize, usize) -> Act + Send + Sync + 'static,
    ) -> Scripted {
        let state = Arc::new(State {
            conns: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            ..State::default()
        });
        let script: Arc<Script> = Arc::new(script);
        let servers = (0..n)
            .map(|node| {
                let (state, script) = (state.clone(), script.clone());
                RawServer::on_free_port(move |conn| {
                    state.conns[node].fetch_add(1, SeqCst);
                    serve_requests(conn, |req, w| {
                        if req.path().starts_with("/health/") {
                            w.write_all(&response("200 OK", &[], b""))?;
                            return Ok(true);
                        }
                        let arrival = {
                            let mut seen = state.arrivals.lock().unwrap();
                            let n = seen
                                .entry(format!("{} {}", req.method, req.target))
                                .or_default();
                            *n += 1;
                            *n
                        };
                        match script(&req, node, arrival) {
                            Act::Send(bytes) => w.write_all(&bytes)?,
                            Act::SendInTwo(first, second) => {
                                w.write_all(&first)?;
                                w.flush()?;
                                w.write_all(&second)?;
                            }
                            Act::Hold(bytes) => {
                                if !held(w.get_ref(), &state) {
                                    return Ok(false);
                                }
                                w.write_all(&bytes)?;
                            }
                            Act::After(pause, bytes) => {
                                thread::sleep(pause);
                                w.write_all(&bytes)?;
                            }
                        }
                        Ok(true)
                    })
                })
            })
            .collect();
        Scripted { servers, state }
    }

    /// The nodes as one site on sidekick's command line.
    pub fn site(&self) -> String {
        self.urls().join(",")
    }

    pub fn urls(&self) -> Vec<String> {
        self.servers
            .iter()
            .map(|s| format!("http://{}", s.addr))
            .collect()
    }

    /// Requests with this method and target that reached any node.
    pub fn arrivals(&self, method: &str, target: &str) -> usize {
        let seen = self.state.arrivals.lock().unwrap();
        seen.get(&format!("{method} {target}"))
            .copied()
            .unwrap_or(0)
    }

    /// Connections `node` accepted (health checks' included).
    pub fn conns(&self, node: usize) -> usize {
        self.state.conns[node].load(SeqCst)
    }

    /// Held answers whose connection the client closed.
    pub fn closed_while_held(&self) -> usize {
        self.state.closed_while_held.load(SeqCst)
    }

    /// Held answers go out.
    pub fn release(&self) {
        self.state.released.store(true, SeqCst);
    }
}

/// Waits until released (true) or the peer closes the connection (false).
fn held(conn: &TcpStream, state: &State) -> bool {
    let _ = conn.set_read_timeout(Some(Duration::from_millis(20)));
    let mut byte = [0u8; 1];
    let released = loop {
        match conn.peek(&mut byte) {
            Ok(0) => break false,
            Ok(_) => break true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if state.released.load(SeqCst) {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = conn.set_read_timeout(None);
    if !released {
        state.closed_while_held.fetch_add(1, SeqCst);
    }
    released
}
