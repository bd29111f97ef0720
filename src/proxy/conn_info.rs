//! What sidekick keeps per client connection: its place under `--max-conns`
//! (connections past the limit are answered 503 and closed, never left waiting in the
//! accept queue), the client address as a ready header value, and whether an answer
//! has closed the connection (`proxy::closing`).

use std::any::Any;
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use actix_web::http::header::HeaderValue;

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
    pub fn new(conn: &dyn Any, open: Arc<AtomicUsize>, max: usize) -> Self {
        let before = open.fetch_add(1, Relaxed);
        let peer = crate::tls::tcp_stream(conn)
            .and_then(|s| s.peer_addr().ok())
            .and_then(|a| peer_value(a.ip()));
        ConnInfo {
            open,
            over: before >= max,
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
