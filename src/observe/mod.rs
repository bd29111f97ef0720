//! What an operator sees: metrics, tracing, the console table and log lines. These
//! read the pool's state; the pool does not import them.

pub mod cache_metrics;
pub mod cache_stats;
pub mod console;
pub mod human;
pub mod logging;
pub mod metrics;
pub mod process;
mod throttle;
pub mod trace;
