//! The `Pool` actor, sole writer of backend state, and the lock-free `PoolView`
//! snapshot it publishes for the workers' hot path, with the selection policies.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use arc_swap::ArcSwap;
use log::{info, warn};

use crate::backend::Backend;
use crate::cli::{Balance, Config};
use crate::health::{HealthChecker, Stop};

/// What workers read: the up backends of each site, in site order.
#[derive(Default)]
pub struct PoolView {
    sites: Vec<Vec<Arc<Backend>>>,
}

pub type SharedView = Arc<ArcSwap<PoolView>>;

impl PoolView {
    /// True when any site has a backend up.
    pub fn any_up(&self) -> bool {
        self.sites.iter().any(|s| !s.is_empty())
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
    exclude: &[usize],
) -> Option<&'a Arc<Backend>> {
    let n = site.len();
    if n == 0 {
        return None;
    }
    // Starting the scan at a random place breaks remaining ties at random.
    let start = fastrand::usize(..n);
    let candidates = (0..n)
        .map(|i| &site[(start + i) % n])
        .filter(|b| !exclude.contains(&b.id));
    match balance {
        Balance::Random => candidates.into_iter().next(),
        Balance::Least => candidates.min_by_key(|b| {
            (
                b.stats.in_flight.load(Relaxed),
                b.stats.last_finished.load(Relaxed),
            )
        }),
    }
}

/// A health check result from a `HealthChecker`: latency when up, the reason when down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HealthReport {
    pub id: usize,
    pub result: Result<Duration, String>,
}

/// A connection-level failure the proxy saw before a response head arrived.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Failure {
    pub id: usize,
    pub error: String,
}

/// SIGHUP: check every endpoint again at once, resolving its name afresh.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

/// Asks for every backend's state, for the console table and metrics scrapes.
#[derive(Message)]
#[rtype(result = "Status")]
pub struct Snapshot;

/// The state of every backend, in command-line order, at one instant.
#[derive(MessageResponse)]
pub struct Status {
    pub backends: Vec<BackendStatus>,
    /// How often traffic moved on to a later site.
    pub failovers: u64,
}

pub struct BackendStatus {
    pub backend: Arc<Backend>,
    pub up: bool,
    /// Down time in total, the current outage included.
    pub downtime: Duration,
    /// The current outage while down, else the last one.
    pub last_downtime: Duration,
}

struct State {
    backend: Arc<Backend>,
    up: bool,
    since: Instant,
    downtime: Duration,
    last_downtime: Duration,
    /// False until the first health report: starting down is not downtime.
    reported: bool,
}

pub struct Pool {
    states: Vec<State>,
    view: SharedView,
    checkers: Vec<Addr<HealthChecker>>,
    interval: Duration,
    timeout: Duration,
    /// The site serving traffic (None when all are down), to log failovers.
    active_site: Option<usize>,
    /// The last site that served, and how often traffic moved on to a later site.
    last_serving: Option<usize>,
    failovers: u64,
}

impl Pool {
    /// Builds the backends of every site; all start down until their first check.
    pub fn new(cfg: &Config, view: SharedView) -> Self {
        let now = Instant::now();
        let mut states = Vec::new();
        for (site, endpoints) in cfg.sites.iter().enumerate() {
            for ep in endpoints {
                let health = ep.health_url(cfg.health_port, cfg.health_path_for(site));
                let backend = Backend::new(states.len(), site, ep.clone(), health);
                states.push(State {
                    backend: Arc::new(backend),
                    up: false,
                    since: now,
                    downtime: Duration::ZERO,
                    last_downtime: Duration::ZERO,
                    reported: false,
                });
            }
        }
        Pool {
            states,
            view,
            checkers: Vec::new(),
            interval: cfg.health_duration,
            timeout: cfg.health_timeout,
            active_site: None,
            last_serving: None,
            failovers: 0,
        }
    }

