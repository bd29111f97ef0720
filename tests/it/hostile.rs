//! Hostile input both ways: requests that must never reach a backend, and backend
//! answers that must never reach a client as a complete-looking response.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

fn setup() -> (Backend, Sidekick) {
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--health-duration",
        "1s",
        "--max-header-size",
        "16KiB",
        &backend.url(),
    ]);
    wait_for("backend up", Duration::from_secs(10), || sk.health() == 200);
    (backend, sk)
}

/// Sends raw bytes and returns the status sidekick answers (0 when it only closes).
fn status_of(sk: &Sidekick, raw: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(raw);
    let mut r = BufReader::new(stream);
    read_head(&mut r)
        .ok()
        .and_then(|(start, _)| start.split(' ').nth(1).and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

#[test]
fn malformed_and_smuggling_requests_are_refused_and_never_forwarded() {
    let (backend, sk) = setup();
    let huge = format!(
        "GET /x HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /x HTTP/1.1\r\nHost: h\r\n{many}\r\n");
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("CL and TE", b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), &[400]),
        ("two different CL", b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), &[400]),
        ("two equal CL", b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_vec(), &[400]),
        ("TE not chunked", b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".to_vec(), &[400, 501]),
        ("TE on HTTP/1.0", b"POST /x HTTP/1.0\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), &[400]),
        ("bad chunk size", b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".to_vec(), &[400, 0]),
        ("bad chunk extension", b"PUT /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;\x01\r\nhello\r\n0\r\n\r\n".to_vec(), &[400, 0]),
        ("obs-fold", b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n".to_vec(), &[400]),
        ("bare CR", b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n".to_vec(), &[400]),
        ("NUL", b"GET /x HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n".to_vec(), &[400]),
        ("space in name", b"GET /x HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n".to_vec(), &[400]),
        ("space before colon", b"GET /x HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n".to_vec(), &[400]),
        ("oversized headers", huge.into_bytes(), &[431]),
        ("too many headers", many.into_bytes(), &[431, 400]),
        ("absolute form, other host", b"GET http://evil.example/x HTTP/1.1\r\nHost: h\r\n\r\n".to_vec(), &[400]),
        ("CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n".to_vec(), &[501, 400]),
        ("HTTP/0.9", b"GET /x\r\n\r\n".to_vec(), &[400, 0]),
        ("HTTP/2 prior knowledge", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[400, 505, 0]),
        ("missing Host", b"GET /x HTTP/1.1\r\nX-A: 1\r\n\r\n".to_vec(), &[400]),
        ("two Hosts", b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), &[400]),
        ("websocket upgrade with a body", b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello".to_vec(), &[400]),
    ];
    for (what, raw, expected) in cases {
        let status = status_of(&sk, &raw);
        assert!(
            expected.contains(&status),
            "{what}: got {status}, expected one of {expected:?}"
        );
    }
    assert_eq!(
        backend.hits(),
        0,
        "a refused request reached the backend: {:?}",
        backend.seen()
    );
    // Absolute form for the host itself is fine.
    let ok = raw_request(
        sk.addr,
        b"GET http://h/x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(ok.status, 200);
    assert_eq!(backend.last_seen().target, "/x");
}

#[test]
fn broken_backend_answers_become_502_or_a_cut_connection() {
    let (backend, sk) = setup();
    // A status line that is not HTTP: 502, and the failure is logged.
    let resp = request(sk.addr, "POST", "/garbage", &[], b"");
    assert_eq!(resp.status, 502);
    wait_for("failure logged", Duration::from_secs(10), || {
        sk.log_contains("is down")
    });
    wait_for("back up", Duration::from_secs(10), || sk.health() == 200);

    // Bad chunking mid-body: the connection is cut, never a clean end.
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream
        .write_all(b"GET /bad-chunk HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    let got = read_response(&mut r, false);
    assert!(
        got.is_err(),
        "a broken chunked body looked complete: {got:?}"
    );
    // Logged before the cut, but read from sidekick's stderr by another thread.
    wait_for("the failure logged", Duration::from_secs(10), || {
        sk.log_contains("failed mid-response")
    });

    // More bytes than Content-Length: the client gets exactly the promised five, and
    // the extra bytes never turn into the next response.
    let long = sk.get("/long");
    assert_eq!(long.text(), "hello");
    for _ in 0..5 {
        let next = sk.get("/after-long");
        assert_eq!((next.status, next.text().as_str()), (200, "b0"));
    }
    let _ = backend;
}

#[test]
fn backend_5xx_streak_ejects_it_but_never_more_than_half_a_site() {
    let b: Vec<Backend> = (0..2).map(|i| Backend::start(&format!("e{i}"))).collect();
    let site = format!("{},{}", b[0].url(), b[1].url());
    let sk = Sidekick::start(&["--max-5xx", "3", "--eject-duration", "1h", &site]);
    sk.wait_up(2);
    // 5xx answers are passed on as they are; after three in a row one backend is ejected.
    for _ in 0..6 {
        assert_eq!(sk.get("/status?code=503").status, 503);
    }
    wait_for("an ejection", Duration::from_secs(10), || {
        sk.log_contains("ejected for 1h")
    });
    // The other keeps failing, but ejecting it too would empty the site.
    for _ in 0..6 {
        assert_eq!(sk.get("/status?code=500").status, 500);
    }
    wait_for("refusal logged", Duration::from_secs(10), || {
        sk.log_contains("more than half of site 1")
    });
    assert_eq!(
        sk.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("ejected for"))
            .count(),
        1
    );
    assert_eq!(sk.health(), 200);
}

#[test]
fn too_many_connections_are_answered_503_and_closed() {
    let b = Backend::start("c");
    let sk = Sidekick::start(&["--max-conns", "2", &b.url()]);
    wait_for("up", Duration::from_secs(20), || sk.health() == 200);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(sk.addr).unwrap())
        .collect();
    // Each held connection is served.
    for s in &mut held {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        assert_eq!(read_response(&mut r, false).unwrap().status, 200);
    }
    let resp = request(sk.addr, "GET", "/x", &[], b"");
    assert_eq!(resp.status, 503);
    assert!(resp.text().contains("<Code>SlowDown</Code>"));
    drop(held);
    wait_for("slots freed", Duration::from_secs(10), || {
        sk.get("/x").status == 200
    });
}

/// A raw connection to sidekick that has sent `raw` (or as much of it as sidekick
/// took: what it answers is what counts).
fn send(sk: &Sidekick, raw: &[u8]) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    let limit = Some(Duration::from_secs(20));
    stream.set_read_timeout(limit).unwrap();
    stream.set_write_timeout(limit).unwrap();
    let _ = stream.write_all(raw);
    BufReader::new(stream)
}

/// Whatever sidekick still sends until it closes the connection; panics when it
/// leaves the connection open.
fn rest(r: &mut BufReader<TcpStream>) -> String {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection stayed open ({e}), after {rest:?}"),
    }
    String::from_utf8_lossy(&rest).into_owned()
}

fn targets(backend: &Backend) -> Vec<String> {
    backend.seen().into_iter().map(|s| s.target).collect()
}

#[test]
fn nothing_runs_after_an_answer_that_closes_the_connection() {
    let (backend, sk) = setup();
    // Control: two pipelined requests on a kept connection are both answered.
    let mut r = send(
        &sk,
        b"GET /kept-1 HTTP/1.1\r\nHost: h\r\n\r\nGET /kept-2 HTTP/1.1\r\nHost: h\r\n\r\n",
    );
    for _ in 0..2 {
        let res = read_response(&mut r, false).unwrap();
        assert_eq!((res.status, res.header("connection")), (200, None));
    }
    assert_eq!(targets(&backend), ["/kept-1", "/kept-2"]);

    let behind = "DELETE /behind HTTP/1.1\r\nHost: h\r\n\r\n";
    let large = format!(
        "GET /v1/health HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n{}",
        "a".repeat(100_000)
    );
    let cases = [
        (
            "Connection: close",
            "GET /first HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            200,
        ),
        // HTTP/1.0 closes unless asked not to; the answer need not say so.
        ("HTTP/1.0", "GET /first HTTP/1.0\r\nHost: h\r\n\r\n", 200),
        (
            "own path",
            "GET /v1/health HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            "refused request",
            "GET /no-host HTTP/1.1\r\nX-A: 1\r\n\r\n",
            400,
        ),
        // Past --retry-buffer: refused rather than read.
        ("own path with a large body", large.as_str(), 400),
    ];
    for (what, first, status) in cases {
        let before = backend.hits();
        let mut r = send(&sk, format!("{first}{behind}").as_bytes());
        let res = read_response(&mut r, false).unwrap();
        assert_eq!(res.status, status, "{what}: {res:?}");
        let connection = res.header("connection");
        if first.contains("HTTP/1.0") {
            assert_ne!(connection, Some("keep-alive"), "{what}: {res:?}");
        } else {
            assert_eq!(connection, Some("close"), "{what}: {res:?}");
        }
        assert_eq!(rest(&mut r), "", "{what}: more after the closing answer");
        let forwarded = usize::from(first.starts_with("GET /first"));
        assert_eq!(
            backend.hits() - before,
            forwarded,
            "{what}: {:?}",
            targets(&backend)
        );
    }
    assert!(
        !targets(&backend).iter().any(|t| t == "/behind"),
        "a request behind a close ran: {:?}",
        targets(&backend)
    );
}

#[test]
fn own_paths_read_the_body_sent_with_them() {
    let (backend, sk) = setup();
    for (i, path) in ["/v1/health", "/.prometheus/metrics", "/v1/certificates"]
        .iter()
        .enumerate()
    {
        let raw = format!(
            "GET {path} HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
             DELETE /obj-{i} HTTP/1.1\r\nHost: h\r\n\r\n"
        );
        let mut r = send(&sk, raw.as_bytes());
        let own = read_response(&mut r, false).unwrap();
        assert_ne!(own.header("connection"), Some("close"), "{path}: {own:?}");
        assert_ne!(own.status, 400, "{path}");
        let deleted = read_response(&mut r, false).unwrap();
        assert_eq!(
            (deleted.status, deleted.text().as_str()),
            (200, "b0"),
            "{path}"
        );
        let seen = backend.last_seen();
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str(), seen.body_len),
            ("DELETE", format!("/obj-{i}").as_str(), 0)
        );
    }
    assert_eq!(backend.hits(), 3, "{:?}", targets(&backend));
}

