//! `--json` lines parse against the Go sidekick's schemas, so that what was built on
//! its output keeps working: log lines `{Type, Endpoint, Error, Status, Downtime,
//! Timestamp}` and trace lines `{type, host, time, client, callStats, statusCode,
//! statusMsg, method, path, query}` (its `main.go` and `http-tracer.go`), with the
//! same types (a Go `time.Duration` is integer nanoseconds, a `time.Time` an RFC 3339
//! string) and meanings.

use std::time::Duration;

use serde_json::Value;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The JSON lines of `lines` (a few start-up lines are plain text, as the Go tool's
/// `listening on` was).
fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn string<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is no string in {v}"))
}

fn nanos(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is no integer in {v}"))
}

fn rfc3339(v: &Value, field: &str) {
    let text = string(v, field);
    assert!(humantime::parse_rfc3339(text).is_ok(), "{field}: {text}");
}

/// A Go log line: `Type` `LOG`, `Endpoint` and `Status` always, `Error` and
/// `Downtime` only when set (`omitempty`), `Timestamp`.
fn go_log_line(v: &Value) -> (&str, &str) {
    assert_eq!(string(v, "Type"), "LOG", "{v}");
    rfc3339(v, "Timestamp");
    if v.get("Error").is_some() {
        assert!(!string(v, "Error").is_empty(), "{v}");
    }
    if v.get("Downtime").is_some() {
        assert!(nanos(v, "Downtime") > 0, "{v}");
    }
    (string(v, "Endpoint"), string(v, "Status"))
}

#[test]
fn backend_log_lines_have_the_go_fields() {
    let mut b = Backend::start("gl");
    let url = b.url();
    let sk = Sidekick::start_piped(&["--json", "--log", "--health-duration", "1s", &url]);
    wait_for("serving", LIMIT, || sk.get("/x").status == 200);
    b.kill();
    wait_for("down logged", LIMIT, || sk.log_contains("is down"));
    b.restart();
    wait_for("up logged", LIMIT, || sk.log_contains("is up (was down"));
    let (_, log) = sk.stop();
    let lines = parse(&log);
    let go: Vec<&Value> = lines.iter().filter(|v| v.get("Type").is_some()).collect();
    let states: Vec<(&str, &str)> = go.iter().map(|v| go_log_line(v)).collect();
    assert_eq!(
        states,
        [
            (url.as_str(), "up"),
            (url.as_str(), "down"),
            (url.as_str(), "up")
        ],
        "{log:#?}"
    );
    // Down says why; back up says for how long; the first state has neither.
    assert!(go[1]["Error"]
        .as_str()
        .is_some_and(|e| e.starts_with("health check failed: ")));
    assert!(go[0].get("Downtime").is_none() && go[0].get("Error").is_none());
    let downtime = Duration::from_nanos(nanos(go[2], "Downtime"));
    assert!(downtime >= Duration::from_millis(100), "{downtime:?}");
    // sidekick's own fields stay on every line.
    for v in &lines {
        rfc3339(v, "time");
        assert!(v["level"].is_string() && v["message"].is_string(), "{v}");
    }
}

/// A Go trace line; gives its `path`, `query`, `statusCode` and `callStats`.
fn go_trace_line(v: &Value) -> (&str, &str, u64, &Value) {
    assert_eq!(string(v, "type"), "TRACE", "{v}");
    rfc3339(v, "time");
    for field in ["host", "client", "statusMsg", "method"] {
        string(v, field);
    }
    let stats = &v["callStats"];
    for field in ["rx", "tx", "latency", "timetofirstbyte"] {
        nanos(stats, field);
    }
    assert!(
        stats
            .get("healthError")
            .is_some_and(|e| e.is_null() || e.is_string()),
        "{v}"
    );
    (
        string(v, "path"),
        string(v, "query"),
        nanos(v, "statusCode"),
        stats,
    )
}

#[test]
fn trace_lines_have_the_go_fields() {
    let b = Backend::start("gt");
    let url = b.url();
    let sk = Sidekick::start_piped(&["--json", "--trace", "all", "--health-duration", "1s", &url]);
    wait_for("serving", LIMIT, || sk.health() == 200);
    let put = request(sk.addr, "PUT", "/bucket/k?x-id=PutObject", &[], b"12345");
    assert_eq!(put.status, 200);
    let get = request(
        sk.addr,
        "GET",
        "/status?code=404",
        &[("X-Forwarded-For", "203.0.113.7, 10.0.0.1")],
        b"",
    );
    assert_eq!(get.status, 404);
    wait_for("two requests and a check traced", LIMIT, || {
        let out = sk.out.lock().unwrap();
        out.iter()
            .filter(|l| l.contains("\"kind\":\"request\""))
            .count()
            == 2
            && out.iter().any(|l| l.contains("\"kind\":\"health\""))
    });
    let (out, _) = sk.stop();
    let lines = parse(&out);
    for v in &lines {
        go_trace_line(v);
        assert_eq!(string(v, "host"), url, "{v}");
    }
    let find = |path: &str| {
        lines
            .iter()
            .find(|v| v["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path} in {out:#?}"))
    };
    let put = find("/bucket/k");
    let (_, query, status, stats) = go_trace_line(put);
    let msg = string(put, "statusMsg");
    assert_eq!((query, status, msg), ("x-id=PutObject", 200, "OK"));
    assert_eq!(
        (string(put, "method"), string(put, "client")),
        ("PUT", "127.0.0.1")
    );
    assert_eq!(stats["rx"], 5);
    assert!(nanos(stats, "latency") > 0);
    assert!(nanos(stats, "timetofirstbyte") <= nanos(stats, "latency"));
    let missing = find("/status");
    let (_, query, status, _) = go_trace_line(missing);
    assert_eq!((query, status), ("code=404", 404));
    assert_eq!(string(missing, "statusMsg"), "Not Found");
    // The source the client's chain names, as the Go tool took it.
    assert_eq!(string(missing, "client"), "203.0.113.7");
    let health = find("/health/ready");
    assert_eq!(
        (string(health, "client"), health["statusCode"].as_u64()),
        ("", Some(200))
    );
}
