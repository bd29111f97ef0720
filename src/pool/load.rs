//! How loaded a backend looks to `--host-balance p2c`: a peak-EWMA of the time its
//! answer heads take, decaying with time, and a window in which it sheds load (it
//! answered `429` or `503`: for as long as its `Retry-After` says, capped). Atomics
//! only, updated by every worker; the clock is the caller's (`now`, monotonic
//! nanoseconds), so the tests inject time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use actix_web::http::header::{HeaderMap, RETRY_AFTER};

/// Time constant of the estimate, in nanoseconds: a latency peak is mostly
/// forgotten after this long, whether the backend keeps serving (its faster answers
/// pull the estimate down) or not (no news decays it toward zero, below.)
///
/// 5 s, not linkerd's and Finagle's 10 s: an avoided backend gets no samples, so it
/// is tried again only once its estimate has decayed below its peers' scores, which
/// takes `DECAY × ln(peak / peers)`: after a 200 ms pause on a site answering in
/// 2 ms, 23 s here, 46 s with 10 s. A GC pause or a rebalance is over well before
/// that; and while the backend is tried again every ~20 s, each try on a node still
/// slow costs one slow answer, a few per minute out of thousands.
const DECAY_NANOS: f64 = 5e9;

/// How long a backend that sheds load without saying for how long is avoided.
/// MinIO's `503 SlowDown` carries no `Retry-After`.
const SHED_DEFAULT: Duration = Duration::from_secs(1);

/// The longest `Retry-After` honoured: a backend that asks for an hour is tried
/// again after this, and sheds again if it still must.
const SHED_CAP: Duration = Duration::from_secs(10);

/// One backend's load as `p2c` sees it.
#[derive(Default)]
pub struct Load {
    /// The latency estimate in nanoseconds, as `f64` bits; 0 while nothing is known.
    estimate: AtomicU64,
    /// When the last sample came (monotonic nanoseconds; 0 = never).
    sampled: AtomicU64,
    /// Until when the backend sheds load (monotonic nanoseconds; 0 = never).
    shed_until: AtomicU64,
}

impl Load {
    /// One answer head, `took` nanoseconds after the request went out, at `now`.
    ///
    /// Peak-EWMA (linkerd2, Finagle): a sample above the estimate replaces it at once,
    /// so one slow answer is enough to steer traffic away; a lower one is averaged in
    /// with a weight that grows with the time since the last sample, so the estimate
    /// follows the backend over `DECAY_NANOS` whatever its request rate.
    pub fn observe(&self, took: u64, now: u64) {
        // Each interval is counted once, whichever worker's sample ends it.
        let last = self.sampled.swap(now, Relaxed);
        let kept = decay(now.saturating_sub(last));
        let sample = took as f64;
        // A compare-and-swap loop rather than a store: two workers' samples at the same
        // instant must not lose a peak.
        let _ = self.estimate.fetch_update(Relaxed, Relaxed, |bits| {
            let estimate = f64::from_bits(bits);
            // What the selector reads now (`estimate` below) assumed the backend took
            // no time since the last sample; this sample says what it took.
            let next = if sample > estimate * kept {
                sample
            } else {
                estimate * kept + sample * (1.0 - kept)
            };
            Some(next.to_bits())
        });
    }

    /// The estimate at `now`, in nanoseconds. Without samples it decays toward zero
    /// ("no news is good news"): a backend avoided for being slow gets no samples, and
    /// this is how it is tried again once it may have recovered. Zero, not a default
    /// latency, is the neutral value: any fixed latency would be above the answers of
    /// a fast site (0.2 ms on a loopback, a few on a LAN), so an avoided backend there
    /// would never win again. The cost: a backend nothing is known of (new, or idle
    /// long) wins every comparison until its first answer head sets its estimate.
    pub fn estimate(&self, now: u64) -> f64 {
        let sampled = self.sampled.load(Relaxed);
        f64::from_bits(self.estimate.load(Relaxed)) * decay(now.saturating_sub(sampled))
    }

    /// The backend answered that it sheds load, asking to be left alone for
    /// `retry_after` (none said: `SHED_DEFAULT`; at most `SHED_CAP`). A window
    /// already longer is kept.
    pub fn shed(&self, retry_after: Option<Duration>, now: u64) {
        let wait = retry_after.map_or(SHED_DEFAULT, |d| d.min(SHED_CAP));
        let until = now.saturating_add(u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX));
        self.shed_until.fetch_max(until, Relaxed);
    }

    /// Whether the backend asked, at or before `now`, to be left alone until later.
    pub fn shedding(&self, now: u64) -> bool {
        now < self.shed_until.load(Relaxed)
    }
}

