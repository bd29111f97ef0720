//! What sidekick says of an outage without `--log`, run as a sidecar is (stdout and
//! stderr pipes, no terminal): a backend down and up with reason and downtime, every
//! backend down and back, site failovers, and at start names that do not resolve and
//! sites that look like an unquoted shell brace. `--quiet` says none of it.

use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Where the first line containing `needle` is in `lines`.
fn at(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in {lines:#?}"))
}

#[test]
fn an_outage_is_logged_without_log() {
    let mut b = Backend::start("o1");
    let url = b.url();
    let sk = Sidekick::start_piped(&["--health-duration", "1s", &url]);
    wait_for("serving", LIMIT, || sk.get("/x").status == 200);
    // Settling at start is no event.
    assert!(!sk.log_contains("is up"), "{:?}", sk.log);

    b.kill();
    wait_for("down logged", LIMIT, || {
        sk.log_contains("every backend is down")
    });
    assert_eq!(sk.get("/x").status, 502);
    b.restart();
    wait_for("back up logged", LIMIT, || {
        sk.log_contains("backends are up again after")
    });
    wait_for("serving again", LIMIT, || sk.get("/x").status == 200);

    let (out, log) = sk.stop();
    assert!(out.is_empty(), "stdout: {out:?}");
    let down = at(&log, &format!("WARN  {url} is down: health check failed: "));
    let all_down = at(&log, "WARN  every backend is down: requests get 502");
    let up = at(&log, &format!("INFO  {url} is up (was down "));
    let back = at(&log, "INFO  backends are up again after ");
    assert!(down < all_down && all_down < up && up < back, "{log:#?}");
    // The reason follows: refused, or reset if a check was under way at the kill.
    let reason = log[down].split("health check failed: ").nth(1);
    assert!(
        reason.is_some_and(|r| !r.trim().is_empty()),
        "{}",
        log[down]
    );
    // No start-up warning for an address, and no line per request.
    assert!(
        !log.iter()
            .any(|l| l.contains("hint:") || l.contains("resolve")),
        "{log:#?}"
    );
    assert!(!log.iter().any(|l| l.contains("/x")), "{log:#?}");
}

#[test]
fn failover_to_the_next_site_and_back_is_logged_without_log() {
    let mut b1 = Backend::start("s1");
    let b2 = Backend::start("s2");
    let sk = Sidekick::start_piped(&["--health-duration", "1s", &b1.url(), &b2.url()]);
    wait_for("serving", LIMIT, || sk.get("/x").status == 200);

    b1.kill();
    wait_for("failover logged", LIMIT, || {
        sk.log_contains("WARN  site 2 serves traffic: no backend of site 1 is up")
    });
    assert_eq!(sk.get("/x").status, 200);
    b1.restart();
    wait_for("return logged", LIMIT, || {
        sk.log_contains("INFO  site 1 serves traffic again instead of site 2")
    });
    let (_, log) = sk.stop();
    assert!(
        !log.iter().any(|l| l.contains("every backend is down")),
        "{log:#?}"
    );
}

#[test]
fn quiet_says_nothing_through_an_outage() {
    let mut b = Backend::start("q1");
    let sk = Sidekick::start_piped(&["--quiet", "--health-duration", "1s", &b.url()]);
    wait_for("serving", LIMIT, || sk.health() == 200);
    b.kill();
    wait_for("seen down", LIMIT, || sk.health() == 502);
    b.restart();
    wait_for("seen up", LIMIT, || sk.health() == 200);
    let (out, log) = sk.stop();
    assert!(out.is_empty() && log.is_empty(), "{out:?} {log:?}");
}

#[test]
fn start_warns_of_names_that_do_not_resolve_and_of_one_site_per_host() {
    // What the shell makes of an unquoted `http://sidekick-h{1..3}.invalid:9000`
    // (RFC 6761: `.invalid` never resolves).
    let sites: Vec<String> = (1..=3)
        .map(|i| format!("http://sidekick-h{i}.invalid:9000"))
        .collect();
    let args: Vec<&str> = sites.iter().map(String::as_str).collect();
    let sk = Sidekick::start_piped(&args);
    wait_for("every name warned about", LIMIT, || {
        (1..=3).all(|i| sk.log_contains(&format!("host 'sidekick-h{i}.invalid' does not resolve")))
    });
    wait_for("every backend down", LIMIT, || {
        sk.log_contains("every backend is down")
    });
    let (_, log) = sk.stop();
    let hint = at(&log, "hint: these 3 sites hold one endpoint each");
    assert!(
        log[hint].contains("'http://sidekick-h{1...3}.invalid:9000'"),
        "{}",
        log[hint]
    );
    assert!(hint < at(&log, "sidekick listening on"), "{log:#?}");
    for site in &sites {
        let warned = log
            .iter()
            .filter(|l| l.contains(&format!("{site}: host ")))
            .count();
        assert_eq!(warned, 1, "{site}: {log:#?}");
    }
}
