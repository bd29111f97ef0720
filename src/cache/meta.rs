//! The metadata object of a cached object: which version was filled (ETag, size,
//! block size), the representation headers a hit answers with, and when a full
//! answer of the origin last showed those headers.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use log::{debug, warn};
use serde::{Deserialize, Serialize};

use crate::cache::cover::Layout;
use crate::config::cache_flags::{MAX_BLOCK, MIN_BLOCK};
use crate::observe::cache_stats::STATS;
use crate::upstream::head::ResponseHead;

/// Largest metadata object read back (a head's worth of headers).
pub const MAX_META: usize = 64 * 1024;

/// Response headers that describe the object rather than one answer.
const REPRESENTATION: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
    "etag",
    "last-modified",
    "accept-ranges",
    "x-amz-version-id",
    "x-amz-storage-class",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-tagging-count",
    "x-amz-website-redirect-location",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// What names the object (checked on read: a hash collision is a miss).
    pub identity: String,
    /// The strong ETag as the origin sends it, quotes included.
    pub etag: String,
    pub size: u64,
    pub block_size: u64,
    pub headers: Vec<(String, String)>,
    /// Every block was stored by one fill: a reader need not check that the blocks
    /// it needs are there before it answers.
    #[serde(default)]
    pub complete: bool,
    /// When (Unix seconds) a full answer of the origin last showed these headers.
    /// A 304 may not show them (Garage's carries the ETag alone), and an object
    /// written again with the same bytes keeps its ETag: past `--cache-header-ttl`
    /// they are asked for again.
    #[serde(default)]
    pub confirmed: u64,
}

/// Headers a 304 may show that change when the object is written again, even with
/// the same bytes (the same ETag).
const WRITTEN: [&str; 2] = ["last-modified", "x-amz-version-id"];

impl Meta {
    /// How many blocks the object has.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size)
    }

    pub fn layout(&self) -> Layout {
        Layout {
            size: self.size,
            block_size: self.block_size,
        }
    }

    /// The same bytes under the same names (the headers may differ).
    pub fn same_version(&self, other: &Meta) -> bool {
        self.identity == other.identity
            && self.etag == other.etag
            && self.size == other.size
            && self.block_size == other.block_size
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The origin's answer `fresh` (a 304) shows that the object was written again
    /// since these headers were stored: another `Last-Modified` or version id.
    pub fn rewritten(&self, fresh: &HeaderMap) -> bool {
        WRITTEN.iter().any(|name| match fresh.get(*name) {
            Some(value) => value.to_str().ok() != self.header(name),
            None => false,
        })
    }

    /// The stored headers were last shown by a full answer more than `ttl` seconds
    /// before `now`.
    pub fn unconfirmed(&self, ttl: u64, now: u64) -> bool {
        now.saturating_sub(self.confirmed) > ttl
    }

    /// This version with the headers of a full answer `head` of the origin, shown at
    /// `now`.
    pub fn refreshed(&self, head: &ResponseHead, now: u64) -> Meta {
        Meta {
            headers: representation(head),
            confirmed: now,
            ..self.clone()
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The metadata object `bytes` read back for `identity`, if it may be used. One
    /// that is not a metadata object at all (`{}` is how a reader clears one) or names
    /// another object is simply not there; one that breaks `validate` is a bad object,
    /// counted and logged.
    pub fn decode(bytes: &[u8], identity: &str, max_size: u64) -> Option<Meta> {
        let meta: Meta = serde_json::from_slice(bytes).ok()?;
        if meta.identity != identity {
            return None;
        }
        match validate(&meta, max_size) {
            Ok(()) => Some(meta),
            Err(why) => {
                bad(identity, why);
                None
            }
        }
    }

    /// The headers of a hit: the stored ones, updated by those of the origin's 304
    /// (RFC 9111 §4.3.4: Date, request ids, a changed Cache-Control or Expires).
    pub fn headers_with(&self, fresh: &HeaderMap) -> HeaderMap {
        let mut out = HeaderMap::with_capacity(self.headers.len() + fresh.len());
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                if !fresh.contains_key(&n) {
                    out.append(n, v);
                }
            }
        }
        for (name, value) in fresh {
            if !is_framing(name.as_str()) {
                out.append(name.clone(), value.clone());
            }
        }
        out
    }
}

