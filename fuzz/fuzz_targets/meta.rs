//! Metadata objects read back from the cache store (anything may be there): decoding
//! never panics, and what it accepts carries nothing that could reach the origin or
//! a client as control (a CR/LF, a framing header) and sizes every reader can use.
#![no_main]

use actix_http::header::HeaderMap;
use libfuzzer_sys::fuzz_target;
use sidekick::cache::meta::{validate, Meta};

/// `--cache-max-size`'s default.
const MAX_SIZE: u64 = 5 << 30;

fuzz_target!(|data: &[u8]| {
    // The object's identity on the first line, its metadata after.
    let (identity, stored) = match data.iter().position(|&b| b == b'\n') {
        Some(end) => (&data[..end], &data[end + 1..]),
        None => (&b"/bucket/key"[..], data),
    };
    let Ok(identity) = std::str::from_utf8(identity) else {
        return;
    };
    let Some(meta) = Meta::decode(stored, identity, MAX_SIZE) else {
        return;
    };
    assert_eq!(validate(&meta, MAX_SIZE), Ok(()));
    assert!(meta.etag.bytes().all(|b| b.is_ascii_graphic()));
    assert!(meta.size > 0 && meta.size <= MAX_SIZE && meta.blocks() >= 1);
    let headers = meta.headers_with(&HeaderMap::new());
    assert!(!headers.contains_key("content-length") && !headers.contains_key("transfer-encoding"));
    assert_eq!(Meta::decode(&meta.encode(), identity, MAX_SIZE), Some(meta));
});
