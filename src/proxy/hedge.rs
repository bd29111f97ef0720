//! When a read is hedged (`--hedge`): how long a GET or HEAD waits for its answer's
//! head before the same request goes to a second backend too. The delay is the
//! site's p95 request duration over about the last minute, from the latency
//! histograms the backends keep anyway, between a floor and a ceiling. Each worker
//! keeps its own estimate, refreshed at most once a second: a request reads a
//! cached figure and never scans the histograms. The race itself is the retry
//! engine's (`attempts`).
//!
//! The histograms count requests from pick to last byte, so the figure is an
//! upper estimate of how long a head takes: hedges err towards late, never early.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::pool::backend::Backend;
use crate::pool::latency::Counts;

/// Past this share of its site's requests, a request is late. Hedging the slowest
/// 5% costs at most about 5% more requests, and takes the tail off the p99.
const QUANTILE: f64 = 0.95;
/// Below this, a second request costs a backend more than it saves the client:
/// loopback and LAN answers come in a few milliseconds, and jitter of that order
/// is not a sick node.
const FLOOR: Duration = Duration::from_millis(10);
/// A head this late is worth a second request whatever the site's history says;
/// also the delay while too little is known.
const CEILING: Duration = Duration::from_secs(1);
/// How far back the figure looks, and how often a snapshot of the site's
/// histograms is kept to diff against.
const WINDOW: Duration = Duration::from_secs(60);
const SNAPSHOT: Duration = Duration::from_secs(10);
/// How long a worker uses the same figure.
const REFRESH: Duration = Duration::from_secs(1);
/// Fewer requests than this in the window say too little of the tail: the whole
/// life's histograms decide, and without that many either, the ceiling.
const MIN_SAMPLES: u64 = 50;

/// One worker's hedge delays, per site.
#[derive(Default)]
pub struct Delays {
    sites: RefCell<Vec<Site>>,
}

#[derive(Default)]
struct Site {
    /// The site's summed histograms at moments `SNAPSHOT` apart, oldest first; the
    /// oldest no more than one snapshot past `WINDOW` old.
    snapshots: VecDeque<(Instant, Counts)>,
    delay: Duration,
    computed: Option<Instant>,
}

impl Delays {
    /// The hedge delay for a request to `site`, whose backends up are `backends`.
    pub fn delay(&self, site: usize, backends: &[Arc<Backend>]) -> Duration {
        self.delay_at(site, Instant::now(), || {
            let mut sum = Counts::default();
            for b in backends {
                sum.add(&b.stats.latency.counts());
            }
            sum
        })
    }

    fn delay_at(&self, site: usize, now: Instant, counts: impl FnOnce() -> Counts) -> Duration {
        let mut sites = self.sites.borrow_mut();
        if sites.len() <= site {
            sites.resize_with(site + 1, Site::default);
        }
        let Some(s) = sites.get_mut(site) else {
            return CEILING;
        };
        match s.computed {
            Some(at) if now.saturating_duration_since(at) < REFRESH => s.delay,
            _ => {
                s.delay = s.refresh(counts(), now);
                s.computed = Some(now);
                s.delay
            }
        }
    }
}

impl Site {
    fn refresh(&mut self, counts: Counts, now: Instant) -> Duration {
        let age = |t: &Instant| now.saturating_duration_since(*t);
        if self
            .snapshots
            .back()
            .map_or(true, |(t, _)| age(t) >= SNAPSHOT)
        {
            self.snapshots.push_back((now, counts));
        }
        // The base is the newest snapshot at least a window old (else the oldest).
        while self.snapshots.get(1).is_some_and(|(t, _)| age(t) >= WINDOW) {
            self.snapshots.pop_front();
        }
        let base = self.snapshots.front().map(|(_, c)| *c).unwrap_or_default();
        let recent = counts.since(&base);
        let figure = if recent.total() >= MIN_SAMPLES {
            recent.quantile(QUANTILE)
        } else if counts.total() >= MIN_SAMPLES {
            counts.quantile(QUANTILE)
        } else {
            None
        };
        figure.map_or(CEILING, |d| d.clamp(FLOOR, CEILING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::latency::Latency;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_delay_follows_the_last_minute_between_floor_and_ceiling() {
        let site = Latency::default();
        let delays = Delays::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Nothing known yet: the ceiling.
        assert_eq!(delays.delay_at(0, at(0), || site.counts()), CEILING);
        // A fast site: its p95 is under the floor.
        for _ in 0..100 {
            site.record(2 * MS);
        }
        // Still the same figure within the second: no new look at the histograms.
        assert_eq!(delays.delay_at(0, at(0), || unreachable!()), CEILING);
        assert_eq!(delays.delay_at(0, at(1), || site.counts()), FLOOR);
        // It slows down: 20% of requests take 40 ms.
        for i in 0..200 {
            site.record(if i % 5 == 0 { 40 * MS } else { 2 * MS });
        }
        let slow = delays.delay_at(0, at(2), || site.counts());
        assert!(slow > Duration::from_millis(25) && slow <= Duration::from_millis(50));
        // Snapshots every 10 s; two minutes of fast requests push the slow ones out.
        for s in (10..=130).step_by(10) {
            for _ in 0..100 {
                site.record(2 * MS);
            }
            delays.delay_at(0, at(s), || site.counts());
        }
        assert_eq!(delays.delay_at(0, at(131), || site.counts()), FLOOR);
        // Whole seconds late: the ceiling.
        for _ in 0..1000 {
            site.record(5_000 * MS);
        }
        assert_eq!(delays.delay_at(0, at(140), || site.counts()), CEILING);
        // Another site has its own figure.
        assert_eq!(delays.delay_at(1, at(140), Counts::default), CEILING);
    }
}
