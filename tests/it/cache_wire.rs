//! The S3 shared cache on the wire: a raw S3-like origin written here records every
//! request sidekick sends it (the `If-None-Match` added, ranges never widened,
//! conditions passed unchanged) and answers as each test wants; the cache store is
//! a bucket in a real Garage.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::common::boto::Boto;
use crate::common::cache_store::CacheStore;
use crate::common::garage::Garage;
use crate::common::origin::{Object, Origin};
use crate::common::*;

pub(crate) const BLOCK: usize = 64 << 10;
/// Three whole blocks and a partial one.
pub(crate) const SIZE: usize = 3 * BLOCK + 1000;

pub(crate) struct Wire {
    pub origin: Origin,
    pub g: Garage,
    pub store: CacheStore,
    pub boto: Boto,
    pub sk: Sidekick,
}

impl Wire {
    pub fn start() -> Wire {
        Self::start_with(&[])
    }

    /// `flags` replace the store's own `--cache-*` values where they name one, and
    /// are added otherwise.
    pub fn start_with(flags: &[(&str, &str)]) -> Wire {
        let boto = Boto::start();
        let g = Garage::start(1);
        let store = CacheStore::in_garage(&g, "wire-cache");
        let origin = Origin::start();
        let sk = cached_sidekick(&store, flags, &origin.url());
        Wire {
            origin,
            g,
            store,
            boto,
            sk,
        }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.sk.addr, "GET", path, headers, b"")
    }
}

/// The store's cache flags with `cache` overriding, then the origin.
pub(crate) fn cache_args(store: &CacheStore, cache: &[(&str, &str)], origin: &str) -> Vec<String> {
    let mut args = store.flags();
    for (flag, value) in cache {
        match args.iter().position(|a| a == flag) {
            Some(i) => args[i + 1] = value.to_string(),
            None => args.extend([flag.to_string(), value.to_string()]),
        }
    }
    args.extend(["--health-duration", "500ms", origin].map(String::from));
    args
}

pub(crate) fn cached_sidekick(
    store: &CacheStore,
    cache: &[(&str, &str)],
    origin: &str,
) -> Sidekick {
    let args = cache_args(store, cache, origin);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sk = Sidekick::start(&args);
    sk.wait_cache_ready(&store.bucket);
    wait_for("the origin up", Duration::from_secs(10), || {
        sk.health() == 200
    });
    sk
}

/// GET with a Host of the test's choosing (virtual-host-style requests).
fn get_host(sk: &Sidekick, host: &str, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    raw_request(sk.addr, raw.as_bytes(), false)
}

pub(crate) type Headers<'a> = &'a [(&'a str, &'a str)];

#[track_caller]
pub(crate) fn assert_body(res: &Response, status: u16, body: &[u8], x_cache: &str, what: &str) {
    assert_eq!(
        res.status,
        status,
        "{what}: {:?} {}",
        res.headers,
        String::from_utf8_lossy(&res.body[..res.body.len().min(300)])
    );
    assert_eq!(res.body.len(), body.len(), "{what}: length");
    assert!(res.body == body, "{what}: not the object's bytes");
    assert_eq!(
        res.header("x-cache"),
        Some(x_cache),
        "{what}: {:?}",
        res.headers
    );
}

/// Two pools share one HTTP stack: the client's requests (and its credentials) must
/// reach only the origin, sidekick's own cache requests only the cache store.
#[test]
fn client_requests_reach_the_origin_and_cache_requests_the_store() {
    let w = Wire::start();
    let body = bytes(SIZE, 19);
    w.origin.put("/bkt/where", Object::new(body.clone(), "w1"));
    let auth = "AWS4-HMAC-SHA256 Credential=CLIENTKEY/20240101/us-east-1/s3/aws4_request";
    for i in 0..4 {
        let res = w.get(
            "/bkt/where",
            &[("Authorization", auth), ("X-Read", &i.to_string())],
        );
        assert_eq!(
            res.status,
            200,
            "read {i} was not answered by the origin: {}",
            res.text()
        );
        assert!(res.body == body, "read {i}: wrong bytes");
        if i == 0 {
            w.sk.wait_filled(SIZE as u64);
        }
    }
    let asked = w.origin.asked();
    let reads: Vec<_> = asked
        .iter()
        .filter(|a| a.header("x-read").is_some())
        .collect();
    assert_eq!(reads.len(), 4, "the origin saw {} of 4 reads", reads.len());
    assert!(reads
        .iter()
        .all(|a| a.header("authorization") == Some(auth)));
    for a in &asked {
        let head = format!("{} {} {:?}", a.method, a.target, a.headers);
        assert!(
            !head.contains(&w.store.bucket) && !head.contains(&w.store.key.access),
            "a cache store request reached the origin: {head}"
        );
    }
}

