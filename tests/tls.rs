//! TLS on both sides: HTTPS clients, https backends, mutual TLS, certificate rotation,
//! generated certificates, TLS versions, key formats, and the errors for bad files.

mod common;

use std::process::Command;
use std::time::Duration;

use common::tls::*;
use common::*;
use rcgen::{KeyPair, PKCS_ED25519};
use rustls::pki_types::pem::PemObject;

const LIMIT: Duration = Duration::from_secs(20);

fn data(name: &str) -> String {
    format!("{}/tests/data/tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// CA, a server certificate for localhost / 127.0.0.1 written to `dir`, and its paths.
fn server_cert(dir: &TempDir) -> (Ca, Issued, String, String) {
    let ca = Ca::new("sidekick test CA");
    let issued = ca.issue(&["localhost", "127.0.0.1"]);
    let (cert, key) = issued.write(dir.path(), "server");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    (ca, issued, cert, key)
}

fn wait_up(sk: &Sidekick) {
    wait_for("a backend up", LIMIT, || sk.health() == 200);
}

/// Plain-HTTP `/v1/health` is not available on a TLS listener: ask over TLS.
fn wait_up_tls(sk: &Sidekick) {
    wait_for("a backend up", LIMIT, || {
        https_request(sk.addr, None, "GET", "/v1/health", b"").status == 200
    });
}

#[test]
fn https_client_to_http_backend() {
    let dir = TempDir::new("https-client");
    let (ca, _, cert, key) = server_cert(&dir);
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--cert", &cert, "--key", &key, &backend.url()]);
    wait_up_tls(&sk);

    let resp = https_request(sk.addr, Some(ca.roots()), "GET", "/bucket/a%2Fb?x=1", b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "b0");
    let seen = backend.last_seen();
    assert_eq!(seen.target, "/bucket/a%2Fb?x=1");
    assert_eq!(seen.header("host"), Some("test.local"));
    // The client address is known on TLS connections too.
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));

    let body = vec![7u8; 200_000];
    let resp = https_request(sk.addr, Some(ca.roots()), "PUT", "/upload", &body);
    assert_eq!(resp.text(), format!("200000 {}", sha256(&body)));

    // TLS 1.3 by default, ALPN h2 for clients that offer it.
    let shown = handshake(sk.addr);
    assert_eq!(shown.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert_eq!(shown.alpn.as_deref(), Some(b"h2".as_slice()));
    let http1 = client_config(None, rustls::ALL_VERSIONS, &[b"http/1.1".as_slice()]);
    let shown = handshake_with(sk.addr, http1).unwrap();
    assert_eq!(shown.alpn.as_deref(), Some(b"http/1.1".as_slice()));

    // No generated certificate: /v1/certificates is not found.
    assert_eq!(
        https_request(sk.addr, None, "GET", "/v1/certificates", b"").status,
        404
    );
}

#[test]
fn tls_max_1_2_offers_only_tls_1_2() {
    let dir = TempDir::new("tls12");
    let (_, _, cert, key) = server_cert(&dir);
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--cert",
        &cert,
        "--key",
        &key,
        "--tls-max",
        "1.2",
        &backend.url(),
    ]);
    let shown = handshake(sk.addr);
    assert_eq!(shown.version, Some(rustls::ProtocolVersion::TLSv1_2));
    let only13 = client_config(None, &[&rustls::version::TLS13], &[]);
    assert!(handshake_with(sk.addr, only13).is_err());
}

#[test]
fn http_client_to_https_backend() {
    let dir = TempDir::new("https-backend");
    let ca = Ca::new("backend CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let backend = https_backend("tls0", ca.issue(&["127.0.0.1"]).server_config());
    let sk = Sidekick::start(&["--cacert", &dir.arg("ca.pem"), &backend.url()]);
    wait_up(&sk);
    assert!(backend.health_checks() > 0);

    let resp = sk.get("/obj?a=b");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "tls0");
    let seen = backend.last_seen();
    assert_eq!(seen.target, "/obj?a=b");
    assert_eq!(seen.header("host"), Some("test.local"));

    let resp = sk.get("/big?size=4194304");
    assert_eq!(resp.body.len(), 4 << 20);
    let sent = backend
        .seen()
        .into_iter()
        .rfind(|s| s.method == "SENT")
        .unwrap();
    assert_eq!(sha256(&resp.body), sent.body_sha);

    let body = vec![3u8; 300_000];
    let resp = request(sk.addr, "PUT", "/upload", &[], &body);
    assert_eq!(resp.text(), format!("300000 {}", sha256(&body)));
}

