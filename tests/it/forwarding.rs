//! Forwarding rules: what the backend receives and what the client gets back are
//! exactly what they should be.

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

fn setup() -> (Backend, Sidekick) {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--health-duration", "1s", &backend.url()]);
    wait_for("backend up", Duration::from_secs(10), || sk.health() == 200);
    (backend, sk)
}

#[test]
fn path_query_and_host_arrive_byte_exact() {
    let (backend, sk) = setup();
    let targets = [
        "/bucket/a%2Fb+c%20d//e/%E2%82%AC?prefix=x%2By&list-type=2&empty=&a=1&a=2",
        "/bucket/caf%C3%A9/%F0%9F%98%80.txt?x-id=GetObject",
        "//double//slashes/?q=%25",
        "/bucket/key%3Fnot-a-query?uploads",
    ];
    for target in targets {
        let raw = format!(
            "GET {target} HTTP/1.1\r\nHost: minio.example:9000\r\nConnection: close\r\n\r\n"
        );
        let resp = raw_request(sk.addr, raw.as_bytes(), false);
        assert_eq!(resp.status, 200, "{target}");
        let seen = backend.last_seen();
        assert_eq!(seen.target, target);
        assert_eq!(seen.header("host"), Some("minio.example:9000"));
        assert_eq!(seen.header("x-forwarded-host"), Some("minio.example:9000"));
    }
    // Raw UTF-8 in a request target is not HTTP (clients percent-encode it): rejected
    // like HAProxy does, and never forwarded.
    let before = backend.hits();
    let raw = "GET /caf\u{e9} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_request(sk.addr, raw.as_bytes(), false).status, 400);
    assert_eq!(backend.hits(), before);
}

#[test]
fn forwarded_headers_are_added_and_hop_by_hop_removed() {
    let (backend, sk) = setup();
    let raw = "GET /obj HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Forwarded-For: 203.0.113.7\r\nX-Amz-Date: 20261126T000000Z\r\nX-Dup: 1\r\nX-Dup: 2\r\nAuthorization: AWS4-HMAC-SHA256 Credential=x\r\n\r\nGET /obj HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut r = BufReader::new(stream);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    let seen = &backend.seen()[0];
    for gone in [
        "connection",
        "x-private",
        "keep-alive",
        "te",
        "proxy-connection",
        "upgrade",
    ] {
        assert!(
            seen.header(gone).is_none(),
            "{gone} reached the backend: {}",
            seen.raw_head
        );
    }
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-amz-date"), Some("20261126T000000Z"));
    assert_eq!(
        seen.header("authorization"),
        Some("AWS4-HMAC-SHA256 Credential=x")
    );
    let dups: Vec<_> = seen
        .headers
        .iter()
        .filter(|(n, _)| n == "x-dup")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dups, ["1", "2"]);
    assert!(
        seen.header("user-agent").is_none(),
        "sidekick added a User-Agent"
    );
    assert!(
        seen.header("content-length").is_none(),
        "a GET without body got a Content-Length"
    );
    assert_eq!(
        backend.seen()[1].header("x-forwarded-for"),
        Some("127.0.0.1")
    );

    let hop = sk.get("/hop");
    assert_eq!(hop.text(), "ok");
    assert_eq!(hop.header("x-kept"), Some("yes"));
    for gone in ["x-secret", "keep-alive", "upgrade"] {
        assert!(hop.header(gone).is_none(), "{gone} reached the client");
    }
}

#[test]
fn head_range_not_modified_and_no_content() {
    let (_backend, sk) = setup();
    let head = request(sk.addr, "HEAD", "/head", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("12345"));
    assert_eq!(head.header("etag"), Some("\"x\""));

    let big_head = request(sk.addr, "HEAD", "/big?size=1048576", &[], b"");
    assert_eq!(big_head.header("content-length"), Some("1048576"));

    let range = request(sk.addr, "GET", "/range", &[("Range", "bytes=5-9")], b"");
    assert_eq!(range.status, 206);
    assert_eq!(range.header("content-range"), Some("bytes 5-9/20"));
    assert_eq!(range.text(), "56789");

    let nm = request(
        sk.addr,
        "GET",
        "/not-modified",
        &[("If-None-Match", "\"v1\"")],
        b"",
    );
    assert_eq!(nm.status, 304);
    assert_eq!(nm.header("etag"), Some("\"v1\""));
    assert!(nm.header("transfer-encoding").is_none());

    let nc = request(sk.addr, "DELETE", "/no-content", &[], b"");
    assert_eq!(nc.status, 204);
    assert!(nc.header("content-length").is_none() && nc.header("transfer-encoding").is_none());

    let chunked = sk.get("/chunked");
    assert_eq!(chunked.text(), "hello world");
}