#[test]
fn a_hit_is_the_origins_304_to_the_cached_etag() {
    let w = Wire::start();
    let body = bytes(SIZE, 20);
    w.origin.put(
        "/bkt/obj",
        Object::new(body.clone(), "v1")
            .with_header("x-amz-meta-color", "blue")
            .with_header("Content-Disposition", "attachment; name=obj"),
    );

    let first = w.get("/bkt/obj", &[("X-Client", "one")]);
    assert_body(&first, 200, &body, "MISS", "first read");
    let asked = w.origin.asked_for("/bkt/obj");
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].header("if-none-match"),
        None,
        "a cold read is not conditional"
    );
    assert_eq!(asked[0].status, 200);
    w.sk.wait_filled(SIZE as u64);

    let second = w.get("/bkt/obj", &[("X-Client", "two")]);
    assert_body(&second, 200, &body, "HIT", "second read");
    let asked = w.origin.asked_for("/bkt/obj");
    assert_eq!(asked.len(), 2, "{asked:?}");
    let revalidation = &asked[1];
    assert_eq!(
        revalidation.all("if-none-match"),
        vec!["\"v1\""],
        "{revalidation:?}"
    );
    assert_eq!(
        revalidation.header("x-client"),
        Some("two"),
        "the client's own request"
    );
    assert_eq!(revalidation.header("host"), Some("test.local"));
    assert_eq!((revalidation.status, revalidation.body_len), (304, 0));
    // The stored representation, with the 304's fresh headers.
    for (name, value) in [
        ("etag", "\"v1\""),
        ("content-type", "application/octet-stream"),
        ("x-amz-meta-color", "blue"),
        ("content-disposition", "attachment; name=obj"),
        ("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT"),
        ("x-amz-request-id", "req-1"),
    ] {
        assert_eq!(
            second.header(name),
            Some(value),
            "{name} in {:?}",
            second.headers
        );
    }

    let part = w.get("/bkt/obj", &[("Range", "bytes=100-70000")]);
    assert_body(&part, 206, &body[100..=70000], "HIT", "ranged read");
    assert_eq!(
        part.header("content-range"),
        Some(&*format!("bytes 100-70000/{SIZE}"))
    );
    let asked = w.origin.asked_for("/bkt/obj");
    let last = asked.last().unwrap();
    assert_eq!(last.header("range"), Some("bytes=100-70000"));
    assert_eq!(last.all("if-none-match"), vec!["\"v1\""]);
    assert_eq!(last.status, 304);

    // Virtual-host style: the bucket is in the Host.
    let vbody = bytes(BLOCK + 3, 21);
    w.origin.put("/photo.jpg", Object::new(vbody.clone(), "p1"));
    let host = "photos.s3.example.com";
    assert_body(
        &get_host(&w.sk, host, "/photo.jpg"),
        200,
        &vbody,
        "MISS",
        "vhost first",
    );
    w.sk.wait_filled((SIZE + vbody.len()) as u64);
    assert_body(
        &get_host(&w.sk, host, "/photo.jpg"),
        200,
        &vbody,
        "HIT",
        "vhost second",
    );
    let asked = w.origin.asked_for("/photo.jpg");
    assert_eq!(asked.last().unwrap().header("host"), Some(host));
    // The same key in another bucket is another object.
    let other = bytes(BLOCK + 3, 22);
    w.origin.put("/photo.jpg", Object::new(other.clone(), "p2"));
    let res = get_host(&w.sk, "albums.s3.example.com", "/photo.jpg");
    assert_body(&res, 200, &other, "MISS", "same key, other bucket");
    let asked = w.origin.asked_for("/photo.jpg");
    let last = asked.last().unwrap();
    assert_eq!(
        last.header("if-none-match"),
        None,
        "another bucket's ETag: {last:?}"
    );
}

