//! What sidekick keeps per client connection: its place under `--max-conns`, the
//! client address as a ready header value, and whether an answer has closed the
//! connection (`conn::closing`). A connection past the limit is answered 503 and
//! closed, never left waiting in the accept queue: a plain one at once, before its
//! request is read, so that it holds its file only until the event loop sees it
//! closed, even when the client sends nothing; a TLS one when its request comes (the
//! handler asks `over_limit`). The refusal's bytes come from the wiring: the
//! errors sidekick answers belong to the data path above.

use std::any::Any;
use std::cell::Cell;
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use actix_rt::net::TcpStream;
use actix_web::http::header::HeaderValue;
use socket2::SockRef;

/// Held in each connection's data from accept until the connection closes.
pub struct ConnInfo {
    open: Arc<AtomicUsize>,
    over: bool,
    /// The client's address, formatted once per connection rather than per request.
    pub peer: Option<HeaderValue>,
    /// An answer on this HTTP/1 connection said `Connection: close`. A connection
    /// lives on one worker thread, so a `Cell` is enough.
    closing: Cell<bool>,
}

impl ConnInfo {
    /// Counts the connection in `open`; past `max` it is answered `refusal` (raw
    /// HTTP/1.1 that closes) when plain, and marked over the limit.
    pub fn new(conn: &dyn Any, open: Arc<AtomicUsize>, max: usize, refusal: &[u8]) -> Self {
        let over = open.fetch_add(1, Relaxed) >= max;
        if over {
            refuse(conn, refusal);
        }
        let peer = crate::tls::tcp_stream(conn)
            .and_then(|s| s.peer_addr().ok())
            .and_then(|a| peer_value(a.ip()));
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

fn peer_value(ip: IpAddr) -> Option<HeaderValue> {
    HeaderValue::from_str(&ip.to_canonical().to_string()).ok()
}

impl Drop for ConnInfo {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_shown_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(peer_value(mapped).unwrap(), "10.0.0.1");
        assert_eq!(peer_value("::1".parse().unwrap()).unwrap(), "::1");
    }
}
