//! One traced exchange and the two forms of its line: text, and JSON (`--json`).

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
    pub method: String,
    pub path: String,
    /// 0 when no response arrived.
    pub status: u16,
    pub error: Option<String>,
    pub backend: Option<String>,
    pub duration: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// What the cache made of the request (`X-Cache`), when the cache is on.
    pub cache: Option<&'static str>,
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
/// [error="…"]`, then with
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
    let mut v = json!({
        "time": rfc3339(e.time),
        "type": match e.kind { Kind::Request => "request", Kind::Health => "health" },
        "client": e.client.map(|c| c.to_string()),
        "method": e.method,
        "path": e.path,
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
        method: "GET".into(),
        path: "/b/k".into(),
        status,
        error: None,
        backend: Some("http://h1:9000".into()),
        duration: Duration::from_micros(1500),
        bytes_in: 3,
        bytes_out: 7,
        cache: None,
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
        let v = to_json(&sample(404));
        assert_eq!(v["status"], 404);
        assert_eq!(v["type"], "request");
        assert_eq!(v["client"], "127.0.0.1:5000");
        assert_eq!(v["bytes_out"], 7);
        assert!(v.get("request_headers").is_none());
    }
}