#[test]
fn backend_sessions_are_resumed() {
    let dir = TempDir::new("resume");
    let ca = Ca::new("backend CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let backend = https_backend("r0", ca.issue(&["127.0.0.1"]).server_config());
    let sk = Sidekick::start(&[
        "--health-duration",
        "1s",
        "--cacert",
        &dir.arg("ca.pem"),
        &backend.url(),
    ]);
    wait_up(&sk);
    // Each health check opens a new connection; the shared client config's session
    // cache lets the next ones (and the workers' connections) resume.
    wait_for("a resumed handshake", LIMIT, || {
        backend.tls_handshakes().1 > 0
    });
}

#[test]
fn backend_with_unknown_ca_is_down_unless_insecure() {
    let stranger = Ca::new("nobody trusts me");
    let backend = https_backend("x", stranger.issue(&["127.0.0.1"]).server_config());
    let sk = Sidekick::start(&["--health-duration", "1s", &backend.url()]);
    wait_for("the handshake failure logged", LIMIT, || {
        sk.log_contains("is down") && sk.log_contains("UnknownIssuer")
    });
    assert_eq!(sk.health(), 502);
    assert_eq!(sk.get("/obj").status, 502);
    assert_eq!(backend.hits(), 0);

    let insecure = Sidekick::start(&["--insecure", &backend.url()]);
    assert!(insecure.log_contains("--insecure"), "{:?}", insecure.log);
    wait_up(&insecure);
    assert_eq!(insecure.get("/obj").text(), "x");
}

#[test]
fn wrong_name_and_expired_backend_certificates_name_the_reason() {
    let dir = TempDir::new("bad-backends");
    let ca = Ca::new("backend CA");
    std::fs::write(dir.join("ca.pem"), &ca.pem).unwrap();
    let wrong_name = https_backend("w", ca.issue(&["elsewhere.example"]).server_config());
    let mut params = leaf_params(&["127.0.0.1"]);
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let expired = https_backend(
        "e",
        ca.issue_with(params, KeyPair::generate().unwrap())
            .server_config(),
    );
    let sk = Sidekick::start(&[
        "--cacert",
        &dir.arg("ca.pem"),
        &format!("{},{}", wrong_name.url(), expired.url()),
    ]);
    let down = |addr: std::net::SocketAddr, why: &str| {
        let log = sk.log.lock().unwrap();
        log.iter()
            .any(|l| l.contains(&addr.to_string()) && l.contains("is down") && l.contains(why))
    };
    wait_for("both reasons logged", LIMIT, || {
        down(wrong_name.addr, "not valid for name") && down(expired.addr, "expired")
    });
    assert_eq!(sk.health(), 502);
}

#[test]
fn mutual_tls_on_both_sides() {
    let dir = TempDir::new("mtls");
    let (client_facing_ca, _, cert, key) = server_cert(&dir);
    let backend_ca = Ca::new("backend CA");
    let client_ca = Ca::new("client CA");
    std::fs::write(dir.join("backend-ca.pem"), &backend_ca.pem).unwrap();
    let (client_cert, client_key) = client_ca.issue(&["sidekick"]).write(dir.path(), "client");
    let backend = https_backend(
        "m0",
        backend_ca
            .issue(&["127.0.0.1"])
            .server_config_mtls(&client_ca),
    );

    let sk = Sidekick::start(&[
        "--cert",
        &cert,
        "--key",
        &key,
        "--cacert",
        &dir.arg("backend-ca.pem"),
        "--client-cert",
        &client_cert.display().to_string(),
        "--client-key",
        &client_key.display().to_string(),
        &backend.url(),
    ]);
    wait_up_tls(&sk);
    let resp = https_request(sk.addr, Some(client_facing_ca.roots()), "GET", "/m", b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "m0");

    // Without a client certificate the backend refuses the handshake.
    let anonymous = Sidekick::start(&["--cacert", &dir.arg("backend-ca.pem"), &backend.url()]);
    wait_for("the refused handshake logged", LIMIT, || {
        anonymous.log_contains("is down")
    });
    assert_eq!(anonymous.health(), 502);
}

#[test]
fn rotated_certificate_is_served_to_new_connections() {
    let dir = TempDir::new("rotate");
    let ca = Ca::new("rotation CA");
    let first = ca.issue(&["localhost"]);
    let (cert, key) = first.write(dir.path(), "tls");
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
        &backend.url(),
    ]);
    assert_eq!(handshake(sk.addr).certs[0], first.der);

    // New key and certificate (another serial), renamed into place.
    let second = ca.issue(&["localhost"]);
    second.write(dir.path(), "tls");
    wait_for("the new certificate served", LIMIT, || {
        handshake(sk.addr).certs[0] == second.der
    });
    assert!(sk.log_contains("TLS certificate reloaded"));

    // A broken file is reported and the current certificate stays.
    let reported = || {
        let log = sk.log.lock().unwrap();
        log.iter()
            .filter(|l| l.contains("keeping the old one"))
            .count()
    };
    let before = reported();
    write_atomic(&cert, b"-----BEGIN CERTIFICATE-----\nnot base64!\n");
    wait_for("the broken file reported", LIMIT, || reported() > before);
    assert_eq!(handshake(sk.addr).certs[0], second.der);

    // Fixed again: picked up.
    let third = ca.issue(&["localhost"]);
    third.write(dir.path(), "tls");
    wait_for("the fixed certificate served", LIMIT, || {
        handshake(sk.addr).certs[0] == third.der
    });
}

