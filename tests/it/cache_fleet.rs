//! A fleet on one cache bucket: several sidekicks reading one cold object at once
//! fetch it from the origin about once (the fill is claimed in the bucket), with a
//! store that ignores conditional writes (Garage) and with one that honours them,
//! and so do several reading one range of it whose edges fall inside blocks; a
//! claimer that dies mid-fill costs its waiters only time; many sidecars starting at
//! once all find the bucket usable.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use crate::common::cache_store::{CacheStore, CACHE_WAIT};
use crate::common::conditional_store::ConditionalStore;
use crate::common::garage::Garage;
use crate::common::origin::{Object, Origin};
use crate::common::*;

const BLOCK: usize = 64 << 10;

/// `n` sidekicks (one worker each) with the cache flags `cache`, in front of
/// `origin`, started together; each waits until its bucket check passed.
fn fleet(n: usize, cache: &[String], bucket: &str, origin: &str) -> Vec<Sidekick> {
    let mut args = cache.to_vec();
    args.extend(["--workers", "1", "--health-duration", "500ms", origin].map(String::from));
    let started: Vec<thread::JoinHandle<Sidekick>> = (0..n)
        .map(|_| {
            let args = args.clone();
            thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                Sidekick::start(&args)
            })
        })
        .collect();
    let fleet: Vec<Sidekick> = started.into_iter().map(|t| t.join().unwrap()).collect();
    for sk in &fleet {
        sk.wait_cache_ready(bucket);
        wait_for("the origin up", Duration::from_secs(10), || {
            sk.health() == 200
        });
    }
    fleet
}

