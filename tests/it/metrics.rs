//! `GET /.prometheus/metrics`: counters after a known workload, the output accepted
//! by `promtool check metrics`, and the up gauge of a killed backend.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn scrape(sk: &Sidekick) -> String {
    let res = sk.get("/.prometheus/metrics");
    assert_eq!(res.status, 200);
    res.text()
}

#[test]
fn counters_follow_the_workload_and_promtool_accepts_them() {
    let backends: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("m{i}"))).collect();
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let sk = Sidekick::start(&["--health-duration", "1s", &urls.join(",")]);
    wait_for("all up", Duration::from_secs(20), || {
        let s = scrape(&sk);
        urls.iter()
            .all(|u| sample(&s, "sidekick_up", u) == Some(1.0))
    });

    for i in 0..30 {
        assert_eq!(sk.get(&format!("/obj/{i}")).status, 200);
    }
    let upload = request(sk.addr, "PUT", "/upload", &[], &[7u8; 1000]);
    assert_eq!(upload.status, 200);

    // A request leaves the in-flight count (and enters the duration histogram) when
    // sidekick has finished with its body, which may be just after the client has it.
    wait_for("requests finished", Duration::from_secs(20), || {
        let s = scrape(&sk);
        urls.iter().all(|u| {
            sample(&s, "sidekick_in_flight_requests", u) == Some(0.0)
                && sample(&s, "sidekick_request_duration_seconds_count", u)
                    == sample(&s, "sidekick_requests_total", u)
        })
    });
    let s = scrape(&sk);
    let mut total = 0.0;
    for (b, url) in backends.iter().zip(&urls) {
        let calls = sample(&s, "sidekick_requests_total", url).unwrap();
        assert_eq!(calls, b.hits() as f64, "{url}\n{s}");
        total += calls;
        assert_eq!(sample(&s, "sidekick_errors_total", url), Some(0.0));
        assert_eq!(sample(&s, "sidekick_in_flight_requests", url), Some(0.0));
        assert_eq!(sample(&s, "sidekick_health_error_counts", url), Some(0.0));
        let count = sample(&s, "sidekick_request_duration_seconds_count", url).unwrap();
        assert_eq!(count, calls, "{url}");
    }
    assert_eq!(total, 31.0);
    let rx: f64 = urls
        .iter()
        .map(|u| sample(&s, "sidekick_rx_bytes_total", u).unwrap())
        .sum();
    assert_eq!(rx, 1000.0);
    // Each GET answers the backend's name (2 bytes), the upload its length and hash.
    let tx: f64 = urls
        .iter()
        .map(|u| sample(&s, "sidekick_tx_bytes_total", u).unwrap())
        .sum();
    assert_eq!(tx, 60.0 + upload.body.len() as f64);
    assert!(
        s.contains(&format!(
            "sidekick_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{s}"
    );
    for name in [
        "sidekick_failovers_total 0",
        "sidekick_trace_dropped_total 0",
        "# TYPE sidekick_request_duration_seconds histogram",
        "# TYPE sidekick_downtime_seconds_total counter",
        "# TYPE sidekick_retries_total counter",
        "# TYPE sidekick_health_check_duration_seconds gauge",
    ] {
        assert!(s.contains(name), "{name} missing in\n{s}");
    }
    promtool_check(&s);

    // Prometheus asks for OpenMetrics and gets it.
    let om = request(
        sk.addr,
        "GET",
        "/.prometheus/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
        b"",
    );
    assert!(om
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/openmetrics-text")));
    assert!(om.text().ends_with("# EOF\n"), "{}", om.text());
}

#[test]
fn a_killed_backend_reads_zero_on_the_up_gauge() {
    let a = Backend::start("a");
    let mut b = Backend::start("b");
    let sk = Sidekick::start(&[
        "--health-duration",
        "1s",
        &format!("{},{}", a.url(), b.url()),
    ]);
    wait_for("both up", Duration::from_secs(20), || {
        let s = scrape(&sk);
        sample(&s, "sidekick_up", &a.url()) == Some(1.0)
            && sample(&s, "sidekick_up", &b.url()) == Some(1.0)
    });
    b.kill();
    wait_for("b down", Duration::from_secs(20), || {
        let s = scrape(&sk);
        sample(&s, "sidekick_up", &b.url()) == Some(0.0)
            && sample(&s, "sidekick_health_error_counts", &b.url()) >= Some(1.0)
    });
    let s = scrape(&sk);
    assert_eq!(sample(&s, "sidekick_up", &a.url()), Some(1.0));
    promtool_check(&s);
}

#[test]
fn failovers_between_sites_are_counted() {
    let mut first = Backend::start("s1");
    let second = Backend::start("s2");
    let sk = Sidekick::start(&["--health-duration", "1s", &first.url(), &second.url()]);
    wait_for("both up", Duration::from_secs(20), || {
        let s = scrape(&sk);
        sample(&s, "sidekick_up", &first.url()) == Some(1.0)
            && sample(&s, "sidekick_up", &second.url()) == Some(1.0)
    });
    first.kill();
    wait_for("second site serves", Duration::from_secs(20), || {
        scrape(&sk).contains("sidekick_failovers_total 1")
    });
    assert_eq!(sk.get("/x").text(), "s2");
}

/// The value of the unlabelled sample `name` in a scrape.
fn plain(scrape: &str, name: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Fields 14 + 15 (utime + stime) and 22 (starttime) of `/proc/PID/stat`, in clock ticks.
fn proc_stat(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = text.rsplit_once(')').unwrap();
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // `fields[0]` is field 4.
    (fields[10] + fields[11], fields[18])
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn process_metrics_describe_the_sidekick_process() {
    let backend = Backend::start("p0");
    let sk = Sidekick::start(&[&backend.url()]);
    let pid = sk.pid();
    let ticks = clock_ticks();
    let (cpu_before, started) = proc_stat(pid);
    let s = scrape(&sk);
    let (cpu_after, _) = proc_stat(pid);
    let value = |name: &str| plain(&s, name).unwrap_or_else(|| panic!("no {name} in\n{s}"));

    // CPU time is read during the scrape: between the readings before and after it.
    let cpu = (value("process_cpu_seconds_total") * ticks).round() as u64;
    assert!(
        cpu_before <= cpu && cpu <= cpu_after,
        "{cpu_before} {cpu} {cpu_after}"
    );

    // The start time is boot time plus the process's start in ticks after boot.
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let btime: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let start = value("process_start_time_seconds");
    assert!(
        (start - (btime + started as f64 / ticks)).abs() < 0.001,
        "{start}"
    );

    // The soft limit on open files, as /proc shows it.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let soft: f64 = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(value("process_max_fds"), soft);
    // At least stdin, stdout, stderr and the listener; never over the limit.
    let fds = value("process_open_fds");
    assert!(fds >= 4.0 && fds <= soft, "{fds}");

    let rss = value("process_resident_memory_bytes");
    let vsize = value("process_virtual_memory_bytes");
    assert!(rss >= 1_048_576.0 && rss <= vsize, "{rss} {vsize}");
    for family in [
        "# TYPE process_cpu_seconds_total counter",
        "# TYPE process_open_fds gauge",
        "# TYPE process_max_fds gauge",
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_virtual_memory_bytes gauge",
        "# TYPE process_start_time_seconds gauge",
    ] {
        assert!(s.contains(family), "{family} missing in\n{s}");
    }
    promtool_check(&s);

    // OpenMetrics names the same samples.
    let om = request(
        sk.addr,
        "GET",
        "/.prometheus/metrics",
        &[("Accept", "application/openmetrics-text;version=1.0.0")],
        b"",
    )
    .text();
    for sample in ["process_cpu_seconds_total ", "process_start_time_seconds "] {
        assert!(om.contains(sample), "{sample} missing in\n{om}");
    }
}
