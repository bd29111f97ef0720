//! Ranged reads through the cache as Parquet readers make them: a footer, then one
//! range per column chunk at offsets no block lines up with. Every byte a client read
//! serves a later range, on any sidecar of the bucket, whatever the boundaries of
//! the reads that stored it; a range the cache cannot cover costs one trip to the
//! origin, as without the cache. A raw origin counts the body bytes it sends; Garage
//! is the origin where real signatures and refusals matter.

use serde_json::json;

use crate::cache_wire::{assert_body, cached_sidekick, BLOCK};
use crate::common::boto::{Boto, S3Answer, S3Key};
use crate::common::cache_store::CacheStore;
use crate::common::garage::{Garage, REGION};
use crate::common::origin::{Object, Origin};
use crate::common::*;

/// Ten whole blocks and a partial one.
const SIZE: usize = 10 * BLOCK + 777;
const PATH: &str = "/bkt/t.parquet";

/// (Range header, first byte, last byte).
type Ranged = (String, usize, usize);

fn range(first: usize, last: usize) -> Ranged {
    (format!("bytes={first}-{last}"), first, last)
}

/// A Parquet reader's reads: the footer's length, the footer, then twelve column
/// chunks, none of whose ends is on a block boundary.
fn parquet_reads() -> Vec<Ranged> {
    let footer = SIZE - 65536;
    let mut reads = vec![
        ("bytes=-8".to_string(), SIZE - 8, SIZE - 1),
        ("bytes=-65536".to_string(), footer, SIZE - 1),
    ];
    let bounds = [
        4, 10_003, 71_234, 150_001, 190_000, 262_145, 300_007, 333_333, 400_000, 480_500, 530_000,
        560_123, footer,
    ];
    for pair in bounds.windows(2) {
        assert!(pair[0] % BLOCK != 0 && pair[1] % BLOCK != 0);
        reads.push(range(pair[0], pair[1] - 1));
    }
    reads
}

/// A raw origin, a Garage cache store and sidekicks A and B on the same bucket.
struct Two {
    origin: Origin,
    _g: Garage,
    a: Sidekick,
    b: Sidekick,
}

impl Two {
    fn start() -> Two {
        let g = Garage::start(1);
        let store = CacheStore::in_garage(&g, "ranges-cache");
        let origin = Origin::start();
        // Headers shown by A's fills stay confirmed for the whole test: every read by
        // B is a revalidation.
        let flags = [("--cache-header-ttl", "1h")];
        let a = cached_sidekick(&store, &flags, &origin.url());
        let b = cached_sidekick(&store, &flags, &origin.url());
        Two {
            origin,
            _g: g,
            a,
            b,
        }
    }
}

fn read(sk: &Sidekick, (range, ..): &Ranged) -> Response {
    request(sk.addr, "GET", PATH, &[("Range", range)], b"")
}

/// `sk` reads every range of `reads`: each its bytes of `body`, served as `x_cache`.
fn read_all(sk: &Sidekick, reads: &[Ranged], body: &[u8], x_cache: &str, who: &str) {
    for r in reads {
        let what = format!("{who} {}", r.0);
        assert_body(&read(sk, r), 206, &body[r.1..=r.2], x_cache, &what);
    }
}

fn filled(reads: &[Ranged]) -> u64 {
    reads.iter().map(|(_, a, z)| (z - a + 1) as u64).sum()
}

#[test]
fn a_parquet_read_by_one_sidecar_is_all_hits_on_another_with_no_body_from_the_origin() {
    let t = Two::start();
    let body = bytes(SIZE, 40);
    t.origin.put(PATH, Object::new(body.clone(), "pq1"));
    let reads = parquet_reads();
    assert_eq!(reads.len(), 14);

    read_all(&t.a, &reads, &body, "MISS", "A");
    // A range the cache cannot cover goes once, as the client sent it.
    let asked = t.origin.asked_for(PATH);
    assert_eq!(
        asked.len(),
        reads.len(),
        "one origin request per read: {asked:?}"
    );
    for (x, r) in asked.iter().zip(&reads) {
        assert_eq!(
            x.all("range"),
            vec![r.0.as_str()],
            "a signed Range is widened"
        );
        assert_eq!(x.header("if-none-match"), None, "{}: conditional", r.0);
        assert_eq!(x.status, 206);
    }
    // Every byte A read is stored: the blocks and the pieces at each range's edges.
    t.a.wait_filled(filled(&reads));

    read_all(&t.b, &reads, &body, "HIT", "B");
    let asked = t.origin.asked_for(PATH);
    let by_b = &asked[reads.len()..];
    assert_eq!(
        by_b.len(),
        reads.len(),
        "one origin request per read: {by_b:?}"
    );
    for (x, r) in by_b.iter().zip(&reads) {
        assert_eq!(x.all("range"), vec![r.0.as_str()]);
        assert_eq!(x.all("if-none-match"), vec!["\"pq1\""], "{}", r.0);
        assert_eq!(
            (x.status, x.body_len),
            (304, 0),
            "{}: the origin sent bytes",
            r.0
        );
    }
    assert_eq!(t.b.fill_bytes(), 0, "B filled again");
}

