//! A hit never answers with older headers than the origin would. An object written
//! again with the same bytes (new Content-Type, new or no `x-amz-meta-*`), or copied
//! onto itself replacing its metadata, keeps its ETag, and Garage's 304 shows only
//! the ETag: past `--cache-header-ttl` since a full answer showed the stored
//! headers, sidekick asks without the condition and answers with the new ones, the
//! bytes still from the cache.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cache_ranges::Real;
use crate::cache_wire::{assert_body, Wire};
use crate::common::boto::S3Answer;
use crate::common::origin::Object;
use crate::common::*;

const SIZE: usize = 3 * (64 << 10) + 1000;

/// The headers an answer must show: Content-Type, and every `x-amz-meta-*` (no
/// other).
fn shows(a: &S3Answer, content_type: &str, metadata: &Value) -> Result<(), String> {
    let meta: Vec<(String, String)> = {
        let mut m: Vec<(String, String)> = a
            .headers
            .iter()
            .filter(|(n, _)| n.starts_with("x-amz-meta-"))
            .map(|(n, v)| (n["x-amz-meta-".len()..].to_string(), v.clone()))
            .collect();
        m.sort();
        m
    };
    let mut want: Vec<(String, String)> = metadata
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.as_str().unwrap().to_string()))
        .collect();
    want.sort();
    match (a.header("content-type") == Some(content_type), meta == want) {
        (true, true) => Ok(()),
        _ => Err(format!(
            "wanted {content_type} {want:?}, got {:?} {meta:?} ({:?})",
            a.header("content-type"),
            a.x_cache()
        )),
    }
}

/// What changes on the origin, how (its ETag after), and what a read then shows.
type Change<'a> = (&'a str, Box<dyn Fn() -> String + 'a>, &'a str, Value);

#[test]
fn the_same_bytes_written_again_with_other_headers_are_served_with_them() {
    let r = Real::start(&[("--cache-header-ttl", "1s")]);
    let body = bytes(SIZE, 50);
    let put = |content_type: &str, metadata: Value| {
        r.boto
            .put_with(&r.direct, &r.g.bucket, "doc", &body, content_type, metadata)
    };
    let etag = put("text/plain", json!({"color": "blue", "size": "s"}));
    let whole = |via| r.boto.get(via, &r.g.bucket, "doc", json!({}));
    let a = whole(&r.via_a);
    assert_eq!((a.status, a.x_cache()), (200, Some("MISS")), "{a:?}");
    r.a.wait_filled(SIZE as u64);
    let a = whole(&r.via_b);
    assert_eq!(a.x_cache(), Some("HIT"), "{a:?}");
    shows(&a, "text/plain", &json!({"color": "blue", "size": "s"})).unwrap();

    let changes: [Change; 3] = [
        (
            "new Content-Type and metadata",
            Box::new(|| {
                put(
                    "application/x-parquet",
                    json!({"color": "red", "shape": "round"}),
                )
            }),
            "application/x-parquet",
            json!({"color": "red", "shape": "round"}),
        ),
        (
            "overwritten to empty metadata",
            Box::new(|| put("application/x-parquet", json!({}))),
            "application/x-parquet",
            json!({}),
        ),
        (
            "CopyObject with MetadataDirective=REPLACE",
            Box::new(|| {
                r.boto.copy_replace(
                    &r.direct,
                    &r.g.bucket,
                    "doc",
                    "image/png",
                    json!({"color": "green"}),
                )
            }),
            "image/png",
            json!({"color": "green"}),
        ),
    ];
    for (what, change, content_type, metadata) in changes {
        assert_eq!(change(), etag, "{what}: the ETag changed");
        for (who, via) in [("A", &r.via_a), ("B", &r.via_b)] {
            wait_until(
                &format!("{what}: {who} shows it"),
                Duration::from_secs(15),
                || {
                    let a = whole(via);
                    if a.sha256 != sha256(&body) {
                        return Err(format!("wrong bytes: {a:?}"));
                    }
                    shows(&a, content_type, &metadata)
                },
            );
            // Then from the cache again, with the new headers.
            let a = whole(via);
            assert_eq!(a.sha256, sha256(&body), "{what}, {who}");
            assert_eq!(a.x_cache(), Some("HIT"), "{what}, {who}: {a:?}");
            shows(&a, content_type, &metadata).unwrap();
        }
    }
    assert_eq!(r.a.fill_bytes(), SIZE as u64, "the same bytes filled again");
    assert_eq!(r.b.fill_bytes(), 0, "the same bytes filled again");
}

/// An origin whose 304 shows `Last-Modified` (MinIO, AWS): one that differs from the
/// stored one has the headers taken afresh at once, whatever `--cache-header-ttl`.
#[test]
fn a_304_showing_another_last_modified_refreshes_the_headers_before_serving() {
    let w = Wire::start();
    let body = bytes(SIZE, 51);
    let path = "/bkt/rewritten";
    w.origin.put(
        path,
        Object::new(body.clone(), "same")
            .with_header("x-amz-meta-color", "blue")
            .modified("Mon, 01 Jan 2024 00:00:00 GMT"),
    );
    assert_body(&w.get(path, &[]), 200, &body, "MISS", "first");
    w.sk.wait_filled(SIZE as u64);
    assert_body(&w.get(path, &[]), 200, &body, "HIT", "second");
    let before = w.origin.asked_for(path).len();

    // The same bytes written again: the same ETag, another Last-Modified.
    w.origin.put(
        path,
        Object::new(body.clone(), "same")
            .with_header("x-amz-meta-color", "red")
            .modified("Tue, 02 Jan 2024 00:00:00 GMT"),
    );
    let res = w.get(path, &[]);
    assert_body(&res, 200, &body, "HIT", "written again");
    assert_eq!(
        res.header("x-amz-meta-color"),
        Some("red"),
        "{:?}",
        res.headers
    );
    assert_eq!(
        res.header("last-modified"),
        Some("Tue, 02 Jan 2024 00:00:00 GMT")
    );
    let asked = w.origin.asked_for(path);
    let statuses: Vec<u16> = asked[before..].iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        vec![304, 200],
        "the 304, then the headers asked for"
    );
    assert_eq!(asked[before + 1].header("if-none-match"), None);

    // Stored for the next reads: a 304 alone again.
    let res = w.get(path, &[]);
    assert_body(&res, 200, &body, "HIT", "then");
    assert_eq!(res.header("x-amz-meta-color"), Some("red"));
    let asked = w.origin.asked_for(path);
    assert_eq!(asked.len(), before + 3);
    assert_eq!(asked[before + 2].status, 304);
    assert_eq!(
        w.sk.fill_bytes(),
        SIZE as u64,
        "the same bytes filled again"
    );
}