#[test]
fn kubernetes_secret_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("k8s");
    let ca = Ca::new("k8s CA");
    let mount = |version: &str, issued: &Issued| {
        let data = dir.join(version);
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("tls.crt"), &issued.cert_pem).unwrap();
        std::fs::write(data.join("tls.key"), &issued.key_pem).unwrap();
        // What the kubelet does: a new `..data` link, renamed over the old one.
        let tmp = dir.join("..data_tmp");
        symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    let first = ca.issue(&["localhost"]);
    mount("..2026_01_01_00_00_00.1", &first);
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--cert",
        &dir.arg("tls.crt"),
        "--key",
        &dir.arg("tls.key"),
        &backend.url(),
    ]);
    assert_eq!(handshake(sk.addr).certs[0], first.der);

    let second = ca.issue(&["localhost"]);
    mount("..2026_02_01_00_00_00.2", &second);
    std::fs::remove_dir_all(dir.join("..2026_01_01_00_00_00.1")).unwrap();
    wait_for("the swapped certificate served", LIMIT, || {
        handshake(sk.addr).certs[0] == second.der
    });
}

#[test]
fn auto_tls_fingerprint_matches_served_and_presented_certificate() {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--auto-tls-host", "localhost", &backend.url()]);
    let printed = |prefix: &str| {
        let log = sk.log.lock().unwrap();
        log.iter()
            .find_map(|l| l.split_once(prefix).map(|(_, v)| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no '{prefix}' in {log:?}"))
    };
    let fingerprint = printed("SHA-256 fingerprint");
    let spki = printed("(SPKI, base64):");

    let pem = https_request(sk.addr, None, "GET", "/v1/certificates", b"");
    assert_eq!(pem.status, 200);
    let served = rustls::pki_types::CertificateDer::from_pem_slice(&pem.body).unwrap();
    let presented = handshake(sk.addr).certs.remove(0);
    assert_eq!(presented, served);
    assert_eq!(colon_hex(&presented), fingerprint);

    // curl checks the public key pin against what the handshake presents.
    let url = format!("https://127.0.0.1:{}/v1/certificates", sk.addr.port());
    let pinned = curl(&["-k", "--pinnedpubkey", &format!("sha256//{spki}"), &url]);
    assert!(pinned.status.success(), "{pinned:?}");
    assert_eq!(pinned.stdout, pem.body);
    let wrong = curl(&[
        "-k",
        "--pinnedpubkey",
        "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &url,
    ]);
    assert!(!wrong.status.success());
}

fn colon_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn every_key_format_is_served() {
    let dir = TempDir::new("keys");
    let ca = Ca::new("keys CA");
    let backend = Backend::start("b0");
    let url = backend.url();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("rsa-pkcs8.key", "rsa-pkcs1.key", None),
        ("ec-pkcs8.key", "ec-sec1.key", None),
        ("ec-pkcs8.key", "ec-pkcs8-aes.key", Some("s3cret")),
        ("rsa-pkcs8.key", "rsa-pkcs8-scrypt.key", Some("s3cret")),
    ];
    let run = |issued: &Issued, key_file: &str, password: Option<&str>| {
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        let cert = cert.display().to_string();
        let mut args = vec!["--cert", &cert, "--key", key_file];
        if let Some(password) = password {
            args.extend(["--key-password", password]);
        }
        args.push(&url);
        let sk = Sidekick::start(&args);
        assert_eq!(handshake(sk.addr).certs[0], issued.der, "{key_file}");
    };
    for (pkcs8, key_file, password) in cases {
        let pem = std::fs::read_to_string(data(pkcs8)).unwrap();
        let key = KeyPair::from_pem(&pem).unwrap();
        let issued = ca.issue_with(leaf_params(&["localhost"]), key);
        run(&issued, &data(key_file), *password);
    }
    let ed25519 = ca.issue_with(
        leaf_params(&["localhost"]),
        KeyPair::generate_for(&PKCS_ED25519).unwrap(),
    );
    let (_, key) = ed25519.write(dir.path(), "ed25519");
    run(&ed25519, &key.display().to_string(), None);
}

// ---------------------------------------------------------------- bad input

/// Runs sidekick with `args`, expecting exit 2 and one stderr line containing `needle`.
fn refused(args: &[&str], needle: &str) {
    let out = Command::new(BIN)
        .args(["--address", "127.0.0.1:0"])
        .args(args)
        .arg("http://127.0.0.1:1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn bad_certificates_and_keys_exit_2_naming_the_file() {
    let dir = TempDir::new("bad-input");
    let (_, _, cert, key) = server_cert(&dir);
    let other = Issued::self_signed(&["localhost"]);
    let (_, other_key) = other.write(dir.path(), "other");
    let other_key = other_key.display().to_string();
    let missing = dir.arg("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "hello\n").unwrap();
    let garbage = garbage.display().to_string();
    let encrypted = data("ec-pkcs8-aes.key");
    let ec_cert = {
        let pem = std::fs::read_to_string(data("ec-pkcs8.key")).unwrap();
        let issued = Ca::new("x").issue_with(
            leaf_params(&["localhost"]),
            KeyPair::from_pem(&pem).unwrap(),
        );
        issued.write(dir.path(), "ec").0.display().to_string()
    };

    refused(&["--cert", &missing, "--key", &key], &missing);
    refused(&["--cert", &cert, "--key", &missing], &missing);
    refused(
        &["--cert", dir.path().to_str().unwrap(), "--key", &key],
        dir.path().to_str().unwrap(),
    );
    refused(&["--cert", &garbage, "--key", &key], &garbage);
    refused(&["--cert", &cert, "--key", &garbage], &garbage);
    refused(&["--cert", &cert, "--key", &other_key], &other_key);
    refused(&["--cert", &ec_cert, "--key", &encrypted], &encrypted);
    refused(
        &[
            "--cert",
            &ec_cert,
            "--key",
            &encrypted,
            "--key-password",
            "wrong",
        ],
        "password does not open",
    );
    refused(&["--cert", &cert], &cert);
    refused(&["--key", &key], &key);
    refused(&["--cacert", &missing], &missing);
    refused(&["--cacert", &garbage], &garbage);
    refused(&["--client-cert", &cert], &cert);
    refused(
        &["--client-cert", &cert, "--client-key", &other_key],
        &other_key,
    );
}
