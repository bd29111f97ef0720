//! `--rr-dns-mode`: every address of a name is a backend of its own; names are
//! resolved again on SIGHUP (and every `--dns-ttl`).

use std::time::Duration;

use crate::common::tls::{Ca, TempDir};
use crate::common::*;

const LONG: Duration = Duration::from_secs(20);

#[test]
fn each_address_of_a_name_is_balanced_and_checked_on_its_own() {
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
    for _ in 0..40 {
        assert_eq!(sk.get("/x").status, 200);
    }
    assert!(
        a.hits() >= 10 && b.hits() >= 10,
        "a {} b {}",
        a.hits(),
        b.hits()
    );
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
    for _ in 0..40 {
        assert_eq!(sk.get("/x").status, 200);
    }
    assert!(
        a.hits() >= 10 && b.hits() >= 10,
        "a {} b {}",
        a.hits(),
        b.hits()
    );
}
