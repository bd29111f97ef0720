//! A worker's idle keep-alive connections, per backend. Only its own thread uses
//! it, so it needs no lock; a timer closes what has been idle too long, and drops
//! the connections to a backend nothing else holds any more (one retired from the
//! pool in `--rr-dns-mode` once its last request has ended).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{self, Rc};
use std::sync::Weak;
use std::time::{Duration, Instant};

use super::conn::Conn;
use super::peer::Peer;

/// Largest read buffer an idle connection keeps.
const RETAINED_BUFFER: usize = 16 * 1024;
/// Idle connections kept per backend and worker, like nginx's `keepalive`: more
/// than the recent peak of concurrent requests is only held memory and sockets.
const MAX_IDLE: usize = 64;

/// Which backend a connection is kept for, and whether that backend still exists.
#[derive(Clone)]
pub struct IdleKey {
    pub id: usize,
    held: Weak<()>,
}

impl IdleKey {
    pub fn of<P: Peer + ?Sized>(peer: &P) -> Self {
        IdleKey {
            id: peer.id(),
            held: peer.held(),
        }
    }
}

pub struct Idle {
    /// By backend id (ids are never reused).
    conns: RefCell<BTreeMap<usize, Slot>>,
    idle_timeout: Duration,
    lifetime: Duration,
    sweeping: Cell<bool>,
}

struct Slot {
    /// Does not keep the backend: once it is gone, so is the slot, at the next sweep.
    backend: Weak<()>,
    /// The most recently used connection last.
    list: Vec<Conn>,
}

impl Idle {
    pub fn new(idle_timeout: Duration, lifetime: Duration) -> Rc<Self> {
        Rc::new(Idle {
            conns: RefCell::new(BTreeMap::new()),
            idle_timeout,
            lifetime,
            sweeping: Cell::new(false),
        })
    }

    fn usable(&self, conn: &mut Conn, now: Instant) -> bool {
        now.duration_since(conn.idle_since) < self.idle_timeout
            && now.duration_since(conn.opened) < self.lifetime
            && conn.is_alive()
    }

