//! One traced exchange and the two forms of its line: text, and JSON (`--json`).
//! The JSON line has the Go tool's trace fields, with the same names and meanings,
//! and sidekick's own beside them (the README documents both).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value};

/// One traced exchange.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: Kind,
    pub time: SystemTime,
    pub client: Option<SocketAddr>,
    /// The request's source address as the Go tool named it: the first of the
    /// client's `X-Forwarded-For`, else its `X-Real-IP` or `Forwarded: for=`, else
    /// the client's IP.
    pub source: Option<String>,
    pub method: String,
    pub path: String,
    /// 0 when no response arrived.
    pub status: u16,
    pub error: Option<String>,
    pub backend: Option<String>,
    pub duration: Duration,
    /// Until the first response body bytes went out.
    pub first_byte: Option<Duration>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// What the cache made of the request (`X-Cache`), when the cache is on.
    pub cache: Option<&'static str>,
    /// The request was hedged (`--hedge`): whose answer was used, `first` or `hedge`.
    pub hedged: Option<&'static str>,
    /// The backend that answered `503 SlowDown`, after which another one was asked.
    pub slowdown: Option<String>,
    pub request_headers: Option<Vec<(String, String)>>,
    pub response_headers: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Health,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// `TIME CLIENT METHOD PATH STATUS BACKEND DURATION in=N out=N [cache=HIT]
/// [hedged=first|hedge] [slowdown=BACKEND] [error="…"]`, then with
/// `--debug` one `> name: value` line per request header and `< name: value` per
/// response header. Health checks show `health` for the client.
pub fn write_text(out: &mut impl Write, e: &Event) -> std::io::Result<()> {
    let client = match (e.kind, e.client) {
        (Kind::Health, _) => "health".to_string(),
        (Kind::Request, Some(c)) => c.to_string(),
        (Kind::Request, None) => "-".to_string(),
    };
    write!(
        out,
        "{} {client} {} {} {} {} {} in={} out={}",
        rfc3339(e.time),
        e.method,
        e.path,
        e.status,
        e.backend.as_deref().unwrap_or("-"),
        crate::observe::human::duration(e.duration),
        e.bytes_in,
        e.bytes_out,
    )?;
    if let Some(cache) = e.cache {
        write!(out, " cache={cache}")?;
    }
    if let Some(won) = e.hedged {
        write!(out, " hedged={won}")?;
    }
    if let Some(shed) = &e.slowdown {
        write!(out, " slowdown={shed}")?;
    }
    if let Some(error) = &e.error {
        write!(out, " error={error:?}")?;
    }
    writeln!(out)?;
    for (name, value) in e.request_headers.iter().flatten() {
        writeln!(out, "  > {name}: {value}")?;
    }
    for (name, value) in e.response_headers.iter().flatten() {
        writeln!(out, "  < {name}: {value}")?;
    }
    Ok(())
}

