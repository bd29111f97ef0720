//! What the S3 shared cache stores and what it leaves alone, on the wire: answers
//! that must not be stored (no-store, private, weak or no ETag, no length), requests
//! that bypass it (SSE-C, subresources, overrides, HEAD, PUT, several ranges), and
//! objects outside the size bounds.

use crate::cache_wire::{assert_body, cached_sidekick, Headers, Wire, BLOCK, SIZE};
use crate::common::boto::Boto;
use crate::common::cache_store::CacheStore;
use crate::common::garage::Garage;
use crate::common::origin::{Object, Origin};
use crate::common::*;

#[test]
fn answers_that_must_not_be_stored_are_not() {
    let w = Wire::start();
    let size = 2 * BLOCK + 5;
    let mut chunked = Object::new(bytes(size, 30), "ch");
    chunked.chunked = true;
    let cases = [
        (
            "/bkt/no-store",
            Object::new(bytes(size, 27), "n1").with_header("Cache-Control", "no-store"),
        ),
        (
            "/bkt/private",
            Object::new(bytes(size, 28), "p1").with_header("Cache-Control", "private, max-age=60"),
        ),
        ("/bkt/weak", {
            let mut o = Object::new(bytes(size, 29), "");
            o.etag = "W/\"w1\"".into();
            o
        }),
        ("/bkt/chunked", chunked),
        ("/bkt/no-etag", {
            let mut o = Object::new(bytes(size, 31), "");
            o.etag = String::new();
            o
        }),
    ];
    for (path, obj) in &cases {
        w.origin.put(path, obj.clone());
    }
    for (path, obj) in &cases {
        for i in 0..2 {
            let res = w.get(path, &[]);
            assert_eq!(res.status, 200, "{path} {i}");
            assert!(res.body == obj.body, "{path} {i}: wrong bytes");
            assert_eq!(
                res.header("x-cache"),
                Some("MISS"),
                "{path} {i}: {:?}",
                res.headers
            );
        }
        let asked = w.origin.asked_for(path);
        assert!(
            asked.iter().all(|a| a.header("if-none-match").is_none()),
            "{path} was stored: {asked:?}"
        );
    }
    // A storable object after them: its fill is the only one.
    let control = bytes(size, 32);
    w.origin
        .put("/bkt/control", Object::new(control.clone(), "ok"));
    assert_body(
        &w.get("/bkt/control", &[]),
        200,
        &control,
        "MISS",
        "control",
    );
    w.sk.wait_filled(size as u64);
    assert_eq!(w.store.list(&w.boto, "blocks/").len(), 3);
    w.store.wait_objects(&w.boto, "meta/", 1);
    assert_eq!(w.store.list(&w.boto, "meta/").len(), 1);
    assert_body(&w.get("/bkt/control", &[]), 200, &control, "HIT", "control");
}

