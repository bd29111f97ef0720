//! Console log lines on stderr. By default: errors, and the outage lines of
//! `pool::events` (a backend down or up, failovers, every backend down and back, start-up
//! warnings about the endpoints), unless the console table is drawn on the same
//! terminal. `--log` adds everything at info, as the Go tool's `--log` does: each
//! backend's first state, requests that failed, DNS changes, reloads. `--quiet` shows
//! nothing; `--json` writes one JSON object per line; `RUST_LOG` refines the filter.
//! Accept errors are written at most once a second, with a count.
//!
//! In JSON, a line about one backend going down or up (`pool::events`) also has the
//! Go tool's fields, so that what parsed its log lines parses these: `Type` (`LOG`),
//! `Endpoint`, `Status` (`down`, `up`), `Error` (when down), `Downtime` (when back
//! up: nanoseconds, a Go `time.Duration`) and `Timestamp` (RFC 3339, nanoseconds).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use log::kv::{Error, Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::{Map, Value as Json};

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
        builder.format(|buf, record| writeln!(buf, "{}", json_line(record, SystemTime::now())));
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

/// A log line as a JSON object: `time`, `level`, `message`, and the Go tool's fields
/// for a backend's state.
fn json_line(record: &Record, now: SystemTime) -> Json {
    let mut line = Map::new();
    line.insert(
        "time".into(),
        humantime::format_rfc3339_millis(now).to_string().into(),
    );
    line.insert("level".into(), record.level().as_str().into());
    line.insert("message".into(), record.args().to_string().into());
    let mut go = GoFields(Map::new());
    let _ = record.key_values().visit(&mut go);
    if go.0.contains_key("Endpoint") {
        line.insert("Type".into(), "LOG".into());
        line.append(&mut go.0);
        line.insert(
            "Timestamp".into(),
            humantime::format_rfc3339_nanos(now).to_string().into(),
        );
    }
    Json::Object(line)
}

/// The key-values of `pool::events` under the Go tool's names; a field the Go tool
/// left out when empty (`omitempty`) is left out too.
struct GoFields(Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for GoFields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        let (name, field) = match key.as_str() {
            "endpoint" => ("Endpoint", Json::from(value.to_string())),
            "status" => ("Status", Json::from(value.to_string())),
            "error" => ("Error", Json::from(value.to_string())),
            "downtime_ns" => ("Downtime", Json::from(value.to_u64().unwrap_or(0))),
            _ => return Ok(()),
        };
        let empty = matches!(&field, Json::String(s) if s.is_empty()) || field == 0;
        if !empty {
            self.0.insert(name.into(), field);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::kv::ToValue;

    fn line(kvs: &[(&str, Value)]) -> Json {
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_500_000_123);
        let kvs: Vec<(&str, Value)> = kvs.iter().map(|(k, v)| (*k, v.to_value())).collect();
        let record = Record::builder()
            .args(format_args!("http://h1:9000 is down: refused"))
            .level(Level::Warn)
            .key_values(&kvs)
            .build();
        json_line(&record, at)
    }

    #[test]
    fn a_backend_line_has_the_go_tools_fields() {
        let down = line(&[
            ("endpoint", "http://h1:9000".to_value()),
            ("status", "down".to_value()),
            ("error", "refused".to_value()),
        ]);
        assert_eq!(down["Type"], "LOG");
        assert_eq!(down["Endpoint"], "http://h1:9000");
        assert_eq!(down["Status"], "down");
        assert_eq!(down["Error"], "refused");
        assert!(down.get("Downtime").is_none());
        assert_eq!(down["Timestamp"], "1970-01-01T00:00:01.500000123Z");
        assert_eq!(down["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(down["level"], "WARN");
        let up = line(&[
            ("endpoint", "http://h1:9000".to_value()),
            ("status", "up".to_value()),
            ("downtime_ns", 12_000_000_000u64.to_value()),
        ]);
        assert_eq!(up["Downtime"], 12_000_000_000u64);
        assert!(up.get("Error").is_none());
        // Any other line: sidekick's fields only.
        let other = line(&[]);
        assert!(other.get("Type").is_none() && other.get("Timestamp").is_none());
        assert_eq!(other["message"], "http://h1:9000 is down: refused");
    }
}
