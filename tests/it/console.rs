//! What sidekick prints: JSON log lines with `--json`, nothing with `--quiet`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

#[test]
fn json_log_lines_are_json_objects() {
    let b = Backend::start("j");
    let sk = Sidekick::start(&["--json", &b.url()]);
    wait_for("up logged", Duration::from_secs(20), || {
        sk.log_contains("is up")
    });
    let lines = sk.log.lock().unwrap().clone();
    let events: Vec<_> = lines.iter().filter(|l| l.starts_with('{')).collect();
    assert!(!events.is_empty(), "{lines:?}");
    for line in events {
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        for field in ["time", "level", "message"] {
            assert!(v.get(field).is_some(), "{field} missing in {line}");
        }
    }
}

#[test]
fn quiet_prints_nothing() {
    let b = Backend::start("q");
    let port = free_port("127.0.0.1");
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(BIN)
        .args(["--quiet", "--log", "--address", &addr, &b.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let health = || request(addr.parse().unwrap(), "GET", "/v1/health", &[], b"").status;
    wait_for("serving", Duration::from_secs(20), || {
        std::net::TcpStream::connect(&addr).is_ok() && health() == 200
    });
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}
