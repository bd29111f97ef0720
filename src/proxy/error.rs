//! Errors sidekick answers itself, as S3-style XML bodies that S3 clients can parse.

use actix_web::http::header::{CONTENT_TYPE, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use derive_more::Display;

#[derive(Debug, Display, Clone, Copy, PartialEq, Eq)]
pub enum ProxyError {
    /// No backend of any site is up.
    #[display("BackendDown")]
    BackendDown,
    /// The chosen backend failed before it sent a response head.
    #[display("BadGateway")]
    BadGateway,
    /// The request cannot be forwarded as it is.
    #[display("BadRequest")]
    BadRequest,
    /// The request head is larger than the limits allow.
    #[display("RequestHeaderSectionTooLarge")]
    HeadersTooLarge,
    /// A method or coding sidekick does not forward (CONNECT, a transfer coding other
    /// than chunked).
    #[display("NotImplemented")]
    NotImplemented,
    /// More client connections than `--max-conns`.
    #[display("SlowDown")]
    TooManyConnections,
    /// A cached object's range that it does not have (answered as the origin would).
    #[display("InvalidRange")]
    InvalidRange,
}

impl ProxyError {
    fn status(self) -> StatusCode {
        match self {
            ProxyError::BackendDown | ProxyError::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest => StatusCode::BAD_REQUEST,
            ProxyError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ProxyError::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            ProxyError::TooManyConnections => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::InvalidRange => StatusCode::RANGE_NOT_SATISFIABLE,
        }
    }

    fn message(self) -> &'static str {
        match self {
            ProxyError::BackendDown => {
                "No backend server is up; sidekick cannot serve this request."
            }
            ProxyError::BadGateway => "The backend server failed before it answered.",
            ProxyError::BadRequest => "The request cannot be forwarded.",
            ProxyError::HeadersTooLarge => "The request headers are too large.",
            ProxyError::NotImplemented => "sidekick does not forward this kind of request.",
            ProxyError::TooManyConnections => "Too many connections; reduce your request rate.",
            ProxyError::InvalidRange => "The requested range is not satisfiable.",
        }
    }

    fn body(self, resource: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{self}</Code><Message>{}</Message><Resource>{}</Resource></Error>",
            self.message(),
            xml_escape(resource)
        )
    }

    /// The XML error response for a request on `resource` (the raw request path).
    pub fn response(self, resource: &str) -> HttpResponse {
        let body = self.body(resource);
        let mut res = HttpResponse::build(self.status());
        res.insert_header((CONTENT_TYPE, "application/xml"));
        match self {
            ProxyError::BackendDown => {
                res.insert_header((RETRY_AFTER, "120"));
            }
            // A refused request's body may still be on the wire: close rather than
            // guess where the next request starts.
            ProxyError::BadRequest
            | ProxyError::HeadersTooLarge
            | ProxyError::NotImplemented
            | ProxyError::TooManyConnections => {
                res.force_close();
            }
            ProxyError::BadGateway | ProxyError::InvalidRange => {}
        }
        res.body(body)
    }
}

/// The same answer as raw HTTP/1.1 bytes that close the connection, for a client
/// answered before its request is read (so with no resource to name).
pub fn raw_response(error: ProxyError) -> Vec<u8> {
    let status = error.status();
    let body = error.body("");
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_response_is_a_complete_closing_answer() {
        let raw = String::from_utf8(raw_response(ProxyError::TooManyConnections)).unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}", body.len())));
        assert!(body.contains("<Code>SlowDown</Code>"));
    }

    #[test]
    fn escapes_resource() {
        assert_eq!(
            xml_escape("/a?b=<x>&c='\""),
            "/a?b=&lt;x&gt;&amp;c=&apos;&quot;"
        );
    }
}
