//! Header rules both ways: hop-by-hop headers removed, `X-Forwarded-*` added, the
//! rest copied unchanged with duplicates kept.

use std::net::IpAddr;

use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use actix_web::http::StatusCode;
use actix_web::HttpResponseBuilder;
use bytes::{BufMut, BytesMut};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Copies the client's headers for the backend. Content-Length comes from the body
/// sidekick sends; Expect was answered by sidekick, which sent the client its
/// 100 Continue already. `None` when an added header cannot be built.
pub fn to_backend(headers: &HeaderMap, peer: Option<IpAddr>, out: &mut HeaderMap) -> Option<()> {
    for (name, value) in headers {
        if is_hop_by_hop(name, headers)
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
        let ip = ip.to_canonical();
        out.insert(X_FORWARDED_FOR.clone(), forwarded_for(headers, ip)?);
        out.insert(X_REAL_IP.clone(), header_value(format_args!("{ip}"))?);
    }
    if let Some(host) = headers.get(HOST) {
        out.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    Some(())
}

/// Copies a backend's response headers for the client. The body framing is sidekick's
/// own, except that 304 keeps the backend's Content-Length (it describes the entity).
pub fn to_client(headers: &HeaderMap, status: StatusCode, out: &mut HttpResponseBuilder) {
    for (name, value) in headers {
        if is_hop_by_hop(name, headers)
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

/// The client's `X-Forwarded-For` chain with its own address appended.
fn forwarded_for(headers: &HeaderMap, ip: IpAddr) -> Option<HeaderValue> {
    let mut chain = BytesMut::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        chain.extend_from_slice(value.as_bytes());
        chain.extend_from_slice(b", ");
    }
    use std::fmt::Write;
    write!(chain, "{ip}").ok()?;
    HeaderValue::from_maybe_shared(chain.freeze()).ok()
}

fn header_value(args: std::fmt::Arguments<'_>) -> Option<HeaderValue> {
    let mut buf = BytesMut::with_capacity(48).writer();
    std::io::Write::write_fmt(&mut buf, args).ok()?;
    HeaderValue::from_maybe_shared(buf.into_inner().freeze()).ok()
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and every header the `Connection` header names.
pub fn is_hop_by_hop(name: &HeaderName, headers: &HeaderMap) -> bool {
    if name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
    {
        return true;
    }
    headers.get_all(CONNECTION).any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends_and_canonicalises() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        h.append(CONNECTION.clone(), HeaderValue::from_static("close, X-A"));
        h.append(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        );
        h.append(HOST, HeaderValue::from_static("s3:9000"));
        let mut out = HeaderMap::new();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        to_backend(&h, Some(mapped), &mut out).unwrap();
        assert_eq!(
            out.get(&X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, 2.2.2.2, 10.0.0.1"
        );
        assert_eq!(out.get(&X_REAL_IP).unwrap(), "10.0.0.1");
        assert_eq!(out.get(&X_FORWARDED_HOST).unwrap(), "s3:9000");
        assert!(out.get("x-a").is_none() && out.get(CONNECTION).is_none());
    }
}
