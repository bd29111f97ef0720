//! `least`: the fewest requests in flight; ties go to the least recently finished,
//! then at random.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::pool::backend::Backend;
use crate::pool::balance::from_random_start;

pub fn pick<'a>(site: &'a [Arc<Backend>], exclude: &'a [usize]) -> Option<&'a Arc<Backend>> {
    from_random_start(site, exclude).min_by_key(|b| {
        (
            b.stats.in_flight.load(Relaxed),
            b.stats.last_finished.load(Relaxed),
        )
    })
}
