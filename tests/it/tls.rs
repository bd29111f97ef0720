//! TLS on both sides: HTTPS clients, https backends, mutual TLS, certificate rotation,
//! generated certificates, TLS versions, key formats, and the errors for bad files.

use std::process::Command;
use std::time::Duration;

use crate::common::tls::*;
use crate::common::*;
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
    // Logged just after the swap, so possibly after a handshake already saw it.
    wait_for("the reload logged", LIMIT, || {
        sk.log_contains("TLS certificate reloaded")
    });

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

/// A certificate reload reads and decrypts its key away from the thread the Pool and
/// its health checks run on. The new key file is a FIFO that holds the reload for as
/// long as the test likes: meanwhile health checks go on and the Pool answers a metrics
/// scrape (it builds a `Snapshot`); then the encrypted (scrypt) key goes through and
/// the new certificate is served.
#[test]
fn a_reload_waiting_for_its_key_holds_neither_the_pool_nor_its_health_checks() {
    use std::os::unix::fs::symlink;
    let dir = TempDir::new("held-key");
    let ca = Ca::new("held key CA");
    let plain = std::fs::read_to_string(data("rsa-pkcs8.key")).unwrap();
    let encrypted = std::fs::read(data("rsa-pkcs8-scrypt.key")).unwrap();
    let issue = || {
        ca.issue_with(
            leaf_params(&["localhost"]),
            KeyPair::from_pem(&plain).unwrap(),
        )
    };
    let (first, second) = (issue(), issue());
    // Both files behind one `..data` link, swapped at once as the kubelet does.
    let mount = |version: &str| {
        let tmp = dir.join("..data_tmp");
        symlink(version, &tmp).unwrap();
        std::fs::rename(&tmp, dir.join("..data")).unwrap();
    };
    std::fs::create_dir(dir.join("v1")).unwrap();
    std::fs::write(dir.join("v1/tls.crt"), &first.cert_pem).unwrap();
    std::fs::write(dir.join("v1/tls.key"), &encrypted).unwrap();
    mount("v1");
    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--cert",
        &dir.arg("tls.crt"),
        "--key",
        &dir.arg("tls.key"),
        "--key-password",
        "s3cret",
        "--health-duration",
        "1s",
        &backend.url(),
    ]);
    wait_up_tls(&sk);
    assert_eq!(handshake(sk.addr).certs[0], first.der);

    std::fs::create_dir(dir.join("v2")).unwrap();
    std::fs::write(dir.join("v2/tls.crt"), &second.cert_pem).unwrap();
    let fifo = dir.join("v2/tls.key");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // Open both ways, so that the reload's open returns and its read waits for data.
    let mut feed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    mount("v2");
    let fds = format!("/proc/{}/fd", sk.pid());
    wait_for("the reload reading the new key", LIMIT, || {
        std::fs::read_dir(&fds)
            .unwrap()
            .any(|fd| std::fs::read_link(fd.unwrap().path()).is_ok_and(|target| target == fifo))
    });

    let checked = backend.health_checks();
    wait_for("health checks while the reload waits", LIMIT, || {
        backend.health_checks() >= checked + 2
    });
    let scrape = https_request(sk.addr, None, "GET", "/.prometheus/metrics", b"");
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.text().contains("sidekick_health_error_counts"),
        "{}",
        scrape.text()
    );
    assert_eq!(handshake(sk.addr).certs[0], first.der);
    assert!(!sk.log_contains("TLS certificate reloaded"));

    std::io::Write::write_all(&mut feed, &encrypted).unwrap();
    drop(feed);
    wait_for("the new certificate served", LIMIT, || {
        handshake(sk.addr).certs[0] == second.der
    });
    wait_for("the reload logged", LIMIT, || {
        sk.log_contains("TLS certificate reloaded")
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

// ---------------------------------------------------------------- the Go tool's formats

/// Runs the `openssl` command line tool; a missing or failing openssl fails the test.
fn openssl(args: &[&str]) -> Vec<u8> {
    require_openssl();
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A P-256 key written by openssl, unencrypted: `ec.key` in `dir`.
fn ec_key(dir: &TempDir) -> String {
    let ec = dir.arg("ec.key");
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &ec,
    ]);
    ec
}

#[test]
fn legacy_and_pkcs8_encrypted_keys_written_by_openssl_are_served() {
    let dir = TempDir::new("openssl-keys");
    let pass = "pass:s3cret";
    let ec = ec_key(&dir);
    // (key file, the DEK-Info it must carry, the command that writes it)
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "rsa-aes128.key",
            "DEK-Info: AES-128-CBC,",
            vec!["genrsa", "-aes128", "-traditional", "-passout", pass],
        ),
        (
            "rsa-des3.key",
            "DEK-Info: DES-EDE3-CBC,",
            vec!["genrsa", "-des3", "-traditional", "-passout", pass],
        ),
        (
            "rsa-des.key",
            "DEK-Info: DES-CBC,",
            // Single DES lives in OpenSSL 3's legacy provider.
            vec![
                "genrsa",
                "-des",
                "-traditional",
                "-provider",
                "legacy",
                "-provider",
                "default",
                "-passout",
                pass,
            ],
        ),
        (
            "ec-aes256.key",
            "DEK-Info: AES-256-CBC,",
            vec!["ec", "-in", &ec, "-aes256", "-passout", pass],
        ),
        (
            "ec-aes192.key",
            "DEK-Info: AES-192-CBC,",
            vec!["ec", "-in", &ec, "-aes192", "-passout", pass],
        ),
        (
            "ec-pkcs8.key",
            "BEGIN ENCRYPTED PRIVATE KEY",
            vec![
                "pkcs8",
                "-topk8",
                "-v2",
                "aes-256-cbc",
                "-in",
                &ec,
                "-passout",
                pass,
            ],
        ),
    ];
    let backend = Backend::start("b0");
    for (name, marker, command) in &cases {
        let key = dir.arg(name);
        let mut args = command.clone();
        args.extend(["-out", &key]);
        // genrsa takes the key size last.
        if command[0] == "genrsa" {
            args.push("2048");
        }
        openssl(&args);
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(text.contains(marker), "{name}: {text}");
        if !marker.starts_with("BEGIN") {
            assert!(text.contains("Proc-Type: 4,ENCRYPTED"), "{name}: {text}");
        }
        let cert = dir.arg(&format!("{name}.crt"));
        openssl(&[
            "req",
            "-provider",
            "legacy",
            "-provider",
            "default",
            "-new",
            "-x509",
            "-key",
            &key,
            "-passin",
            pass,
            "-subj",
            "/CN=localhost",
            "-days",
            "2",
            "-out",
            &cert,
        ]);
        let der = rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap();

        let sk = Sidekick::start(&[
            "--cert",
            &cert,
            "--key",
            &key,
            "--key-password",
            "s3cret",
            &backend.url(),
        ]);
        // A complete handshake: the decrypted key signed it.
        assert_eq!(handshake(sk.addr).certs[0], der, "{name}");
        drop(sk);

        refused(
            &["--cert", &cert, "--key", &key, "--key-password", "wrong"],
            &format!("{key}: the password does not open the key"),
        );
        refused(&["--cert", &cert, "--key", &key], "--key-password");
    }
}

