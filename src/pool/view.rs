//! The lock-free view workers pick from: the up backends of each site, published
//! by the Pool through `arc-swap`, picked from by the policy of `--host-balance`
//! (`pool::balance`).

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Balance;
use crate::pool::backend::Backend;
use crate::pool::balance;

#[derive(Default)]
pub struct PoolView {
    sites: Vec<Vec<Arc<Backend>>>,
}

pub type SharedView = Arc<ArcSwap<PoolView>>;

impl PoolView {
    pub fn new(sites: Vec<Vec<Arc<Backend>>>) -> Self {
        PoolView { sites }
    }

    /// True when any site has a backend up.
    pub fn any_up(&self) -> bool {
        self.sites.iter().any(|s| !s.is_empty())
    }

    /// The backends of `site` that are up (none for a site it does not have).
    pub fn site(&self, site: usize) -> &[Arc<Backend>] {
        self.sites.get(site).map_or(&[], Vec::as_slice)
    }

    /// Picks a backend of the first site with one up that is not in `exclude`
    /// (the backends this request already failed on).
    pub fn pick(&self, balance: Balance, exclude: &[usize]) -> Option<Arc<Backend>> {
        self.sites
            .iter()
            .find_map(|site| pick_in(site, balance, exclude))
            .cloned()
    }
}

fn pick_in<'a>(
    site: &'a [Arc<Backend>],
    balance: Balance,
    exclude: &'a [usize],
) -> Option<&'a Arc<Backend>> {
    match balance {
        Balance::Least => balance::least::pick(site, exclude),
        Balance::Random => balance::random::pick(site, exclude),
        Balance::P2c => balance::p2c::pick(site, exclude),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::backend::test_backends as backends;
    use crate::pool::backend::InFlight;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn least_prefers_fewest_in_flight_then_least_recently_finished() {
        let site = backends(3);
        let view = PoolView {
            sites: vec![site.clone()],
        };
        let busy = InFlight::new(site[0].clone());
        site[1].stats.last_finished.store(50, Relaxed);
        site[2].stats.last_finished.store(10, Relaxed);
        for _ in 0..20 {
            assert_eq!(view.pick(Balance::Least, &[]).unwrap().id, 2);
        }
        assert_eq!(view.pick(Balance::Least, &[2]).unwrap().id, 1);
        drop(busy);
        assert_eq!(site[0].stats.in_flight.load(Relaxed), 0);
    }

    #[test]
    fn first_site_with_a_backend_up_serves() {
        let b = backends(2);
        let view = PoolView {
            sites: vec![vec![], vec![b[1].clone()]],
        };
        assert!(view.any_up());
        assert_eq!(view.pick(Balance::Random, &[]).unwrap().id, 1);
        assert!(view.pick(Balance::Random, &[1]).is_none());
        assert!(!PoolView::default().any_up());
    }
}
