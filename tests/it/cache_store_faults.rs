//! The S3 shared cache when its store fails: down at start, killed under reads,
//! stopped (accepting and never answering), dying while a hit is being sent, or
//! holding a corrupt block deeper than a hit checks before its head.
//! Clients get the origin's answer, or a cut connection once a hit's head is out;
//! never a cache error, never wrong bytes.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::cache_wire::{assert_body, cache_args, Wire, SIZE};
use crate::common::boto::Boto;
use crate::common::cache_store::{CacheStore, CACHE_WAIT};
use crate::common::garage::Garage;
use crate::common::origin::{Object, Origin};
use crate::common::*;

#[test]
fn a_cache_store_down_at_start_is_bypassed_until_it_comes_up() {
    let boto = Boto::start();
    let mut g = Garage::start(1);
    let store = CacheStore::in_garage(&g, "late-cache");
    g.kill(0);
    let origin = Origin::start();
    let body = bytes(SIZE, 35);
    origin.put("/bkt/obj", Object::new(body.clone(), "l1"));
    let args = cache_args(&store, &[], &origin.url());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sk = Sidekick::start(&args);
    let warning = format!("cache bucket {}: ", store.bucket);
    wait_for("the warning about the cache store", CACHE_WAIT, || {
        let log = sk.log.lock().unwrap();
        log.iter()
            .any(|l| l.contains(&warning) && l.contains("serving without cache"))
    });
    wait_for("the origin up", Duration::from_secs(10), || {
        sk.health() == 200
    });
    let node = g.endpoint(0);
    let up =
        |v: f64| sk.sample_with("sidekick_cache_up", &format!("endpoint=\"{node}\"")) == Some(v);
    wait_for("the cache node down", CACHE_WAIT, || up(0.0));
    for i in 0..3 {
        let res = request(sk.addr, "GET", "/bkt/obj", &[], b"");
        assert_body(&res, 200, &body, "BYPASS", &format!("store down, read {i}"));
    }

    g.restart(0);
    g.wait_healthy(0);
    wait_for("the cache node up", CACHE_WAIT, || up(1.0));
    // From now on the cache is used: a miss that fills, then hits.
    wait_for("a read that fills", CACHE_WAIT, || {
        let res = request(sk.addr, "GET", "/bkt/obj", &[], b"");
        assert!(res.status == 200 && res.body == body, "wrong answer");
        res.header("x-cache") == Some("MISS")
    });
    sk.wait_filled(SIZE as u64);
    let res = request(sk.addr, "GET", "/bkt/obj", &[], b"");
    assert_body(&res, 200, &body, "HIT", "store back");
    assert_eq!(store.list(&boto, "blocks/").len(), 4);
    let log = sk.log.lock().unwrap().join("\n");
    assert!(
        !log.contains(&store.key.secret),
        "the secret in the log:\n{log}"
    );
}

#[test]
fn a_cache_store_killed_under_reads_fails_no_request_and_hits_once_back() {
    let mut w = Wire::start();
    let body = bytes(SIZE, 36);
    w.origin.put("/bkt/obj", Object::new(body.clone(), "k1"));
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "MISS", "fill");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "HIT", "cached");

    let node = w.g.endpoint(0);
    let label = format!("endpoint=\"{node}\"");
    w.g.kill(0);
    let mut reads = 0;
    wait_for("the cache node down", CACHE_WAIT, || {
        let res = w.get("/bkt/obj", &[("Range", "bytes=1000-70000")]);
        assert_eq!(res.status, 206, "read {reads} with the store dying");
        assert!(res.body == body[1000..=70000], "read {reads}: wrong bytes");
        reads += 1;
        w.sk.sample_with("sidekick_cache_up", &label) == Some(0.0)
    });
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "BYPASS", "store down");

    w.g.restart(0);
    w.g.wait_healthy(0);
    wait_for("hits again", CACHE_WAIT, || {
        let res = w.get("/bkt/obj", &[]);
        assert!(res.status == 200 && res.body == body, "wrong answer");
        res.header("x-cache") == Some("HIT")
    });
}

