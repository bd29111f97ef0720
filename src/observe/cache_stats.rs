//! The S3 shared cache's counters: bumped by `cache` and `proxy` with relaxed atomics,
//! read by a scrape.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use log::debug;

/// What the cache made of one request (`X-Cache`, the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hit,
    Miss,
    Bypass,
    /// Cacheable, but the cache failed (a lookup error, a bad block): the origin
    /// answered, and the client sees a miss.
    Error,
}

impl Outcome {
    pub fn header(self) -> &'static str {
        match self {
            Outcome::Hit => "HIT",
            Outcome::Miss | Outcome::Error => "MISS",
            Outcome::Bypass => "BYPASS",
        }
    }
}

#[derive(Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub bypasses: AtomicU64,
    /// `Outcome::Error`.
    pub failed: AtomicU64,
    /// Body bytes sent to clients of cacheable requests, by where they came from.
    pub from_cache: AtomicU64,
    pub from_origin: AtomicU64,
    /// Block bytes written to the cache store.
    pub fill_bytes: AtomicU64,
    pub fills_dropped: AtomicU64,
    /// Fills whose writer is still storing spans.
    pub fills_writing: AtomicU64,
    /// Requests to the cache store that failed.
    pub errors: AtomicU64,
    /// Requests sent to the cache store.
    pub store_requests: AtomicU64,
    /// Fleet claims of a fill (`cache::claim`): taken by this sidekick, waited on
    /// (another sidecar held it), and given up on (its holder made no progress).
    pub claims_won: AtomicU64,
    pub claims_waited: AtomicU64,
    pub claims_expired: AtomicU64,
    /// Metadata objects read back that failed validation (a miss each).
    pub bad_meta: AtomicU64,
}

pub static STATS: CacheStats = CacheStats {
    hits: AtomicU64::new(0),
    misses: AtomicU64::new(0),
    bypasses: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    from_cache: AtomicU64::new(0),
    from_origin: AtomicU64::new(0),
    fill_bytes: AtomicU64::new(0),
    fills_dropped: AtomicU64::new(0),
    fills_writing: AtomicU64::new(0),
    errors: AtomicU64::new(0),
    store_requests: AtomicU64::new(0),
    claims_won: AtomicU64::new(0),
    claims_waited: AtomicU64::new(0),
    claims_expired: AtomicU64::new(0),
    bad_meta: AtomicU64::new(0),
};

impl CacheStats {
    pub fn outcome(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Miss => &self.misses,
            Outcome::Bypass => &self.bypasses,
            Outcome::Error => &self.failed,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts a failed cache store request and hands its error on.
    pub fn error<E: std::fmt::Display>(&self, e: E) -> E {
        self.errors.fetch_add(1, Relaxed);
        debug!("cache store: {e}");
        e
    }
}
