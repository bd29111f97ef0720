//! `--hedge`: a GET or HEAD without a body whose answer is late goes to a second
//! backend too; the first answer wins, the other exchange is dropped (its
//! connection closed, its backend not blamed), at most one extra request is sent,
//! never for a request with a body, and the retry budget caps them.

use std::thread;
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// The first request for each `/late` target is held (until released or its
/// connection closes); any other is answered at once with the node's name.
fn late_first() -> Scripted {
    Scripted::start(2, |req, node, arrival| {
        let body = if req.method == "HEAD" {
            Vec::new()
        } else {
            format!("node{node}").into_bytes()
        };
        let answer = response("200 OK", &[&format!("X-Node: {node}")], &body);
        if req.path().starts_with("/late") && arrival == 1 {
            Act::Hold(answer)
        } else {
            Act::Send(answer)
        }
    })
}

fn hedges(sk: &Sidekick, won: &str) -> f64 {
    let label = format!("won=\"{won}\"");
    sk.sample_with("sidekick_hedges_total", &label)
        .expect("sidekick_hedges_total")
}

#[test]
fn a_late_read_is_hedged_once_and_the_late_exchange_is_closed_not_blamed() {
    let nodes = late_first();
    let sk = Sidekick::start(&[
        "--hedge",
        "--trace",
        "application",
        "--health-duration",
        "1h",
        &nodes.site(),
    ]);
    sk.wait_up(2);
    let res = sk.get("/late/1");
    assert_eq!(res.status, 200);
    let winner = res.text();
    // The late exchange was dropped: its connection closed, nothing read from it.
    wait_for("the late exchange closed", LIMIT, || {
        nodes.closed_while_held() == 1
    });
    assert_eq!(nodes.arrivals("GET", "/late/1"), 2, "one extra request");
    assert_eq!((hedges(&sk, "hedge"), hedges(&sk, "first")), (1.0, 0.0));
    // Late is not failed: both nodes up, no error counted.
    let scrape = sk.get("/.prometheus/metrics").text();
    for url in nodes.urls() {
        assert_eq!(sample(&scrape, "sidekick_up", &url), Some(1.0), "{url}");
        assert_eq!(sample(&scrape, "sidekick_errors_total", &url), Some(0.0));
    }
    promtool_check(&scrape);
    assert_eq!(sk.health(), 200);
    // Both nodes serve what follows, the late one on a new connection.
    let late_node = if winner == "node0" { 1 } else { 0 };
    let conns = nodes.conns(late_node);
    let served: Vec<String> = (0..6)
        .map(|i| {
            let res = sk.get(&format!("/after/{i}"));
            assert_eq!(res.status, 200);
            res.text()
        })
        .collect();
    assert!(served.contains(&format!("node{late_node}")), "{served:?}");
    assert!(nodes.conns(late_node) > conns);
    wait_for("the hedged request traced", LIMIT, || {
        sk.out_has(|l| l.contains(" GET /late/1 200 ") && l.ends_with(" hedged=hedge"))
    });
}

#[test]
fn only_reads_without_a_body_are_hedged() {
    let nodes = late_first();
    // One worker: its timers fire in the order they were set.
    let sk = Sidekick::start(&[
        "--hedge",
        "--workers",
        "1",
        "--health-duration",
        "1h",
        &nodes.site(),
    ]);
    sk.wait_up(2);
    let addr = sk.addr;
    let put = thread::spawn(move || request(addr, "PUT", "/late/put", &[], b"x"));
    let get_body = thread::spawn(move || request(addr, "GET", "/late/get-body", &[], b"abc"));
    wait_for("both held", LIMIT, || {
        nodes.arrivals("PUT", "/late/put") == 1 && nodes.arrivals("GET", "/late/get-body") == 1
    });
    // Set later, these two requests' hedge timers fire after the two above would.
    let head = request(addr, "HEAD", "/late/head", &[], b"");
    assert_eq!(head.status, 200);
    let get = sk.get("/late/get");
    assert_eq!(get.status, 200);
    assert_eq!(nodes.arrivals("HEAD", "/late/head"), 2);
    assert_eq!(nodes.arrivals("GET", "/late/get"), 2);
    assert_eq!(nodes.arrivals("PUT", "/late/put"), 1);
    assert_eq!(nodes.arrivals("GET", "/late/get-body"), 1);
    nodes.release();
    let (put, get_body) = (put.join().unwrap(), get_body.join().unwrap());
    assert_eq!((put.status, get_body.status), (200, 200));
    assert_eq!(nodes.arrivals("PUT", "/late/put"), 1);
    assert_eq!(nodes.arrivals("GET", "/late/get-body"), 1);
    assert_eq!(hedges(&sk, "hedge") + hedges(&sk, "first"), 2.0);
}

#[test]
fn the_retry_budget_caps_hedges() {
    // Every first request is answered after 3 s, past the 1 s the hedge delay is
    // while nothing is known of the site.
    let nodes = Scripted::start(2, |_, node, arrival| {
        let answer = response("200 OK", &[], format!("node{node}").as_bytes());
        if arrival == 1 {
            Act::After(Duration::from_secs(3), answer)
        } else {
            Act::Send(answer)
        }
    });
    // One worker, and a budget of 0%: the floor of 10 retries per 10 s window.
    let sk = Sidekick::start(&[
        "--hedge",
        "--workers",
        "1",
        "--retry-budget",
        "0",
        "--health-duration",
        "1h",
        &nodes.site(),
    ]);
    sk.wait_up(2);
    let addr = sk.addr;
    let clients: Vec<_> = (0..30)
        .map(|i| thread::spawn(move || request(addr, "GET", &format!("/slow/{i}"), &[], b"")))
        .collect();
    for c in clients {
        assert_eq!(c.join().unwrap().status, 200);
    }
    let mut sent = 0;
    for i in 0..30 {
        let n = nodes.arrivals("GET", &format!("/slow/{i}"));
        assert!((1..=2).contains(&n), "/slow/{i}: {n}");
        sent += n - 1;
    }
    // 10 in the first window; 5 more if the test ran into the next one.
    assert!((10..=15).contains(&sent), "{sent} hedges");
    assert_eq!(hedges(&sk, "hedge") + hedges(&sk, "first"), sent as f64);
}
