//! The open-file limit: sidekick raises its soft limit to the hard one, serves only
//! the client connections the limit holds, and answers the rest 503 at once, so
//! that a flood of idle connections never leaves it unable to accept.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// The limit the flooded sidekick runs with, soft and hard.
const LIMIT: u64 = 256;
/// Idle connections opened against it: more than the limit holds.
const IDLE: usize = 300;
const ANSWER: &[u8] = b"HTTP/1.1 503";

/// The soft and hard "Max open files" of a process.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let mut fields = line["Max open files".len()..].split_whitespace();
    let soft = fields.next().expect("soft").to_string();
    let hard = fields.next().expect("hard").to_string();
    (soft, hard)
}

/// One GET on a fresh connection, answered within a client's usual read timeout:
/// no answer by then is a hang.
fn get_within(sk: &Sidekick, timeout: Duration) -> u16 {
    let mut stream = TcpStream::connect_timeout(&sk.addr, timeout).expect("connect");
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
        .expect("send");
    match read_response(&mut BufReader::new(stream), false) {
        Ok(resp) => resp.status,
        Err(e) => panic!("no answer within {timeout:?}: {e}"),
    }
}

/// Connections of `conns` not yet `answered` that now have bytes to read; each must
/// begin with `status`, and none may have been closed unanswered.
fn answered_now(conns: &mut [TcpStream], answered: &mut [bool], status: &[u8]) -> usize {
    for (s, done) in conns.iter_mut().zip(answered.iter_mut()) {
        if *done {
            continue;
        }
        let mut buf = vec![0u8; status.len()];
        match s.read(&mut buf) {
            Ok(0) => panic!("a connection was closed without an answer"),
            Ok(n) => {
                assert_eq!(
                    &buf[..n],
                    &status[..n],
                    "not {:?}",
                    String::from_utf8_lossy(status)
                );
                *done = true;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection: {e}"),
        }
    }
    answered.iter().filter(|d| **d).count()
}

fn connect(sk: &Sidekick) -> TcpStream {
    TcpStream::connect_timeout(&sk.addr, Duration::from_secs(10)).expect("connect")
}

#[test]
fn a_flood_of_idle_connections_past_the_file_limit_never_stops_serving() {
    let b = Backend::start("a");
    // Idle connections stay for the whole test unless sidekick closes them itself.
    let args = ["--workers", "2", "--client-header-timeout", "5m", &b.url()];
    let sk = Sidekick::start_with_nofile(LIMIT, LIMIT, &args);
    wait_for("up", Duration::from_secs(20), || sk.health() == 200);

    // One warning naming the limit and --max-conns, and the connections that fit.
    let warnings: Vec<String> = sk
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("open-file limit"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let warning = &warnings[0];
    assert!(
        warning.contains(&format!("limit is {LIMIT}")) && warning.contains("--max-conns 10000"),
        "{warning}"
    );
    let served: usize = warning
        .split("serving at most ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {warning}"));
    assert!(served > 0 && served < IDLE / 2, "{warning}");

    // Half the connections send a request the backend holds: each one served keeps
    // a backend connection open too, the most files a served connection takes.
    let mut busy: Vec<TcpStream> = (0..IDLE / 2)
        .map(|_| {
            let mut s = connect(&sk);
            s.write_all(b"GET /hold HTTP/1.1\r\nHost: test.local\r\n\r\n")
                .expect("send");
            s
        })
        .collect();
    // The other half send nothing at all.
    let mut silent: Vec<TcpStream> = (0..IDLE / 2).map(|_| connect(&sk)).collect();
    for s in busy.iter().chain(&silent) {
        s.set_nonblocking(true).unwrap();
    }

    // sidekick takes every one: those it serves reach the backend, the others are
    // answered 503 at once, whether they sent a request or not.
    let mut busy_refused = vec![false; busy.len()];
    let mut silent_refused = vec![false; silent.len()];
    wait_for(
        "every connection served or answered 503",
        Duration::from_secs(30),
        || {
            let refused = answered_now(&mut busy, &mut busy_refused, ANSWER);
            answered_now(&mut silent, &mut silent_refused, ANSWER) == silent.len()
                && refused + b.held() == busy.len()
        },
    );
    let forwarded = b.held();
    assert!(
        forwarded > 0 && forwarded <= served,
        "{forwarded} of {served}"
    );

    // A request now is answered, not left in the accept queue.
    let status = get_within(&sk, Duration::from_secs(5));
    assert!(status == 200 || status == 503, "status {status}");

    // The requests it took all complete.
    let mut done: Vec<bool> = busy_refused.clone();
    b.release_held();
    wait_for("held requests answered", Duration::from_secs(20), || {
        answered_now(&mut busy, &mut done, b"HTTP/1.1 200") == busy.len()
    });

    // Once the idle connections go, requests are served again.
    drop(busy);
    drop(silent);
    wait_for("served again", Duration::from_secs(20), || {
        sk.get("/x").status == 200
    });
    let log = sk.log.lock().unwrap();
    let accept_errors = log
        .iter()
        .filter(|l| l.contains("Error accepting connection"))
        .count();
    assert!(accept_errors <= 3, "accept errors flood the log: {log:?}");
}

#[test]
fn the_soft_limit_is_raised_to_the_hard_one() {
    let own = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = own.maximum.unwrap_or(u64::MAX).min(4096);
    assert!(
        hard > LIMIT,
        "needs a hard open-file limit above {LIMIT}, have {hard}"
    );
    let b = Backend::start("a");
    let sk = Sidekick::start_with_nofile(LIMIT, hard, &["--max-conns", "10", &b.url()]);
    let (soft, max) = open_file_limits(sk.pid());
    assert_eq!(max, hard.to_string());
    assert_eq!(soft, max, "soft limit not raised");
    // 10 connections fit: nothing to warn about.
    assert!(!sk.log_contains("open-file limit"));
    wait_for("served", Duration::from_secs(20), || {
        sk.get("/x").status == 200
    });
}
