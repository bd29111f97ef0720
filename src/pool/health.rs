//! `HealthChecker` actor: one per endpoint, checks its readiness path on a jittered
//! interval and reports each result to the Pool; it never touches shared state.

use std::fmt::Display;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::{StatusCode, Uri};

use crate::pool::backend::Backend;
use crate::pool::messages::HealthReport;
use crate::upstream::probe::Prober;

/// What every `HealthChecker` is started with.
#[derive(Clone, Copy)]
pub struct HealthSettings {
    pub interval: Duration,
    pub optimistic: bool,
    /// Told of each check as it starts (tracing); the pool knows nothing of who listens.
    pub on_check: Option<CheckHook>,
}

/// Called as a health check starts; what it returns is called with the outcome (the
/// status received, or why none was). Passed in so that the pool layer does not
/// depend on the observability layer that sets it.
pub type CheckHook = fn(backend: &str, url: &Result<Uri, String>) -> Option<CheckDone>;
pub type CheckDone = Box<dyn FnOnce(Result<StatusCode, &dyn Display>)>;

pub struct HealthChecker {
    backend: Arc<Backend>,
    url: Result<Uri, String>,
    settings: HealthSettings,
    prober: Prober,
    pool: Recipient<HealthReport>,
}

/// Stops a checker (on reload).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl HealthChecker {
    pub fn new(
        backend: &Arc<Backend>,
        settings: HealthSettings,
        prober: Prober,
        pool: Recipient<HealthReport>,
    ) -> Self {
        let url = backend
            .health_url
            .parse::<Uri>()
            .map_err(|e| format!("invalid health URL '{}': {e}", backend.health_url));
        HealthChecker {
            backend: backend.clone(),
            url,
            settings,
            prober,
            pool,
        }
    }

    /// ±10% so that many sidecars started together do not check in lockstep.
    fn next_delay(&self) -> Duration {
        self.settings.interval.mul_f64(0.9 + fastrand::f64() * 0.2)
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        // Optimistic mode trusts an up backend until a request fails on it.
        if self.settings.optimistic && self.backend.stats.up.load(Relaxed) {
            ctx.run_later(self.next_delay(), |act, ctx| act.check(ctx));
            return;
        }
        // A connection of its own each time (`Prober`), to the pinned address in
        // `--rr-dns-mode`.
        let (prober, address) = (self.prober.clone(), self.backend.address);
        let request = self
            .url
            .clone()
            .map(|url| async move { prober.get(&url, address).await });
        let started = Instant::now();
        let trace = self
            .settings
            .on_check
            .and_then(|hook| hook(&self.backend.name, &self.url));
        let probe = async move {
            let response = request?.await;
            if let Some(done) = trace {
                done(match &response {
                    Ok(status) => Ok(*status),
                    Err(e) => Err(e as &dyn Display),
                });
            }
            match response {
                Ok(StatusCode::OK) => Ok(started.elapsed()),
                Ok(status) => Err(format!("status {status}")),
                Err(e) => Err(e.to_string()),
            }
        };
        probe
            .into_actor(self)
            .map(|result, act, ctx| {
                act.pool.do_send(HealthReport {
                    id: act.backend.id,
                    result,
                });
                ctx.run_later(act.next_delay(), |act, ctx| act.check(ctx));
            })
            .spawn(ctx);
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.check(ctx);
    }
}

impl Handler<Stop> for HealthChecker {
    type Result = ();

    fn handle(&mut self, _: Stop, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