#[test]
fn uploads_keep_their_framing() {
    let (backend, sk) = setup();
    // Content-Length stays Content-Length.
    let body = vec![7u8; 300_000];
    let resp = request(sk.addr, "PUT", "/upload", &[], &body);
    assert_eq!(resp.text(), format!("300000 {}", sha256(&body)));
    let seen = backend.last_seen();
    assert_eq!(seen.header("content-length"), Some("300000"));
    assert!(seen.header("transfer-encoding").is_none());

    // Empty body with Content-Length: 0 keeps it (S3 may sign it).
    let empty = "PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(
        raw_request(sk.addr, empty.as_bytes(), false).text(),
        format!("0 {}", sha256(b""))
    );
    assert_eq!(backend.last_seen().header("content-length"), Some("0"));

    // Chunked stays chunked.
    let chunked = "PUT /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = raw_request(sk.addr, chunked.as_bytes(), false);
    assert_eq!(resp.text(), format!("11 {}", sha256(b"hello world")));
    let seen = backend.last_seen();
    assert_eq!(seen.header("transfer-encoding"), Some("chunked"));
    assert!(seen.header("content-length").is_none());

    // Expect: 100-continue: the client gets its 100 before it sends the body.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let (start, _) = read_head(&mut r).unwrap();
    assert!(start.starts_with("HTTP/1.1 100"), "{start}");
    stream.write_all(b"hello").unwrap();
    let resp = read_response(&mut r, false).unwrap();
    assert_eq!(resp.text(), format!("5 {}", sha256(b"hello")));
}

#[test]
fn backend_dying_mid_body_cuts_the_client_connection() {
    let (_backend, sk) = setup();
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /cut HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    let result = read_response(&mut r, false);
    assert!(result.is_err(), "a cut body looked complete: {result:?}");
    wait_for("failure counted", Duration::from_secs(10), || {
        sk.log_contains("failed mid-response: body ended at 10 of 1000 bytes")
    });
    // sidekick itself keeps serving.
    assert_eq!(sk.get("/ok").status, 200);
}

#[test]
fn client_going_away_never_marks_the_backend_down() {
    let (backend, sk) = setup();
    // Half an upload, then the client disappears.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .write_all(b"PUT /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 1048576\r\n\r\n")
        .unwrap();
    stream.write_all(&[1u8; 4096]).unwrap();
    drop(stream);
    // A download abandoned after its head.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .write_all(b"GET /big?size=104857600 HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    read_head(&mut r).unwrap();
    drop(r);
    // A request abandoned while the backend holds it.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .write_all(b"GET /hold HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    wait_for("held", Duration::from_secs(10), || backend.held() == 1);
    drop(stream);
    backend.release_held();
    for _ in 0..5 {
        assert_eq!(sk.get("/after").status, 200);
    }
    assert!(!sk.log_contains("is down"), "{:?}", sk.log.lock().unwrap());
}

#[test]
fn backend_connections_are_reused_and_stale_ones_replaced() {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--workers", "1", &backend.url()]);
    sk.wait_up(1);
    for _ in 0..5 {
        assert_eq!(sk.get("/a").status, 200);
    }
    let conns: std::collections::HashSet<usize> = backend
        .seen()
        .iter()
        .filter(|s| s.target == "/a")
        .map(|s| s.conn)
        .collect();
    assert_eq!(conns.len(), 1, "keep-alive connection not reused");
    // The backend closes that connection when the next request arrives on it: the
    // request goes out again on a fresh connection, and the backend stays up.
    assert_eq!(sk.get("/close-next").status, 200);
    let after = sk.get("/after");
    assert_eq!((after.status, after.text().as_str()), (200, "b0"));
    let seen = backend.seen();
    let last = seen.last().unwrap();
    assert_eq!(last.target, "/after");
    assert!(seen
        .iter()
        .filter(|s| s.target == "/close-next")
        .all(|s| s.conn != last.conn));
    assert!(!sk.log_contains("is down"), "{:?}", sk.log);
}

#[test]
fn a_post_on_a_kept_connection_closed_under_it_fails_alone() {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&["--workers", "1", &backend.url()]);
    sk.wait_up(1);
    // The backend closes that connection when the next request arrives on it.
    assert_eq!(sk.get("/close-next").status, 200);
    // A POST may have been acted on: it is not sent again, the client gets a 502...
    assert_eq!(request(sk.addr, "POST", "/p", &[], b"once").status, 502);
    // ...but the backend is not marked down for an idle-timeout race. The Pool
    // answers the scrape after any failure report sent before it.
    let scrape = sk.get("/.prometheus/metrics").text();
    let up = format!("sidekick_up{{endpoint=\"{}\",", backend.url());
    let errors = format!("sidekick_errors_total{{endpoint=\"{}\",", backend.url());
    for (prefix, value) in [(up, " 1"), (errors, " 1")] {
        assert!(
            scrape
                .lines()
                .any(|l| l.starts_with(&prefix) && l.ends_with(value)),
            "{prefix} not{value} in {scrape}"
        );
    }
    assert_eq!(sk.get("/after").status, 200);
}

