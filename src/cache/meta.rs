//! The metadata object of a cached object: which version was filled (ETag, size,
//! block size), the representation headers a hit answers with, and when a full
//! answer of the origin last showed those headers.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::cache::cover::Layout;
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

    pub fn decode(bytes: &[u8], identity: &str) -> Option<Meta> {
        let meta: Meta = serde_json::from_slice(bytes).ok()?;
        (meta.identity == identity && meta.block_size > 0 && meta.size > 0).then_some(meta)
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
        .filter(|(n, _)| {
            let n = n.as_str();
            REPRESENTATION.contains(&n) || n.starts_with("x-amz-meta-")
        })
        .filter_map(|(n, v)| Some((n.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect()
}

/// The strong ETag of an answer (a weak one names no exact bytes).
pub fn strong_etag(headers: &HeaderMap) -> Option<&str> {
    let etag = headers.get("etag")?.to_str().ok()?.trim();
    (etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"')).then_some(etag)
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

    #[test]
    fn round_trip_and_identity_check() {
        let meta = Meta {
            identity: "/b/k".into(),
            etag: "\"e\"".into(),
            size: 10,
            block_size: 4,
            headers: vec![("content-type".into(), "text/plain".into())],
            complete: false,
            confirmed: 0,
        };
        assert_eq!(Meta::decode(&meta.encode(), "/b/k"), Some(meta.clone()));
        assert_eq!(Meta::decode(&meta.encode(), "/b/other"), None);
        assert_eq!(Meta::decode(b"garbage", "/b/k"), None);
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
    }
}
