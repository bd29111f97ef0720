//! Request durations of one backend, as atomics the hot path bumps and a scrape reads.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the request duration histogram, in nanoseconds (1 ms … 60 s).
const BOUNDS_NANOS: [u64; 14] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    60_000_000_000,
];
const BUCKETS: usize = BOUNDS_NANOS.len() + 1;

/// Request durations of one backend: a fixed-bucket histogram, min and max, all atomics.
pub struct Latency {
    /// Per-bucket counts (not cumulative); the last is +Inf.
    buckets: [AtomicU64; BUCKETS],
    sum_nanos: AtomicU64,
    min_nanos: AtomicU64,
    max_nanos: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            min_nanos: AtomicU64::new(u64::MAX),
            max_nanos: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub fn record(&self, nanos: u64) {
        let i = BOUNDS_NANOS
            .iter()
            .position(|&b| nanos <= b)
            .unwrap_or(BUCKETS - 1);
        if let Some(bucket) = self.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        self.sum_nanos.fetch_add(nanos, Relaxed);
        // Read first: once warm, min and max rarely change, and a load does not
        // take the cache line away from other workers.
        if nanos < self.min_nanos.load(Relaxed) {
            self.min_nanos.fetch_min(nanos, Relaxed);
        }
        if nanos > self.max_nanos.load(Relaxed) {
            self.max_nanos.fetch_max(nanos, Relaxed);
        }
    }

    pub fn min(&self) -> Option<Duration> {
        match self.min_nanos.load(Relaxed) {
            u64::MAX => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    pub fn max(&self) -> Option<Duration> {
        self.min()?;
        Some(Duration::from_nanos(self.max_nanos.load(Relaxed)))
    }

    /// `(sum in seconds, count, [(upper bound, count in bucket)])`, the last bound +Inf.
    pub fn histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = BOUNDS_NANOS
                    .get(i)
                    .map_or(f64::INFINITY, |&b| b as f64 / 1e9);
                (bound, n.load(Relaxed))
            })
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        (self.sum_nanos.load(Relaxed) as f64 / 1e9, count, buckets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_min_max() {
        let l = Latency::default();
        assert_eq!(l.min(), None);
        assert_eq!(l.max(), None);
        l.record(500_000); // 0.5 ms → first bucket
        l.record(1_000_000); // on the bound → first bucket
        l.record(3_000_000); // → 5 ms bucket
        l.record(120_000_000_000); // → +Inf
        let (sum, count, buckets) = l.histogram();
        assert_eq!(count, 4);
        assert_eq!(buckets[0], (0.001, 2));
        assert_eq!(buckets[2], (0.005, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert!((sum - 120.0045).abs() < 1e-9, "{sum}");
        assert_eq!(l.min(), Some(Duration::from_micros(500)));
        assert_eq!(l.max(), Some(Duration::from_secs(120)));
    }
}
