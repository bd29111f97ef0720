//! The S3 shared cache against a real S3 origin: boto3 through sidekick to a Garage
//! cluster, whose second bucket (with a key allowed on it alone) is the cache store.
//! Each test proves one rule of the cache with real signatures, ETags and ranges.

use serde_json::json;

use crate::common::boto::{Boto, S3Answer, S3Key};
use crate::common::cache_store::{CacheStore, CACHE_WAIT};
use crate::common::garage::{Garage, REGION};
use crate::common::*;

const BLOCK: usize = 64 << 10;
/// Three whole blocks and a partial one.
const SIZE: usize = 3 * BLOCK + 1000;
/// One node is enough for most rules, and quick to start.
const NODES: usize = 1;

/// A Garage origin, its cache bucket, boto3, and sidekick in front of the origin
/// with the cache on.
struct Real {
    g: Garage,
    store: CacheStore,
    boto: Boto,
    sk: Sidekick,
    /// The origin's key, signing for sidekick.
    via: S3Key,
    /// The origin's key, signing for Garage node 0 directly.
    direct: S3Key,
}

impl Real {
    fn start() -> Real {
        Self::on(NODES)
    }

    /// Garage on `nodes` nodes: the origin's site and the cache store's.
    fn on(nodes: usize) -> Real {
        let boto = Boto::start();
        let g = Garage::start(nodes);
        let store = CacheStore::in_garage(&g, "sidekick-cache");
        let sk = Sidekick::start_on_garage(&g, &store, &[]);
        let direct = S3Key {
            endpoint: g.endpoint(0),
            access: g.access_key.clone(),
            secret: g.secret_key.clone(),
            region: REGION.into(),
        };
        let via = direct.at(&format!("http://{}", sk.addr));
        Real {
            g,
            store,
            boto,
            sk,
            via,
            direct,
        }
    }

    /// PUTs `body` at `name` on the origin (directly); its ETag.
    fn put(&self, name: &str, body: &[u8]) -> String {
        self.boto.put(&self.direct, &self.g.bucket, name, body)
    }

    fn get(&self, name: &str, args: serde_json::Value) -> S3Answer {
        self.boto.get(&self.via, &self.g.bucket, name, args)
    }
}

/// The answer is a whole object with exactly `body`, served as `x_cache`.
fn assert_whole(a: &S3Answer, body: &[u8], x_cache: &str, what: &str) {
    assert_eq!(a.status, 200, "{what}: {a:?}");
    assert_eq!(a.len, body.len() as u64, "{what}: length");
    assert_eq!(a.sha256, sha256(body), "{what}: not the object's bytes");
    assert_eq!(
        a.x_cache(),
        Some(x_cache),
        "{what}: X-Cache in {:?}",
        a.headers
    );
}

