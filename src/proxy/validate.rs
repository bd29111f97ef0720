//! Requests sidekick refuses before anything reaches a backend: what actix's parser
//! lets through but a smuggling-safe proxy must not forward.

use actix_web::dev::RequestHead;
use actix_web::http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use actix_web::http::{Method, Version};

pub use crate::proxy::error::ProxyError;

/// Request head limits.
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_header_size: u64,
    pub max_headers: usize,
}

/// `Err` names the answer for a request that must not be forwarded.
pub fn check(head: &RequestHead, limits: Limits) -> Result<(), ProxyError> {
    let headers = &head.headers;
    if head.method == Method::CONNECT {
        return Err(ProxyError::NotImplemented);
    }
    if headers.len() > limits.max_headers {
        return Err(ProxyError::HeadersTooLarge);
    }
    let target = head.uri.path_and_query().map_or(1, |p| p.as_str().len())
        + head.uri.authority().map_or(0, |a| a.as_str().len() + 8);
    let mut size = (target + head.method.as_str().len() + 12) as u64;
    for (name, value) in headers {
        size += (name.as_str().len() + value.len() + 4) as u64;
    }
    if size > limits.max_header_size {
        return Err(ProxyError::HeadersTooLarge);
    }
    let host = headers.get(HOST);
    if head.version == Version::HTTP_11 && host.is_none() {
        return Err(ProxyError::BadRequest);
    }
    // Absolute form must name the host the request is for. HTTP/2 carries the host as
    // `:authority` (in the URI) and usually no Host header; when both are sent they
    // must agree.
    let h2 = head.version == Version::HTTP_2;
    if let Some(authority) = head.uri.authority() {
        let same = host.map_or(h2, |h| {
            h.as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        });
        if !same {
            return Err(ProxyError::BadRequest);
        }
    } else if h2 && host.is_none() {
        return Err(ProxyError::BadRequest);
    }
    if let Some(te) = headers.get(TRANSFER_ENCODING) {
        // Only plain chunked on HTTP/1.1, never together with a length: anything else
        // is how requests are smuggled past a proxy.
        if head.version != Version::HTTP_11 || headers.contains_key(CONTENT_LENGTH) {
            return Err(ProxyError::BadRequest);
        }
        if !te.as_bytes().eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::NotImplemented);
        }
    }
    // WebSocket requests are checked in `proxy::upgrade`.
    Ok(())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const LIMITS: Limits = Limits {
        max_header_size: 65536,
        max_headers: 96,
    };

    fn h2(uri: &str, host: Option<&str>) -> Result<(), ProxyError> {
        let mut req = TestRequest::default().version(Version::HTTP_2).uri(uri);
        if let Some(host) = host {
            req = req.insert_header((HOST, host));
        }
        check(req.to_http_request().head(), LIMITS)
    }

    #[test]
    fn http2_names_its_host_in_the_authority() {
        assert!(h2("https://s3.example:9000/b/k", None).is_ok());
        assert!(h2("https://s3.example:9000/b/k", Some("S3.example:9000")).is_ok());
        assert!(h2("https://s3.example:9000/b/k", Some("other.example")).is_err());
        assert!(h2("/b/k", Some("s3.example")).is_ok());
        assert!(h2("/b/k", None).is_err());
    }
}
