//! What the handler reads: settings and state every worker shares, and what each
//! worker owns (its backend client and retry budget).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;

use crate::cache::Cache;
use crate::config::{Balance, Config};
use crate::pool::view::SharedView;
use crate::pool::Pool;
use crate::proxy::validate::Limits;
use crate::proxy::{hedge, retry};
use crate::upstream::Upstream;

/// Settings and state every worker shares.
pub struct Shared {
    pub view: SharedView,
    pub pool: Addr<Pool>,
    pub balance: Balance,
    pub limits: Limits,
    pub max_retries: usize,
    /// `--hedge`: late reads are sent to a second backend too.
    pub hedge: bool,
    pub retry_buffer: u64,
    pub max_5xx: u32,
    pub upgrade_idle_timeout: Duration,
    pub cache: Option<Arc<Cache>>,
}

impl Shared {
    pub fn new(
        cfg: &Config,
        view: SharedView,
        pool: Addr<Pool>,
        cache: Option<Arc<Cache>>,
    ) -> Self {
        Shared {
            view,
            pool,
            balance: cfg.balance,
            limits: Limits {
                max_header_size: cfg.max_header_size,
                max_headers: usize::from(cfg.max_headers),
            },
            max_retries: cfg.max_retries as usize,
            hedge: cfg.hedge,
            retry_buffer: cfg.retry_buffer,
            max_5xx: cfg.max_5xx,
            upgrade_idle_timeout: cfg.upgrade_idle_timeout,
            cache,
        }
    }
}

/// What each worker owns: its backend client, its cache store client, its retry
/// budget and its hedge delays.
pub struct Worker {
    pub upstream: Rc<Upstream>,
    /// A client of its own: pooled connections are kept by node id, and the ids of
    /// the cache store's nodes are those of backends too. Sharing one client would
    /// send a client's request on a connection to the store, or the reverse.
    pub cache_upstream: Rc<Upstream>,
    pub budget: retry::Budget,
    pub hedge_delays: hedge::Delays,
}

impl Worker {
    pub fn new(cfg: &Config) -> Self {
        Worker {
            upstream: Rc::new(Upstream::new(cfg)),
            cache_upstream: Rc::new(Upstream::for_cache_store(cfg)),
            budget: retry::Budget::new(cfg.retry_budget),
            hedge_delays: hedge::Delays::default(),
        }
    }
}
