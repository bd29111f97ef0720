//! Which requests the cache may answer: a GET of one object, path-style or
//! virtual-host-style, without a query other than presigned-URL parameters, without
//! SSE-C, with at most one byte range. Everything else passes through untouched.

use actix_web::http::header::{self, HeaderMap};
use actix_web::http::Method;

use crate::cache::cover::Span;
use crate::cache::range::{self, Spec};

/// Query parameters of presigned URLs (SigV4 and SigV2) and the SDKs' operation tag:
/// they authorise or label the request, they do not select another representation.
const PRESIGNED: &[&str] = &[
    "x-amz-algorithm",
    "x-amz-credential",
    "x-amz-date",
    "x-amz-expires",
    "x-amz-signedheaders",
    "x-amz-signature",
    "x-amz-security-token",
    "awsaccesskeyid",
    "expires",
    "signature",
    "x-id",
];

/// Request headers that make the answer depend on more than the object: its answer
/// is the client's alone.
const CONDITIONAL: [header::HeaderName; 5] = [
    header::IF_NONE_MATCH,
    header::IF_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
];

/// A cacheable request: the object it names and how much of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Lookup {
    /// What names the object on the origin: the raw path (`/bucket/key`), preceded by
    /// the host name when the request is virtual-host-style.
    pub identity: String,
    pub range: Option<Spec>,
    /// The client sent conditional headers: its request goes unchanged.
    pub own_conditions: bool,
}

/// `None` for a request the cache must leave alone. `authority` is HTTP/2's, the
/// host when no `Host` header came.
pub fn lookup(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    authority: Option<&str>,
) -> Option<Lookup> {
    if method != Method::GET || path.len() < 2 || path.ends_with('/') {
        return None;
    }
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let presigned = query.split('&').all(|pair| {
            let name = pair.split_once('=').map_or(pair, |(n, _)| n);
            PRESIGNED.iter().any(|p| p.eq_ignore_ascii_case(name))
        });
        if !presigned {
            return None;
        }
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let sse_c = headers.keys().any(|name| {
        name.as_str()
            .starts_with("x-amz-server-side-encryption-customer-")
    });
    if has_body || sse_c {
        return None;
    }
    let range = match headers.get_all(header::RANGE).count() {
        0 => None,
        1 => Some(range::parse(headers.get(header::RANGE)?.to_str().ok()?)?),
        _ => return None,
    };
    let identity = identity(path, host(headers).or(authority)?)?;
    let own_conditions = CONDITIONAL.iter().any(|h| headers.contains_key(h));
    Some(Lookup {
        identity,
        range,
        own_conditions,
    })
}

impl Lookup {
    /// The bytes asked for of an object of `size` bytes; `None` when the range is
    /// unsatisfiable (or the object empty).
    pub fn need(&self, size: u64) -> Option<Span> {
        let (first, last) = match self.range {
            Some(spec) => spec.resolve(size)?,
            None => (0, size.checked_sub(1)?),
        };
        Some(Span { first, last })
    }
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// Path-style when the host is an address or a single label (`localhost`,
/// `minio`): `/bucket/key`, which must name a key. Otherwise the bucket may be the
/// host's first label, so the host name is part of the identity.
fn identity(path: &str, host: &str) -> Option<String> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let path_style = name.parse::<std::net::IpAddr>().is_ok() || !name.contains('.');
    if path_style {
        let (bucket, key) = path[1..].split_once('/')?;
        return (!bucket.is_empty() && !key.is_empty()).then(|| path.to_string());
    }
    Some(format!("{}{path}", name.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn get(path: &str, query: Option<&str>, extra: &[(&str, &str)]) -> Option<Lookup> {
        let mut pairs = vec![("host", "localhost:8080")];
        pairs.extend_from_slice(extra);
        lookup(&Method::GET, path, query, &headers(&pairs), None)
    }

    #[test]
    fn object_gets_are_cacheable() {
        let l = get("/b/dir/k.parquet", None, &[]).unwrap();
        assert_eq!(l.identity, "/b/dir/k.parquet");
        assert!(!l.own_conditions && l.range.is_none());
        let presigned = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Date=d\
                         &X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=s";
        assert!(get("/b/k", Some(presigned), &[]).is_some());
        assert!(get("/b/k", Some("x-id=GetObject"), &[]).is_some());
        assert!(get("/b/k", None, &[("range", "bytes=0-9")])
            .unwrap()
            .range
            .is_some());
        assert!(
            get("/b/k", None, &[("if-none-match", "\"e\"")])
                .unwrap()
                .own_conditions
        );
        let vhost = lookup(
            &Method::GET,
            "/dir/k",
            None,
            &headers(&[("host", "Bucket.s3.example.com")]),
            None,
        );
        assert_eq!(vhost.unwrap().identity, "bucket.s3.example.com/dir/k");
    }

    #[test]
    fn everything_else_passes_through() {
        let h = headers(&[("host", "h")]);
        assert!(lookup(&Method::HEAD, "/b/k", None, &h, None).is_none());
        assert!(lookup(&Method::PUT, "/b/k", None, &h, None).is_none());
        for query in [
            "versionId=3",
            "partNumber=1",
            "response-content-type=x",
            "acl",
            "tagging",
        ] {
            assert!(get("/b/k", Some(query), &[]).is_none(), "{query}");
        }
        assert!(get("/b", None, &[]).is_none());
        assert!(get("/b/", None, &[]).is_none());
        assert!(get("/b/dir/", None, &[]).is_none());
        assert!(get("/b/k", None, &[("range", "bytes=0-1,4-5")]).is_none());
        assert!(get(
            "/b/k",
            None,
            &[("range", "bytes=0-1"), ("range", "bytes=4-5")]
        )
        .is_none());
        let sse_c = ("x-amz-server-side-encryption-customer-algorithm", "AES256");
        assert!(get("/b/k", None, &[sse_c]).is_none());
        assert!(get("/b/k", None, &[("content-length", "3")]).is_none());
        assert!(lookup(&Method::GET, "/b/k", None, &HeaderMap::new(), None).is_none());
        let h2 = lookup(
            &Method::GET,
            "/b/k",
            None,
            &HeaderMap::new(),
            Some("localhost:8080"),
        );
        assert_eq!(h2.unwrap().identity, "/b/k");
    }
}
