//! The control plane. The `Pool` actor here is the sole writer of backend state: it
//! starts a health checker per backend, runs each backend's up/down state machine
//! (rise/fall, ejections, downtime), resolves names in `--rr-dns-mode`, and publishes
//! the lock-free `PoolView` (`view.rs`) that workers pick from.

pub mod backend;
pub mod balance;
pub mod dns;
pub mod events;
pub mod health;
pub mod latency;
pub mod load;
pub mod messages;
pub mod preflight;
pub mod view;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use log::{info, warn};

use crate::config::endpoints::Endpoint;
use crate::config::Config;
use crate::pool::backend::Backend;
use crate::pool::events::Serving;
use crate::pool::health::{CheckHook, HealthChecker, HealthSettings, Stop};
use crate::pool::messages::{
    BackendStatus, Eject, Failure, HealthReport, Reload, Snapshot, Status,
};
use crate::pool::view::{PoolView, SharedView};
use crate::upstream::probe::Prober;

/// What workers read: the up backends of each site, in site order.
/// Longest ejection, however often a backend is ejected (unless the first is longer).
const MAX_EJECTION: Duration = Duration::from_secs(300);

struct State {
    backend: Arc<Backend>,
    /// The command-line endpoint this backend comes from.
    target: usize,
    up: bool,
    since: Instant,
    /// Why it is down: the last failure seen (empty while up).
    reason: String,
    downtime: Duration,
    last_downtime: Duration,
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

/// An endpoint from the command line.
struct Target {
    site: usize,
    endpoint: Endpoint,
    health_path: String,
}

pub struct Pool {
    targets: Vec<Target>,
    /// By backend id, in the order the backends came. A backend whose address went
    /// away from its name (`--rr-dns-mode`) leaves at once; ids are never reused, so
    /// a late message about it (a request's failure, a checker's last report) finds
    /// nothing rather than its successor, and a worker's idle connections to it are
    /// never handed to another backend.
    states: BTreeMap<usize, State>,
    next_id: usize,
    view: SharedView,
    /// One per state.
    checkers: BTreeMap<usize, Addr<HealthChecker>>,
    /// Sends every health check of this pool.
    prober: Prober,
    health_port: u16,
    rr_dns: bool,
    dns_ttl: Duration,
    health: HealthSettings,
    rise: u32,
    fall: u32,
    eject_duration: Duration,
    /// Which site serves traffic, to log failovers and outages and count failovers.
    serving: Serving,
    /// The nodes of the cache store rather than backends: named so in the log.
    cache_store: bool,
}

impl Pool {
    /// Builds the backends of every site; all start down until their first check.
    /// In `--rr-dns-mode` the backends of a host name come when it resolves.
    /// `on_check` is told of every health check (tracing).
    pub fn new(cfg: &Config, view: SharedView, on_check: Option<CheckHook>) -> Self {
        let mut targets = Vec::new();
        for (site, endpoints) in cfg.sites.iter().enumerate() {
            for ep in endpoints {
                targets.push(Target {
                    site,
                    endpoint: ep.clone(),
                    health_path: cfg.health_path_for(site).to_string(),
                });
            }
        }
        let mut pool = Pool {
            targets,
            states: BTreeMap::new(),
            next_id: 0,
            view,
            checkers: BTreeMap::new(),
            prober: Prober::new(cfg.health_timeout, cfg.tls.client.as_ref()),
            health_port: cfg.health_port,
            rr_dns: cfg.rr_dns_mode,
            dns_ttl: cfg.dns_ttl,
            health: HealthSettings {
                interval: cfg.health_duration,
                optimistic: cfg.health_optimistic,
                on_check,
            },
            rise: cfg.health_rise,
            fall: cfg.health_fall,
            eject_duration: cfg.eject_duration,
            serving: Serving::default(),
            cache_store: false,
        };
        for t in 0..pool.targets.len() {
            let target = &pool.targets[t];
            if !pool.rr_dns || target.endpoint.is_ip() {
                let health = target
                    .endpoint
                    .health_url(pool.health_port, &target.health_path);
                let id = pool.next_id;
                let backend = Backend::new(id, target.site, target.endpoint.clone(), health);
                pool.add(t, backend);
            }
        }
        pool
    }

