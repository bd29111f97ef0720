//! Console log lines: `--log` shows backend events at info, `--quiet` shows nothing,
//! `--json` writes one JSON object per line; `RUST_LOG` refines the filter.

use std::io::Write;
use std::time::SystemTime;

use log::LevelFilter;

use crate::config::Config;

pub fn init(cfg: &Config) {
    let mut builder = env_logger::Builder::new();
    let level = match (cfg.quiet, cfg.log) {
        (true, _) => LevelFilter::Off,
        (false, true) => LevelFilter::Info,
        (false, false) => LevelFilter::Error,
    };
    builder.filter_level(level);
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