#[test]
fn requests_that_are_not_cacheable_bypass_and_pass_unchanged() {
    let w = Wire::start();
    let body = bytes(SIZE, 33);
    w.origin.put("/bkt/obj", Object::new(body.clone(), "o1"));
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "MISS", "fill");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get("/bkt/obj", &[]), 200, &body, "HIT", "cached");

    let ssec: &[(&str, &str)] = &[
        ("x-amz-server-side-encryption-customer-algorithm", "AES256"),
        (
            "x-amz-server-side-encryption-customer-key",
            "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U=",
        ),
        (
            "x-amz-server-side-encryption-customer-key-MD5",
            "bWQ1bWQ1bWQ1bWQ1bWQ1bQ==",
        ),
    ];
    let cases: Vec<(&str, String, Headers)> = vec![
        ("GET", "/bkt/obj".into(), ssec),
        ("GET", "/bkt/obj?versionId=3HL4kqtJlcpXroDTDmJ".into(), &[]),
        ("GET", "/bkt/obj?partNumber=1".into(), &[]),
        (
            "GET",
            "/bkt/obj?response-content-type=text%2Fplain".into(),
            &[],
        ),
        (
            "GET",
            "/bkt/obj?response-content-disposition=inline".into(),
            &[],
        ),
        ("GET", "/bkt/obj?acl".into(), &[]),
        ("GET", "/bkt/obj?tagging".into(), &[]),
        ("GET", "/bkt?list-type=2&prefix=o".into(), &[]),
        ("GET", "/bkt/obj".into(), &[("Range", "bytes=0-9,20-29")]),
        ("HEAD", "/bkt/obj".into(), &[]),
        ("DELETE", "/bkt/obj?uploadId=1".into(), &[]),
    ];
    for (method, target, headers) in &cases {
        let before = w.origin.asked().len();
        let res = request(w.sk.addr, method, target, headers, b"");
        assert_eq!(
            res.header("x-cache"),
            Some("BYPASS"),
            "{method} {target} {headers:?}"
        );
        let asked = w.origin.asked();
        assert_eq!(
            asked.len(),
            before + 1,
            "{method} {target}: not one request"
        );
        let a = asked.last().unwrap();
        assert_eq!((a.method.as_str(), &a.target), (*method, target));
        assert_eq!(a.header("if-none-match"), None, "{method} {target}");
        for (n, v) in headers.iter() {
            assert_eq!(
                a.header(&n.to_ascii_lowercase()),
                Some(*v),
                "{method} {target}"
            );
        }
        if *method == "HEAD" {
            assert_eq!(res.header("content-length"), Some(&*SIZE.to_string()));
        }
    }
    let put = request(w.sk.addr, "PUT", "/bkt/obj", &[], b"new bytes");
    assert_eq!((put.status, put.header("x-cache")), (200, Some("BYPASS")));

    // Presigned-URL parameters alone keep a GET cacheable.
    let presigned = "/bkt/obj?X-Amz-Algorithm=AWS4-HMAC-SHA256\
        &X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request\
        &X-Amz-Date=20240101T000000Z&X-Amz-Expires=600&X-Amz-SignedHeaders=host\
        &X-Amz-Signature=abcdef";
    let res = w.get(presigned, &[]);
    assert_body(&res, 200, &body, "HIT", "presigned parameters");
    let last = w.origin.asked().pop().unwrap();
    assert_eq!(last.target, presigned, "the query changed");
    assert_eq!(w.sk.fill_bytes(), SIZE as u64, "a bypass filled");
}

#[test]
fn objects_outside_the_size_bounds_bypass() {
    let boto = Boto::start();
    let g = Garage::start(1);
    let store = CacheStore::in_garage(&g, "bounds-cache");
    let origin = Origin::start();
    let sk = cached_sidekick(
        &store,
        &[("--cache-min-size", "1000"), ("--cache-max-size", "100000")],
        &origin.url(),
    );
    let objects = [
        ("/bkt/tiny", 999, false),
        ("/bkt/huge", 100_001, false),
        ("/bkt/min", 1000, true),
        ("/bkt/fits", 100_000, true),
    ];
    let mut got = Vec::new();
    for (path, size, _) in objects {
        let body = bytes(size, size as u64);
        origin.put(path, Object::new(body.clone(), path));
        let res = request(sk.addr, "GET", path, &[], b"");
        assert!(
            res.status == 200 && res.body == body,
            "{path}: wrong answer"
        );
        got.push((path, "first", res.header("x-cache").map(String::from)));
    }
    sk.wait_filled(101_000);
    for (path, _, inside) in objects {
        let res = request(sk.addr, "GET", path, &[], b"");
        got.push((path, "second", res.header("x-cache").map(String::from)));
        let asked = origin.asked_for(path);
        let revalidated = asked[1].header("if-none-match").is_some();
        assert_eq!(revalidated, inside, "{path}: {asked:?}");
    }
    let want: Vec<_> = objects
        .iter()
        .map(|&(path, _, inside)| {
            (
                path,
                "first",
                Some(if inside { "MISS" } else { "BYPASS" }.to_string()),
            )
        })
        .chain(objects.iter().map(|&(path, _, inside)| {
            (
                path,
                "second",
                Some(if inside { "HIT" } else { "BYPASS" }.to_string()),
            )
        }))
        .collect();
    assert_eq!(got, want, "X-Cache of each read");
    assert_eq!(store.list(&boto, "meta/").len(), 2);
}
