//! Console log lines on stderr. By default: errors, and the outage lines of
//! `pool::events` (a backend down or up, failovers, every backend down and back, start-up
//! warnings about the endpoints), unless the console table is drawn on the same
//! terminal. `--log` adds everything at info, as the Go tool's `--log` does: each
//! backend's first state, requests that failed, DNS changes, reloads. `--quiet` shows
//! nothing; `--json` writes one JSON object per line; `RUST_LOG` refines the filter.

use std::io::{IsTerminal, Write};
use std::time::SystemTime;

use log::LevelFilter;

use crate::config::Config;
use crate::pool::events;

pub fn init(cfg: &Config) {
    let mut builder = env_logger::Builder::new();
    let level = match (cfg.quiet, cfg.log) {
        (true, _) => LevelFilter::Off,
        (false, true) => LevelFilter::Info,
        (false, false) => LevelFilter::Error,
    };
    builder.filter_level(level);
    if !cfg.quiet && !cfg.log && events_by_default(cfg) {
        builder.filter_module(events::TARGET, LevelFilter::Info);
    }
    // actix's own start-up chatter is not an event an operator asked for.
    builder.filter_module("actix_server", LevelFilter::Warn);
    if !cfg.quiet {
        if let Ok(spec) = std::env::var("RUST_LOG") {
            builder.parse_filters(&spec);
        }
    }
    if cfg.json {
        builder.format(|buf, record| {
            let line = serde_json::json!({
                "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "level": record.level().as_str(),
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        });
    } else {
        builder.format(|buf, record| {
            let time = humantime::format_rfc3339_seconds(SystemTime::now());
            writeln!(buf, "{time} {:<5} {}", record.level(), record.args())
        });
    }
    builder.target(env_logger::Target::Stderr).init();
}

/// The outage lines are on by default, except over the console table: when stdout
/// and stderr are the same terminal the table shows the same, and log lines would
/// scribble over it.
fn events_by_default(cfg: &Config) -> bool {
    !(crate::observe::console::wanted(cfg) && std::io::stderr().is_terminal())
}
