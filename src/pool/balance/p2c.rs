//! `p2c`: the power of two choices over peak-EWMA latency (linkerd2, Finagle). Two
//! distinct backends at random; the one with the lower score takes the request,
//! the score being the backend's answer-head latency estimate (`pool::load`) times
//! its requests in flight plus one. A backend shedding load loses to any that is
//! not.
//!
//! Two at random rather than the best of all: every worker picks from the same
//! estimates, and the best of all would send them all to one backend until its
//! estimate catches up; two choices spread the load and still avoid the worst
//! backend of the pair every time, at two backends' cost per pick whatever the size
//! of the site.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::pool::backend::{monotonic_nanos, Backend};

pub fn pick<'a>(site: &'a [Arc<Backend>], exclude: &[usize]) -> Option<&'a Arc<Backend>> {
    pick_at(site, exclude, monotonic_nanos())
}

fn pick_at<'a>(site: &'a [Arc<Backend>], exclude: &[usize], now: u64) -> Option<&'a Arc<Backend>> {
    let eligible = |b: &&Arc<Backend>| !exclude.contains(&b.id);
    // Nothing excluded is the common case: the site's own indices, no scan.
    let n = if exclude.is_empty() {
        site.len()
    } else {
        site.iter().filter(eligible).count()
    };
    let nth = |k: usize| {
        if exclude.is_empty() {
            site.get(k)
        } else {
            site.iter().filter(eligible).nth(k)
        }
    };
    match n {
        0 => None,
        1 => nth(0),
        _ => {
            let i = fastrand::usize(..n);
            // A second index among the other n - 1.
            let j = fastrand::usize(..n - 1);
            let j = if j >= i { j + 1 } else { j };
            let (a, b) = (nth(i)?, nth(j)?);
            Some(if cost(b, now) < cost(a, now) { b } else { a })
        }
    }
}

/// What a backend costs, lowest best: shedding load or not, then the score, then
/// the requests in flight (the score of backends nothing is known of is 0).
fn cost(backend: &Backend, now: u64) -> (bool, f64, u64) {
    let stats = &backend.stats;
    let in_flight = stats.in_flight.load(Relaxed);
    (
        stats.load.shedding(now),
        stats.load.estimate(now) * (in_flight + 1) as f64,
        in_flight,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::backend::test_backends as backends;
    use crate::pool::backend::InFlight;
    use std::time::Duration;

    const MS: u64 = 1_000_000;
    const NOW: u64 = 1_000 * MS;

    fn picks(site: &[Arc<Backend>], exclude: &[usize]) -> Vec<usize> {
        let mut count = vec![0; site.len()];
        for _ in 0..2000 {
            count[pick_at(site, exclude, NOW).unwrap().id] += 1;
        }
        count
    }

    #[test]
    fn of_two_the_lower_latency_wins_every_time() {
        let site = backends(2);
        site[0].stats.load.observe(50 * MS, NOW);
        site[1].stats.load.observe(MS, NOW);
        assert_eq!(picks(&site, &[]), [0, 2000]);
    }

    #[test]
    fn the_slowest_of_several_is_never_picked_and_the_others_share() {
        let site = backends(4);
        for (b, took) in site.iter().zip([MS, MS, 200 * MS, MS]) {
            b.stats.load.observe(took, NOW);
        }
        let count = picks(&site, &[]);
        assert_eq!(count[2], 0, "{count:?}");
        // Each fast one is in a pair with another fast one a third of the time,
        // at random; in the pairs with the slow one it always wins.
        assert!(count.iter().all(|&c| c == 0 || c > 400), "{count:?}");
    }

    #[test]
    fn requests_in_flight_multiply_the_latency() {
        let site = backends(2);
        site[0].stats.load.observe(MS, NOW);
        site[1].stats.load.observe(3 * MS, NOW);
        // 1 ms × 4 in flight costs more than 3 ms × 1.
        let _busy: Vec<_> = (0..3).map(|_| InFlight::new(site[0].clone())).collect();
        assert_eq!(picks(&site, &[]), [0, 2000]);
    }

    #[test]
    fn a_backend_shedding_load_loses_to_any_other_until_its_window_ends() {
        let site = backends(2);
        site[0].stats.load.observe(MS, NOW);
        site[1].stats.load.observe(100 * MS, NOW);
        site[0]
            .stats
            .load
            .shed(Some(Duration::from_secs(2)), NOW - MS);
        assert_eq!(picks(&site, &[]), [0, 2000]);
        let later = NOW + 2_000 * MS;
        assert_eq!(pick_at(&site, &[], later).unwrap().id, 0);
    }

    #[test]
    fn excluded_backends_are_never_candidates() {
        let site = backends(4);
        for b in &site {
            b.stats.load.observe(MS, NOW);
        }
        site[3].stats.load.observe(100 * MS, NOW + 1);
        // Two left, the slower one included: it never wins.
        assert_eq!(picks(&site, &[0, 1]), [0, 0, 2000, 0]);
        // One left: it, however slow.
        assert_eq!(picks(&site, &[0, 1, 2]), [0, 0, 0, 2000]);
        assert!(pick_at(&site, &[0, 1, 2, 3], NOW).is_none());
        assert!(pick_at(&[], &[], NOW).is_none());
    }
}
