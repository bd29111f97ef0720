//! `--rr-dns-mode`: every address of a name is a backend of its own; names are
//! resolved again on SIGHUP (and every `--dns-ttl`). Each test gives sidekick an
//! `/etc/hosts` of its own (root, `unshare`) and serves on extra loopback addresses:
//! `require_private_hosts` fails it, saying so, where that cannot be done.

use std::time::Duration;

use crate::common::tls::{Ca, TempDir};
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn each_address_of_a_name_is_balanced_and_checked_on_its_own() {
    require_private_hosts();
    // Two backends on one port of two loopback addresses, both named rr.test.
    let a = Backend::start_on("a", "127.0.0.2:0".parse().unwrap());
    let port = a.addr.port();
    let mut b = Backend::start_on("b", format!("127.0.0.3:{port}").parse().unwrap());
    let c = Backend::start_on("c", format!("127.0.0.4:{port}").parse().unwrap());
    let hosts = std::env::temp_dir().join(format!("sidekick-hosts-{}", std::process::id()));
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 rr.test\n127.0.0.3 rr.test\n",
    )
    .unwrap();
    let sk = Sidekick::start_with_hosts(
        &hosts,
        &[
            "--rr-dns-mode",
            "--health-duration",
            "200ms",
            &format!("http://rr.test:{port}"),
        ],
    );
    sk.wait_up(2);
    // Both addresses serve (p2c, the default, follows latency: not evenly, but
    // each in turn).
    wait_for("both addresses serve", LONG, || {
        assert_eq!(sk.get("/x").status, 200);
        a.hits() >= 10 && b.hits() >= 10
    });
    // Each address is named after the name it came from.
    wait_for("logged", LONG, || {
        sk.log_contains(&format!("http://rr.test:{port} (127.0.0.3) is up"))
    });

    // One address dies: the other keeps serving.
    b.kill();
    for _ in 0..10 {
        assert_eq!(sk.get("/x").text(), "a");
    }

    // The name now points elsewhere: SIGHUP resolves it again without a restart.
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 rr.test\n127.0.0.4 rr.test\n",
    )
    .unwrap();
    sk.signal("HUP");
    wait_for("new address serves", LONG, || {
        sk.get("/x");
        c.hits() > 0
    });
    wait_for("logged", LONG, || sk.log_contains("(127.0.0.3) is gone"));
    let _ = std::fs::remove_file(&hosts);
}

#[test]
fn https_addresses_of_a_name_are_verified_against_the_name() {
    require_private_hosts();
    // The certificate names rr.test only: a handshake that used the address for SNI
    // or verification would fail and leave both backends down.
    let dir = TempDir::new("rr-tls");
    let ca = Ca::new("rr CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let config = ca.issue(&["rr.test"]).server_config();
    let a = Backend::start_tls_on("a", "127.0.0.2:0".parse().unwrap(), config.clone());
    let port = a.addr.port();
    let b = Backend::start_tls_on("b", format!("127.0.0.3:{port}").parse().unwrap(), config);
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.0.2 rr.test\n127.0.0.3 rr.test\n",
    )
    .unwrap();
    let sk = Sidekick::start_with_hosts(
        &hosts,
        &[
            "--rr-dns-mode",
            "--cacert",
            &dir.arg("ca.pem"),
            "--health-duration",
            "200ms",
            &format!("https://rr.test:{port}"),
        ],
    );
    sk.wait_up(2);
    // Both addresses serve (p2c, the default, follows latency: not evenly, but
    // each in turn).
    wait_for("both addresses serve", LONG, || {
        assert_eq!(sk.get("/x").status, 200);
        a.hits() >= 10 && b.hits() >= 10
    });
}

/// `/etc/hosts` with `name` on each of `addrs`.
fn hosts_file(name: &str, addrs: &[String]) -> String {
    let mut hosts = String::from("127.0.0.1 localhost\n");
    for addr in addrs {
        hosts.push_str(&format!("{addr} {name}\n"));
    }
    hosts
}

/// The address of each backend in a scrape, and how many of them are up.
fn backends_in(scrape: &str) -> (Vec<String>, usize) {
    let mut addrs = Vec::new();
    let mut up = 0;
    for line in scrape.lines().filter(|l| l.starts_with("sidekick_up{")) {
        let addr = line
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(')'));
        if let Some((addr, _)) = addr {
            addrs.push(addr.to_string());
        }
        up += usize::from(line.ends_with(" 1"));
    }
    addrs.sort();
    (addrs, up)
}

#[test]
fn addresses_that_leave_a_name_leave_no_backend_and_no_memory_behind() {
    require_private_hosts();
    // Two sets of 16 addresses on one port, a backend on each; the name moves from
    // one set to the other at every step, so that each re-resolution retires 16
    // backends and adds 16 new ones (an address that comes back is a new backend).
    const PER_SET: usize = 16;
    const STEPS: usize = 1000;
    // The allocator's heaps reach their size within the first 200 steps; from there
    // resident memory stays within about 4 MiB, where keeping the backends that left
    // grew it by over 30 MiB.
    const WARM_UP: usize = 200;
    let sets: Vec<Vec<String>> = (1..=2)
        .map(|s| {
            let mut set: Vec<String> = (1..=PER_SET).map(|i| format!("127.0.{s}.{i}")).collect();
            set.sort();
            set
        })
        .collect();
    let first = Backend::start_on("b", format!("{}:0", sets[0][0]).parse().unwrap());
    let port = first.addr.port();
    let mut backends = vec![first];
    for addr in sets.iter().flatten().skip(1) {
        backends.push(Backend::start_on(
            "b",
            format!("{addr}:{port}").parse().unwrap(),
        ));
    }
    let dir = TempDir::new("rr-churn");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, hosts_file("rr.test", &sets[0])).unwrap();
    // Names are resolved again every 10 ms: --dns-ttl takes any positive duration.
    let sk = Sidekick::start_with_hosts(
        &hosts,
        &[
            "--rr-dns-mode",
            "--dns-ttl",
            "10ms",
            "--health-duration",
            "1m",
            &format!("http://rr.test:{port}"),
        ],
    );
    let mut rss_warm = 0;
    for step in 0..=STEPS {
        let set = &sets[step % 2];
        if step > 0 {
            std::fs::write(&hosts, hosts_file("rr.test", set)).unwrap();
        }
        // Only this set's backends are known, every one up, before the next step.
        wait_until("the name's new addresses, each up", LONG, || {
            let scrape = sk.get("/.prometheus/metrics").text();
            match backends_in(&scrape) {
                (addrs, up) if addrs == *set && up == PER_SET => Ok(()),
                other => Err(format!("step {step}: {other:?}")),
            }
        });
        // Requests leave idle connections to this set in the workers' pools.
        for _ in 0..4 {
            assert_eq!(sk.get("/x").status, 200, "step {step}");
        }
        if step == WARM_UP {
            rss_warm = sk.rss_kib();
        }
    }
    let (addrs, _) = backends_in(&sk.get("/.prometheus/metrics").text());
    assert_eq!(
        addrs,
        sets[STEPS % 2],
        "the backends are the current addresses"
    );
    // 12,800 backends came and went since the warm-up.
    let grown = sk.rss_kib().saturating_sub(rss_warm);
    assert!(
        grown < 8 * 1024,
        "resident memory grew by {grown} KiB over {} re-resolutions",
        STEPS - WARM_UP
    );
}
