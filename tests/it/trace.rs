//! `--trace`: one line per proxied request and/or health check on stdout, as text or
//! JSON, filtered by `--errors` and `--status-code`, secrets redacted under `--debug`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(20);

/// sidekick with its stdout (the trace) collected line by line.
struct Traced {
    child: Child,
    addr: SocketAddr,
    out: Arc<Mutex<Vec<String>>>,
}

impl Traced {
    fn start(args: &[&str]) -> Traced {
        let port = free_port("127.0.0.1");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut child = Command::new(BIN)
            .args(["--address", &addr.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sidekick");
        let stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let lines = out.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let t = Traced { child, addr, out };
        wait_for("serving", LIMIT, || {
            TcpStream::connect(addr).is_ok() && t.get("/v1/health").status == 200
        });
        t
    }

    fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], b"")
    }

    fn lines(&self) -> Vec<String> {
        self.out.lock().unwrap().clone()
    }

    /// Trace lines of proxied requests (text form: the client column is an address).
    fn request_lines(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| {
                l.split(' ')
                    .nth(1)
                    .is_some_and(|c| c.starts_with("127.0.0.1:"))
            })
            .collect()
    }

    fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn application_traces_each_proxied_request_and_no_health_check() {
    let b = Backend::start("app");
    let sk = Traced::start(&[
        "--trace",
        "application",
        "--health-duration",
        "1s",
        &b.url(),
    ]);
    assert_eq!(sk.get("/bucket/one?x=1").status, 200);
    assert_eq!(
        request(sk.addr, "PUT", "/upload", &[], b"12345").status,
        200
    );
    wait_for("two request lines", LIMIT, || sk.request_lines().len() == 2);
    let lines = sk.request_lines();
    let get_line = lines.iter().find(|l| l.contains(" GET ")).unwrap();
    let get: Vec<&str> = get_line.split(' ').collect();
    // TIME CLIENT METHOD PATH STATUS BACKEND DURATION in=N out=N
    assert_eq!(
        get[2..6],
        ["GET", "/bucket/one?x=1", "200", &b.url()],
        "{get_line}"
    );
    assert!(get[0].ends_with('Z') && get[0].contains('T'), "{get_line}");
    assert_eq!(get[7..], ["in=0", "out=3"], "{get_line}");
    let put = lines.iter().find(|l| l.contains(" PUT ")).unwrap();
    assert!(
        put.contains(" PUT /upload 200 ") && put.contains(" in=5 "),
        "{put}"
    );
    wait_for("health checks", LIMIT, || b.health_checks() >= 3);
    assert!(
        sk.lines().iter().all(|l| !l.contains("/health/ready")),
        "{:?}",
        sk.lines()
    );
    // sidekick's own paths are not traced.
    assert_eq!(sk.get("/.prometheus/metrics").status, 200);
    assert_eq!(sk.get("/v1/health").status, 200);
    assert_eq!(sk.get("/last").status, 200);
    wait_for("third line", LIMIT, || sk.request_lines().len() == 3);
    assert!(sk
        .lines()
        .iter()
        .all(|l| !l.contains("/v1/health") && !l.contains("prometheus")));
}

#[test]
fn minio_traces_health_checks_only() {
    let b = Backend::start("mi");
    let sk = Traced::start(&["--trace", "minio", "--health-duration", "1s", &b.url()]);
    assert_eq!(sk.get("/not-traced").status, 200);
    wait_for("two health lines", LIMIT, || sk.lines().len() >= 2);
    for line in sk.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(
            f[1..6],
            ["health", "GET", "/health/ready", "200", &b.url()],
            "{line}"
        );
    }
    assert!(sk.lines().iter().all(|l| !l.contains("/not-traced")));
}

