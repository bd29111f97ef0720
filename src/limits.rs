//! The open-file limit. At start sidekick raises its soft `RLIMIT_NOFILE` to the hard
//! limit, then serves only as many client connections as the limit holds: each may
//! use a backend connection too, and sidekick keeps files of its own and room to
//! answer 503 to connections over the limit. Past the limit `accept` would fail
//! (EMFILE), leaving the newest clients hanging in the kernel's queue and requests
//! already accepted without a backend connection.

use crate::config::Config;

/// Files sidekick keeps besides connections: standard streams, the accept loop and
/// the control thread with their wakers, listeners, signals, the trace writer and
/// certificate files being read.
const OWN: u64 = 32;
/// Per worker: its event loop and waker.
const PER_WORKER: u64 = 4;
/// Per backend endpoint: its health-check connection and a name lookup.
const PER_BACKEND: u64 = 2;
/// Client connections over the limit that may be open at once while they are
/// answered 503: accepting them must never fail.
const REFUSING: u64 = 32;

/// What the open-file limit allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Client connections served at once: `--max-conns`, or fewer when the limit
    /// cannot hold that many.
    pub max_conns: usize,
    /// Client connections each worker accepts at once (served and refused); past
    /// this a worker takes no more until some close.
    pub per_worker: usize,
}

/// Files kept aside from client and backend connections.
pub fn reserve(workers: usize, backends: usize) -> u64 {
    OWN + PER_WORKER * workers as u64 + PER_BACKEND * backends as u64 + REFUSING
}

/// The capacity within `files` open files: each served client connection counts
/// twice (it may hold a backend connection), after the reserve.
pub fn fit(files: u64, max_conns: u32, workers: usize, backends: usize) -> Capacity {
    let workers = workers.max(1);
    let room = files.saturating_sub(reserve(workers, backends)) / 2;
    let max_conns = u64::from(max_conns).min(room).max(1);
    // Whole connections per worker, so that all workers together stay within the
    // served plus the refused ones.
    let per_worker = ((max_conns + REFUSING) / workers as u64).max(1);
    Capacity {
        max_conns: usize::try_from(max_conns).unwrap_or(usize::MAX),
        per_worker: usize::try_from(per_worker).unwrap_or(usize::MAX),
    }
}

/// Raises the soft open-file limit as far as allowed and returns the capacity it
/// gives, saying so once (unless `--quiet`) when it is less than `--max-conns`.
pub fn apply(cfg: &Config) -> Capacity {
    let backends = cfg.sites.iter().map(Vec::len).sum();
    let files = raise_nofile();
    let capacity = fit(files, cfg.max_conns, cfg.workers, backends);
    if (capacity.max_conns as u64) < u64::from(cfg.max_conns) && !cfg.quiet {
        eprintln!(
            "warning: the open-file limit is {files}, too low for --max-conns {}: \
             serving at most {} client connections, (limit - {} kept for sidekick) / 2 \
             as each may hold a backend connection; raise the hard limit \
             (ulimit -Hn, systemd LimitNOFILE=) to serve more",
            cfg.max_conns,
            capacity.max_conns,
            reserve(cfg.workers.max(1), backends),
        );
    }
    capacity
}

/// Sets the soft `RLIMIT_NOFILE` to the hard one and returns the soft limit then in
/// force (`u64::MAX` when unlimited).
#[cfg(unix)]
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    // `None` is unlimited.
    let mut lim = getrlimit(Resource::Nofile);
    let below_hard = match (lim.current, lim.maximum) {
        (Some(soft), Some(hard)) => soft < hard,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if below_hard {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        // It can be refused (macOS caps the soft limit below an unlimited hard one):
        // the old limit then stays.
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim.current = lim.maximum;
        }
    }
    lim.current.unwrap_or(u64::MAX)
}

#[cfg(not(unix))]
fn raise_nofile() -> u64 {
    u64::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_high_limit_keeps_max_conns() {
        let c = fit(1 << 20, 10_000, 2, 4);
        assert_eq!(c.max_conns, 10_000);
        assert_eq!(c.per_worker, (10_000 + 32) / 2);
        assert_eq!(fit(u64::MAX, u32::MAX, 1, 1).max_conns, u32::MAX as usize);
    }

    #[test]
    fn a_low_limit_lowers_max_conns_to_what_fits() {
        // 1024 files, 2 workers, 4 backends: 32 + 8 + 8 + 32 = 80 kept.
        assert_eq!(reserve(2, 4), 80);
        let c = fit(1024, 10_000, 2, 4);
        assert_eq!(c.max_conns, (1024 - 80) / 2);
        // Everything accepted at once, with a backend connection for each served one,
        // stays within the limit.
        let accepted = c.per_worker as u64 * 2;
        assert!(accepted + c.max_conns as u64 + reserve(2, 4) - REFUSING <= 1024);
    }

    #[test]
    fn a_tiny_limit_still_serves_one() {
        let c = fit(16, 10_000, 4, 1);
        assert_eq!(c.max_conns, 1);
        assert_eq!(c.per_worker, (1 + 32) / 4);
        assert_eq!(fit(100, 10_000, 64, 1).per_worker, 1);
    }
}
