//! Response heads from a backend: parsed, checked, and turned into the header map
//! the client gets (hop-by-hop headers removed), with how the body is framed.

use std::mem::MaybeUninit;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::StatusCode;

use super::Error;

/// Most header lines a response head may have (HAProxy's default limit is 101).
pub const MAX_HEADERS: usize = 100;
/// Largest response head read before giving up on it.
pub const MAX_HEAD: usize = 64 * 1024;

/// How the body after a head ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304 or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    Close,
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// What the client gets: hop-by-hop headers and the framing headers removed
    /// (a 304 keeps its Content-Length, which describes the entity).
    pub headers: HeaderMap,
    /// The backend's Content-Length, also for HEAD and 304.
    pub length: Option<u64>,
    pub framing: Framing,
    /// The connection may carry another request once the body is read.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// A 1xx other than 101: another head follows.
    pub fn interim(&self) -> bool {
        self.status.is_informational() && self.status != StatusCode::SWITCHING_PROTOCOLS
    }
}

/// Parses the head at the start of `buf`: `Ok(None)` while it is incomplete, else the
/// head and its length in bytes.
pub fn parse(buf: &[u8], head_request: bool) -> Result<Option<(ResponseHead, usize)>, Error> {
    parse_as(buf, head_request, false)
}

/// Like `parse`, for the answer to an upgrade request: a `101 Switching Protocols`
/// is accepted and keeps its `Upgrade` header, which the client needs to see.
pub fn parse_upgrade(buf: &[u8]) -> Result<Option<(ResponseHead, usize)>, Error> {
    parse_as(buf, false, true)
}

fn parse_as(
    buf: &[u8],
    head_request: bool,
    upgrade: bool,
) -> Result<Option<(ResponseHead, usize)>, Error> {
    // Left uninitialised: filling 100 empty fields for every head costs more than
    // parsing a small one.
    let mut lines = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut res = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut res, buf, &mut lines)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => return Err(Error::Invalid("head too large")),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Invalid("too many headers")),
        Err(_) => return Err(Error::Invalid("malformed head")),
    };
    let status = res
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or(Error::Invalid("bad status"))?;
    let switched = status == StatusCode::SWITCHING_PROTOCOLS;
    if switched && !upgrade {
        // Upgrade is forwarded only on upgrade requests: a switch was not asked for.
        return Err(Error::Invalid("unrequested protocol switch"));
    }
    let http11 = res.version == Some(1);

    // First the headers that decide framing and which others are hop-by-hop.
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut close = !http11;
    let mut named: Vec<&[u8]> = Vec::new();
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = parse_length(h.value).ok_or(Error::Invalid("bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Invalid("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
            // Only a final `chunked` frames the body; anything else runs to close.
            chunked = last_token(h.value).is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    // HTTP/1.0 closes unless asked to keep the connection.
                    close = close && http11;
                } else if !token.is_empty() {
                    named.push(token);
                }
            }
        }
    }

    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if bodiless {
        Framing::Empty
    } else if transfer_encoding {
        if chunked {
            Framing::Chunked
        } else {
            Framing::Close
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Close,
        }
    };
    // A message with both framings may be a smuggling attempt: never reuse it. After
    // a switch the connection speaks another protocol.
    let both_framings = transfer_encoding && length.is_some();
    let keep_alive = !(close || switched || both_framings || framing == Framing::Close);

    let mut headers = HeaderMap::with_capacity(res.headers.len());
    for h in res.headers.iter() {
        let name = h.name.as_bytes();
        let framing_header =
            name.eq_ignore_ascii_case(b"content-length") && status != StatusCode::NOT_MODIFIED;
        // A switch names the protocol switched to; `Connection: upgrade` names it too.
        let kept = switched && name.eq_ignore_ascii_case(b"upgrade");
        if !kept
            && (framing_header
                || is_hop_by_hop(name)
                || named.iter().any(|n| n.eq_ignore_ascii_case(name)))
        {
            continue;
        }
        let name = HeaderName::from_bytes(name).map_err(|_| Error::Invalid("bad header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| Error::Invalid("bad header value"))?;
        headers.append(name, value);
    }
    let head = ResponseHead {
        status,
        headers,
        length: if transfer_encoding { None } else { length },
        framing,
        keep_alive,
    };
    Ok(Some((head, len)))
}

/// Digits only, as RFC 9110 §8.6 allows; no sign, no spaces inside.
fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = trim(value);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn last_token(value: &[u8]) -> Option<&[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim)
        .rfind(|t| !t.is_empty())
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), compared without regard to case.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Result<Option<(ResponseHead, usize)>, Error> {
        parse(raw.as_bytes(), false)
    }

    #[test]
    fn framing_and_reuse() {
        let raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello";
        let (h, n) = head(raw).unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(5), true));
        assert_eq!(&raw[n..], "hello");
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers.get("x-a").unwrap(), "1");

        let (h, _) = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Chunked, true));
        assert!(h.headers.is_empty());

        let (h, _) =
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            (h.framing, h.keep_alive, h.length),
            (Framing::Chunked, false, None)
        );

        let (h, _) = head("HTTP/1.0 200 OK\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Close, false));
        let (h, _) = head("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);

        let (h, _) = head("HTTP/1.1 200 OK\r\nConnection: close, X-Drop\r\nX-Drop: 1\r\nContent-Length: 1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive && h.headers.is_empty());

        let (h, _) = head("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.framing, h.length), (Framing::Empty, Some(9)));
        assert_eq!(h.headers.get("content-length").unwrap(), "9");

        let (h, _) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.framing, h.length, h.keep_alive),
            (Framing::Empty, Some(9), true)
        );

        let (h, _) = head("HTTP/1.1 100 Continue\r\n\r\n").unwrap().unwrap();
        assert!(h.interim());
    }

    #[test]
    fn a_switch_is_accepted_only_when_asked_for_and_keeps_its_upgrade_header() {
        let raw = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, X-Drop\r\nUpgrade: websocket\r\nX-Drop: 1\r\nSec-WebSocket-Accept: abc\r\n\r\nframe";
        assert!(head(raw).is_err());
        let (h, n) = parse_upgrade(raw.as_bytes()).unwrap().unwrap();
        assert_eq!(&raw[n..], "frame");
        assert_eq!(h.status, StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!((h.framing, h.keep_alive), (Framing::Empty, false));
        assert_eq!(h.headers.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.headers.get("sec-websocket-accept").unwrap(), "abc");
        assert!(h.headers.get("connection").is_none() && h.headers.get("x-drop").is_none());
        // Any other answer is an ordinary one, hop-by-hop headers removed.
        let (h, _) =
            parse_upgrade(b"HTTP/1.1 403 No\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\nno")
                .unwrap()
                .unwrap();
        assert_eq!((h.framing, h.keep_alive), (Framing::Length(2), true));
        assert!(h.headers.get("upgrade").is_none());
    }

    #[test]
    fn broken_heads_are_refused() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Len").unwrap().is_none());
        for raw in [
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1 2\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Name: 1\r\n\r\n",
            "NOT HTTP\r\n\r\n",
        ] {
            assert!(head(raw).is_err(), "{raw:?}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD));
        assert!(head(&huge).is_err());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: 1\r\n")).collect();
        assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")).is_err());
    }
}