#[test]
fn all_as_json_lines_with_the_documented_fields() {
    let b = Backend::start("js");
    let sk = Traced::start(&[
        "--trace",
        "all",
        "--json",
        "--health-duration",
        "1s",
        &b.url(),
    ]);
    assert_eq!(sk.get("/j?k=v").status, 200);
    wait_for("a request and a health check", LIMIT, || {
        let v = sk.json();
        v.iter().any(|e| e["kind"] == "request") && v.iter().any(|e| e["kind"] == "health")
    });
    assert!(
        sk.lines().iter().all(|l| l.starts_with('{')),
        "{:?}",
        sk.lines()
    );
    for e in sk.json() {
        for field in [
            "time",
            "kind",
            "peer",
            "method",
            "path",
            "query",
            "status",
            "error",
            "backend",
            "duration_ms",
            "bytes_in",
            "bytes_out",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
        assert!(e["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{e}");
        assert_eq!(e["backend"], b.url().as_str());
        assert!(e.get("request_headers").is_none(), "{e}");
    }
    let req = sk
        .json()
        .into_iter()
        .find(|e| e["kind"] == "request")
        .unwrap();
    assert_eq!(req["method"], "GET");
    assert_eq!((&req["path"], &req["query"]), (&"/j".into(), &"k=v".into()));
    assert_eq!(req["status"], 200);
    assert_eq!(req["bytes_out"], 2);
    assert!(req["peer"]
        .as_str()
        .is_some_and(|c| c.starts_with("127.0.0.1:")));
    let health = sk
        .json()
        .into_iter()
        .find(|e| e["kind"] == "health")
        .unwrap();
    assert_eq!(health["path"], "/health/ready");
    assert_eq!(health["peer"], Value::Null);
}

#[test]
fn status_code_filter_keeps_exactly_those_codes() {
    let b = Backend::start("sc");
    let sk = Traced::start(&[
        "--trace",
        "all",
        "--status-code",
        "204",
        "--status-code",
        "206",
        &b.url(),
    ]);
    assert_eq!(sk.get("/plain").status, 200);
    assert_eq!(sk.get("/no-content").status, 204);
    let range = request(sk.addr, "GET", "/range", &[("Range", "bytes=2-5")], b"");
    assert_eq!(range.status, 206);
    assert_eq!(sk.get("/plain-again").status, 200);
    wait_for("two lines", LIMIT, || sk.lines().len() >= 2);
    let lines = sk.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.contains(" /no-content 204 ")),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" /range 206 ") && l.ends_with(" out=4")),
        "{lines:?}"
    );
}

#[test]
fn errors_keeps_failures_and_transport_errors_only() {
    let mut b = Backend::start("er");
    let sk = Traced::start(&[
        "--trace",
        "application",
        "--errors",
        "--health-duration",
        "1s",
        &b.url(),
    ]);
    assert_eq!(sk.get("/fine").status, 200);
    // A backend that dies mid-response: the status was 200, the body broke.
    let mut conn = TcpStream::connect(sk.addr).unwrap();
    conn.write_all(b"GET /cut HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut sink = Vec::new();
    let _ = conn.read_to_end(&mut sink);
    wait_for("the broken response traced", LIMIT, || {
        !sk.lines().is_empty()
    });
    b.kill();
    wait_for("backend down", LIMIT, || sk.get("/v1/health").status == 502);
    assert_eq!(sk.get("/nothing-up").status, 502);
    wait_for("the 502 traced", LIMIT, || sk.lines().len() >= 2);
    let lines = sk.lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains(" /cut 200 ") && lines[0].contains("error="),
        "{lines:?}"
    );
    assert!(lines[1].contains(" /nothing-up 502 - "), "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("/fine")));
}

#[test]
fn debug_adds_headers_with_credentials_redacted() {
    let b = Backend::start("dbg");
    let sk = Traced::start(&["--trace", "application", "--debug", "--json", &b.url()]);
    let auth = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/s3/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=0123456789abcdef";
    let res = request(
        sk.addr,
        "GET",
        "/b/k?X-Amz-Credential=AKID&X-Amz-Signature=feedface&X-Amz-Security-Token=qtoken",
        &[
            ("Authorization", auth),
            ("X-Amz-Security-Token", "htoken"),
            ("X-Amz-Date", "20240101T000000Z"),
            ("Cookie", "session=cookievalue"),
        ],
        b"",
    );
    assert_eq!(res.status, 200);
    // The backend got the real values.
    assert_eq!(b.last_seen().header("authorization"), Some(auth));
    wait_for("the request traced", LIMIT, || !sk.json().is_empty());
    let line = sk.lines().join("\n");
    for secret in [
        "0123456789abcdef",
        "feedface",
        "qtoken",
        "htoken",
        "cookievalue",
    ] {
        assert!(!line.contains(secret), "{secret} leaked: {line}");
    }
    let e = &sk.json()[0];
    let headers = &e["request_headers"];
    assert_eq!(headers["x-amz-date"], "20240101T000000Z");
    assert_eq!(headers["cookie"], "*REDACTED*");
    assert_eq!(headers["x-amz-security-token"], "*REDACTED*");
    assert!(headers["authorization"]
        .as_str()
        .is_some_and(|a| a.contains("Credential=AKID/") && a.ends_with("Signature=*REDACTED*")));
    assert!(e["query"]
        .as_str()
        .is_some_and(|p| p.contains("X-Amz-Signature=*REDACTED*")));
    assert_eq!(e["response_headers"]["x-backend"], "dbg");
}
