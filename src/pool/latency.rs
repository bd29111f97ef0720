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

    /// The bucket counts now, to be added up and diffed without allocating.
    pub fn counts(&self) -> Counts {
        Counts(std::array::from_fn(|i| self.buckets[i].load(Relaxed)))
    }
}

/// Bucket counts of one or more histograms at one moment: the difference of two
/// moments is what happened between them (the histograms only ever grow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts([u64; BUCKETS]);

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.saturating_add(b);
        }
    }

    /// What was counted after `earlier`. Saturating: a backend gone from the sum
    /// since then takes its counts with it.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0 to 1), interpolated linearly inside its bucket as
    /// Prometheus' `histogram_quantile` does; in the +Inf bucket, the last bound.
    /// `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.0.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let Some(&upper) = BOUNDS_NANOS.get(i) else {
                    break;
                };
                let lower = if i == 0 { 0 } else { BOUNDS_NANOS[i - 1] };
                let share = (rank - below as f64) / n as f64;
                let nanos = lower as f64 + (upper - lower) as f64 * share;
                return Some(Duration::from_nanos(nanos as u64));
            }
            below += n;
        }
        BOUNDS_NANOS.last().map(|&n| Duration::from_nanos(n))
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

    #[test]
    fn quantiles_of_counts_between_two_moments() {
        let l = Latency::default();
        assert_eq!(l.counts().quantile(0.95), None);
        for _ in 0..100 {
            l.record(200_000_000); // 200 ms: the (100, 250] ms bucket
        }
        let before = l.counts();
        for _ in 0..95 {
            l.record(1_500_000); // (1, 2.5] ms
        }
        for _ in 0..5 {
            l.record(200_000_000);
        }
        let recent = l.counts().since(&before);
        assert_eq!(recent.total(), 100);
        let secs = |c: &Counts, q: f64| c.quantile(q).unwrap().as_secs_f64();
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // The 95th of 100 is the last of the fast ones: the top of their bucket.
        close(secs(&recent, 0.95), 0.0025);
        // The 90th is 90/95 of the way through it.
        close(secs(&recent, 0.90), 0.001 + 0.0015 * 90.0 / 95.0);
        // The 99th is 4/5 of the way through (100, 250] ms.
        close(secs(&recent, 0.99), 0.22);
        // Over the whole life, the slow ones weigh in.
        close(secs(&l.counts(), 0.5), 0.1 + 0.15 * 5.0 / 105.0);
        let mut sum = recent;
        sum.add(&before);
        assert_eq!(sum, l.counts());
        // Past the last bound.
        let slow = Latency::default();
        slow.record(120_000_000_000);
        assert_eq!(slow.counts().quantile(0.95), Some(Duration::from_secs(60)));
        // A histogram that lost counts (a backend gone) reads as nothing new.
        assert_eq!(before.since(&l.counts()).total(), 0);
    }
}