/// Seconds since the Unix epoch, as `confirmed` counts them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a metadata object read back may be used. The store is trusted with bytes,
/// never with control, and any version of sidekick (or anything else with the key)
/// may have written it: its ETag goes to the origin in `If-None-Match`, its headers
/// to clients, its sizes into block names, reads and allocations. So the ETag must
/// be strong and of visible ASCII only (RFC 9110 `entity-tag`), every header one
/// that `representation` keeps with a valid value, and the sizes within what the
/// flags allow (`--cache-max-size`, `--cache-block-size`'s bounds).
pub fn validate(meta: &Meta, max_size: u64) -> Result<(), &'static str> {
    if !is_strong_etag(&meta.etag) {
        return Err("its ETag is not a strong entity tag of visible ASCII");
    }
    if meta.size == 0 || meta.size > max_size {
        return Err("its size is zero or over --cache-max-size");
    }
    if !(MIN_BLOCK..=MAX_BLOCK).contains(&meta.block_size) {
        return Err("its block size is outside --cache-block-size's bounds");
    }
    for (name, value) in &meta.headers {
        let valid_name = HeaderName::from_bytes(name.as_bytes()).is_ok_and(|n| n.as_str() == name);
        if !valid_name || !is_representation(name) {
            return Err("it holds a header that is not a representation header");
        }
        if HeaderValue::from_str(value).is_err() {
            return Err("it holds an invalid header value");
        }
    }
    Ok(())
}

/// Whether the whole of `etag` is `DQUOTE *etagc DQUOTE`, without obs-text.
fn is_strong_etag(etag: &str) -> bool {
    let Some(inner) = etag
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return false;
    };
    inner
        .bytes()
        .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
}

/// Counts a bad metadata object; the first one is a warning, the rest are counted
/// (`sidekick_cache_bad_metadata_total`) and logged at debug.
fn bad(identity: &str, why: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    STATS.bad_meta.fetch_add(1, Relaxed);
    if WARNED.swap(true, Relaxed) {
        debug!("bad metadata object for {identity} in the cache store: {why}; a miss");
    } else {
        warn!(
            "bad metadata object for {identity} in the cache store: {why}; a miss (further \
             ones are counted in sidekick_cache_bad_metadata_total)"
        );
    }
}

fn is_representation(name: &str) -> bool {
    REPRESENTATION.contains(&name) || name.starts_with("x-amz-meta-")
}

fn is_framing(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "content-range" | "transfer-encoding"
    )
}

