//! The process metrics every Prometheus client library exports (`process_cpu_seconds_total`,
//! memory, file descriptors, start time), read at scrape time from `/proc/self` the way
//! the Go client reads them, so that dashboards made for other exporters work as they are.
//! A file that cannot be read leaves its metrics out of the scrape.

use std::sync::OnceLock;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// The fields of `/proc/self/stat` the metrics need (clock ticks, bytes, pages).
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
    rss: u64,
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// When this process started, seconds since the epoch: fixed, so computed once.
fn start_time(stat: &Stat, ticks: f64) -> Option<f64> {
    static START: OnceLock<Option<f64>> = OnceLock::new();
    *START.get_or_init(|| {
        let btime = parse_btime(&std::fs::read_to_string("/proc/stat").ok()?)?;
        Some(btime as f64 + stat.starttime as f64 / ticks)
    })
}

fn open_fds() -> Option<usize> {
    // The directory's own descriptor is listed too, as in every client library.
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

/// The `process_*` families.
#[derive(Debug)]
pub struct Process;

fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: M,
) -> Result<(), std::fmt::Error> {
    metric.encode(encoder.encode_descriptor(name, help, unit.as_ref(), metric.metric_type())?)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let stat = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t));
        if let Some(stat) = &stat {
            let cpu = (stat.utime + stat.stime) as f64 / ticks;
            family(
                e,
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(Unit::Seconds),
                ConstCounter::new(cpu),
            )?;
        }
        if let Some(fds) = open_fds() {
            family(
                e,
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                ConstGauge::new(i64::try_from(fds).unwrap_or(i64::MAX)),
            )?;
        }
        // No soft limit (RLIM_INFINITY) reads as the largest value, as in the Go client.
        let max_fds = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .map_or(u64::MAX as f64, |n| n as f64);
        family(
            e,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            None,
            ConstGauge::new(max_fds),
        )?;
        if let Some(stat) = &stat {
            let page = rustix::param::page_size() as f64;
            family(
                e,
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                ConstGauge::new(stat.vsize as f64),
            )?;
            family(
                e,
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                ConstGauge::new(stat.rss as f64 * page),
            )?;
            if let Some(start) = start_time(stat, ticks) {
                family(
                    e,
                    "process_start_time",
                    "Start time of the process since unix epoch in seconds.",
                    Some(Unit::Seconds),
                    ConstGauge::new(start),
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 \
                    7 3 0 0 20 0 9 0 12345 1052672 250 18446744073709551615 1 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 7,
                stime: 3,
                starttime: 12345,
                vsize: 1_052_672,
                rss: 250,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn btime_is_found() {
        let text = "cpu  1 2 3\ncpu0 1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_btime(text), Some(1_700_000_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn this_process_reads_plausibly() {
        let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").unwrap()).unwrap();
        assert!(stat.vsize >= stat.rss * rustix::param::page_size() as u64);
        assert!(stat.rss > 0);
        assert!(open_fds().unwrap() >= 3);
    }
}
