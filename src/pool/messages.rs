//! The messages the Pool actor receives: health reports from its checkers, failures
//! and ejections from the proxy, SIGHUP reloads, and snapshot requests from
//! observability, with the snapshot it answers.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::pool::backend::Backend;

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
    /// Why it is down: the last failure seen (`None` while up).
    pub reason: Option<String>,
    /// Down time in total, the current outage included.
    pub downtime: Duration,
    /// The current outage while down, else the last one.
    pub last_downtime: Duration,
}
