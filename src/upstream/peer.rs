//! What the client needs to know of a server it talks to. The pool's backends and
//! the cache store's nodes are peers; the client knows nothing else of them, so
//! that it sits below the pool that checks them through it.

use std::net::IpAddr;
use std::sync::{Arc, Weak};

use crate::config::endpoints::Endpoint;

pub trait Peer {
    /// Stable for the life of the process: idle connections are kept by it.
    fn id(&self) -> usize;
    /// Scheme, host name (Host, SNI, certificate check) and port.
    fn endpoint(&self) -> &Endpoint;
    /// The one address to connect to (`--rr-dns-mode`); `None` resolves the name.
    fn address(&self) -> Option<IpAddr>;
    /// Counts request body bytes sent to it.
    fn sent(&self, bytes: u64);
    /// Alive as long as the peer is: a worker's idle connections to a peer that is
    /// gone (retired in `--rr-dns-mode`, its last request ended) are dropped.
    fn held(&self) -> Weak<()>;
}

impl<P: Peer + ?Sized> Peer for Arc<P> {
    fn id(&self) -> usize {
        (**self).id()
    }

    fn endpoint(&self) -> &Endpoint {
        (**self).endpoint()
    }

    fn address(&self) -> Option<IpAddr> {
        (**self).address()
    }

    fn sent(&self, bytes: u64) {
        (**self).sent(bytes);
    }

    fn held(&self) -> Weak<()> {
        (**self).held()
    }
}
