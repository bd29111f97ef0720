//! What sidekick keeps per client connection: its place under `--max-conns`, the
//! client's address as backends are told it (`conn::client_addr`), and whether an answer has closed the
//! connection (`conn::closing`). A connection past the limit is answered 503 and
//! closed, never left waiting in the accept queue: a plain one at once, before its
//! request is read, so that it holds its file only until the event loop sees it
//! closed, even when the client sends nothing; a TLS one when its request comes (the
//! handler asks `over_limit`). The refusal's bytes come from the wiring: the
//! errors sidekick answers belong to the data path above.

use std::any::Any;
use std::cell::Cell;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use actix_rt::net::TcpStream;
use socket2::SockRef;

use crate::conn::client_addr::ClientAddr;

/// Held in each connection's data from accept until the connection closes.
pub struct ConnInfo {
    open: Arc<AtomicUsize>,
    over: bool,
    /// The client's address, worked out once per connection rather than per request.
    pub peer: Option<ClientAddr>,
    /// An answer on this HTTP/1 connection said `Connection: close`. A connection
    /// lives on one worker thread, so a `Cell` is enough.
    closing: Cell<bool>,
}

impl ConnInfo {
    /// Counts the connection in `open`; past `max` it is answered `refusal` (raw
    /// HTTP/1.1 that closes) when plain, and marked over the limit.
    /// `forward_loopback`: a loopback client's own address goes to backends
    /// (`--forward-loopback-addr`), not this host's.
    pub fn new(
        conn: &dyn Any,
        open: Arc<AtomicUsize>,
        max: usize,
        refusal: &[u8],
        forward_loopback: bool,
    ) -> Self {
        let over = open.fetch_add(1, Relaxed) >= max;
        if over {
            refuse(conn, refusal);
        }
        let peer = crate::tls::tcp_stream(conn)
            .and_then(|s| s.peer_addr().ok())
            .and_then(|a| ClientAddr::new(a.ip(), forward_loopback));
        ConnInfo {
            open,
            over,
            peer,
            closing: Cell::new(false),
        }
    }

    /// True when this connection was opened past the limit.
    pub fn over_limit(&self) -> bool {
        self.over
    }

    /// True once an answer on this connection has said it closes.
    pub fn closing(&self) -> bool {
        self.closing.get()
    }

    /// Records that an answer on this connection closes it.
    pub fn mark_closing(&self) {
        self.closing.set(true);
    }
}

/// Answers a plain connection and shuts it both ways: the worker then reads its end
/// and drops it. The answer is one small write into an empty send buffer, made
/// directly (the event loop has not yet seen the socket writable).
fn refuse(conn: &dyn Any, refusal: &[u8]) {
    if let Some(tcp) = conn.downcast_ref::<TcpStream>() {
        let socket = SockRef::from(tcp);
        let _ = socket.send(refusal);
        let _ = socket.shutdown(Shutdown::Both);
    }
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}
