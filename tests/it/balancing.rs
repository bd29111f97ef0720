//! Spreading traffic, avoiding failed backends, site failover, and signals.

use std::thread;
use std::time::Duration;

use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

fn backends(prefix: &str, n: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| Backend::start(&format!("{prefix}{i}")))
        .collect()
}

fn site(backends: &[Backend]) -> String {
    backends
        .iter()
        .map(Backend::url)
        .collect::<Vec<_>>()
        .join(",")
}

fn spread(policy: &str) {
    let b = backends("b", 4);
    let sk = Sidekick::start(&["--host-balance", policy, &site(&b)]);
    wait_for("all four up", LONG, || {
        b.iter().all(|b| b.health_checks() > 0) && sk.health() == 200
    });
    // Let every first check land in the pool before counting.
    sk.wait_up(4);
    for _ in 0..400 {
        assert_eq!(sk.get("/obj").status, 200);
    }
    for backend in &b {
        let share = backend.hits() as f64 / 400.0;
        assert!(
            share >= 0.15,
            "{policy}: {} got {:.0}%",
            backend.name,
            share * 100.0
        );
    }
}

#[test]
fn least_spreads_over_all_backends() {
    spread("least");
}

#[test]
fn random_spreads_over_all_backends() {
    spread("random");
}

#[test]
fn failing_health_check_removes_then_restores_a_backend() {
    let b = backends("h", 2);
    let sk = Sidekick::start(&["--health-duration", "200ms", &site(&b)]);
    sk.wait_up(2);
    b[0].set_healthy(false);
    wait_for("h0 down", LONG, || {
        sk.log_contains(&format!("{} is down", b[0].url()))
    });
    let before = b[0].hits();
    for _ in 0..40 {
        assert_eq!(sk.get("/x").text(), "h1");
    }
    assert_eq!(
        b[0].hits(),
        before,
        "a backend failing its check got traffic"
    );
    b[0].set_healthy(true);
    wait_for("h0 back", LONG, || {
        sk.get("/x");
        b[0].hits() > before
    });
}

#[test]
fn killed_backend_is_marked_down_at_first_refusal_and_returns_after_restart() {
    let mut b = backends("k", 2);
    // A long interval: only a failed request can mark the backend down quickly.
    let sk = Sidekick::start(&["--health-duration", "1h", &site(&b)]);
    sk.wait_up(2);
    b[0].kill();
    // Every request succeeds: a refused connection is retried on the other backend.
    for _ in 0..20 {
        assert_eq!(sk.get("/x").text(), "k1");
    }
    wait_for("logged", LONG, || {
        sk.log_contains(&format!("{} is down", b[0].url()))
    });
    assert_eq!(
        sk.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(" is down"))
            .count(),
        1
    );

    // With a short interval, a restarted backend gets traffic again.
    let mut b2 = backends("r", 2);
    let sk2 = Sidekick::start(&["--health-duration", "200ms", &site(&b2)]);
    sk2.wait_up(2);
    b2[0].kill();
    wait_for("r0 down", LONG, || {
        sk2.log_contains(&format!("{} is down", b2[0].url()))
    });
    b2[0].restart();
    let before = b2[0].hits();
    wait_for("r0 serves again", LONG, || {
        sk2.get("/x");
        b2[0].hits() > before
    });
}