/// A duration as a Go `time.Duration` in JSON: integer nanoseconds.
fn go_duration(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The status text the Go tool wrote (Go's `http.StatusText`): the standard reason
/// phrase, in Go's older wording where it differs; empty for an unknown code.
fn status_text(status: u16) -> &'static str {
    match status {
        413 => "Request Entity Too Large",
        414 => "Request URI Too Long",
        416 => "Requested Range Not Satisfiable",
        _ => actix_web::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or(""),
    }
}

/// The JSON form; its field names are documented in the README and kept stable.
pub fn to_json(e: &Event) -> Value {
    let headers = |h: &Option<Vec<(String, String)>>| {
        h.as_ref().map(|h| {
            let mut map = Map::new();
            for (name, value) in h {
                match map.get_mut(name) {
                    Some(Value::String(v)) => {
                        v.push_str(", ");
                        v.push_str(value);
                    }
                    _ => {
                        map.insert(name.clone(), Value::String(value.clone()));
                    }
                }
            }
            Value::Object(map)
        })
    };
    let (path, query) = e.path.split_once('?').unwrap_or((&e.path, ""));
    let health = e.kind == Kind::Health;
    let mut v = json!({
        // The Go tool's fields.
        "type": "TRACE",
        "host": e.backend.as_deref().unwrap_or(""),
        "time": rfc3339(e.time),
        "client": e.source.as_deref().unwrap_or(""),
        "callStats": {
            "rx": e.bytes_in,
            "tx": e.bytes_out,
            "latency": go_duration(e.duration),
            "timetofirstbyte": go_duration(e.first_byte.unwrap_or_default()),
            "healthError": if health { e.error.as_deref() } else { None },
        },
        "statusCode": e.status,
        "statusMsg": status_text(e.status),
        "method": e.method,
        "path": path,
        "query": query,
        // sidekick's own.
        "kind": if health { "health" } else { "request" },
        "peer": e.client.map(|c| c.to_string()),
        "status": e.status,
        "error": e.error,
        "backend": e.backend,
        "duration_ms": e.duration.as_secs_f64() * 1e3,
        "bytes_in": e.bytes_in,
        "bytes_out": e.bytes_out,
    });
    if let Value::Object(map) = &mut v {
        if let Some(cache) = e.cache {
            map.insert("cache".into(), cache.into());
        }
        if let Some(won) = e.hedged {
            map.insert("hedged".into(), won.into());
        }
        if let Some(shed) = &e.slowdown {
            map.insert("slowdown".into(), shed.as_str().into());
        }
        if let Some(h) = headers(&e.request_headers) {
            map.insert("request_headers".into(), h);
        }
        if let Some(h) = headers(&e.response_headers) {
            map.insert("response_headers".into(), h);
        }
    }
    v
}

/// An event as the unit tests of the trace use it.
#[cfg(test)]
pub fn sample(status: u16) -> Event {
    Event {
        kind: Kind::Request,
        time: SystemTime::UNIX_EPOCH,
        client: "127.0.0.1:5000".parse().ok(),
        source: Some("127.0.0.1".into()),
        method: "GET".into(),
        path: "/b/k".into(),
        status,
        error: None,
        backend: Some("http://h1:9000".into()),
        duration: Duration::from_micros(1500),
        first_byte: Some(Duration::from_micros(900)),
        bytes_in: 3,
        bytes_out: 7,
        cache: None,
        hedged: None,
        slowdown: None,
        request_headers: None,
        response_headers: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_lines() {
        let mut out = Vec::new();
        write_text(&mut out, &sample(200)).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "1970-01-01T00:00:00.000Z 127.0.0.1:5000 GET /b/k 200 http://h1:9000 1.5ms in=3 out=7\n"
        );
        let mut e = sample(413);
        e.path = "/b/k?uploads&X-Amz-Signature=*REDACTED*".into();
        let v = to_json(&e);
        assert_eq!(v["type"], "TRACE");
        assert_eq!(v["host"], "http://h1:9000");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["statusCode"], 413);
        assert_eq!(v["statusMsg"], "Request Entity Too Large");
        assert_eq!(v["path"], "/b/k");
        assert_eq!(v["query"], "uploads&X-Amz-Signature=*REDACTED*");
        let stats = &v["callStats"];
        assert_eq!(
            (stats["rx"].as_u64(), stats["tx"].as_u64()),
            (Some(3), Some(7))
        );
        assert_eq!(stats["latency"], 1_500_000);
        assert_eq!(stats["timetofirstbyte"], 900_000);
        assert!(stats["healthError"].is_null());
        assert_eq!(v["status"], 413);
        assert_eq!(v["kind"], "request");
        assert_eq!(v["peer"], "127.0.0.1:5000");
        assert_eq!(v["bytes_out"], 7);
        assert!(v.get("request_headers").is_none());
        assert_eq!(to_json(&sample(299))["statusMsg"], "");
        assert_eq!(to_json(&sample(404))["statusMsg"], "Not Found");
        assert!(v.get("hedged").is_none() && v.get("slowdown").is_none());
    }

    #[test]
    fn hedged_and_slowdown_requests_say_so() {
        let mut e = sample(200);
        e.hedged = Some("hedge");
        e.slowdown = Some("http://h2:9000".into());
        let mut out = Vec::new();
        write_text(&mut out, &e).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:00.000Z 127.0.0.1:5000 GET /b/k 200 http://h1:9000 1.5ms in=3 out=7 \
             hedged=hedge slowdown=http://h2:9000\n"
        );
        let v = to_json(&e);
        assert_eq!(v["hedged"], "hedge");
        assert_eq!(v["slowdown"], "http://h2:9000");
    }

    #[test]
    fn a_failed_health_check_in_json() {
        let mut e = sample(0);
        e.kind = Kind::Health;
        (e.client, e.source, e.first_byte) = (None, None, None);
        e.error = Some("connection refused".into());
        let v = to_json(&e);
        assert_eq!(v["client"], "");
        assert_eq!(v["callStats"]["healthError"], "connection refused");
        assert_eq!(v["callStats"]["timetofirstbyte"], 0);
        assert_eq!(
            (v["statusCode"].as_u64(), v["statusMsg"].as_str()),
            (Some(0), Some(""))
        );
        assert_eq!(v["kind"], "health");
        assert!(v["peer"].is_null());
    }
}
