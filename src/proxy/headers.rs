//! Header rules towards backends: the request head sidekick writes, with hop-by-hop
//! headers removed, `X-Forwarded-*` added and the rest copied unchanged (duplicates
//! kept). The hop-by-hop rule itself is in `upstream/head.rs`, which applies it to responses.
//!
//! The client's address in `X-Forwarded-For` and `X-Real-IP`: MinIO takes the leftmost
//! `X-Forwarded-For` as the request's source (audit log, `aws:SourceIp`). A sidecar's
//! client is on loopback, so for it sidekick sends this host's address instead: the
//! local address of the connection to the backend, which is what the backend would
//! see without sidekick (the Go tool sends the host's address too). Other clients'
//! addresses go as they are; `--forward-loopback-addr` sends loopback ones as well.

use std::fmt::Write;

use actix_web::http::header::{HeaderMap, HeaderName, CONNECTION, CONTENT_LENGTH, EXPECT, HOST};
use actix_web::http::Method;
use bytes::BytesMut;

use crate::conn::client_addr::ClientAddr;
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
    /// The client's address.
    pub peer: Option<&'a ClientAddr>,
    /// HTTP/2 `:authority`, which becomes `Host` when the client sent none.
    pub authority: Option<&'a str>,
    /// The backend's `host:port`, the `Host` of last resort (HTTP/1.0 clients).
    pub backend: &'a str,
    pub framing: Framing,
    /// A header sidekick adds (the cache's `If-None-Match`).
    pub extra: Option<(&'a str, &'a str)>,
}

/// The HTTP/1.1 request head for the backend, on a connection whose local address is
/// `local`. Content-Length and Transfer-Encoding come from the body sidekick sends;
/// Expect was answered by sidekick, which sent the client its 100 Continue already.
pub fn request_head(headers: &HeaderMap, target: &Target<'_>, local: Option<&str>) -> BytesMut {
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
    if let Some(client) = target.peer {
        let ip = client.sent(local);
        // The client's chain (all its X-Forwarded-For lines, in order) plus its address.
        out.extend_from_slice(b"x-forwarded-for: ");
        for value in headers.get_all(&X_FORWARDED_FOR) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(ip);
        out.extend_from_slice(b"\r\n");
        line(&mut out, X_REAL_IP.as_str(), ip);
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
    use actix_web::http::header::HeaderValue;

    fn head(headers: &HeaderMap, authority: Option<&str>, framing: Framing) -> String {
        let ip = ClientAddr::new("10.0.0.1".parse().unwrap(), false).unwrap();
        let target = Target {
            method: &Method::PUT,
            path: "/b/k?x=%2F",
            peer: Some(&ip),
            authority,
            backend: "10.9.9.9:9000",
            framing,
            extra: None,
        };
        let local = Some("192.0.2.7");
        String::from_utf8(request_head(headers, &target, local).to_vec()).unwrap()
    }

    /// `X-Forwarded-For` and `X-Real-IP` for a client at `client` on a backend
    /// connection from `local`.
    fn sent_for(client: &str, forward_loopback: bool, local: Option<&str>) -> (String, String) {
        let ip = ClientAddr::new(client.parse().unwrap(), forward_loopback).unwrap();
        let target = Target {
            method: &Method::GET,
            path: "/",
            peer: Some(&ip),
            authority: None,
            backend: "b:9000",
            framing: Framing::None,
            extra: None,
        };
        let mut h = HeaderMap::new();
        h.append(
            X_FORWARDED_FOR.clone(),
            HeaderValue::from_static("203.0.113.9"),
        );
        let out = String::from_utf8(request_head(&h, &target, local).to_vec()).unwrap();
        let find = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .to_string()
        };
        (find("x-forwarded-for: "), find("x-real-ip: "))
    }

    #[test]
    fn a_loopback_client_is_sent_as_the_backend_connections_local_address() {
        let sent = |client, local| sent_for(client, false, local);
        let chain = |ip: &str| (format!("203.0.113.9, {ip}"), ip.to_string());
        assert_eq!(sent("127.0.0.1", Some("192.0.2.7")), chain("192.0.2.7"));
        assert_eq!(sent("127.0.0.53", Some("192.0.2.7")), chain("192.0.2.7"));
        assert_eq!(sent("::1", Some("2001:db8::7")), chain("2001:db8::7"));
        // A dual-stack listener sees an IPv4 client as mapped: still loopback.
        assert_eq!(
            sent("::ffff:127.0.0.1", Some("10.1.1.1")),
            chain("10.1.1.1")
        );
        // No local address known: the client's own.
        assert_eq!(sent("127.0.0.1", None), chain("127.0.0.1"));
        // Any other client goes as it is.
        assert_eq!(sent("10.0.0.1", Some("192.0.2.7")), chain("10.0.0.1"));
        assert_eq!(
            sent("::ffff:10.0.0.1", Some("192.0.2.7")),
            chain("10.0.0.1")
        );
        assert_eq!(
            sent("2001:db8::1", Some("2001:db8::7")),
            chain("2001:db8::1")
        );
        // --forward-loopback-addr: the loopback address goes as it is.
        assert_eq!(
            sent_for("127.0.0.1", true, Some("192.0.2.7")),
            chain("127.0.0.1")
        );
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