/// Every sidekick of `fleet` GETs `path` (bytes `range` of it, when given) at the
/// same moment; the answers.
fn read_together(fleet: &[Sidekick], path: &str, range: Option<&str>) -> Vec<Response> {
    let barrier = Arc::new(Barrier::new(fleet.len()));
    let readers: Vec<_> = fleet
        .iter()
        .map(|sk| {
            let (addr, barrier, path) = (sk.addr, barrier.clone(), path.to_string());
            let range = range.map(|r| format!("bytes={r}"));
            thread::spawn(move || {
                let headers: Vec<(&str, &str)> = range.iter().map(|r| ("Range", &r[..])).collect();
                barrier.wait();
                request(addr, "GET", &path, &headers, b"")
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().unwrap()).collect()
}

/// Body bytes the origin sent (or began to send) for `path`.
fn origin_bytes(origin: &Origin, path: &str) -> u64 {
    origin.asked_for(path).iter().map(|a| a.body_len).sum()
}

fn claims(sk: &Sidekick, result: &str) -> f64 {
    sk.cache_metric(
        "sidekick_cache_claims_total",
        &format!("result=\"{result}\""),
    )
}

/// Eight sidecars read one cold object at once: every byte right, and the origin
/// sends its body at most twice (without claims across sidecars: eight times).
fn eight_read_once(fleet: &[Sidekick], origin: &Origin) {
    let size = 32 * BLOCK + 100;
    let body = bytes(size, 61);
    origin.put("/bkt/cold", Object::new(body.clone(), "c1"));
    // About 8 MB/s: the fill outlasts the sidecars' arrival.
    origin.pace(Duration::from_millis(2));
    let mut tags = Vec::new();
    for (i, res) in read_together(fleet, "/bkt/cold", None).iter().enumerate() {
        assert_eq!(res.status, 200, "sidecar {i}: {}", res.text());
        assert!(res.body == body, "sidecar {i}: not the object's bytes");
        tags.push(res.header("x-cache").unwrap_or("-").to_string());
    }
    assert_sent_about_once(fleet, origin, "/bkt/cold", size as u64, &tags);
}

/// `fleet` read `len` bytes of `path` at once (answers tagged `tags`): the origin sent
/// them at most twice, as one sidekick claimed the fill and others waited on it.
fn assert_sent_about_once(
    fleet: &[Sidekick],
    origin: &Origin,
    path: &str,
    len: u64,
    tags: &[String],
) {
    let sent = origin_bytes(origin, path);
    let won: f64 = fleet.iter().map(|sk| claims(sk, "won")).sum();
    let waited: f64 = fleet.iter().map(|sk| claims(sk, "waited")).sum();
    let times = sent as f64 / len as f64;
    eprintln!(
        "origin sent {sent} bytes ({times:.2}x those read); claims won {won}, waited {waited}; \
         X-Cache {tags:?}"
    );
    assert!(
        sent <= 2 * len,
        "the origin sent {times:.2}x the bytes read to {} sidecars",
        fleet.len()
    );
    assert!(won >= 1.0 && waited >= 1.0, "won {won}, waited {waited}");
}

#[test]
fn eight_sidecars_on_garage_fetch_a_cold_object_about_once() {
    let g = Garage::start(1);
    let store = CacheStore::in_garage(&g, "fleet-cache");
    let origin = Origin::start();
    let fleet = fleet(8, &store.flags(), &store.bucket, &origin.url());
    assert!(
        fleet[0].log_contains("fills are claimed best effort"),
        "Garage ignores conditional writes: {:?}",
        fleet[0].log.lock().unwrap()
    );
    eight_read_once(&fleet, &origin);
}

#[test]
fn eight_sidecars_on_a_store_with_conditional_writes_fetch_a_cold_object_about_once() {
    let store = ConditionalStore::start();
    let origin = Origin::start();
    let fleet = fleet(8, &store.flags("cond"), "cond", &origin.url());
    assert!(
        fleet[0].log_contains("fills are claimed atomically"),
        "{:?}",
        fleet[0].log.lock().unwrap()
    );
    let refused_at_start = store.refused();
    eight_read_once(&fleet, &origin);
    // The claim was created once; the others' If-None-Match: * was refused.
    assert_eq!(store.names("cond", "claims/").len(), 1);
    assert!(
        store.refused() > refused_at_start,
        "no conditional claim refused"
    );
}

/// Eight sidecars read one range of a cold object at once, its edges inside blocks:
/// the claimer's fill brings those bytes (whole blocks, pieces at the edges), the
/// others follow it, and the origin sends the range at most twice.
#[test]
fn eight_sidecars_reading_one_cold_range_fetch_it_about_once() {
    let store = ConditionalStore::start();
    let origin = Origin::start();
    let fleet = fleet(8, &store.flags("ranged"), "ranged", &origin.url());
    let body = bytes(32 * BLOCK + 100, 63);
    origin.put("/bkt/ranged", Object::new(body.clone(), "r1"));
    origin.pace(Duration::from_millis(2));
    let (first, last) = (1000, 10 * BLOCK + 499);
    let range = format!("{first}-{last}");
    let content_range = format!("bytes {first}-{last}/{}", body.len());
    let mut tags = Vec::new();
    for (i, res) in read_together(&fleet, "/bkt/ranged", Some(&range))
        .iter()
        .enumerate()
    {
        assert_eq!(res.status, 206, "sidecar {i}: {}", res.text());
        assert_eq!(res.header("content-range"), Some(&content_range[..]));
        assert!(
            res.body == body[first..=last],
            "sidecar {i}: not the range's bytes"
        );
        tags.push(res.header("x-cache").unwrap_or("-").to_string());
    }
    let len = (last - first + 1) as u64;
    assert_sent_about_once(&fleet, &origin, "/bkt/ranged", len, &tags);
}

#[test]
fn readers_waiting_on_a_claimer_killed_mid_fill_get_the_object_from_the_origin() {
    let g = Garage::start(1);
    let store = CacheStore::in_garage(&g, "orphan-cache");
    let origin = Origin::start();
    let size = 16 * BLOCK;
    let body = bytes(size, 62);
    origin.put("/bkt/orphan", Object::new(body.clone(), "o1"));
    let mut fleet = fleet(3, &store.flags(), &store.bucket, &origin.url());
    // About 650 KB/s: the claimer's fill takes over a second and a half.
    origin.pace(Duration::from_millis(25));
    let claimer = fleet.remove(0);
    let claimer_read = {
        let addr = claimer.addr;
        // The claimer's client sees its connection cut when the claimer dies.
        thread::spawn(move || {
            // As `request` sends it: the same Host names the same object.
            let raw = b"GET /bkt/orphan HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n";
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut s, raw).unwrap();
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut s, &mut sink);
        })
    };
    // Mid-fill: a block stored, the object not.
    wait_for("the claimer's first blocks", CACHE_WAIT, || {
        claimer.fill_bytes() >= BLOCK as u64
    });
    assert_eq!(claims(&claimer, "won"), 1.0);
    let readers: Vec<_> = fleet
        .iter()
        .map(|sk| {
            let addr = sk.addr;
            thread::spawn(move || request(addr, "GET", "/bkt/orphan", &[], b""))
        })
        .collect();
    for sk in &fleet {
        wait_for("the reader waiting on the claim", CACHE_WAIT, || {
            claims(sk, "waited") >= 1.0
        });
    }
    assert!(claimer.fill_bytes() < size as u64, "the fill ended first");
    claimer.signal("KILL");
    claimer_read.join().unwrap();
    for (i, r) in readers.into_iter().enumerate() {
        let res = r.join().unwrap();
        assert_eq!(res.status, 200, "reader {i}: {}", res.text());
        assert!(res.body == body, "reader {i}: not the object's bytes");
    }
    for sk in &fleet {
        assert_eq!(
            claims(sk, "expired"),
            1.0,
            "the dead claim was not given up"
        );
    }
}

#[test]
fn many_sidecars_starting_together_all_find_the_bucket_usable() {
    let g = Garage::start(1);
    let store = CacheStore::in_garage(&g, "crowd-cache");
    let origin = Origin::start();
    let fleet = fleet(16, &store.flags(), &store.bucket, &origin.url());
    for (i, sk) in fleet.iter().enumerate() {
        let log = sk.log.lock().unwrap();
        assert!(
            !log.iter().any(|l| l.contains("serving without cache")),
            "sidecar {i} failed its first bucket check:\n{}",
            log.join("\n")
        );
    }
    // Each left an object of its own, for the lifecycle rule.
    let boto = crate::common::boto::Boto::start();
    assert_eq!(store.list(&boto, "sidekick-check/").len(), 16);
}

/// A cold read shorter than a block (a Parquet footer) takes no claim in the bucket:
/// its round trips would cost more than the herd's few bytes.
#[test]
fn a_cold_footer_read_takes_no_claim() {
    let store = ConditionalStore::start();
    let origin = Origin::start();
    let fleet = fleet(2, &store.flags("footer"), "footer", &origin.url());
    let body = bytes(8 * BLOCK + 100, 64);
    origin.put("/bkt/footer", Object::new(body.clone(), "f1"));
    for res in read_together(&fleet, "/bkt/footer", Some("-8")) {
        assert_eq!(res.status, 206, "{}", res.text());
        assert!(res.body == body[body.len() - 8..], "not the footer's bytes");
    }
    for sk in &fleet {
        assert_eq!((claims(sk, "won"), claims(sk, "waited")), (0.0, 0.0));
    }
    // A cold read of a block or more does take one.
    origin.put("/bkt/chunk", Object::new(body, "c1"));
    let reads = read_together(&fleet, "/bkt/chunk", Some(&format!("0-{}", 2 * BLOCK)));
    assert!(reads.iter().all(|r| r.status == 206));
    let won: f64 = fleet.iter().map(|sk| claims(sk, "won")).sum();
    assert!(won >= 1.0, "no claim won for a two-block read");
}