    /// The warmest usable connection to backend `id`, if it has been idle for less
    /// than `fresh`; dead or expired ones on the way are closed.
    pub fn take(&self, id: usize, fresh: Duration) -> Option<Conn> {
        let mut conns = self.conns.borrow_mut();
        let list = &mut conns.get_mut(&id)?.list;
        let now = Instant::now();
        while list
            .last()
            .is_some_and(|c| now.duration_since(c.idle_since) < fresh)
        {
            let mut conn = list.pop()?;
            if self.usable(&mut conn, now) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps a connection to `backend` whose last response was read completely.
    pub fn put(self: &Rc<Self>, backend: &IdleKey, mut conn: Conn) {
        conn.idle_since = Instant::now();
        // Let a large transfer's read buffer go rather than keep it idle. After
        // split_to, capacity() counts only the unused tail: try_reclaim tells
        // whether the whole allocation is larger.
        if conn.buf.capacity() > RETAINED_BUFFER || conn.buf.try_reclaim(RETAINED_BUFFER + 1) {
            conn.buf = bytes::BytesMut::new();
        }
        {
            let mut conns = self.conns.borrow_mut();
            let slot = conns.entry(backend.id).or_insert_with(|| Slot {
                backend: backend.held.clone(),
                list: Vec::new(),
            });
            if slot.list.len() < MAX_IDLE {
                slot.list.push(conn);
            }
        }
        if !self.sweeping.replace(true) {
            actix_rt::spawn(sweep(Rc::downgrade(self)));
        }
    }

    /// Closes every idle connection to backend `id` (after one proved stale).
    pub fn clear(&self, id: usize) {
        if let Some(slot) = self.conns.borrow_mut().get_mut(&id) {
            slot.list.clear();
        }
    }

    fn sweep_once(&self) {
        let now = Instant::now();
        self.conns.borrow_mut().retain(|_, slot| {
            slot.list.retain_mut(|conn| self.usable(conn, now));
            slot.backend.strong_count() > 0
        });
    }
}

/// Closes expired connections and those the backend closed, so that none lingers
/// half-closed; ends with the worker.
async fn sweep(idle: rc::Weak<Idle>) {
    let period = match idle.upgrade() {
        Some(idle) => {
            (idle.idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(5))
        }
        None => return,
    };
    let mut timer = actix_rt::time::interval(period);
    loop {
        timer.tick().await;
        match idle.upgrade() {
            Some(idle) => idle.sweep_once(),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::conn::Io;
    use super::*;

    /// A connection to a listener that accepted it, with `buf` as its read buffer.
    async fn connection(buf: bytes::BytesMut) -> (Conn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = actix_rt::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().unwrap();
        let now = Instant::now();
        let conn = Conn {
            io: Io::Plain(client),
            local: None,
            buf,
            opened: now,
            idle_since: now,
        };
        (conn, server)
    }

    /// A peer as the pool's backends are: alive while something holds it.
    struct Node {
        id: usize,
        endpoint: crate::config::endpoints::Endpoint,
        held: std::sync::Arc<()>,
    }

    impl Peer for Node {
        fn id(&self) -> usize {
            self.id
        }
        fn endpoint(&self) -> &crate::config::endpoints::Endpoint {
            &self.endpoint
        }
        fn address(&self) -> Option<std::net::IpAddr> {
            None
        }
        fn sent(&self, _: u64) {}
        fn held(&self) -> Weak<()> {
            std::sync::Arc::downgrade(&self.held)
        }
    }

    fn backend(id: usize) -> Node {
        let endpoint = crate::config::endpoints::parse_endpoint("http://b:9000").unwrap();
        Node {
            id,
            endpoint,
            held: Default::default(),
        }
    }

    #[test]
    fn a_kept_connection_lets_a_large_read_buffer_go() {
        actix_rt::System::new().block_on(async {
            // A 256 KiB read buffer whose data has all been split off: capacity()
            // shows only the last 100 bytes.
            let mut buf = bytes::BytesMut::with_capacity(256 << 10);
            buf.resize((256 << 10) - 100, 0);
            drop(buf.split());
            assert!(buf.capacity() <= RETAINED_BUFFER);
            let (conn, _server) = connection(buf).await;
            let idle = Idle::new(Duration::from_secs(60), Duration::from_secs(3600));
            idle.put(&IdleKey::of(&backend(0)), conn);
            let mut kept = idle.take(0, Duration::MAX).unwrap();
            assert!(!kept.buf.try_reclaim(RETAINED_BUFFER + 1));
        });
    }

    #[test]
    fn uploads_take_only_recently_used_connections() {
        actix_rt::System::new().block_on(async {
            let (conn, _server) = connection(bytes::BytesMut::new()).await;
            let idle = Idle::new(Duration::from_secs(60), Duration::from_secs(3600));
            let b = backend(0);
            idle.put(&IdleKey::of(&b), conn);
            // As if it had been idle for two seconds.
            idle.conns.borrow_mut().get_mut(&0).unwrap().list[0].idle_since =
                Instant::now() - Duration::from_secs(2);
            assert!(idle.take(0, super::super::STREAM_REUSE).is_none());
            assert!(idle.take(0, Duration::MAX).is_some());
        });
    }

    #[test]
    fn connections_to_a_backend_nothing_holds_go_at_the_next_sweep() {
        actix_rt::System::new().block_on(async {
            let idle = Idle::new(Duration::from_secs(60), Duration::from_secs(3600));
            let (kept, retired) = (backend(0), backend(1));
            let (a, _server_a) = connection(bytes::BytesMut::new()).await;
            let (b, _server_b) = connection(bytes::BytesMut::new()).await;
            idle.put(&IdleKey::of(&kept), a);
            idle.put(&IdleKey::of(&retired), b);
            idle.sweep_once();
            assert_eq!(idle.conns.borrow().len(), 2);
            // The pool let it go and its last request ended.
            drop(retired);
            idle.sweep_once();
            assert_eq!(idle.conns.borrow().keys().collect::<Vec<_>>(), [&0]);
            assert!(idle.take(0, Duration::MAX).is_some());
        });
    }
}
