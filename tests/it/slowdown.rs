//! S3's `503 SlowDown`: an idempotent request without a body is sent once to
//! another backend; when every backend sheds load, or the request cannot be sent
//! again, the client gets the 503 exactly as the backend sent it.

use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

fn slow_down_body(id: &str) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
         <Message>Please reduce your request rate.</Message><Resource>/b/k</Resource>\
         <RequestId>{id}</RequestId></Error>"
    )
    .into_bytes()
}

fn headers(id: &str) -> [String; 3] {
    [
        "Content-Type: application/xml".into(),
        format!("X-Amz-Request-Id: {id}"),
        "Retry-After: 1".into(),
    ]
}

/// `503 SlowDown` with a Content-Length, head and body in one write.
fn slow_down(id: &str) -> Vec<u8> {
    let h = headers(id);
    let h: Vec<&str> = h.iter().map(String::as_str).collect();
    response("503 Slow Down", &h, &slow_down_body(id))
}

/// `503 SlowDown` chunked, the body written after the head.
fn slow_down_chunked(id: &str) -> Act {
    let mut head = "HTTP/1.1 503 Slow Down\r\nTransfer-Encoding: chunked\r\n".to_string();
    for h in headers(id) {
        head.push_str(&h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let body = slow_down_body(id);
    let (a, b) = body.split_at(40);
    let mut chunks = format!("{:x}\r\n", a.len()).into_bytes();
    chunks.extend_from_slice(a);
    chunks.extend_from_slice(format!("\r\n{:x}\r\n", b.len()).as_bytes());
    chunks.extend_from_slice(b);
    chunks.extend_from_slice(b"\r\n0\r\n\r\n");
    Act::SendInTwo(head.into_bytes(), chunks)
}

fn retries(sk: &Sidekick) -> f64 {
    sk.sample_with("sidekick_slowdown_retries_total", "")
        .expect("sidekick_slowdown_retries_total")
}

#[test]
fn a_slowdown_is_retried_once_on_another_node() {
    let nodes = Scripted::start(2, |req, node, arrival| {
        let ok = |body: &[u8]| Act::Send(response("200 OK", &[], body));
        let id = format!("node{node}-{arrival}");
        match (req.method.as_str(), req.path()) {
            ("GET", "/s/other") => Act::Send(response(
                "503 Service Unavailable",
                &[],
                b"<Error><Code>ServiceUnavailable</Code></Error>",
            )),
            ("PUT", _) => Act::Send(slow_down(&id)),
            (_, _) if arrival > 1 => ok(format!("node{node}").as_bytes()),
            ("GET", "/s/whole") => Act::Send(slow_down(&id)),
            ("GET", "/s/chunked") => slow_down_chunked(&id),
            // S3 answers a shedding HEAD with a bare 503.
            ("HEAD", "/s/head") => Act::Send(response("503 Slow Down", &[], b"")),
            _ => ok(b"unexpected"),
        }
    });
    let sk = Sidekick::start(&[
        "--trace",
        "application",
        "--health-duration",
        "1h",
        &nodes.site(),
    ]);
    sk.wait_up(2);
    for path in ["/s/whole", "/s/chunked"] {
        let res = sk.get(path);
        assert_eq!(res.status, 200, "{path}: {}", res.text());
        assert!(res.text().starts_with("node"), "{path}");
        assert_eq!(nodes.arrivals("GET", path), 2, "{path}");
    }
    let head = request(sk.addr, "HEAD", "/s/head", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(nodes.arrivals("HEAD", "/s/head"), 2);
    assert_eq!(retries(&sk), 3.0);
    // Another 503 is the client's to see, and so is a SlowDown to a request with a
    // body: neither is sent again.
    let other = sk.get("/s/other");
    assert_eq!(other.status, 503);
    assert_eq!(
        other.text(),
        "<Error><Code>ServiceUnavailable</Code></Error>"
    );
    assert_eq!(nodes.arrivals("GET", "/s/other"), 1);
    let put = request(sk.addr, "PUT", "/s/put", &[], b"x");
    assert_eq!(put.status, 503);
    assert_eq!(
        put.body,
        slow_down_body(put.header("x-amz-request-id").unwrap())
    );
    assert_eq!(nodes.arrivals("PUT", "/s/put"), 1);
    assert_eq!(retries(&sk), 3.0);
    // Shedding load is not failing.
    let scrape = sk.get("/.prometheus/metrics").text();
    for url in nodes.urls() {
        assert_eq!(sample(&scrape, "sidekick_up", &url), Some(1.0), "{url}");
        assert_eq!(sample(&scrape, "sidekick_errors_total", &url), Some(0.0));
    }
    promtool_check(&scrape);
    wait_for("the retried request traced", LIMIT, || {
        sk.out_has(|l| {
            l.contains(" GET /s/whole 200 ") && l.contains(" slowdown=http://127.0.0.1:")
        })
    });
}

#[test]
fn when_every_node_sheds_load_the_client_gets_the_503_as_sent() {
    let nodes = Scripted::start(3, |req, node, arrival| {
        let id = format!("node{node}-{arrival}");
        match req.path() {
            "/all/chunked" => slow_down_chunked(&id),
            _ => Act::Send(slow_down(&id)),
        }
    });
    let sk = Sidekick::start(&["--health-duration", "1h", &nodes.site()]);
    sk.wait_up(3);
    for path in ["/all/whole", "/all/chunked"] {
        let res = sk.get(path);
        assert_eq!(res.status, 503, "{path}");
        // The second node's answer, byte for byte; no third is asked.
        let id = res.header("x-amz-request-id").unwrap().to_string();
        assert!(id.ends_with("-2"), "{path}: {id}");
        assert_eq!(res.text(), String::from_utf8(slow_down_body(&id)).unwrap());
        assert_eq!(res.header("content-type"), Some("application/xml"));
        assert_eq!(res.header("retry-after"), Some("1"));
        assert_eq!(
            nodes.arrivals("GET", path),
            2,
            "{path}: sent again once only"
        );
    }
    assert_eq!(retries(&sk), 2.0);

    // With one node there is no other to ask.
    let single = Sidekick::start(&["--health-duration", "1h", &nodes.urls()[0]]);
    single.wait_up(1);
    let res = single.get("/all/single");
    assert_eq!(res.status, 503);
    assert_eq!(res.body, slow_down_body("node0-1"));
    assert_eq!(nodes.arrivals("GET", "/all/single"), 1);
    assert_eq!(retries(&single), 0.0);
}
