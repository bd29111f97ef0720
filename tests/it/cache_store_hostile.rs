//! The S3 shared cache with a cache store that lies (`common::hostile_store`): the
//! store is trusted with bytes, never with control. Whatever it answers (lengths of
//! an exabyte, metadata with CR/LF in its ETag or absurd sizes, blocks cut short or
//! dripped), sidekick stays up, the origin receives only what the client sent (and
//! a valid `If-None-Match`), and clients get the origin's bytes. Each failure is
//! counted once.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use crate::cache_wire::{assert_body, SIZE};
use crate::common::cache_store::CACHE_WAIT;
use crate::common::hostile_store::{Gate, HostileStore, Trick, BUCKET};
use crate::common::origin::{Object, Origin};
use crate::common::*;

struct Hostile {
    origin: Origin,
    store: HostileStore,
    sk: Sidekick,
}

impl Hostile {
    fn start() -> Hostile {
        Hostile::start_with(&[])
    }

    fn start_with(extra: &[&str]) -> Hostile {
        let origin = Origin::start();
        let store = HostileStore::start();
        let mut args = store.flags();
        args.extend(extra.iter().map(|a| a.to_string()));
        // Nothing remembered: every read looks its metadata up in the store.
        args.extend(["--cache-remember", "0", "--health-duration", "500ms"].map(String::from));
        args.push(origin.url());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let sk = Sidekick::start(&args);
        sk.wait_cache_ready(BUCKET);
        wait_for("the origin up", Duration::from_secs(10), || {
            sk.health() == 200
        });
        Hostile { origin, store, sk }
    }

    fn get(&self, path: &str) -> Response {
        request(self.sk.addr, "GET", path, &[], b"")
    }

    /// Puts `body` on the origin at `path`, and reads it until it is a hit from the
    /// store (honest until told otherwise): the cache works with this store, and its
    /// fill is over (a hit while it runs knows the version without the store).
    fn cached(&self, path: &str, etag: &str, body: &[u8]) {
        self.origin.put(path, Object::new(body.to_vec(), etag));
        assert_body(&self.get(path), 200, body, "MISS", "the read that fills");
        let mut reads = 0;
        wait_for(&format!("{path} a hit from the store"), CACHE_WAIT, || {
            let looked_up = self.store.meta_reads();
            let res = self.get(path);
            assert!(
                res.status == 200 && res.body == body,
                "read {reads}: wrong answer"
            );
            reads += 1;
            res.header("x-cache") == Some("HIT") && self.store.meta_reads() > looked_up
        });
    }

    /// A failure took the node out: waits until its health check brings it back.
    fn wait_node_up(&self) {
        let label = format!("endpoint=\"{}\"", self.store.url());
        wait_for("the cache node up", CACHE_WAIT, || {
            self.sk.sample_with("sidekick_cache_up", &label) == Some(1.0)
        });
    }

    fn node_errors(&self) -> f64 {
        let label = format!("endpoint=\"{}\"", self.store.url());
        self.sk
            .cache_metric("sidekick_cache_node_errors_total", &label)
    }
}

fn edit(f: fn(&mut serde_json::Value)) -> Trick {
    Trick::EditMeta(Arc::new(f))
}

#[test]
fn a_lying_cache_store_crashes_nothing_and_reaches_no_origin() {
    let mut h = Hostile::start();
    let phases = [
        ("an exabyte of metadata", Trick::HugeLength("meta/")),
        ("an exabyte of block", Trick::HugeLength("blocks/")),
        (
            "CR/LF in the ETag",
            edit(|m| {
                let etag = m["etag"].as_str().unwrap().to_string();
                m["etag"] = format!("{etag}\r\nX-Injected: yes").into();
            }),
        ),
        ("a size of 2^64-1", edit(|m| m["size"] = u64::MAX.into())),
        ("a block size of 1", edit(|m| m["block_size"] = 1.into())),
        (
            "a block size of 2^64-1",
            edit(|m| m["block_size"] = u64::MAX.into()),
        ),
        (
            "a framing header",
            edit(|m| {
                let headers = m["headers"].as_array_mut().unwrap();
                headers.push(serde_json::json!(["content-length", "1"]));
            }),
        ),
        ("blocks cut short", Trick::TruncatedBlocks),
        ("blocks dripped", Trick::DrippedBlocks),
    ];
    let edits = phases
        .iter()
        .filter(|(_, t)| matches!(t, Trick::EditMeta(_)))
        .count();
    for (i, (what, trick)) in phases.into_iter().enumerate() {
        let (path, etag) = (format!("/bkt/obj{i}"), format!("v{i}"));
        let body = bytes(SIZE, 50 + i as u64);
        h.cached(&path, &etag, &body);
        h.store.trick(trick);
        assert_body(&h.get(&path), 200, &body, "MISS", what);
        h.store.trick(Trick::Honest);
        assert!(
            h.sk.running(),
            "{what}: sidekick exited:\n{}",
            h.sk.log.lock().unwrap().join("\n")
        );
        let injected: Vec<_> = h
            .origin
            .asked()
            .into_iter()
            .filter(|a| a.header("x-injected").is_some())
            .collect();
        assert!(
            injected.is_empty(),
            "{what}: a header from the cache store reached the origin: {injected:?}"
        );
        // What the cache knew was not used: the origin was asked as the client asked.
        let last = h.origin.asked_for(&path).pop().unwrap();
        assert_eq!(last.status, 200, "{what}: {last:?}");
        h.wait_node_up();
    }
    assert_eq!(
        h.sk.cache_metric("sidekick_cache_bad_metadata_total", ""),
        edits as f64,
        "bad metadata objects"
    );
    // Once it behaves, the store serves hits again.
    h.cached("/bkt/after", "after", &bytes(SIZE, 70));
    assert_eq!(h.sk.health(), 200);
}

