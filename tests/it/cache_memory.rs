//! The S3 shared cache's memory: a fill of an object far larger than its budget (read
//! at the store's pace, so that it completes, then as fast as it comes, so that it may
//! be dropped) and the hits after it keep sidekick's resident memory bounded.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cache_wire::Wire;
use crate::common::cache_store::CACHE_WAIT;
use crate::common::origin::Object;
use crate::common::*;

/// `mib` MiB of pattern data, as `write_pattern` sends it.
fn pattern_body(mib: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(mib << 20);
    let mut chunk = block().to_vec();
    for k in 0..mib as u64 {
        chunk[..8].copy_from_slice(&k.to_le_bytes());
        body.extend_from_slice(&chunk);
    }
    body
}

/// How far the reader of a fill may get ahead of what the fill has stored. With what
/// the sockets on the way hold (the client's receive buffer is fixed small), the
/// fill holds well under its 64 MiB budget, however slow the store is.
const AHEAD: u64 = 16 << 20;

/// GET on a fresh connection, the body hashed as it streams: (X-Cache, length,
/// SHA-256). `pace` sees the bytes received so far after each read.
fn streamed(sk: &Sidekick, path: &str, mut pace: impl FnMut(u64)) -> (Option<String>, u64, String) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(1 << 20).unwrap();
    socket.connect(&sk.addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let (start, headers) = read_head(&mut r).unwrap();
    assert!(start.contains(" 200 "), "{start}");
    let x_cache = headers
        .iter()
        .find(|(n, _)| n == "x-cache")
        .map(|(_, v)| v.clone());
    let (mut hash, mut buf, mut got) = (Sha256::new(), vec![0; 1 << 20], 0u64);
    loop {
        let n = r.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n as u64;
        pace(got);
    }
    (x_cache, got, hex(&hash.finalize()))
}

#[test]
fn fills_and_hits_of_a_large_object_keep_memory_bounded() {
    let w = Wire::start_with(&[("--cache-block-size", "4MiB")]);
    let mib = 256;
    let body = pattern_body(mib);
    let (size, sha) = (body.len() as u64, sha256(&body));
    w.origin.put("/bkt/large", Object::new(body.clone(), "big"));
    // Read no faster than the store takes the fill: it is never dropped.
    let mut checked = 0;
    let (x_cache, len, got) = streamed(&w.sk, "/bkt/large", |received| {
        if received >= checked + (4 << 20) {
            checked = received;
            wait_for("the fill to keep up", CACHE_WAIT, || {
                w.sk.fill_bytes() + AHEAD >= received
            });
        }
    });
    assert_eq!(
        (x_cache.as_deref(), len, got.as_str()),
        (Some("MISS"), size, &*sha)
    );
    w.sk.wait_filled(size);
    let dropped = || w.sk.cache_metric("sidekick_cache_fills_dropped_total", "");
    assert_eq!(dropped(), 0.0, "fills dropped");
    let (x_cache, len, got) = streamed(&w.sk, "/bkt/large", |_| {});
    assert_eq!(
        (x_cache.as_deref(), len, got.as_str()),
        (Some("HIT"), size, &*sha),
        "second read"
    );
    // Read as fast as it comes, a fill the store cannot keep up with is dropped, not
    // held in memory.
    w.origin.put("/bkt/rushed", Object::new(body, "rushed"));
    let (x_cache, len, got) = streamed(&w.sk, "/bkt/rushed", |_| {});
    assert_eq!(
        (x_cache.as_deref(), len, got.as_str()),
        (Some("MISS"), size, &*sha)
    );
    wait_for("the rushed fill done or dropped", CACHE_WAIT * 4, || {
        w.sk.fill_bytes() >= 2 * size || dropped() > 0.0
    });
    eprintln!(
        "rushed fill of {mib} MiB: {} bytes written, {} dropped",
        w.sk.fill_bytes() - size,
        dropped()
    );
    let peak = w.sk.peak_rss_kib();
    eprintln!("sidekick peak RSS {peak} KiB");
    assert!(
        peak < 128 * 1024,
        "sidekick peaked at {peak} KiB for a {mib} MiB object"
    );
}