    /// The cache store's nodes (`--cache-endpoint`): one site, checked on the cache's
    /// own health path and port, never ejected, each named "cache node …".
    pub fn for_cache_store(cfg: &Config, view: SharedView) -> Option<Self> {
        let cache = cfg.cache.as_ref()?;
        let mut store = cfg.clone();
        store.sites = vec![cache.endpoints.clone()];
        store.health_path.clone_from(&cache.health_path);
        store.read_health_path.clone_from(&cache.health_path);
        store.health_port = cache.health_port;
        store.rr_dns_mode = false;
        store.health_optimistic = false;
        let mut pool = Pool::new(&store, view, None);
        pool.cache_store = true;
        for state in pool.states.values_mut() {
            if let Some(backend) = Arc::get_mut(&mut state.backend) {
                backend.name = format!("cache node {}", backend.name);
            }
        }
        Some(pool)
    }

    fn add(&mut self, target: usize, backend: Backend) {
        self.next_id = backend.id + 1;
        let state = State {
            backend: Arc::new(backend),
            target,
            up: false,
            since: Instant::now(),
            reason: String::new(),
            downtime: Duration::ZERO,
            last_downtime: Duration::ZERO,
            reported: false,
            passed: 0,
            failed: 0,
            ejected_until: None,
            ejections: 0,
        };
        self.states.insert(state.backend.id, state);
    }

    /// (Re)starts the checker of one backend; its first check runs at once.
    fn start_checker(&mut self, id: usize, ctx: &mut Context<Self>) {
        let Some(state) = self.states.get(&id) else {
            return;
        };
        let pool = ctx.address().recipient();
        let checker =
            HealthChecker::new(&state.backend, self.health, self.prober.clone(), pool).start();
        if let Some(old) = self.checkers.insert(id, checker) {
            old.do_send(Stop);
        }
    }

    fn start_checkers(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<usize> = self.states.keys().copied().collect();
        for id in ids {
            self.start_checker(id, ctx);
        }
    }

    /// Resolves every host name again (`--rr-dns-mode`), off the actor's thread.
    fn resolve_all(&mut self, ctx: &mut Context<Self>) {
        for (t, target) in self.targets.iter().enumerate() {
            if target.endpoint.is_ip() {
                continue;
            }
            let lookup =
                crate::pool::dns::resolve(target.endpoint.host.clone(), target.endpoint.port);
            lookup
                .into_actor(self)
                .map(move |result, pool, ctx| pool.resolved(t, result, ctx))
                .spawn(ctx);
        }
    }

    /// Adds a backend for each new address of a target's name and retires those of
    /// addresses that went away: out of the state and the view, its checker stopped.
    /// Requests still holding it finish on it; its memory goes with the last of them.
    /// A failed lookup keeps what there is.
    fn resolved(&mut self, t: usize, result: Result<Vec<IpAddr>, String>, ctx: &mut Context<Self>) {
        let Some(target) = self.targets.get(t) else {
            return;
        };
        let addrs = match result {
            Ok(addrs) => addrs,
            Err(e) => {
                warn!("{}: {e}; keeping its current addresses", target.endpoint);
                return;
            }
        };
        let current: Vec<(usize, IpAddr)> = self
            .states
            .iter()
            .filter(|(_, s)| s.target == t)
            .filter_map(|(id, s)| Some((*id, s.backend.address?)))
            .collect();
        let (site, origin, path) = (
            target.site,
            target.endpoint.clone(),
            target.health_path.clone(),
        );
        let mut changed = false;
        for ip in addrs
            .iter()
            .filter(|ip| !current.iter().any(|(_, c)| c == *ip))
        {
            let health = origin.health_url(self.health_port, &path);
            let id = self.next_id;
            info!("{origin} resolves to {ip}");
            self.add(t, Backend::resolved(id, site, &origin, *ip, health));
            self.start_checker(id, ctx);
            changed = true;
        }
        let mut gone = Vec::new();
        for (id, _) in current.iter().filter(|(_, ip)| !addrs.contains(ip)) {
            if let Some(s) = self.states.remove(id) {
                s.backend.stats.up.store(false, Relaxed);
                gone.push(s.backend);
            }
            if let Some(old) = self.checkers.remove(id) {
                old.do_send(Stop);
            }
            changed = true;
        }
        if changed {
            self.publish_then(|| {
                for backend in &gone {
                    info!("{} is gone from the addresses of {origin}", backend.name);
                }
            });
        }
    }

