//! One backend server: its identity, the atomics the hot path updates, and the
//! in-flight guard that keeps them right however a request ends.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use crate::config::endpoints::Endpoint;
use crate::pool::latency::Latency;
use crate::pool::load::Load;
use crate::upstream::Peer;

pub struct Backend {
    /// Index in the pool's list of backends, stable for the life of the process.
    pub id: usize,
    /// Index of the site (0 = first on the command line).
    pub site: usize,
    pub endpoint: Endpoint,
    /// `Display` of the endpoint, computed once for logs.
    pub name: String,
    pub health_url: String,
    /// The one address to connect to when the endpoint is one address of a name
    /// (`--rr-dns-mode`); requests, SNI and certificate checks keep using the name.
    pub address: Option<IpAddr>,
    pub stats: BackendStats,
    /// Dropped with the backend; its weak handle tells workers' idle pools it is gone.
    held: Arc<()>,
}

/// Counters shared by the Pool actor and every worker; written with relaxed atomics
/// because each is independent and only read for selection and reporting.
#[derive(Default)]
pub struct BackendStats {
    pub in_flight: AtomicU64,
    /// Monotonic nanoseconds when the last request finished (0 = never).
    pub last_finished: AtomicU64,
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Request body bytes received from clients and sent to this backend.
    pub rx_bytes: AtomicU64,
    /// Response body bytes received from this backend and sent to clients.
    pub tx_bytes: AtomicU64,
    /// Requests that failed here before a response head and were sent elsewhere.
    pub retries: AtomicU64,
    /// Failed health checks (written by the Pool).
    pub health_errors: AtomicU64,
    /// Duration of the last successful health check in nanoseconds (written by the Pool).
    pub health_nanos: AtomicU64,
    /// Request durations, pick to last byte: histogram buckets, min and max.
    pub latency: Latency,
    /// 5xx answers in a row, for outlier detection.
    pub consecutive_5xx: AtomicU32,
    /// Up in the Pool's view (written by the Pool only; read by optimistic checkers).
    pub up: AtomicBool,
    /// Connections switched to another protocol (WebSocket) through this backend.
    pub upgrades: AtomicU64,
    /// Of those, the ones open now.
    pub upgraded_open: AtomicU64,
    /// Answer-head latency and load shedding, as `--host-balance p2c` weighs them.
    pub load: Load,
}

impl Backend {
    pub fn new(id: usize, site: usize, endpoint: Endpoint, health_url: String) -> Self {
        Backend {
            id,
            site,
            name: endpoint.to_string(),
            endpoint,
            health_url,
            address: None,
            stats: BackendStats::default(),
            held: Arc::default(),
        }
    }

    /// One address of an endpoint's name (`--rr-dns-mode`): connects to `address`,
    /// named, requested and checked as the endpoint.
    pub fn resolved(
        id: usize,
        site: usize,
        origin: &Endpoint,
        address: IpAddr,
        health_url: String,
    ) -> Self {
        Backend {
            id,
            site,
            name: format!("{origin} ({address})"),
            endpoint: origin.clone(),
            health_url,
            address: Some(address),
            stats: BackendStats::default(),
            held: Arc::default(),
        }
    }
}

impl Peer for Backend {
    fn id(&self) -> usize {
        self.id
    }

    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn address(&self) -> Option<IpAddr> {
        self.address
    }

    fn sent(&self, bytes: u64) {
        self.stats.rx_bytes.fetch_add(bytes, Relaxed);
    }

    fn held(&self) -> Weak<()> {
        Arc::downgrade(&self.held)
    }
}

impl BackendStats {
    /// The outcome of a health check (written by the Pool).
    pub fn health_checked(&self, result: &Result<Duration, String>) {
        match result {
            Ok(took) => self
                .health_nanos
                .store(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed),
            Err(_) => {
                self.health_errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// The backend answered that it sheds load (`429`, `503`): `p2c` avoids it for
    /// `retry_after` (`load::retry_after` reads it from the answer), 1 s when it
    /// said nothing, at most 10 s. One atomic, whatever the balance.
    pub fn shedding(&self, retry_after: Option<Duration>) {
        self.load.shed(retry_after, monotonic_nanos());
    }
}

/// Nanoseconds since the first call: a cheap monotonic clock for "least recently finished".
pub fn monotonic_nanos() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Counts a request in flight on a backend from pick until the response body has been
/// streamed to the client (or dropped, however the request ends).
/// Its lifetime is the request's duration in the latency statistics, unless `settle`
/// recorded the duration earlier.
pub struct InFlight {
    backend: Arc<Backend>,
    started: u64,
    settled: bool,
}

impl InFlight {
    pub fn new(backend: Arc<Backend>) -> Self {
        backend.stats.in_flight.fetch_add(1, Relaxed);
        backend.stats.calls.fetch_add(1, Relaxed);
        InFlight {
            backend,
            started: monotonic_nanos(),
            settled: false,
        }
    }

    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// The backend's answer head has come: its time since the pick (just before the
    /// request went out) is a sample of the backend's latency for `p2c`. One clock
    /// read (a vDSO `clock_gettime`, some 20 ns) and a few atomics on the backend's
    /// stats, so only `p2c` calls it.
    pub fn head_received(&self) {
        let now = monotonic_nanos();
        self.backend
            .stats
            .load
            .observe(now.saturating_sub(self.started), now);
    }

    /// Records the request's duration now, while it stays in flight: an upgraded
    /// connection's latency is its handshake, not the length of its session.
    pub fn settle(&mut self) {
        if !self.settled {
            self.settled = true;
            let now = monotonic_nanos();
            self.backend
                .stats
                .latency
                .record(now.saturating_sub(self.started));
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let stats = &self.backend.stats;
        let now = monotonic_nanos();
        stats.in_flight.fetch_sub(1, Relaxed);
        stats.last_finished.store(now.max(1), Relaxed);
        if !self.settled {
            stats.latency.record(now.saturating_sub(self.started));
        }
    }
}

/// `n` backends of one site, `http://h0:9000`…, ids 0…: for the policies' tests.
#[cfg(test)]
pub fn test_backends(n: usize) -> Vec<Arc<Backend>> {
    (0..n)
        .map(|i| {
            let ep = crate::config::endpoints::parse_endpoint(&format!("http://h{i}:9000"));
            Arc::new(Backend::new(i, 0, ep.unwrap(), String::new()))
        })
        .collect()
}