/// The weight an estimate keeps after `elapsed` nanoseconds.
fn decay(elapsed: u64) -> f64 {
    (-(elapsed as f64) / DECAY_NANOS).exp()
}

/// How long an answer's `Retry-After` asks to wait: delta-seconds only. An HTTP date
/// is ignored (`None`): it would need this host's clock to agree with the backend's,
/// and S3 servers send seconds when they send anything. A number too large for a
/// `u64` is read as the largest one (callers cap it).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.as_bytes().trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs = value.iter().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    });
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    const MS: u64 = 1_000_000;
    const S: u64 = 1_000 * MS;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b.abs() * 1e-9 + 1e-9
    }

    #[test]
    fn a_slower_answer_replaces_the_estimate_at_once() {
        let load = Load::default();
        assert_eq!(load.estimate(10 * S), 0.0, "nothing known");
        load.observe(MS, 10 * S);
        assert!(close(load.estimate(10 * S), MS as f64));
        // 1 ms later, a 200 ms answer: the peak, not an average.
        load.observe(200 * MS, 10 * S + MS);
        assert!(close(load.estimate(10 * S + MS), 200_000_000.0));
    }

    #[test]
    fn faster_answers_pull_the_estimate_down_over_the_decay_time_not_per_answer() {
        let (fast, slow) = (Load::default(), Load::default());
        for load in [&fast, &slow] {
            load.observe(100 * MS, S);
        }
        // The same 1 ms answers for 2 s, one every 1 ms and one every 100 ms.
        for i in 1..=2000 {
            fast.observe(MS, S + i * MS);
        }
        for i in 1..=20 {
            slow.observe(MS, S + i * 100 * MS);
        }
        let (a, b) = (fast.estimate(3 * S), slow.estimate(3 * S));
        assert!(close(a, b), "rate-dependent: {a} vs {b}");
        // 2 s of a 5 s time constant: e^-0.4 of the peak is left over the 1 ms answers.
        let expected = MS as f64 + 99.0 * MS as f64 * (-0.4f64).exp();
        assert!(close(a, expected), "{a} vs {expected}");
    }

    #[test]
    fn without_samples_the_estimate_decays_toward_zero_and_the_next_answer_sets_it() {
        let load = Load::default();
        load.observe(200 * MS, S);
        assert!(close(
            load.estimate(S + 5 * S),
            200.0 * MS as f64 * (-1f64).exp()
        ));
        let later = S + 60 * S;
        assert!(load.estimate(later) < 0.1 * MS as f64);
        // Recovered: its next answer, at 1 ms, is what it is worth.
        load.observe(MS, later);
        let e = load.estimate(later);
        assert!(e >= MS as f64 && e < 1.1 * MS as f64, "{e}");
    }

    #[test]
    fn shedding_lasts_what_retry_after_says_capped_with_a_default() {
        let load = Load::default();
        assert!(!load.shedding(S));
        load.shed(Some(Duration::from_secs(3)), S);
        assert!(load.shedding(S) && load.shedding(4 * S - 1));
        assert!(!load.shedding(4 * S));
        // No Retry-After: one second.
        load.shed(None, 10 * S);
        assert!(load.shedding(11 * S - 1) && !load.shedding(11 * S));
        // An hour asked: ten seconds given.
        load.shed(Some(Duration::from_secs(3600)), 20 * S);
        assert!(load.shedding(30 * S - 1) && !load.shedding(30 * S));
        // A shorter window does not cut a longer one short.
        load.shed(Some(Duration::from_secs(10)), 40 * S);
        load.shed(Some(Duration::from_secs(0)), 41 * S);
        assert!(load.shedding(49 * S));
    }

    #[test]
    fn retry_after_reads_delta_seconds_only() {
        let read = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(retry_after(&HeaderMap::new()), None);
        assert_eq!(read("3"), Some(Duration::from_secs(3)));
        assert_eq!(read(" 0 "), Some(Duration::ZERO));
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(read("-1"), None);
        assert_eq!(read("1.5"), None);
        assert_eq!(read(""), None);
        assert_eq!(
            read("99999999999999999999999"),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