/// The representation headers of an answer, to store.
pub fn representation(head: &ResponseHead) -> Vec<(String, String)> {
    head.headers
        .iter()
        .filter(|(n, _)| is_representation(n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// The strong ETag of an answer (a weak one names no exact bytes).
pub fn strong_etag(headers: &HeaderMap) -> Option<&str> {
    let etag = headers.get("etag")?.to_str().ok()?.trim();
    is_strong_etag(etag).then_some(etag)
}

/// The origin confirmed the cached version: a 304, or a 200 or 206 that ignored
/// `If-None-Match` but carries the same ETag.
pub fn confirms(head: &ResponseHead, etag: &str) -> bool {
    let same = strong_etag(&head.headers) == Some(etag);
    same && matches!(
        head.status,
        StatusCode::NOT_MODIFIED | StatusCode::OK | StatusCode::PARTIAL_CONTENT
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_SIZE: u64 = 1 << 30;

    fn meta() -> Meta {
        Meta {
            identity: "/b/k".into(),
            etag: "\"e\"".into(),
            size: 10,
            block_size: MIN_BLOCK,
            headers: vec![("content-type".into(), "text/plain".into())],
            complete: false,
            confirmed: 0,
        }
    }

    #[test]
    fn round_trip_and_identity_check() {
        let meta = meta();
        let decode = |bytes: &[u8], identity| Meta::decode(bytes, identity, MAX_SIZE);
        assert_eq!(decode(&meta.encode(), "/b/k"), Some(meta.clone()));
        assert_eq!(decode(&meta.encode(), "/b/other"), None);
        assert_eq!(decode(b"garbage", "/b/k"), None);
        assert_eq!(decode(b"{}", "/b/k"), None);
        let mut fresh = HeaderMap::new();
        fresh.insert(
            HeaderName::from_static("date"),
            HeaderValue::from_static("now"),
        );
        fresh.insert(
            HeaderName::from_static("content-length"),
            HeaderValue::from_static("0"),
        );
        let out = meta.headers_with(&fresh);
        assert_eq!(out.get("content-type").unwrap(), "text/plain");
        assert_eq!(out.get("date").unwrap(), "now");
        assert!(out.get("content-length").is_none());
    }

    #[test]
    fn what_a_store_holds_is_checked_before_use() {
        assert_eq!(validate(&meta(), MAX_SIZE), Ok(()));
        type Edit = (&'static str, fn(&mut Meta));
        let edits: [Edit; 14] = [
            ("CR/LF in the ETag", |m| {
                m.etag = "\"e\"\r\nX-Injected: yes".into()
            }),
            ("CR/LF inside the quotes", |m| {
                m.etag = "\"e\r\nX: y\"".into()
            }),
            ("a weak ETag", |m| m.etag = "W/\"e\"".into()),
            ("an unquoted ETag", |m| m.etag = "e".into()),
            ("a lone quote", |m| m.etag = "\"".into()),
            ("a space in the ETag", |m| m.etag = "\"a b\"".into()),
            ("obs-text in the ETag", |m| m.etag = "\"é\"".into()),
            ("size zero", |m| m.size = 0),
            ("size over the maximum", |m| m.size = MAX_SIZE + 1),
            ("block size too small", |m| m.block_size = MIN_BLOCK - 1),
            ("block size too large", |m| m.block_size = u64::MAX),
            ("a framing header", |m| {
                m.headers.push(("content-length".into(), "1".into()))
            }),
            ("an invalid header name", |m| {
                m.headers.push(("x-amz-meta-a b".into(), "1".into()))
            }),
            ("CR/LF in a header value", |m| {
                m.headers
                    .push(("x-amz-meta-a".into(), "1\r\nX-Injected: yes".into()))
            }),
        ];
        for (what, edit) in edits {
            let mut bad = meta();
            edit(&mut bad);
            assert!(validate(&bad, MAX_SIZE).is_err(), "{what} passed");
            let before = STATS.bad_meta.load(Relaxed);
            assert_eq!(
                Meta::decode(&bad.encode(), "/b/k", MAX_SIZE),
                None,
                "{what}"
            );
            assert!(STATS.bad_meta.load(Relaxed) > before, "{what} not counted");
        }
        let mut fine = meta();
        fine.etag = "\"\"".into();
        fine.size = MAX_SIZE;
        fine.block_size = MAX_BLOCK;
        fine.headers
            .push(("x-amz-meta-owner".into(), "a b\tc".into()));
        assert_eq!(validate(&fine, MAX_SIZE), Ok(()));
    }

    #[test]
    fn only_strong_etags() {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("etag"),
            HeaderValue::from_static("W/\"e\""),
        );
        assert_eq!(strong_etag(&h), None);
        h.insert(
            HeaderName::from_static("etag"),
            HeaderValue::from_static("\"e\""),
        );
        assert_eq!(strong_etag(&h), Some("\"e\""));
        h.insert(
            HeaderName::from_static("etag"),
            HeaderValue::from_static("\"a b\""),
        );
        assert_eq!(strong_etag(&h), None);
    }
}
