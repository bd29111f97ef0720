//! Header rules both ways: hop-by-hop headers removed, `X-Forwarded-*` added, the
//! rest copied unchanged with duplicates kept.

use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use actix_web::http::{StatusCode, Uri};
use actix_web::HttpResponseBuilder;
use bytes::BytesMut;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Copies the client's headers for the backend. Content-Length comes from the body
/// sidekick sends; Expect was answered by sidekick, which sent the client its
/// 100 Continue already. `peer` is the client's address as a header value.
/// `None` when an added header cannot be built.
pub fn to_backend(
    headers: &HeaderMap,
    peer: Option<&HeaderValue>,
    out: &mut HeaderMap,
) -> Option<()> {
    let named = connection_tokens(headers);
    for (name, value) in headers {
        if is_hop_by_hop(name, named.as_deref())
            || name == CONTENT_LENGTH
            || name == EXPECT
            || name == X_FORWARDED_FOR
            || name == X_REAL_IP
            || name == X_FORWARDED_HOST
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Some(ip) = peer {
        out.insert(X_FORWARDED_FOR.clone(), forwarded_for(headers, ip)?);
        out.insert(X_REAL_IP.clone(), ip.clone());
    }
    if let Some(host) = headers.get(HOST) {
        out.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    Some(())
}

/// HTTP/2 requests name their host in `:authority`, which actix keeps in the URI; the
/// backend (HTTP/1.1) gets it as `Host`, the header S3 clients sign, and as
/// `X-Forwarded-Host`. Nothing changes when the client sent a Host header itself.
/// `None` when the authority is not a valid header value.
pub fn host_from_authority(uri: &Uri, out: &mut HeaderMap) -> Option<()> {
    if out.contains_key(HOST) {
        return Some(());
    }
    if let Some(authority) = uri.authority() {
        let host = HeaderValue::from_str(authority.as_str()).ok()?;
        out.insert(X_FORWARDED_HOST.clone(), host.clone());
        out.insert(HOST, host);
    }
    Some(())
}

/// Copies a backend's response headers for the client. The body framing is sidekick's
/// own, except that 304 keeps the backend's Content-Length (it describes the entity).
pub fn to_client(headers: &HeaderMap, status: StatusCode, out: &mut HttpResponseBuilder) {
    let named = connection_tokens(headers);
    for (name, value) in headers {
        if is_hop_by_hop(name, named.as_deref())
            || (name == CONTENT_LENGTH && status != StatusCode::NOT_MODIFIED)
        {
            continue;
        }
        out.append_header((name.clone(), value.clone()));
    }
}

/// A single valid `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The client's `X-Forwarded-For` chain with its own address appended; without a
/// chain, the address itself (no copy).
fn forwarded_for(headers: &HeaderMap, ip: &HeaderValue) -> Option<HeaderValue> {
    let mut chain = headers.get_all(&X_FORWARDED_FOR).peekable();
    if chain.peek().is_none() {
        return Some(ip.clone());
    }
    let mut joined = BytesMut::new();
    for value in chain {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip.as_bytes());
    HeaderValue::from_maybe_shared(joined.freeze()).ok()
}

/// Header names listed in `Connection` (lower-cased), when there are any besides the
/// usual `keep-alive` / `close`; found once per message rather than per header.
fn connection_tokens(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if !token.is_empty()
                && !token.eq_ignore_ascii_case("keep-alive")
                && !token.eq_ignore_ascii_case("close")
            {
                tokens.push(token.to_ascii_lowercase());
            }
        }
    }
    (!tokens.is_empty()).then_some(tokens)
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and every header the `Connection` header names.
fn is_hop_by_hop(name: &HeaderName, named: Option<&[String]>) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || named.is_some_and(|named| named.iter().any(|n| n == name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_and_connection_tokens() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        h.append(CONNECTION, HeaderValue::from_static("close, X-A"));
        h.append(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        );
        h.append(HOST, HeaderValue::from_static("s3:9000"));
        let ip = HeaderValue::from_static("10.0.0.1");
        let mut out = HeaderMap::new();
        to_backend(&h, Some(&ip), &mut out).unwrap();
        assert_eq!(
            out.get(&X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, 2.2.2.2, 10.0.0.1"
        );
        assert_eq!(out.get(&X_REAL_IP).unwrap(), "10.0.0.1");
        assert_eq!(out.get(&X_FORWARDED_HOST).unwrap(), "s3:9000");
        assert!(out.get("x-a").is_none() && out.get(CONNECTION).is_none());
        let mut alone = HeaderMap::new();
        let uri: Uri = "https://s3.example:9000/b/k".parse().unwrap();
        host_from_authority(&uri, &mut alone).unwrap();
        assert_eq!(alone.get(HOST).unwrap(), "s3.example:9000");
        assert_eq!(alone.get(&X_FORWARDED_HOST).unwrap(), "s3.example:9000");
        // A Host the client sent stays.
        host_from_authority(&"https://x/".parse().unwrap(), &mut out).unwrap();
        assert_eq!(out.get(HOST).unwrap(), "s3:9000");
        let mut alone = HeaderMap::new();
        to_backend(&HeaderMap::new(), Some(&ip), &mut alone).unwrap();
        assert_eq!(alone.get(&X_FORWARDED_FOR).unwrap(), "10.0.0.1");
    }
}