#[test]
fn an_origin_that_ignores_if_none_match_but_sends_the_same_etag_is_a_hit() {
    let w = Wire::start();
    w.origin.ignore_if_none_match();
    let body = bytes(SIZE, 23);
    w.origin
        .put("/bkt/stubborn", Object::new(body.clone(), "s1"));
    assert_body(&w.get("/bkt/stubborn", &[]), 200, &body, "MISS", "first");
    w.sk.wait_filled(SIZE as u64);
    for i in 0..3 {
        let res = w.get("/bkt/stubborn", &[]);
        assert_body(&res, 200, &body, "HIT", &format!("read {i}"));
    }
    let asked = w.origin.asked_for("/bkt/stubborn");
    assert_eq!(asked.len(), 4);
    assert!(asked[1..]
        .iter()
        .all(|a| a.all("if-none-match") == vec!["\"s1\""] && a.status == 200));
    // With a Range it answers 206: the rule covers only a 200, so the bytes matter.
    let part = w.get("/bkt/stubborn", &[("Range", "bytes=-10")]);
    assert_eq!(part.status, 206);
    assert!(part.body == body[SIZE - 10..], "suffix: wrong bytes");
    assert_eq!(w.sk.fill_bytes(), SIZE as u64);
}

#[test]
fn a_206_miss_fills_the_blocks_it_was_sent_and_pieces_of_the_others() {
    let w = Wire::start();
    let size = 4 * BLOCK + 1000;
    let body = bytes(size, 24);
    w.origin
        .put("/bkt/parquet", Object::new(body.clone(), "pq"));

    let res = w.get("/bkt/parquet", &[("Range", "bytes=10000-200000")]);
    assert_body(&res, 206, &body[10000..=200000], "MISS", "cold range");
    let asked = w.origin.asked_for("/bkt/parquet");
    assert_eq!(
        asked[0].all("range"),
        vec!["bytes=10000-200000"],
        "a signed Range is widened"
    );
    // Blocks 1 and 2 lie wholly inside 10000..=200000; of 0 and 3, the bytes sent
    // are pieces named by their span.
    w.sk.wait_filled(190_001);
    let names = |prefix: &str| -> Vec<String> {
        let mut tails: Vec<String> = w
            .store
            .list(&w.boto, prefix)
            .into_iter()
            .map(|(k, _)| k[prefix.len() + 65..].to_string())
            .collect();
        tails.sort();
        tails
    };
    assert_eq!(names("blocks/"), vec!["1", "2"]);
    assert_eq!(names("pieces/"), vec!["0/10000-65535", "3/196608-200000"]);

    for (a, z) in [
        (BLOCK, 3 * BLOCK - 1),
        (70000, 80000),
        (BLOCK + 5, 2 * BLOCK + 5),
        (60000, 70000),
        (3 * BLOCK - 1, 3 * BLOCK),
        (10000, 200000),
    ] {
        let range = format!("bytes={a}-{z}");
        let res = w.get("/bkt/parquet", &[("Range", &range)]);
        assert_body(&res, 206, &body[a..=z], "HIT", &range);
        let last = w.origin.asked_for("/bkt/parquet").pop().unwrap();
        assert_eq!(last.all("range"), vec![range.as_str()]);
        assert_eq!(
            (last.all("if-none-match"), last.status),
            (vec!["\"pq\""], 304)
        );
    }
    for (a, z) in [(0, 100), (9999, 10001), (200_000, 200_001)] {
        let range = format!("bytes={a}-{z}");
        let before = w.origin.asked_for("/bkt/parquet").len();
        let res = w.get("/bkt/parquet", &[("Range", &range)]);
        assert_body(&res, 206, &body[a..=z], "MISS", &range);
        let asked = w.origin.asked_for("/bkt/parquet");
        assert_eq!(asked.len(), before + 1, "{range}: a second trip");
        assert_eq!(
            asked[before].header("if-none-match"),
            None,
            "{range}: bytes never stored, asked for conditionally"
        );
    }
}