#[test]
fn a_cache_node_failure_is_counted_once() {
    let h = Hostile::start();
    // One block: one read of the store fails.
    let body = bytes(1000, 71);
    h.cached("/bkt/one", "one", &body);
    assert_eq!(h.node_errors(), 0.0);
    h.store.trick(Trick::TruncatedBlocks);
    assert_body(&h.get("/bkt/one"), 200, &body, "MISS", "a block cut short");
    // The Pool logs the node down once it has taken (and counted) the failure.
    let down = format!("cache node {} is down", h.store.url());
    wait_for("the cache node down", CACHE_WAIT, || {
        h.sk.log_contains(&down)
    });
    assert_eq!(h.node_errors(), 1.0, "failures of the cache node");
}

#[test]
fn a_fill_the_store_refuses_is_dropped_once() {
    let h = Hostile::start();
    h.store.trick(Trick::RefusedBlockPuts);
    // Far more than socket buffers hold: most of the answer passes after the refusal.
    let size = 32 << 20;
    let body = bytes(size, 72);
    h.origin
        .put("/bkt/refused", Object::new(body.clone(), "r1"));
    let mut stream = TcpStream::connect(h.sk.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .write_all(b"GET /bkt/refused HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(stream);
    let (status, headers) = read_head(&mut r).unwrap();
    assert!(status.contains(" 200 "), "{status} {headers:?}");
    wait_for("the store refusing a block", CACHE_WAIT, || {
        h.store
            .asked()
            .iter()
            .any(|a| a.method == "PUT" && a.status == 500)
    });
    let mut got = Vec::with_capacity(size);
    r.read_to_end(&mut got).unwrap();
    assert!(got == body, "wrong bytes ({} of {size})", got.len());
    let dropped = || h.sk.cache_metric("sidekick_cache_fills_dropped_total", "");
    wait_for("the fill dropped", CACHE_WAIT, || dropped() > 0.0);
    assert_eq!(dropped(), 1.0, "fills dropped");
    assert_eq!(
        h.sk.cache_metric("sidekick_cache_errors_total", ""),
        1.0,
        "failed cache store requests"
    );
}

/// While the store is read for a cached version, the origin answers with another
/// one: that answer goes to the client at once, whatever the store does (here it
/// answers nothing until the client has its bytes).
#[test]
fn a_silent_store_holds_back_no_answer_of_the_origin() {
    // Backends' response deadline far beyond the client's: only the cache's own
    // bounds can free a reader the store keeps waiting.
    let h = Hostile::start_with(&["--response-timeout", "1h"]);
    h.cached("/bkt/silent", "s1", &bytes(SIZE, 73));
    let gate = Gate::default();
    h.store.trick(Trick::SilentBlocks(gate.clone()));
    let new = bytes(SIZE, 74);
    h.origin.put("/bkt/silent", Object::new(new.clone(), "s2"));
    let res = h.get("/bkt/silent");
    gate.open();
    assert_body(
        &res,
        200,
        &new,
        "MISS",
        "another version while the store is silent",
    );
}

/// A store too busy for a moment (a 503, as S3's SlowDown or Garage's locked
/// database) costs a fill nothing: the block is written again.
#[test]
fn a_busy_store_keeps_the_fill() {
    let h = Hostile::start();
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(2));
    h.store.trick(Trick::BusyBlockPuts(left.clone()));
    let body = bytes(SIZE, 75);
    h.origin.put("/bkt/busy", Object::new(body.clone(), "b1"));
    assert_body(
        &h.get("/bkt/busy"),
        200,
        &body,
        "MISS",
        "the read that fills",
    );
    h.sk.wait_filled(SIZE as u64);
    let busy = h.store.asked().iter().filter(|a| a.status == 503).count();
    assert_eq!(busy, 2, "503s answered");
    assert_body(&h.get("/bkt/busy"), 200, &body, "HIT", "the read after");
}