#[test]
fn site_failover_fail_back_and_all_down() {
    let mut primary = Backend::start("primary");
    let mut secondary = Backend::start("secondary");
    let sk = Sidekick::start(&[
        "--health-duration",
        "200ms",
        &primary.url(),
        &secondary.url(),
    ]);
    sk.wait_up(2);
    for _ in 0..10 {
        assert_eq!(sk.get("/x").text(), "primary");
    }
    primary.kill();
    for _ in 0..10 {
        assert_eq!(sk.get("/x").text(), "secondary", "site 2 did not take over");
    }
    primary.restart();
    wait_for("fail-back to site 1", LONG, || {
        sk.get("/x").text() == "primary"
    });

    primary.kill();
    secondary.kill();
    wait_for("all down", LONG, || sk.health() == 502);
    let resp = sk.get("/bucket/a&b?x=1");
    assert_eq!(resp.status, 502);
    assert_eq!(resp.header("retry-after"), Some("120"));
    assert_eq!(resp.header("content-type"), Some("application/xml"));
    let body = resp.text();
    assert!(body.contains("<Code>BackendDown</Code>"), "{body}");
    assert!(
        body.contains("<Resource>/bucket/a&amp;b</Resource>"),
        "{body}"
    );

    secondary.restart();
    wait_for("health back", LONG, || sk.health() == 200);
    assert_eq!(sk.get("/x").text(), "secondary");
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    let b = Backend::start("d");
    let mut sk = Sidekick::start(&[&b.url()]);
    wait_for("up", LONG, || sk.health() == 200);
    let addr = sk.addr;
    let client = thread::spawn(move || request(addr, "GET", "/hold", &[], b""));
    wait_for("request in flight", LONG, || b.held() == 1);
    sk.signal("TERM");
    // New connections are refused once sidekick stops accepting.
    wait_for("listener closed", LONG, || {
        std::net::TcpStream::connect(addr).is_err()
    });
    b.release_held();
    let resp = client.join().unwrap();
    assert_eq!((resp.status, resp.text().as_str()), (200, "held"));
    assert_eq!(sk.wait_exit(LONG), Some(0));
}

#[test]
fn sighup_rechecks_every_endpoint_without_dropping_requests() {
    let b = Backend::start("s");
    let sk = Sidekick::start(&["--health-duration", "1h", &b.url()]);
    wait_for("up", LONG, || sk.health() == 200);
    let addr = sk.addr;
    let client = thread::spawn(move || request(addr, "GET", "/hold", &[], b""));
    wait_for("request in flight", LONG, || b.held() == 1);
    let checks = b.health_checks();
    sk.signal("HUP");
    wait_for("re-check after SIGHUP", LONG, || b.health_checks() > checks);
    b.release_held();
    assert_eq!(client.join().unwrap().text(), "held");
    assert_eq!(sk.get("/x").status, 200);
}

#[test]
fn health_check_timeout_marks_a_backend_down() {
    let b = backends("t", 2);
    let sk = Sidekick::start(&[
        "--health-duration",
        "200ms",
        "--health-timeout",
        "300ms",
        &site(&b),
    ]);
    sk.wait_up(2);
    b[0].hang_health_checks();
    wait_for("t0 down on timeout", LONG, || {
        sk.log_contains(&format!("{} is down", b[0].url()))
    });
    let before = b[0].hits();
    for _ in 0..20 {
        assert_eq!(sk.get("/x").text(), "t1");
    }
    assert_eq!(b[0].hits(), before);
}

#[test]
fn rise_and_fall_need_consecutive_checks() {
    let b = Backend::start("rf");
    let sk = Sidekick::start(&[
        "--health-duration",
        "300ms",
        "--health-rise",
        "3",
        "--health-fall",
        "3",
        &b.url(),
    ]);
    wait_for("up at the first check", LONG, || sk.health() == 200);
    b.set_healthy(false);
    wait_for("down", LONG, || sk.health() == 502);
    assert!(
        b.failed_checks() >= 3,
        "down after {} failed checks: {:?}",
        b.failed_checks(),
        sk.log.lock().unwrap()
    );
    let checks = b.health_checks();
    b.set_healthy(true);
    wait_for("up again", LONG, || sk.health() == 200);
    assert!(
        b.health_checks() - checks >= 3,
        "up after {} passed checks",
        b.health_checks() - checks
    );
}

#[test]
fn optimistic_mode_checks_only_backends_that_are_down() {
    let b = backends("o", 2);
    b[1].set_healthy(false);
    let sk = Sidekick::start(&[
        "--health-optimistic",
        "--health-duration",
        "100ms",
        &site(&b),
    ]);
    wait_for("o0 up", LONG, || sk.health() == 200);
    let (up_checks, down_checks) = (b[0].health_checks(), b[1].health_checks());
    wait_for("the down one checked again", LONG, || {
        b[1].health_checks() >= down_checks + 5
    });
    assert_eq!(b[0].health_checks(), up_checks, "an up backend was checked");
    b[1].set_healthy(true);
    sk.wait_up(2);
}