#[test]
fn with_the_origin_down_nothing_is_served_from_the_cache() {
    let mut w = Wire::start();
    let body = bytes(SIZE, 25);
    w.origin.put("/bkt/far", Object::new(body.clone(), "f1"));
    assert_body(&w.get("/bkt/far", &[]), 200, &body, "MISS", "fill");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get("/bkt/far", &[]), 200, &body, "HIT", "cached");

    w.origin.kill();
    let cases: [&[(&str, &str)]; 5] = [
        &[],
        &[("Cache-Control", "only-if-cached")],
        &[("Cache-Control", "max-age=999999")],
        &[("Pragma", "no-cache"), ("Cache-Control", "max-stale")],
        &[("Range", "bytes=0-99"), ("Cache-Control", "only-if-cached")],
    ];
    for headers in cases {
        let res = w.get("/bkt/far", headers);
        assert_eq!(res.status, 502, "{headers:?}: {:?}", res.headers);
        assert!(
            !res.body.windows(32).any(|x| x == &body[..32]),
            "{headers:?}: cached bytes"
        );
    }
}

#[test]
fn a_clients_own_conditions_go_to_the_origin_unchanged() {
    let w = Wire::start();
    let body = bytes(SIZE, 26);
    w.origin.put("/bkt/cond", Object::new(body.clone(), "c1"));
    assert_body(&w.get("/bkt/cond", &[]), 200, &body, "MISS", "fill");
    w.sk.wait_filled(SIZE as u64);

    let last = || w.origin.asked_for("/bkt/cond").pop().unwrap();
    let res = w.get("/bkt/cond", &[("If-None-Match", "\"c1\"")]);
    assert_eq!(res.status, 304, "{:?}", res.headers);
    assert_eq!(last().all("if-none-match"), vec!["\"c1\""]);
    assert_eq!(last().status, 304);

    let res = w.get("/bkt/cond", &[("If-None-Match", "\"old\"")]);
    assert_eq!(res.status, 200);
    assert!(res.body == body);
    assert_eq!(
        last().all("if-none-match"),
        vec!["\"old\""],
        "the client's condition changed"
    );

    let res = w.get("/bkt/cond", &[("If-Match", "\"c1\"")]);
    assert_eq!(res.status, 200);
    assert!(res.body == body);
    assert_eq!(last().all("if-match"), vec!["\"c1\""]);
    assert_eq!(
        last().header("if-none-match"),
        None,
        "a condition added to the client's"
    );

    let res = w.get("/bkt/cond", &[("If-Match", "\"zzz\"")]);
    assert_eq!(res.status, 412, "{:?}", res.headers);
    assert!(res.text().contains("PreconditionFailed"));

    let since = "Mon, 01 Jan 2024 00:00:00 GMT";
    let res = w.get("/bkt/cond", &[("If-Modified-Since", since)]);
    assert_eq!(res.status, 200);
    assert_eq!(last().all("if-modified-since"), vec![since]);
    assert_eq!(last().header("if-none-match"), None);

    // Nothing of that evicted the entry.
    assert_body(
        &w.get("/bkt/cond", &[]),
        200,
        &body,
        "HIT",
        "after the conditions",
    );
}

#[test]
fn a_prefix_keeps_the_cache_under_it() {
    let w = Wire::start_with(&[("--cache-prefix", "team-a/")]);
    let body = bytes(SIZE, 40);
    w.origin
        .put("/bkt/prefixed", Object::new(body.clone(), "x1"));
    assert_body(&w.get("/bkt/prefixed", &[]), 200, &body, "MISS", "first");
    w.sk.wait_filled(SIZE as u64);
    w.store.wait_objects(&w.boto, "team-a/meta/", 1);
    assert_body(&w.get("/bkt/prefixed", &[]), 200, &body, "HIT", "second");
    let all = w.store.list(&w.boto, "");
    let blocks = all
        .iter()
        .filter(|(k, _)| k.starts_with("team-a/blocks/"))
        .count();
    assert_eq!(blocks, 4, "{all:?}");
    assert!(
        all.iter()
            .all(|(k, _)| k.starts_with("team-a/")
                || !(k.contains("blocks/") || k.contains("meta/"))),
        "cache objects outside the prefix: {all:?}"
    );
}

