//! Header rules towards backends: the request head sidekick writes, with hop-by-hop
//! headers removed, `X-Forwarded-*` added and the rest copied unchanged (duplicates
//! kept). The hop-by-hop rule itself is in `upstream/head.rs`, which applies it to responses.

use std::fmt::Write;

use actix_web::http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, HOST,
};
use actix_web::http::Method;
use bytes::BytesMut;

use crate::upstream::head::is_hop_by_hop;
use crate::upstream::request::Framing;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// What the request head is built from, besides the client's headers.
pub struct Target<'a> {
    pub method: &'a Method,
    /// Path and query, byte-exact as the client sent them.
    pub path: &'a str,
    /// The client's address as a header value.
    pub peer: Option<&'a HeaderValue>,
    /// HTTP/2 `:authority`, which becomes `Host` when the client sent none.
    pub authority: Option<&'a str>,
    /// The backend's `host:port`, the `Host` of last resort (HTTP/1.0 clients).
    pub backend: &'a str,
    pub framing: Framing,
    /// A header sidekick adds (the cache's `If-None-Match`).
    pub extra: Option<(&'a str, &'a str)>,
}

/// The HTTP/1.1 request head for the backend. Content-Length and Transfer-Encoding
/// come from the body sidekick sends; Expect was answered by sidekick, which sent
/// the client its 100 Continue already.
pub fn request_head(headers: &HeaderMap, target: &Target<'_>) -> BytesMut {
    let mut out = BytesMut::with_capacity(256 + 64 * headers.len());
    out.extend_from_slice(target.method.as_str().as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let named = connection_tokens(headers);
    for (name, value) in headers {
        if is_hop_by_hop(name.as_str().as_bytes())
            || named
                .as_deref()
                .is_some_and(|n| n.iter().any(|n| n == name.as_str()))
            || name == CONTENT_LENGTH
            || name == EXPECT
            || name == X_FORWARDED_FOR
            || name == X_REAL_IP
            || name == X_FORWARDED_HOST
        {
            continue;
        }
        line(&mut out, name.as_str(), value.as_bytes());
    }
    if let Some(ip) = target.peer {
        // The client's chain (all its X-Forwarded-For lines, in order) plus its address.
        out.extend_from_slice(b"x-forwarded-for: ");
        for value in headers.get_all(&X_FORWARDED_FOR) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(ip.as_bytes());
        out.extend_from_slice(b"\r\n");
        line(&mut out, X_REAL_IP.as_str(), ip.as_bytes());
    }
    match (headers.get(HOST), target.authority) {
        (Some(host), _) => line(&mut out, X_FORWARDED_HOST.as_str(), host.as_bytes()),
        // The Host S3 clients sign, taken from HTTP/2's :authority.
        (None, Some(authority)) => {
            line(&mut out, HOST.as_str(), authority.as_bytes());
            line(&mut out, X_FORWARDED_HOST.as_str(), authority.as_bytes());
        }
        (None, None) => line(&mut out, HOST.as_str(), target.backend.as_bytes()),
    }
    if let Some((name, value)) = target.extra {
        line(&mut out, name, value.as_bytes());
    }
    match target.framing {
        Framing::None => {}
        Framing::Length(n) => {
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A single valid `Content-Length`, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Header names listed in `Connection` (lower-cased), when there are any besides the
/// usual `keep-alive` / `close`; found once per message rather than per header.
/// `Connection` cannot take away what the forwarding rules rest on: `Host` goes to
/// the backend unchanged (an HTTP/1.1 request must have one, and S3 clients sign
/// it), like behind HAProxy and nginx; the framing and `X-Forwarded-*` headers are
/// sidekick's own to write whatever it names.
fn connection_tokens(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut tokens = Vec::new();
    for value in headers.get_all(CONNECTION) {
        for token in value.to_str().unwrap_or("").split(',') {
            let token = token.trim();
            if !token.is_empty()
                && !token.eq_ignore_ascii_case("keep-alive")
                && !token.eq_ignore_ascii_case("close")
                && !token.eq_ignore_ascii_case(HOST.as_str())
            {
                tokens.push(token.to_ascii_lowercase());
            }
        }
    }
    (!tokens.is_empty()).then_some(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(headers: &HeaderMap, authority: Option<&str>, framing: Framing) -> String {
        let ip = HeaderValue::from_static("10.0.0.1");
        let target = Target {
            method: &Method::PUT,
            path: "/b/k?x=%2F",
            peer: Some(&ip),
            authority,
            backend: "10.9.9.9:9000",
            framing,
            extra: None,
        };
        String::from_utf8(request_head(headers, &target).to_vec()).unwrap()
    }

    #[test]
    fn forwarded_headers_and_connection_tokens() {
        let mut h = HeaderMap::new();
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("1.1.1.1"));
        h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_static("2.2.2.2"));
        h.append(CONNECTION, HeaderValue::from_static("close, X-A, Host"));
        h.append(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        );
        h.append(
            HeaderName::from_static("te"),
            HeaderValue::from_static("trailers"),
        );
        h.append(CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.append(HOST, HeaderValue::from_static("s3:9000"));
        let out = head(&h, Some("ignored:1"), Framing::Length(5));
        assert!(out.starts_with("PUT /b/k?x=%2F HTTP/1.1\r\n"), "{out}");
        assert!(out.ends_with("content-length: 5\r\n\r\n"), "{out}");
        for line in [
            "x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.1\r\n",
            "x-real-ip: 10.0.0.1\r\n",
            "x-forwarded-host: s3:9000\r\n",
            "host: s3:9000\r\n",
        ] {
            assert!(out.contains(line), "{line:?} missing from {out}");
        }
        for gone in ["x-a:", "connection:", "te:", "99"] {
            assert!(!out.contains(gone), "{gone:?} in {out}");
        }
    }

    #[test]
    fn host_comes_from_authority_or_backend() {
        let none = HeaderMap::new();
        let h2 = head(&none, Some("s3.example:9000"), Framing::Chunked);
        assert!(h2.contains("host: s3.example:9000\r\nx-forwarded-host: s3.example:9000\r\n"));
        assert!(h2.ends_with("transfer-encoding: chunked\r\n\r\n"));
        let h10 = head(&none, None, Framing::None);
        assert!(h10.contains("host: 10.9.9.9:9000\r\n") && !h10.contains("x-forwarded-host"));
        assert!(h10.contains("x-forwarded-for: 10.0.0.1\r\n"));
    }
}