#[test]
fn connection_cannot_take_away_host() {
    let (backend, sk) = setup();
    let res = raw_request(
        sk.addr,
        b"GET /host HTTP/1.1\r\nHost: s3.example:9000\r\nConnection: Host, X-Drop, close\r\nX-Drop: 1\r\nX-Keep: 2\r\n\r\n",
        false,
    );
    assert_eq!(res.status, 200);
    let seen = backend.last_seen();
    assert_eq!(
        seen.header("host"),
        Some("s3.example:9000"),
        "{}",
        seen.raw_head
    );
    assert_eq!(seen.header("x-forwarded-host"), Some("s3.example:9000"));
    assert_eq!(seen.header("x-keep"), Some("2"));
    assert_eq!(seen.header("x-drop"), None, "{}", seen.raw_head);
}

/// A chunked upload past `--retry-buffer` (so it streams to an https backend as it
/// comes) whose end is `tail`: answered 400 three times out of three, and nothing
/// reaches the backend as a whole request.
fn streamed_upload_ending_in(tail: &[u8]) {
    let ca = tls::Ca::new("hostile test CA");
    let backend = tls::https_backend("b0", ca.issue(&["127.0.0.1"]).server_config());
    let sk = Sidekick::start(&["--insecure", "--retry-buffer", "16KiB", &backend.url()]);
    wait_for("backend up", Duration::from_secs(10), || sk.health() == 200);
    let mut raw = b"PUT /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        raw.extend_from_slice(b"1000\r\n");
        raw.extend_from_slice(&[b'x'; 0x1000]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(tail);
    for i in 0..3 {
        let mut r = send(&sk, &raw);
        let res = read_response(&mut r, false);
        let status = res.as_ref().map(|r| r.status).ok();
        assert_eq!(status, Some(400), "attempt {i}: {res:?}");
        assert_eq!(rest(&mut r), "", "attempt {i}");
    }
    assert!(
        backend.seen().is_empty(),
        "the body or a request behind it reached the backend: {:?}",
        targets(&backend)
    );
}

#[test]
fn a_streamed_chunked_body_with_a_broken_tail_is_answered_400() {
    // The malformed tail arrives while sidekick is still shaking hands with the
    // backend, with the chunks before it waiting to be sent.
    streamed_upload_ending_in(b"zz\r\nnope\r\n0\r\n\r\n");
}

/// A chunked POST of `abc` whose last chunk is followed by `trailers`, and a GET
/// pipelined behind it on the same connection.
fn chunked_post_then_get(trailers: &str) -> String {
    format!(
        "POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\
         {trailers}GET /y HTTP/1.1\r\nHost: h\r\n\r\n"
    )
}

/// A trailer section with a bare LF gets a 400 that closes the connection; neither
/// the POST nor the GET behind it reaches the backend.
fn assert_bad_trailers_refused(trailers: &str) {
    let (backend, sk) = setup();
    let mut r = send(&sk, chunked_post_then_get(trailers).as_bytes());
    let res = read_response(&mut r, false).unwrap();
    assert_eq!(res.status, 400, "{trailers:?}: {res:?}");
    assert_eq!(res.header("connection"), Some("close"), "{trailers:?}");
    assert_eq!(rest(&mut r), "", "{trailers:?}: more after the 400");
    assert_eq!(backend.hits(), 0, "{trailers:?}: {:?}", targets(&backend));
    // The connection was refused, not sidekick: the next one is served.
    assert_eq!(sk.get("/after").status, 200);
}

#[test]
fn a_bare_lf_ending_the_last_trailer_line_is_refused() {
    assert_bad_trailers_refused("X-T: v\n\r\n");
}

#[test]
fn a_bare_lf_as_the_empty_line_ending_the_trailers_is_refused() {
    assert_bad_trailers_refused("\n");
}

#[test]
fn a_bare_lf_as_the_empty_line_after_a_trailer_is_refused() {
    assert_bad_trailers_refused("X-T: v\r\n\n");
}

#[test]
fn a_bare_lf_in_a_middle_trailer_line_is_refused() {
    assert_bad_trailers_refused("X-A: 1\r\nX-B: 2\nX-C: 3\r\n\r\n");
}

#[test]
fn well_formed_trailers_end_the_body_and_the_next_request_is_answered() {
    let (backend, sk) = setup();
    for trailers in ["X-T: v\r\n\r\n", "X-A: 1\r\nX-B: 2\r\n\r\n", "\r\n"] {
        let before = backend.hits();
        let mut r = send(&sk, chunked_post_then_get(trailers).as_bytes());
        for _ in 0..2 {
            let res = read_response(&mut r, false).unwrap();
            assert_eq!(
                (res.status, res.header("connection")),
                (200, None),
                "{trailers:?}: {res:?}"
            );
        }
        let seen = backend.seen();
        let seen: Vec<(&str, u64)> = seen[before..]
            .iter()
            .map(|s| (s.target.as_str(), s.body_len))
            .collect();
        assert_eq!(seen, [("/x", 3), ("/y", 0)], "{trailers:?}");
    }
}

#[test]
fn a_streamed_chunked_body_with_a_bare_lf_in_its_trailers_is_answered_400() {
    // Past --retry-buffer the body streams to the backend as it comes: the bad
    // trailer must not let it end there as complete.
    streamed_upload_ending_in(b"0\r\nX-T: v\n\r\nGET /y HTTP/1.1\r\nHost: h\r\n\r\n");
}

#[test]
fn a_bare_lf_in_trailers_over_tls_is_refused() {
    let dir = tls::TempDir::new("bad-trailers");
    let (cert, key) = tls::Ca::new("hostile test CA")
        .issue(&["localhost"])
        .write(dir.path(), "server");
    let backend = Backend::start("b0");
    let sk = Sidekick::start(&[
        "--cert",
        &cert.display().to_string(),
        "--key",
        &key.display().to_string(),
        &backend.url(),
    ]);
    wait_for("backend up", Duration::from_secs(10), || {
        tls::https_request(sk.addr, None, "GET", "/v1/health", b"").status == 200
    });
    let mut stream = tls::connect(sk.addr, None, &[b"http/1.1".as_slice()]);
    stream
        .write_all(chunked_post_then_get("X-T: v\n\r\n").as_bytes())
        .unwrap();
    let mut r = BufReader::new(stream);
    let res = read_response(&mut r, false).unwrap();
    assert_eq!((res.status, res.header("connection")), (400, Some("close")));
    let mut more = Vec::new();
    // A TLS peer may end with close_notify or just close: both end the stream.
    let _ = r.read_to_end(&mut more);
    assert_eq!(String::from_utf8_lossy(&more), "");
    assert_eq!(backend.hits(), 0, "{:?}", targets(&backend));
}