#[test]
fn concurrent_misses_of_one_object_fill_it_once() {
    let w = Wire::start();
    let body = Arc::new(bytes(SIZE, 34));
    w.origin.put("/bkt/hot", Object::new(body.to_vec(), "h1"));
    // A slow origin, so that the eight reads overlap.
    w.origin.pace(Duration::from_millis(20));
    let barrier = Arc::new(Barrier::new(8));
    let addr = w.sk.addr;
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let (barrier, body) = (barrier.clone(), body.clone());
            thread::spawn(move || {
                barrier.wait();
                let res = request(addr, "GET", "/bkt/hot", &[], b"");
                assert_eq!(res.status, 200);
                assert!(res.body == *body, "a reader got wrong bytes");
                res.header("x-cache").unwrap_or("none").to_string()
            })
        })
        .collect();
    let seen: Vec<String> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    w.sk.wait_filled(SIZE as u64);
    let asked = w.origin.asked_for("/bkt/hot");
    let bodies = asked.iter().filter(|a| a.body_len > 0).count();
    assert!(
        bodies <= 1,
        "the origin sent the body {bodies} times (X-Cache {seen:?}): {:?}",
        asked
            .iter()
            .map(|a| (a.status, a.body_len))
            .collect::<Vec<_>>()
    );
    assert_eq!(w.store.list(&w.boto, "blocks/").len(), 4);
}

#[test]
fn cache_metrics_and_trace_lines_follow_hits_misses_and_bypasses() {
    let w = Wire::start_with(&[("--trace", "application")]);
    let body = bytes(SIZE, 37);
    w.origin.put("/bkt/m", Object::new(body.clone(), "m1"));
    let m = |name: &str, label: &str| w.sk.cache_metric(name, label);
    let requests = |r: &str| m("sidekick_cache_requests_total", &format!("result=\"{r}\""));
    let bytes_from = |s: &str| m("sidekick_cache_bytes_total", &format!("source=\"{s}\""));

    assert_body(&w.get("/bkt/m", &[]), 200, &body, "MISS", "miss");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get("/bkt/m", &[]), 200, &body, "HIT", "hit");
    let part = w.get("/bkt/m", &[("Range", "bytes=0-999")]);
    assert_body(&part, 206, &body[..1000], "HIT", "ranged hit");
    let head = request(w.sk.addr, "HEAD", "/bkt/m", &[], b"");
    assert_eq!(head.header("x-cache"), Some("BYPASS"));

    // Counters move when a request is done with, which may be just after the
    // client has its last byte.
    wait_for("the counters", Duration::from_secs(10), || {
        requests("hit") == 2.0 && requests("miss") == 1.0 && requests("bypass") == 1.0
    });
    assert_eq!(requests("error"), 0.0);
    wait_for("the byte counters", Duration::from_secs(10), || {
        bytes_from("origin") == SIZE as f64 && bytes_from("cache") == (SIZE + 1000) as f64
    });
    let s = w.sk.get("/.prometheus/metrics").text();
    for (name, label) in [
        ("sidekick_cache_requests_total", "result=\"hit\""),
        ("sidekick_cache_bytes_total", "source=\"cache\""),
        ("sidekick_cache_fill_bytes_total", ""),
        ("sidekick_cache_fills_dropped_total", ""),
        ("sidekick_cache_errors_total", ""),
        ("sidekick_cache_bad_metadata_total", ""),
    ] {
        assert!(
            sample_with(&s, name, label).is_some(),
            "no {name}{{{label}}} in\n{s}"
        );
    }
    assert_eq!(
        sample_with(&s, "sidekick_cache_fills_dropped_total", ""),
        Some(0.0)
    );
    assert_eq!(
        sample_with(&s, "sidekick_cache_errors_total", ""),
        Some(0.0)
    );
    let node = format!("endpoint=\"{}\"", w.g.endpoint(0));
    assert_eq!(
        sample_with(&s, "sidekick_cache_up", &node),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        sample_with(&s, "sidekick_cache_node_errors_total", &node),
        Some(0.0),
        "{s}"
    );
    promtool_check(&s);

    // Each request's trace line carries its cache result.
    let traced = |method: &str, result: &str| {
        let out = w.sk.out.lock().unwrap();
        out.iter()
            .filter(|l| {
                l.contains(&format!(" {method} /bkt/m ")) && l.contains(&format!("cache={result}"))
            })
            .count()
    };
    wait_for("the trace lines", Duration::from_secs(10), || {
        traced("GET", "MISS") == 1 && traced("GET", "HIT") == 2 && traced("HEAD", "BYPASS") == 1
    });
    let out = w.sk.out.lock().unwrap().join("\n");
    assert!(
        !out.contains(&w.store.key.secret),
        "the secret in the trace"
    );
    assert!(
        !out.contains(&w.store.bucket),
        "the cache's own requests traced:\n{out}"
    );
}
