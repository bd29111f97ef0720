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

/// `--max-5xx` consecutive 5xx answers from a backend: eject it for a while.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Eject {
    pub id: usize,
}

/// SIGHUP: check every endpoint again at once, resolving its name afresh.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

/// Longest ejection, however often a backend is ejected (unless the first is longer).
const MAX_EJECTION: Duration = Duration::from_secs(300);

struct State {
    backend: Arc<Backend>,
    up: bool,
    since: Instant,
    downtime: Duration,
    /// False until the first health report: starting down is not downtime, and the
    /// first report decides at once whatever `--health-rise` says.
    reported: bool,
    /// Consecutive passed / failed checks, for `--health-rise` / `--health-fall`.
    passed: u32,
    failed: u32,
    /// Outlier ejection: until when, and how many times in a row.
    ejected_until: Option<Instant>,
    ejections: u32,
}

pub struct Pool {
    states: Vec<State>,
    view: SharedView,
    checkers: Vec<Addr<HealthChecker>>,
    health: HealthSettings,
    rise: u32,
    fall: u32,
    eject_duration: Duration,
    /// The site serving traffic (None when all are down), to log failovers.
    active_site: Option<usize>,
    /// TLS towards https backends, shared with the workers.
    backend_tls: Option<Arc<rustls::ClientConfig>>,
}

/// What every `HealthChecker` is started with.
#[derive(Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub optimistic: bool,
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
                    reported: false,
                    passed: 0,
                    failed: 0,
                    ejected_until: None,
                    ejections: 0,
                });
            }
        }
        Pool {
            states,
            view,
            checkers: Vec::new(),
            health: HealthSettings {
                interval: cfg.health_duration,
                timeout: cfg.health_timeout,
                optimistic: cfg.health_optimistic,
            },
            rise: cfg.health_rise,
            fall: cfg.health_fall,
            eject_duration: cfg.eject_duration,
            active_site: None,
            backend_tls: cfg.tls.client.clone(),
        }
    }

    fn start_checkers(&mut self, ctx: &mut Context<Self>) {
        let client = crate::health::client(self.health.timeout, self.backend_tls.clone());
        let pool = ctx.address().recipient();
        self.checkers = self
            .states
            .iter()
            .map(|s| {
                HealthChecker::new(&s.backend, self.health, client.clone(), pool.clone()).start()
            })
            .collect();
    }

    fn health_report(&mut self, id: usize, result: Result<Duration, String>) {
        let (rise, fall) = (self.rise, self.fall);
        let Some(state) = self.states.get_mut(id) else {
            return;
        };
        let first = !state.reported;
        match result {
            Ok(_) => {
                state.failed = 0;
                state.passed = state.passed.saturating_add(1);
                let ejected = state.ejected_until.is_some_and(|t| t > Instant::now());
                if !state.up && !ejected && (first || state.passed >= rise) {
                    self.set(id, true, "");
                }
            }
            Err(reason) => {
                state.passed = 0;
                state.failed = state.failed.saturating_add(1);
                if first || (state.up && state.failed >= fall) {
                    self.set(id, false, &format!("health check failed: {reason}"));
                }
            }
        }
    }

    fn eject(&mut self, id: usize, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(state) = self.states.get(id) else {
            return;
        };
        state.backend.stats.consecutive_5xx.store(0, Relaxed);
        if !state.up {
            return;
        }
        let site = state.backend.site;
        let in_site = self.states.iter().filter(|s| s.backend.site == site);
        let size = in_site.clone().count();
        let ejected = in_site
            .filter(|s| s.ejected_until.is_some_and(|t| t > now))
            .count();
        if (ejected + 1) * 2 > size {
            warn!(
                "{} keeps failing, but ejecting it would take out more than half of site {}",
                state.backend.name,
                site + 1
            );
            return;
        }
        let state = &mut self.states[id];
        // A backend that behaved for a long while starts its back-off afresh.
        if state
            .ejected_until
            .is_some_and(|t| now.duration_since(t) > MAX_EJECTION)
        {
            state.ejections = 0;
        }
        state.ejections = state.ejections.saturating_add(1);
        let period = self
            .eject_duration
            .saturating_mul(1 << (state.ejections - 1).min(16))
            .min(MAX_EJECTION.max(self.eject_duration));
        state.ejected_until = Some(now + period);
        state.passed = 0;
        let reason = format!(
            "ejected for {} after repeated 5xx answers",
            humantime::format_duration(period)
        );
        self.set(id, false, &reason);
        // Back in when the period ends, if its health checks still pass.
        ctx.run_later(period, move |pool, _| {
            if let Some(s) = pool.states.get(id) {
                if !s.up && s.passed > 0 {
                    pool.set(id, true, "");
                }
            }
        });
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
            info!(
                "{name} is up (was down {})",
                humantime::format_duration(round_ms(down_for))
            );
        } else {
            warn!("{name} is down: {reason}");
        }
        state.up = up;
        state.since = now;
        state.backend.stats.up.store(up, Relaxed);
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
        self.health_report(msg.id, msg.result);
    }
}

impl Handler<Failure> for Pool {
    type Result = ();

    fn handle(&mut self, msg: Failure, _: &mut Self::Context) {
        let fall = self.fall;
        if let Some(s) = self.states.get_mut(msg.id) {
            s.backend.stats.failures.fetch_add(1, Relaxed);
            // Down at once; the checker's passes count from zero towards `--health-rise`.
            s.passed = 0;
            s.failed = s.failed.max(fall);
        }
        self.set(msg.id, false, &msg.error);
    }
}

impl Handler<Eject> for Pool {
    type Result = ();

    fn handle(&mut self, msg: Eject, ctx: &mut Self::Context) {
        self.eject(msg.id, ctx);
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