/// What the cache relies on in its origin, checked on Garage directly: a 304 that
/// names the ETag, also with a Range and on a presigned URL (If-None-Match is not
/// signed), and ranges answered as RFC 9110 says.
#[test]
fn garage_answers_the_conditional_gets_the_cache_relies_on() {
    let boto = Boto::start();
    let g = Garage::start(1);
    let key = S3Key {
        endpoint: g.endpoint(0),
        access: g.access_key.clone(),
        secret: g.secret_key.clone(),
        region: REGION.into(),
    };
    let body = bytes(SIZE, 1);
    let etag = boto.put(&key, &g.bucket, "facts", &body);
    let get = |args| boto.get(&key, &g.bucket, "facts", args);

    let a = get(json!({"if_none_match": etag}));
    eprintln!("If-None-Match (match): {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 304);
    assert_eq!(
        a.header("etag"),
        Some(etag.as_str()),
        "the 304 names the ETag"
    );

    let a = get(json!({"if_none_match": etag, "range": "bytes=100-199"}));
    eprintln!(
        "If-None-Match (match) + Range: {} {:?}",
        a.status, a.headers
    );
    assert_eq!(a.status, 304, "If-None-Match is honoured with a Range");

    let a = get(json!({"if_none_match": "\"0000\"", "range": "bytes=100-199"}));
    eprintln!(
        "If-None-Match (other) + Range: {} {:?}",
        a.status, a.headers
    );
    assert_eq!(a.status, 206);
    assert_eq!(
        a.header("content-range"),
        Some(&*format!("bytes 100-199/{SIZE}"))
    );
    assert_eq!(a.sha256, sha256(&body[100..200]));

    let a = get(json!({"range": format!("bytes={SIZE}-")}));
    eprintln!("unsatisfiable Range: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 416);
    assert_eq!(a.header("content-range"), Some(&*format!("bytes */{SIZE}")));

    let a = get(json!({"if_none_match": etag, "range": format!("bytes={SIZE}-")}));
    eprintln!(
        "If-None-Match (match) + unsatisfiable Range: {} {:?}",
        a.status, a.headers
    );
    // So a cache that revalidates an unsatisfiable range must answer the 416 itself.
    assert_eq!(a.status, 304, "If-None-Match is evaluated before the range");

    let url = boto.presign(&key, &g.bucket, "facts");
    let a = boto.fetch(&url, json!({}));
    assert_eq!(a.status, 200, "presigned GET: {a:?}");
    assert_eq!(a.sha256, sha256(&body));
    let a = boto.fetch(&url, json!({"If-None-Match": etag}));
    eprintln!("presigned + If-None-Match: {} {:?}", a.status, a.headers);
    assert_eq!(a.status, 304, "a presigned GET with If-None-Match added");
    assert_eq!(a.header("etag"), Some(etag.as_str()));

    let a = get(json!({"if_match": "\"0000\""}));
    eprintln!(
        "If-Match (other): {} {:?} {:?}",
        a.status, a.code, a.headers
    );
    assert_eq!(a.status, 412);

    let a = get(json!({"range": "bytes=0-1,5-6"}));
    eprintln!("two ranges: {} {:?} len {}", a.status, a.headers, a.len);
    assert_eq!(
        (a.status, a.len),
        (200, SIZE as u64),
        "several ranges: the whole object"
    );
}

/// CRC32C (Castagnoli), as each stored block carries it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The stored blocks of the one object in the cache: (key, index), by index.
fn blocks(r: &Real) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = r
        .store
        .list(&r.boto, "blocks/")
        .into_iter()
        .map(|(key, _)| {
            let index = key.rsplit('/').next().and_then(|i| i.parse().ok());
            let index = index.unwrap_or_else(|| panic!("block key {key} ends in no index"));
            (key, index)
        })
        .collect();
    out.sort_by_key(|(_, i)| *i);
    out
}

#[test]
fn second_read_hits_with_exact_bytes_also_from_another_sidecar() {
    // Three nodes: the blocks are written and read across every cache node.
    let r = Real::on(3);
    let body = bytes(SIZE, 2);
    r.put("data/one.parquet", &body);

    let first = r.get("data/one.parquet", json!({}));
    assert_whole(&first, &body, "MISS", "first read");
    r.sk.wait_filled(SIZE as u64);
    let second = r.get("data/one.parquet", json!({}));
    assert_whole(&second, &body, "HIT", "second read");
    assert_eq!(second.header("etag"), first.header("etag"));
    assert_eq!(second.header("content-type"), first.header("content-type"));

    // The bucket holds what the layout says: one metadata object and every block,
    // each a 16-byte header (SKB1, length, CRC32C) and the object's own bytes.
    r.store.wait_objects(&r.boto, "meta/", 1);
    assert_eq!(r.store.list(&r.boto, "meta/").len(), 1);
    let stored = blocks(&r);
    let indexes: Vec<usize> = stored.iter().map(|(_, i)| *i).collect();
    assert_eq!(indexes, vec![0, 1, 2, 3], "{stored:?}");
    for (key, i) in &stored {
        let raw = r.boto.get_raw(&r.store.key, &r.store.bucket, key);
        let data = &body[i * BLOCK..((i + 1) * BLOCK).min(SIZE)];
        assert_eq!(&raw[..4], b"SKB1", "{key}");
        assert_eq!(
            raw[4..12],
            (data.len() as u64).to_be_bytes(),
            "{key}: length"
        );
        assert_eq!(raw[12..16], crc32c(data).to_be_bytes(), "{key}: CRC32C");
        assert!(&raw[16..] == data, "{key}: not block {i} of the object");
    }

    // The cache's key cannot read the origin's bucket: hits come from the cache.
    let a = r
        .boto
        .get(&r.store.key, &r.g.bucket, "data/one.parquet", json!({}));
    assert_eq!(a.status, 403, "the cache key reads the origin bucket");

    // Another sidecar on the same cache bucket reads it from the cache at once.
    let other = Sidekick::start_on_garage(&r.g, &r.store, &[]);
    let via_other = r.via.at(&format!("http://{}", other.addr));
    // ... by another client process.
    let other_client = Boto::start();
    let a = other_client.get(&via_other, &r.g.bucket, "data/one.parquet", json!({}));
    assert_whole(&a, &body, "HIT", "read through another sidecar");
    assert_eq!(other.fill_bytes(), 0, "the other sidecar filled again");

    // The cache's key is sidekick's alone: nothing of it reaches a log or a trace.
    for sk in [&r.sk, &other] {
        let log = sk.log.lock().unwrap().join("\n");
        let out = sk.out.lock().unwrap().join("\n");
        assert!(
            !log.contains(&r.store.key.secret),
            "the secret in the log:\n{log}"
        );
        assert!(
            !out.contains(&r.store.key.secret),
            "the secret in the trace"
        );
    }
}

#[test]
fn ranged_reads_of_a_cached_object_hit_with_exact_bytes() {
    let r = Real::start();
    let body = bytes(SIZE, 3);
    r.put("ranged", &body);
    assert_whole(&r.get("ranged", json!({})), &body, "MISS", "fill");
    r.sk.wait_filled(SIZE as u64);

    let b = BLOCK;
    let last = SIZE - 1;
    // (Range header, first byte, last byte)
    let cases = [
        ("bytes=0-99".to_string(), 0, 99),
        (format!("bytes={}-{}", b - 10, b + 10), b - 10, b + 10),
        (format!("bytes={}-{}", b, 2 * b - 1), b, 2 * b - 1),
        (format!("bytes=100-{}", 3 * b + 5), 100, 3 * b + 5),
        (format!("bytes={}-", 3 * b + 10), 3 * b + 10, last),
        (format!("bytes={}-", b / 2), b / 2, last),
        ("bytes=-500".to_string(), SIZE - 500, last),
        ("bytes=-70000".to_string(), SIZE - 70000, last),
        (format!("bytes=10-{}", SIZE * 2), 10, last),
        (format!("bytes=-{}", SIZE * 2), 0, last),
        (format!("bytes={last}-{last}"), last, last),
    ];
    for (range, a, z) in cases {
        let res = r.get("ranged", json!({"range": range}));
        assert_eq!(res.status, 206, "{range}: {res:?}");
        assert_eq!(
            res.header("content-range"),
            Some(&*format!("bytes {a}-{z}/{SIZE}")),
            "{range}"
        );
        assert_eq!(res.len, (z - a + 1) as u64, "{range}: length");
        assert_eq!(res.sha256, sha256(&body[a..=z]), "{range}: wrong bytes");
        assert_eq!(res.x_cache(), Some("HIT"), "{range}: {:?}", res.headers);
    }

    let res = r.get("ranged", json!({"range": format!("bytes={SIZE}-")}));
    assert_eq!(res.status, 416, "{res:?}");
    assert_eq!(
        res.header("content-range"),
        Some(&*format!("bytes */{SIZE}"))
    );

    let res = r.get("ranged", json!({"range": "bytes=0-1,5-6"}));
    assert_eq!(
        res.x_cache(),
        Some("BYPASS"),
        "several ranges: {:?}",
        res.headers
    );
    assert_eq!(
        (res.status, res.len),
        (200, SIZE as u64),
        "Garage's own answer"
    );
    assert_eq!(r.sk.fill_bytes(), SIZE as u64, "a range read filled again");
}

#[test]
fn a_cached_object_is_still_refused_to_a_client_the_origin_refuses() {
    let r = Real::start();
    let body = bytes(SIZE, 4);
    r.put("secret/report", &body);
    assert_whole(&r.get("secret/report", json!({})), &body, "MISS", "fill");
    r.sk.wait_filled(SIZE as u64);
    assert_whole(&r.get("secret/report", json!({})), &body, "HIT", "cached");

    let wrong = r.via.with_secret(&"0".repeat(r.via.secret.len()));
    let sneaky = [
        json!({}),
        json!({"headers": {"Cache-Control": "only-if-cached"}}),
        json!({"headers": {"Cache-Control": "max-age=999999"}}),
        json!({"headers": {"Pragma": "no-cache", "Cache-Control": "max-stale"}}),
        json!({"range": "bytes=0-99", "headers": {"Cache-Control": "only-if-cached"}}),
    ];
    for args in sneaky {
        let a = r
            .boto
            .get(&wrong, &r.g.bucket, "secret/report", args.clone());
        assert_eq!(a.status, 403, "wrong secret, {args}: {a:?}");
        assert_eq!(
            a.code.as_deref(),
            Some("AccessDenied"),
            "{args}: Garage's refusal"
        );
        assert_ne!(a.sha256, sha256(&body), "{args}: cached bytes");
    }
    for headers in [vec![], vec![("Cache-Control", "only-if-cached")]] {
        let res = request(
            r.sk.addr,
            "GET",
            &format!("/{}/secret/report", r.g.bucket),
            &headers,
            b"",
        );
        assert_eq!(res.status, 403, "unsigned, {headers:?}: {}", res.text());
        assert!(
            !res.body.windows(64).any(|w| w == &body[..64]),
            "unsigned: cached bytes"
        );
    }
    // Nobody's refusal evicted the object for the others.
    assert_whole(
        &r.get("secret/report", json!({})),
        &body,
        "HIT",
        "after refusals",
    );
    assert_eq!(r.sk.fill_bytes(), SIZE as u64);
}

#[test]
fn an_overwrite_is_read_new_and_a_delete_is_a_404() {
    let r = Real::start();
    let old = bytes(SIZE, 5);
    r.put("mutable", &old);
    assert_whole(&r.get("mutable", json!({})), &old, "MISS", "v1 first");
    r.sk.wait_filled(SIZE as u64);
    assert_whole(&r.get("mutable", json!({})), &old, "HIT", "v1 second");

    let new = bytes(SIZE, 6);
    r.put("mutable", &new);
    assert_whole(&r.get("mutable", json!({})), &new, "MISS", "v2 first");
    r.sk.wait_filled(2 * SIZE as u64);
    assert_whole(&r.get("mutable", json!({})), &new, "HIT", "v2 second");
    let part = r.get("mutable", json!({"range": "bytes=1000-1999"}));
    assert_eq!(part.sha256, sha256(&new[1000..2000]), "v2 range: {part:?}");

    // A shorter version ends in a partial block where the old one had data.
    let short = bytes(BLOCK + 7, 7);
    r.put("mutable", &short);
    assert_whole(&r.get("mutable", json!({})), &short, "MISS", "v3 first");
    r.sk.wait_filled(2 * SIZE as u64 + short.len() as u64);
    assert_whole(&r.get("mutable", json!({})), &short, "HIT", "v3 second");

    r.boto.delete(&r.direct, &r.g.bucket, "mutable");
    let gone = r.get("mutable", json!({}));
    assert_eq!(gone.status, 404, "{gone:?}");
    assert_eq!(gone.code.as_deref(), Some("NoSuchKey"));
}

#[test]
fn a_presigned_get_misses_then_hits() {
    let r = Real::start();
    let body = bytes(SIZE, 8);
    r.put("shared/link", &body);
    let url = r.boto.presign(&r.via, &r.g.bucket, "shared/link");
    let a = r.boto.fetch(&url, json!({}));
    assert_eq!(
        (a.status, a.sha256.as_str()),
        (200, &*sha256(&body)),
        "{a:?}"
    );
    assert_eq!(a.x_cache(), Some("MISS"));
    r.sk.wait_filled(SIZE as u64);
    let a = r.boto.fetch(&url, json!({}));
    assert_eq!(
        (a.status, a.sha256.as_str()),
        (200, &*sha256(&body)),
        "{a:?}"
    );
    assert_eq!(a.x_cache(), Some("HIT"), "{:?}", a.headers);
    let a = r.boto.fetch(&url, json!({"Range": "bytes=70000-70999"}));
    assert_eq!(a.status, 206, "{a:?}");
    assert_eq!(a.sha256, sha256(&body[70000..71000]));
    assert_eq!(a.x_cache(), Some("HIT"));

    // A presigned URL with a response override is not the object's own answer.
    let mut bad = url.clone();
    bad.push_str("&response-content-type=text%2Fplain");
    let a = r.boto.fetch(&bad, json!({}));
    assert_eq!(a.x_cache(), Some("BYPASS"), "{a:?}");
}

#[test]
fn a_clients_own_conditions_reach_the_origin_and_its_answer_the_client() {
    let r = Real::start();
    let body = bytes(SIZE, 9);
    let etag = r.put("cond", &body);
    assert_whole(&r.get("cond", json!({})), &body, "MISS", "fill");
    r.sk.wait_filled(SIZE as u64);

    let a = r.get("cond", json!({"if_none_match": etag}));
    assert_eq!(a.status, 304, "matching If-None-Match: {a:?}");
    assert_eq!(a.len, 0);
    let a = r.get("cond", json!({"if_none_match": "\"0000\""}));
    assert_eq!(
        (a.status, a.sha256.as_str()),
        (200, &*sha256(&body)),
        "{a:?}"
    );
    let a = r.get("cond", json!({"if_match": "\"0000\""}));
    assert_eq!(a.status, 412, "If-Match another ETag: {a:?}");
    let a = r.get("cond", json!({"if_match": etag, "range": "bytes=5-9"}));
    assert_eq!(
        (a.status, a.sha256.as_str()),
        (206, &*sha256(&body[5..10])),
        "{a:?}"
    );
}

#[test]
fn requests_the_cache_must_not_answer_pass_through() {
    let r = Real::start();
    let body = bytes(SIZE, 10);
    r.put("other", &body);
    assert_whole(&r.get("other", json!({})), &body, "MISS", "fill");
    r.sk.wait_filled(SIZE as u64);

    let cases = [
        ("SSE-C", json!({"sse_c": true})),
        ("versionId", json!({"version_id": "null"})),
        ("partNumber", json!({"part_number": 1})),
        (
            "response-content-type",
            json!({"response_content_type": "text/plain"}),
        ),
    ];
    for (what, args) in cases {
        let a = r.get("other", args);
        assert_eq!(a.x_cache(), Some("BYPASS"), "{what}: {a:?}");
    }
    let a = r.boto.head(&r.via, &r.g.bucket, "other");
    assert_eq!(a.status, 200, "HEAD: {a:?}");
    assert_eq!(a.x_cache(), Some("BYPASS"), "HEAD: {a:?}");
    assert_eq!(a.header("content-length"), Some(&*SIZE.to_string()));

    let put = r.boto.call(
        &r.via,
        "put",
        json!({"bucket": r.g.bucket, "key": "other", "body": hex(b"new")}),
    );
    assert_eq!(put["status"], 200, "{put}");
    assert_eq!(put["headers"]["x-cache"], "BYPASS", "PUT: {put}");
    assert_eq!(r.sk.fill_bytes(), SIZE as u64, "a bypass filled");
    let a = r.get("other", json!({}));
    assert_whole(&a, b"new", "MISS", "after the PUT through sidekick");
}

/// A read: what it is, its range (first and last byte; none: the whole object), and
/// the X-Cache it must get (none: either).
type Read = (&'static str, Option<(usize, usize)>, Option<&'static str>);

#[test]
fn a_corrupt_or_missing_block_is_read_from_the_origin() {
    let r = Real::start();
    let body = bytes(SIZE, 11);
    r.put("fragile", &body);
    assert_whole(&r.get("fragile", json!({})), &body, "MISS", "fill");
    r.sk.wait_filled(SIZE as u64);
    assert_whole(&r.get("fragile", json!({})), &body, "HIT", "cached");
    let stored = blocks(&r);
    assert_eq!(stored.len(), 4, "{stored:?}");
    let cache = &r.store.key;

    // Block 1: garbage of the right size.
    r.boto
        .put(cache, &r.store.bucket, &stored[1].0, &bytes(16 + BLOCK, 99));
    // Block 2: its header intact, one data byte flipped (only the CRC tells).
    let mut raw = r.boto.get_raw(cache, &r.store.bucket, &stored[2].0);
    raw[16 + 1234] ^= 0x40;
    r.boto.put(cache, &r.store.bucket, &stored[2].0, &raw);
    let b = BLOCK;
    let corrupt = [
        (
            "garbage block 1, a range in it",
            Some((b + 10, b + 20)),
            Some("MISS"),
        ),
        (
            "flipped block 2, a range in it",
            Some((2 * b, 2 * b + 2000)),
            Some("MISS"),
        ),
        ("intact block 0", Some((0, 999)), Some("HIT")),
        (
            "a range from block 0 into block 1",
            Some((1000, b + 1000)),
            Some("MISS"),
        ),
        ("whole object, blocks 1 and 2 corrupt", None, Some("MISS")),
        ("whole object again", None, None),
    ];
    let deleted = [
        (
            "a suffix in deleted block 3",
            Some((SIZE - 100, SIZE - 1)),
            Some("MISS"),
        ),
        ("whole object, block 3 deleted", None, None),
    ];
    let mut got = Vec::new();
    let mut want = Vec::new();
    let mut read = |cases: &[Read]| {
        for &(what, range, x_cache) in cases {
            let (status, part, args) = match range {
                Some((a, z)) => (
                    206,
                    &body[a..=z],
                    json!({"range": format!("bytes={a}-{z}")}),
                ),
                None => (200, &body[..], json!({})),
            };
            let res = r.get("fragile", args);
            let right = res.cut.is_none() && res.sha256 == sha256(part);
            let seen = x_cache.and(res.x_cache().map(String::from));
            got.push((what, res.status, right, res.cut.clone(), seen));
            want.push((what, status, true, None, x_cache.map(String::from)));
        }
    };
    read(&corrupt);
    // The misses above refill in the background: block 3 is deleted once none is
    // writing, or a refill would put it back.
    let writing = || r.sk.sample_with("sidekick_cache_fills_writing", "");
    wait_for("the refills written", CACHE_WAIT, || writing() == Some(0.0));
    r.boto.delete(cache, &r.store.bucket, &stored[3].0);
    read(&deleted);
    assert_eq!(got, want, "(read, status, exact bytes, cut short, X-Cache)");
}