#[test]
fn legacy_key_with_unknown_cipher_is_refused_naming_it() {
    let dir = TempDir::new("legacy-cipher");
    let key = dir.join("camellia.key");
    let cert = dir.arg("cert.pem");
    let ec = ec_key(&dir);
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        &ec,
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-out",
        &cert,
    ]);
    let written = String::from_utf8(openssl(&[
        "ec",
        "-in",
        &ec,
        "-camellia256",
        "-passout",
        "pass:s3cret",
    ]))
    .unwrap();
    assert!(written.contains("DEK-Info: CAMELLIA-256-CBC,"), "{written}");
    std::fs::write(&key, written).unwrap();
    let key = key.display().to_string();
    refused(
        &["--cert", &cert, "--key", &key, "--key-password", "s3cret"],
        "unsupported key encryption CAMELLIA-256-CBC",
    );
}

/// The subject alternative names of a DER certificate, as openssl prints them.
fn subject_alt_names(dir: &TempDir, der: &[u8]) -> Vec<String> {
    let file = dir.join("served.der");
    std::fs::write(&file, der).unwrap();
    let text = String::from_utf8(openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        file.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]))
    .unwrap();
    // "X509v3 Subject Alternative Name: \n    DNS:a, IP Address:127.0.0.1"
    let list = text.lines().nth(1).unwrap_or_default();
    list.split(',').map(|s| s.trim().to_string()).collect()
}