    fn health_report(&mut self, id: usize, result: Result<Duration, String>) {
        let (rise, fall) = (self.rise, self.fall);
        let Some(state) = self.states.get_mut(&id) else {
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
                let reason = format!("health check failed: {reason}");
                if first || (state.up && state.failed >= fall) {
                    self.set(id, false, &reason);
                } else if !state.up {
                    // The table shows why a backend is down now, not why it went.
                    state.reason = reason;
                }
            }
        }
    }

    fn eject(&mut self, id: usize, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(state) = self.states.get(&id) else {
            return;
        };
        state.backend.stats.consecutive_5xx.store(0, Relaxed);
        if !state.up {
            return;
        }
        let site = state.backend.site;
        let in_site = self.states.values().filter(|s| s.backend.site == site);
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
        let Some(state) = self.states.get_mut(&id) else {
            return;
        };
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
            if let Some(s) = pool.states.get(&id) {
                if !s.up && s.passed > 0 {
                    pool.set(id, true, "");
                }
            }
        });
    }

    fn set(&mut self, id: usize, up: bool, reason: &str) {
        let Some(state) = self.states.get_mut(&id) else {
            return;
        };
        let first = !std::mem::replace(&mut state.reported, true);
        if !up {
            state.reason.clear();
            state.reason.push_str(reason);
        }
        let backend = state.backend.clone();
        if state.up == up {
            if first && !up {
                // Every backend down from the start is an outage once all have reported.
                self.publish_then(|| events::down(&backend.name, reason));
            }
            return;
        }
        let now = Instant::now();
        let came_back = (up && !first).then(|| {
            let down_for = now - state.since;
            state.downtime += down_for;
            state.last_downtime = down_for;
            state.reason.clear();
            down_for
        });
        state.up = up;
        state.since = now;
        backend.stats.up.store(up, Relaxed);
        self.publish_then(|| match (up, came_back) {
            (true, None) => events::first_up(&backend.name),
            (true, Some(down_for)) => events::up(&backend.name, down_for),
            (false, _) => events::down(&backend.name, reason),
        });
    }

    fn publish(&mut self) {
        self.publish_then(|| {});
    }

    /// Publishes the view, then logs `event` and any change of the serving site: a
    /// line saying a backend went up or down is written once requests (and
    /// `/v1/health`) see it so, never before.
    fn publish_then(&mut self, event: impl FnOnce()) {
        let sites = self
            .targets
            .iter()
            .map(|t| t.site)
            .max()
            .map_or(0, |m| m + 1);
        let mut view = vec![Vec::new(); sites];
        for s in self.states.values().filter(|s| s.up) {
            view[s.backend.site].push(s.backend.clone());
        }
        let active = view.iter().position(|s| !s.is_empty());
        let settled = !self.states.is_empty() && self.states.values().all(|s| s.reported);
        let change = self.serving.update(active, settled, Instant::now());
        self.view.store(Arc::new(PoolView::new(view)));
        event();
        if let Some(change) = change {
            change.log(sites, self.cache_store);
        }
    }
}

impl Actor for Pool {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.publish();
        self.start_checkers(ctx);
        if self.rr_dns {
            self.resolve_all(ctx);
            ctx.run_interval(self.dns_ttl, |pool, ctx| pool.resolve_all(ctx));
        }
    }
}

impl Handler<HealthReport> for Pool {
    type Result = ();

    fn handle(&mut self, msg: HealthReport, _: &mut Self::Context) {
        if let Some(s) = self.states.get(&msg.id) {
            s.backend.stats.health_checked(&msg.result);
        }
        self.health_report(msg.id, msg.result);
    }
}

impl Handler<Failure> for Pool {
    type Result = ();

    fn handle(&mut self, msg: Failure, _: &mut Self::Context) {
        let fall = self.fall;
        if let Some(s) = self.states.get_mut(&msg.id) {
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
        if self.rr_dns {
            self.resolve_all(ctx);
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
            .values()
            .map(|s| {
                let current = if s.up || !s.reported {
                    Duration::ZERO
                } else {
                    at.saturating_duration_since(s.since)
                };
                BackendStatus {
                    backend: s.backend.clone(),
                    up: s.up,
                    reason: (!s.up && !s.reason.is_empty()).then(|| s.reason.clone()),
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
            failovers: self.serving.failovers,
        }
    }
}