#[test]
fn interim_heads_trailers_and_bodies_that_end_with_the_connection() {
    let (_backend, sk) = setup();
    // 100 and 103 heads are skipped; the client gets the final answer.
    let interim = sk.get("/interim");
    assert_eq!((interim.status, interim.text().as_str()), (200, "final"));
    // Chunk extensions and trailers are dropped, the data arrives whole.
    let trailers = sk.get("/trailers");
    assert_eq!(
        (trailers.status, trailers.text().as_str()),
        (200, "hello world")
    );
    assert!(trailers.header("x-sum").is_none() && trailers.header("trailer").is_none());
    let until_close = sk.get("/until-close");
    assert_eq!(
        (until_close.status, until_close.text().as_str()),
        (200, "all of it")
    );
    assert!(!sk.log_contains("failed mid-response"), "{:?}", sk.log);
}

/// A request from a client at `source` (a loopback address of this host), on a
/// connection of its own.
fn get_from(source: &str, sk: &Sidekick, path: &str) -> Response {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(sk.addr), Type::STREAM, None).unwrap();
    let source: std::net::IpAddr = source.parse().unwrap();
    socket
        .bind(&std::net::SocketAddr::new(source, 0).into())
        .expect("bind the client's address");
    socket
        .connect(&sk.addr.into())
        .expect("connect to sidekick");
    let mut stream: TcpStream = socket.into();
    let raw = format!("GET {path} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap()
}

/// `X-Forwarded-For` and `X-Real-IP` of a request from `client` through a sidekick
/// listening on `listen` to a backend on `backend`, and the address that backend saw
/// the request come from.
fn forwarded_for(client: &str, listen: &str, backend: &str, args: &[&str]) -> [String; 3] {
    let backend = Backend::start_on("b0", backend.parse().unwrap());
    let url = backend.url();
    let mut all = vec!["--health-duration", "1s"];
    all.extend_from_slice(args);
    all.push(&url);
    let sk = Sidekick::start_on(listen, &all);
    wait_for("backend up", Duration::from_secs(10), || sk.health() == 200);
    assert_eq!(get_from(client, &sk, "/obj").status, 200);
    let seen = backend.last_seen();
    let header = |name| seen.header(name).unwrap_or("(none)").to_string();
    [
        header("x-forwarded-for"),
        header("x-real-ip"),
        seen.peer.expect("the backend's peer").to_string(),
    ]
}

/// A client on loopback is sent as this host: the local address of sidekick's
/// connection to the backend, which is what the backend sees it come from. The
/// client's address (127.0.0.7, or ::1) never reaches the backend.
#[test]
fn a_loopback_client_is_sent_as_this_hosts_address_over_ipv4_and_ipv6() {
    // IPv4 all the way: a client at 127.0.0.7, sidekick's backend connection from 127.0.0.1.
    let [xff, real, peer] = forwarded_for("127.0.0.7", "127.0.0.1:0", "127.0.0.1:0", &[]);
    assert_eq!(peer, "127.0.0.1");
    assert_eq!((xff.as_str(), real.as_str()), ("127.0.0.1", "127.0.0.1"));
    // An IPv4 client, an IPv6 backend: the backend connection's IPv6 address.
    let [xff, real, peer] = forwarded_for("127.0.0.7", "127.0.0.1:0", "[::1]:0", &[]);
    assert_eq!(peer, "::1");
    assert_eq!((xff.as_str(), real.as_str()), ("::1", "::1"));
    // An IPv6 client, an IPv4 backend.
    let [xff, real, peer] = forwarded_for("::1", "[::1]:0", "127.0.0.1:0", &[]);
    assert_eq!(peer, "127.0.0.1");
    assert_eq!((xff.as_str(), real.as_str()), ("127.0.0.1", "127.0.0.1"));
}

/// `--forward-loopback-addr` sends the loopback client's own address, as sidekick
/// did before.
#[test]
fn forward_loopback_addr_sends_the_clients_own_address() {
    let flag = ["--forward-loopback-addr"];
    let [xff, real, _] = forwarded_for("127.0.0.7", "127.0.0.1:0", "[::1]:0", &flag);
    assert_eq!((xff.as_str(), real.as_str()), ("127.0.0.7", "127.0.0.7"));
    let [xff, real, _] = forwarded_for("::1", "[::1]:0", "127.0.0.1:0", &flag);
    assert_eq!((xff.as_str(), real.as_str()), ("::1", "::1"));
}