#[test]
fn auto_tls_host_list_puts_every_name_in_the_certificate() {
    let dir = TempDir::new("auto-list");
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--auto-tls-host",
        "sidekick.test,localhost,127.0.0.1,::1",
        &backend.url(),
    ]);
    assert!(
        sk.log_contains("certificate for sidekick.test, localhost, 127.0.0.1, ::1:"),
        "{:?}",
        sk.log
    );
    let presented = handshake(sk.addr).certs.remove(0);
    assert_eq!(
        subject_alt_names(&dir, &presented),
        [
            "DNS:sidekick.test",
            "DNS:localhost",
            "IP Address:127.0.0.1",
            "IP Address:0:0:0:0:0:0:0:1",
        ]
    );

    // curl trusting only this certificate verifies it under a DNS name and an IP address.
    let pem = https_request(sk.addr, None, "GET", "/v1/certificates", b"");
    std::fs::write(dir.join("auto.pem"), &pem.body).unwrap();
    let port = sk.addr.port();
    let resolve = format!("sidekick.test:{port}:127.0.0.1");
    for url in [
        format!("https://sidekick.test:{port}/v1/health"),
        format!("https://127.0.0.1:{port}/v1/health"),
    ] {
        let out = curl(&[
            "--cacert",
            &dir.arg("auto.pem"),
            "--resolve",
            &resolve,
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &url,
        ]);
        assert!(out.status.success(), "{url}: {out:?}");
    }
    // A name not in the list fails verification.
    let other = format!("elsewhere.test:{port}:127.0.0.1");
    let out = curl(&[
        "--cacert",
        &dir.arg("auto.pem"),
        "--resolve",
        &other,
        &format!("https://elsewhere.test:{port}/v1/health"),
    ]);
    assert!(!out.status.success(), "{out:?}");
}

#[test]
fn bad_auto_tls_host_lists_exit_2() {
    refused(
        &["--auto-tls-host", "a.test,,b.test"],
        "'a.test,,b.test': an empty name",
    );
    refused(&["--auto-tls-host", "a.test,"], "an empty name");
    refused(
        &["--auto-tls-host", "a.test,not a name"],
        "'not a name' is neither a DNS name nor an IP address",
    );
    // With a certificate of its own (or half of one): one line naming both flags.
    let dir = TempDir::new("auto-conflict");
    let (_, _, cert, key) = server_cert(&dir);
    let both = "cannot be used with --cert/--key";
    refused(
        &[
            "--auto-tls-host",
            "a.test,127.0.0.1",
            "--cert",
            &cert,
            "--key",
            &key,
        ],
        both,
    );
    refused(&["--auto-tls-host", "a.test", "--key", &key], both);
    refused(&["--auto-tls-host", "a.test", "--cert", &cert], both);
}

#[test]
fn cacert_replaces_the_system_roots() {
    let dir = TempDir::new("cacert-only");
    let ours = Ca::new("our CA");
    let system = Ca::new("a CA of the system store");
    std::fs::write(dir.join("ours.pem"), &ours.pem).unwrap();
    std::fs::write(dir.join("system.pem"), &system.pem).unwrap();
    let by_system = https_backend("sys", system.issue(&["127.0.0.1"]).server_config());
    let by_ours = https_backend("own", ours.issue(&["127.0.0.1"]).server_config());
    // rustls-native-certs reads the system store from SSL_CERT_FILE when it is set.
    let env = [("SSL_CERT_FILE", dir.arg("system.pem"))];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Without --cacert the system store is trusted.
    let system_only =
        Sidekick::start_with_env(&env, &["--health-duration", "1s", &by_system.url()]);
    wait_up(&system_only);
    assert_eq!(system_only.get("/x").text(), "sys");

    // With --cacert only its CAs are: the backend the system store vouches for is down.
    let cacert = dir.arg("ours.pem");
    let pinned = Sidekick::start_with_env(
        &env,
        &[
            "--health-duration",
            "1s",
            "--cacert",
            &cacert,
            &by_system.url(),
        ],
    );
    wait_for("the refused backend logged", LIMIT, || {
        pinned.log_contains("is down") && pinned.log_contains("UnknownIssuer")
    });
    assert_eq!(pinned.health(), 502);
    assert_eq!(pinned.get("/x").status, 502);

    // ... and the one its CA signed is up.
    let own = Sidekick::start_with_env(
        &env,
        &[
            "--health-duration",
            "1s",
            "--cacert",
            &cacert,
            &by_ours.url(),
        ],
    );
    wait_up(&own);
    assert_eq!(own.get("/x").text(), "own");
    assert_eq!(by_system.hits(), 1);
}
