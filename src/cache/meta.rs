//! The metadata object of a cached object: which version was filled (ETag, size,
//! block size) and the representation headers a hit answers with.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

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
}

impl Meta {
    /// How many blocks the object has.
    pub fn blocks(&self) -> u64 {
        self.size.div_ceil(self.block_size)
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
