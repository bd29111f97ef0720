//! What the pool tells the operator of an outage: a backend going down or coming back,
//! traffic moving between sites, every backend down and back up. These lines go to one
//! log target that `observe::logging` keeps on without `--log`, so a sidecar whose
//! stdout is no terminal still says why it answers 502. Only transitions are logged,
//! never a request. A backend's lines carry its state as key-values as well
//! (`endpoint`, `status`, `error`, `downtime_ns`): `--json` writes them in the Go
//! tool's fields.

use std::time::{Duration, Instant};

use log::{info, warn};

/// The log target of every line here (and of the start-up checks).
pub const TARGET: &str = "sidekick::events";

/// A backend left the view.
pub fn down(name: &str, reason: &str) {
    warn!(
        target: TARGET,
        endpoint = name, status = "down", error = reason;
        "{name} is down: {reason}"
    );
}

/// A backend came back after `down_for`.
pub fn up(name: &str, down_for: Duration) {
    let downtime_ns = u64::try_from(down_for.as_nanos()).unwrap_or(u64::MAX);
    info!(
        target: TARGET,
        endpoint = name, status = "up", downtime_ns = downtime_ns;
        "{name} is up (was down {})",
        humantime::format_duration(round_ms(down_for))
    );
}

/// A backend's first state is up: no outage, so only `--log` shows it.
pub fn first_up(name: &str) {
    info!(endpoint = name, status = "up"; "{name} is up");
}

/// A change of the site that serves traffic.
#[derive(Debug, PartialEq, Eq)]
pub enum Change {
    /// The first site to serve after start.
    First { site: usize },
    /// Every backend of `from` is down: traffic moved on to the later site `to`.
    Failover { from: usize, to: usize },
    /// The earlier site `to` has a backend up again and takes the traffic back.
    Failback { from: usize, to: usize },
    /// No backend is up anywhere: requests get 502.
    AllDown,
    /// A backend is up again after every one was down for `outage`.
    BackUp { site: usize, outage: Duration },
}

impl Change {
    /// Logs the change; `sites` is how many there are (one site has no site lines).
    /// The cache store's nodes have lines of their own: none of them is an outage.
    pub fn log(&self, sites: usize, cache_store: bool) {
        if cache_store {
            return self.log_cache_store();
        }
        let many = sites > 1;
        match *self {
            // Settling at start is no outage: only `--log` shows it.
            Change::First { site } if many => info!("site {} serves traffic", site + 1),
            Change::First { .. } => {}
            Change::Failover { from, to } => warn!(
                target: TARGET,
                "site {} serves traffic: no backend of site {} is up",
                to + 1,
                from + 1
            ),
            Change::Failback { from, to } => info!(
                target: TARGET,
                "site {} serves traffic again instead of site {}",
                to + 1,
                from + 1
            ),
            Change::AllDown => warn!(
                target: TARGET,
                "every backend is down: requests get 502 until one is up"
            ),
            Change::BackUp { site, outage } => {
                let outage = humantime::format_duration(round_ms(outage));
                if many {
                    info!(
                        target: TARGET,
                        "backends are up again after {outage}: site {} serves traffic",
                        site + 1
                    );
                } else {
                    info!(target: TARGET, "backends are up again after {outage}");
                }
            }
        }
    }
}

impl Change {
    fn log_cache_store(&self) {
        match *self {
            Change::AllDown => warn!(
                target: TARGET,
                "every cache node is down: reads go to the origin only until one is up"
            ),
            Change::BackUp { outage, .. } => info!(
                target: TARGET,
                "cache nodes are up again after {}",
                humantime::format_duration(round_ms(outage))
            ),
            _ => {}
        }
    }
}

/// Which site serves traffic, and since when none does.
#[derive(Default)]
pub struct Serving {
    /// The site serving now; `None` before the first one and while every backend is down.
    active: Option<usize>,
    /// Since when no backend is up, once that was known.
    outage: Option<Instant>,
    /// The last site that served, and how often traffic moved on to a later site.
    last: Option<usize>,
    pub failovers: u64,
}

impl Serving {
    /// Takes the first site with a backend up (`active`); `settled` says that every
    /// backend has reported once, so that none up at start is an outage and not just
    /// early. Returns what changed.
    pub fn update(&mut self, active: Option<usize>, settled: bool, now: Instant) -> Option<Change> {
        let change = match (self.active, active) {
            (Some(from), Some(to)) if to > from => Some(Change::Failover { from, to }),
            (Some(from), Some(to)) if to < from => Some(Change::Failback { from, to }),
            (Some(_), Some(_)) => None,
            (Some(_), None) => {
                self.outage = Some(now);
                Some(Change::AllDown)
            }
            (None, Some(site)) => Some(match self.outage.take() {
                Some(since) => Change::BackUp {
                    site,
                    outage: now.saturating_duration_since(since),
                },
                None => Change::First { site },
            }),
            (None, None) if settled && self.outage.is_none() => {
                self.outage = Some(now);
                Some(Change::AllDown)
            }
            (None, None) => None,
        };
        self.active = active;
        // Moving back to an earlier site (or settling at start-up) is no failover.
        if let Some(site) = active {
            if self.last.is_some_and(|last| site > last) {
                self.failovers += 1;
            }
            self.last = Some(site);
        }
        change
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failover_outage_and_return() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut s = Serving::default();
        // Nothing up yet, but not every backend has reported: no outage.
        assert_eq!(s.update(None, false, at(0)), None);
        assert_eq!(
            s.update(Some(0), true, at(1)),
            Some(Change::First { site: 0 })
        );
        assert_eq!(s.update(Some(0), true, at(2)), None);
        assert_eq!(
            s.update(Some(1), true, at(3)),
            Some(Change::Failover { from: 0, to: 1 })
        );
        assert_eq!(s.failovers, 1);
        assert_eq!(s.update(None, true, at(4)), Some(Change::AllDown));
        assert_eq!(s.update(None, true, at(5)), None);
        assert_eq!(
            s.update(Some(1), true, at(10)),
            Some(Change::BackUp {
                site: 1,
                outage: Duration::from_secs(6)
            })
        );
        assert_eq!(
            s.update(Some(0), true, at(11)),
            Some(Change::Failback { from: 1, to: 0 })
        );
        assert_eq!(s.failovers, 1);
    }

    #[test]
    fn every_backend_down_from_the_start_is_an_outage_once_all_reported() {
        let t0 = Instant::now();
        let mut s = Serving::default();
        assert_eq!(s.update(None, false, t0), None);
        assert_eq!(s.update(None, true, t0), Some(Change::AllDown));
        assert_eq!(s.update(None, true, t0), None);
        assert!(matches!(
            s.update(Some(0), true, t0 + Duration::from_secs(2)),
            Some(Change::BackUp { site: 0, .. })
        ));
    }
}