#[test]
fn a_range_read_before_in_parts_with_other_boundaries_hits() {
    let t = Two::start();
    let body = bytes(SIZE, 41);
    t.origin.put(PATH, Object::new(body.clone(), "pq2"));
    // Columns 1 and 4, then 2 and 3; then a query reads 1 to 4 as one range.
    let columns = [
        range(1000, 70_000),
        range(200_000, 270_000),
        range(70_001, 140_000),
        range(140_001, 199_999),
    ];
    read_all(&t.a, &columns, &body, "MISS", "A");
    t.a.wait_filled(filled(&columns));
    let asked = t.origin.asked_for(PATH).len();

    let all = range(1000, 270_000);
    // A remembers what it stored; B finds it in the store (one listing per block
    // whose bytes are in several pieces).
    for (who, sk) in [("A", &t.a), ("B", &t.b)] {
        assert_body(&read(sk, &all), 206, &body[1000..=270_000], "HIT", who);
    }
    let by_hits = &t.origin.asked_for(PATH)[asked..];
    assert_eq!(by_hits.len(), 2, "{by_hits:?}");
    assert!(
        by_hits.iter().all(|x| (x.status, x.body_len) == (304, 0)),
        "{by_hits:?}"
    );

    // Partly read before: the exact bytes, from the origin, in one trip.
    for r in [range(500, 1500), range(269_000, 280_000)] {
        let before = t.origin.asked_for(PATH).len();
        let res = read(&t.b, &r);
        assert_eq!(res.status, 206, "{}", r.0);
        assert!(res.body == body[r.1..=r.2], "{}: wrong bytes", r.0);
        let asked = t.origin.asked_for(PATH);
        assert_eq!(asked.len(), before + 1, "{}: a second trip", r.0);
        assert_eq!(asked[before].header("if-none-match"), None, "{}", r.0);
    }
}

/// Garage as the origin and as the cache store, boto3 as the client, sidekicks A
/// and B on the cache bucket.
pub(crate) struct Real {
    pub g: Garage,
    pub store: CacheStore,
    pub boto: Boto,
    pub a: Sidekick,
    pub b: Sidekick,
    pub via_a: S3Key,
    pub via_b: S3Key,
    pub direct: S3Key,
}

impl Real {
    pub fn start(flags: &[(&str, &str)]) -> Real {
        let boto = Boto::start();
        let g = Garage::start(1);
        let store = CacheStore::in_garage(&g, "real-ranges-cache");
        let flags: Vec<&str> = flags.iter().flat_map(|&(f, v)| [f, v]).collect();
        let a = Sidekick::start_on_garage(&g, &store, &flags);
        let b = Sidekick::start_on_garage(&g, &store, &flags);
        let direct = S3Key {
            endpoint: g.endpoint(0),
            access: g.access_key.clone(),
            secret: g.secret_key.clone(),
            region: REGION.into(),
        };
        Real {
            via_a: direct.at(&format!("http://{}", a.addr)),
            via_b: direct.at(&format!("http://{}", b.addr)),
            direct,
            g,
            store,
            boto,
            a,
            b,
        }
    }

    fn get(&self, via: &S3Key, name: &str, range: &str) -> S3Answer {
        self.boto
            .get(via, &self.g.bucket, name, json!({"range": range}))
    }
}

#[track_caller]
fn assert_part(
    a: &S3Answer,
    body: &[u8],
    (first, last): (usize, usize),
    x_cache: &str,
    what: &str,
) {
    assert_eq!(a.status, 206, "{what}: {a:?}");
    assert_eq!(
        a.header("content-range"),
        Some(&*format!("bytes {first}-{last}/{}", body.len())),
        "{what}"
    );
    assert_eq!(a.sha256, sha256(&body[first..=last]), "{what}: wrong bytes");
    assert_eq!(a.x_cache(), Some(x_cache), "{what}: {:?}", a.headers);
}

