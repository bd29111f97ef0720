//! Console log lines on stderr. By default: errors, and the outage lines of
//! `pool::events` (a backend down or up, failovers, every backend down and back, start-up
//! warnings about the endpoints), unless the console table is drawn on the same
//! terminal. `--log` adds everything at info, as the Go tool's `--log` does: each
//! backend's first state, requests that failed, DNS changes, reloads. `--quiet` shows
//! nothing; `--json` writes one JSON object per line; `RUST_LOG` refines the filter.
//! Accept errors are written at most once a second, with a count.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::Config;
use crate::observe::throttle::Throttle;
use crate::pool::events;

/// Where actix's accept loop logs from. While the process is out of files it logs
/// `Error accepting connection` for every listener twice a second, for as long as
/// that lasts.
const ACCEPT: &str = "actix_server::accept";

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
    builder.target(env_logger::Target::Stderr);
    let inner = builder.build();
    let level = inner.filter();
    let logger = Throttled {
        inner,
        accept: Mutex::new(Throttle::new(Duration::from_secs(1))),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

struct Throttled {
    inner: env_logger::Logger,
    accept: Mutex<Throttle>,
}

impl Log for Throttled {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if record.level() != Level::Error
            || record.target() != ACCEPT
            || !self.inner.matches(record)
        {
            return self.inner.log(record);
        }
        let admitted = self
            .accept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(Instant::now());
        match admitted {
            None => {}
            Some(0) => self.inner.log(record),
            Some(held) => self.inner.log(
                &Record::builder()
                    .args(format_args!(
                        "{} ({held} more since the last such line)",
                        record.args()
                    ))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    fn flush(&self) {
        self.inner.flush()
    }
}

/// The outage lines are on by default, except over the console table: when stdout
/// and stderr are the same terminal the table shows the same, and log lines would
/// scribble over it.
fn events_by_default(cfg: &Config) -> bool {
    !(crate::observe::console::wanted(cfg) && std::io::stderr().is_terminal())
}