#[test]
fn a_cache_store_that_stops_answering_fails_no_request() {
    let w = Wire::start();
    let body = bytes(SIZE, 38);
    w.origin.put("/bkt/obj", Object::new(body.clone(), "z1"));
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "MISS", "fill");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "HIT", "cached");

    // Stopped, the store still accepts connections (the kernel does) but answers
    // nothing: reads go on from the origin (the client's own timeout is a minute).
    w.g.pause(0);
    for i in 0..3 {
        let res = w.get("/bkt/obj", &[]);
        assert_eq!(res.status, 200, "read {i}");
        assert!(res.body == body, "read {i}: wrong bytes");
        assert_ne!(
            res.header("x-cache"),
            Some("HIT"),
            "read {i}: a HIT from a stopped store"
        );
    }
    w.g.resume(0);
    wait_for("hits again", CACHE_WAIT, || {
        let res = w.get("/bkt/obj", &[]);
        assert!(res.status == 200 && res.body == body, "wrong answer");
        res.header("x-cache") == Some("HIT")
    });
}

#[test]
fn a_cache_store_dying_while_a_hit_is_sent_cuts_the_client_connection() {
    let mut w = Wire::start();
    // Far more than socket buffers hold: most blocks are still to be read from
    // the store when it dies.
    let size = 16 << 20;
    let body = bytes(size, 39);
    w.origin.put("/bkt/big", Object::new(body.clone(), "b1"));
    let res = w.get("/bkt/big", &[]);
    assert!(res.status == 200 && res.body == body, "fill read");
    w.sk.wait_filled(size as u64);

    let mut stream = TcpStream::connect(w.sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /bkt/big HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    let (status, headers) = read_head(&mut r).unwrap();
    assert!(status.contains(" 200 "), "{status}");
    let header = |n: &str| {
        headers
            .iter()
            .find(|(h, _)| h == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-cache"), Some("HIT"), "{headers:?}");
    assert_eq!(header("content-length"), Some(&*size.to_string()));
    let mut first = vec![0; 1000];
    r.read_exact(&mut first).unwrap();
    w.g.kill(0);
    let mut rest = Vec::new();
    // The end must come as a cut (EOF or reset), not as a connection left hanging.
    if let Err(e) = r.read_to_end(&mut rest) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the connection hangs after the store died: {e}"
        );
    }
    let got = first.len() + rest.len();
    assert!(got < size, "the whole body arrived after the store died");
    assert!(first == body[..1000], "wrong bytes");
    assert!(rest == body[1000..got], "wrong bytes before the cut");
}

/// GET on a fresh connection: (status line, X-Cache, the body as far as it came).
fn read_all(sk: &Sidekick, path: &str) -> (String, Option<String>, Vec<u8>) {
    let mut stream = TcpStream::connect(sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(stream);
    let (status, headers) = read_head(&mut r).unwrap();
    let x_cache = headers
        .iter()
        .find(|(n, _)| n == "x-cache")
        .map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Err(e) = r.read_to_end(&mut body) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the connection hangs: {e}"
        );
    }
    (status, x_cache, body)
}

#[test]
fn a_corrupt_block_deep_in_a_large_object_costs_at_most_one_cut_read() {
    let w = Wire::start();
    // Far past what a hit checks before its head.
    let size = 12 << 20;
    let body = bytes(size, 41);
    w.origin.put("/bkt/deep", Object::new(body.clone(), "d1"));
    let res = w.get("/bkt/deep", &[]);
    assert!(res.status == 200 && res.body == body, "fill read");
    w.sk.wait_filled(size as u64);
    let (_, x_cache, got) = read_all(&w.sk, "/bkt/deep");
    assert!(
        x_cache.as_deref() == Some("HIT") && got == body,
        "cached read"
    );

    let index = 150;
    let name = w
        .store
        .list(&w.boto, "blocks/")
        .into_iter()
        .map(|(k, _)| k)
        .find(|k| k.ends_with(&format!("/{index}")))
        .expect("block 150 stored");
    let mut raw = w.boto.get_raw(&w.store.key, &w.store.bucket, &name);
    raw[16 + 7] ^= 0x01;
    w.boto.put(&w.store.key, &w.store.bucket, &name, &raw);

    // The first read may find the block only after its head: cut, never wrong bytes.
    let (status, x_cache, got) = read_all(&w.sk, "/bkt/deep");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        got.len() <= size && got == body[..got.len()],
        "wrong bytes ({x_cache:?})"
    );
    eprintln!(
        "first read after the corruption: {} of {size} bytes, {x_cache:?}",
        got.len()
    );
    // Every later read is whole and right.
    for i in 0..2 {
        let (status, x_cache, got) = read_all(&w.sk, "/bkt/deep");
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            got.len() == size && got == body,
            "read {i} after the corruption: {} of {size} bytes ({x_cache:?})",
            got.len()
        );
    }
}