#[test]
fn ranges_of_every_shape_are_exact_and_hit_on_another_sidecar() {
    let r = Real::start(&[]);
    let size = 3 * BLOCK + 1000;
    let body = bytes(size, 42);
    r.boto.put(&r.direct, &r.g.bucket, "shapes", &body);
    let b = BLOCK;
    // (what, Range header, first, last)
    let shapes = [
        ("inside one block", "bytes=100-5000".to_string(), 100, 5000),
        (
            "across two blocks",
            format!("bytes={}-{}", b - 300, b + 300),
            b - 300,
            b + 300,
        ),
        (
            "the last partial block",
            format!("bytes={}-", 3 * b),
            3 * b,
            size - 1,
        ),
        ("a suffix", "bytes=-1234".to_string(), size - 1234, size - 1),
        (
            "to the object's end",
            format!("bytes={}-{}", 2 * b + 5, size + 99),
            2 * b + 5,
            size - 1,
        ),
    ];
    let mut stored = 0;
    for (what, range, first, last) in &shapes {
        let a = r.get(&r.via_a, "shapes", range);
        assert_part(
            &a,
            &body,
            (*first, *last),
            "MISS",
            &format!("{what}, first read"),
        );
        stored += (last - first + 1) as u64;
        r.a.wait_filled(stored);
        let a = r.get(&r.via_a, "shapes", range);
        assert_part(&a, &body, (*first, *last), "HIT", &format!("{what}, again"));
        let a = r.get(&r.via_b, "shapes", range);
        assert_part(&a, &body, (*first, *last), "HIT", &format!("{what}, on B"));
    }

    // A corrupt piece: the right bytes all the same, from the origin.
    let pieces = r.store.list(&r.boto, "pieces/");
    let (piece, _) = pieces
        .iter()
        .find(|(k, _)| k.ends_with("/100-5000"))
        .unwrap_or_else(|| panic!("no piece of bytes 100-5000 in {pieces:?}"));
    let mut raw = r.boto.get_raw(&r.store.key, &r.store.bucket, piece);
    raw[16 + 7] ^= 0x20;
    r.boto.put(&r.store.key, &r.store.bucket, piece, &raw);
    let a = r.get(&r.via_a, "shapes", "bytes=100-5000");
    assert_part(&a, &body, (100, 5000), "MISS", "a corrupt piece");
    // That miss stored the piece again.
    r.a.wait_filled(stored + 4901);
    let a = r.get(&r.via_b, "shapes", "bytes=100-5000");
    assert_part(&a, &body, (100, 5000), "HIT", "the piece stored again");

    // Overwritten between A and B: B reads the new bytes.
    let new = bytes(size, 43);
    r.boto.put(&r.direct, &r.g.bucket, "shapes", &new);
    let a = r.get(
        &r.via_b,
        "shapes",
        &format!("bytes={}-{}", b - 300, b + 300),
    );
    assert_part(&a, &new, (b - 300, b + 300), "MISS", "overwritten");
}

#[test]
fn a_range_pieces_could_serve_is_refused_to_a_client_the_origin_refuses() {
    let r = Real::start(&[]);
    let body = bytes(2 * BLOCK + 10, 44);
    r.boto.put(&r.direct, &r.g.bucket, "secret/cols", &body);
    let range = "bytes=1000-70000";
    let a = r.get(&r.via_a, "secret/cols", range);
    assert_part(&a, &body, (1000, 70000), "MISS", "fill");
    r.a.wait_filled(69001);
    for via in [&r.via_a, &r.via_b] {
        let a = r.get(via, "secret/cols", range);
        assert_part(&a, &body, (1000, 70000), "HIT", "cached");
    }
    for (who, sk, via) in [("A", &r.a, &r.via_a), ("B", &r.b, &r.via_b)] {
        let wrong = via.with_secret(&"0".repeat(via.secret.len()));
        let a = r.get(&wrong, "secret/cols", range);
        assert_eq!(a.status, 403, "{who}, wrong secret: {a:?}");
        assert_eq!(a.code.as_deref(), Some("AccessDenied"));
        assert_ne!(a.sha256, sha256(&body[1000..=70000]));
        let res = request(
            sk.addr,
            "GET",
            &format!("/{}/secret/cols", r.g.bucket),
            &[("Range", range)],
            b"",
        );
        assert_eq!(res.status, 403, "{who}, unsigned: {}", res.text());
        assert!(
            !res.body.windows(64).any(|w| w == &body[1000..1064]),
            "{who}, unsigned: cached bytes"
        );
    }
}