    fn start_checkers(&mut self, ctx: &mut Context<Self>) {
        let client = crate::health::client(self.timeout);
        let pool = ctx.address().recipient();
        self.checkers = self
            .states
            .iter()
            .map(|s| {
                HealthChecker::new(
                    &s.backend,
                    self.interval,
                    self.timeout,
                    client.clone(),
                    pool.clone(),
                )
                .start()
            })
            .collect();
    }

    fn set(&mut self, id: usize, up: bool, reason: &str) {
        let Some(state) = self.states.get_mut(id) else {
            return;
        };
        let first = !std::mem::replace(&mut state.reported, true);
        if state.up == up {
            if first && !up {
                warn!("{} is down: {reason}", state.backend.name);
            }
            return;
        }
        let now = Instant::now();
        let name = &state.backend.name;
        if up && first {
            info!("{name} is up");
        } else if up {
            let down_for = now - state.since;
            state.downtime += down_for;
            state.last_downtime = down_for;
            info!(
                "{name} is up (was down {})",
                humantime::format_duration(round_ms(down_for))
            );
        } else {
            warn!("{name} is down: {reason}");
        }
        state.up = up;
        state.since = now;
        self.publish();
    }

    fn publish(&mut self) {
        let sites = self
            .states
            .iter()
            .map(|s| s.backend.site)
            .max()
            .map_or(0, |m| m + 1);
        let mut view = vec![Vec::new(); sites];
        for s in self.states.iter().filter(|s| s.up) {
            view[s.backend.site].push(s.backend.clone());
        }
        let active = view.iter().position(|s| !s.is_empty());
        if active != self.active_site && sites > 1 {
            match active {
                Some(site) => info!("site {} serves traffic", site + 1),
                None => warn!("every site is down"),
            }
        }
        self.active_site = active;
        // Moving back to an earlier site (or settling at start-up) is no failover.
        if let Some(site) = active {
            if self.last_serving.is_some_and(|last| site > last) {
                self.failovers += 1;
            }
            self.last_serving = Some(site);
        }
        self.view.store(Arc::new(PoolView { sites: view }));
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Actor for Pool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publish();
        self.start_checkers(ctx);
    }
}

impl Handler<HealthReport> for Pool {
    type Result = ();

    fn handle(&mut self, msg: HealthReport, _: &mut Self::Context) {
        if let Some(s) = self.states.get(msg.id) {
            crate::metrics::health_checked(&s.backend, &msg.result);
        }
        match msg.result {
            Ok(_) => self.set(msg.id, true, ""),
            Err(reason) => self.set(msg.id, false, &format!("health check failed: {reason}")),
        }
    }
}

impl Handler<Failure> for Pool {
    type Result = ();

    fn handle(&mut self, msg: Failure, _: &mut Self::Context) {
        if let Some(s) = self.states.get(msg.id) {
            s.backend.stats.failures.fetch_add(1, Relaxed);
        }
        self.set(msg.id, false, &msg.error);
    }
}

impl Handler<Reload> for Pool {
    type Result = ();

    fn handle(&mut self, _: Reload, ctx: &mut Self::Context) {
        info!("reloading: checking every endpoint again");
        for checker in self.checkers.drain(..) {
            checker.do_send(Stop);
        }
        self.start_checkers(ctx);
    }
}

impl Handler<Snapshot> for Pool {
    type Result = Status;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Status {
        let at = Instant::now();
        let backends = self
            .states
            .iter()
            .map(|s| {
                let current = if s.up || !s.reported {
                    Duration::ZERO
                } else {
                    at.saturating_duration_since(s.since)
                };
                BackendStatus {
                    backend: s.backend.clone(),
                    up: s.up,
                    downtime: s.downtime + current,
                    last_downtime: if current.is_zero() {
                        s.last_downtime
                    } else {
                        current
                    },
                }
            })
            .collect();
        Status {
            backends,
            failovers: self.failovers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::InFlight;
    use crate::endpoints::parse_endpoint;

    fn backends(n: usize) -> Vec<Arc<Backend>> {
        (0..n)
            .map(|i| {
                let ep = parse_endpoint(&format!("http://h{i}:9000")).unwrap();
                Arc::new(Backend::new(i, 0, ep, String::new()))
            })
            .collect()
    }

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
