//! S3's way of saying a node sheds load: `503` with the error code `SlowDown`
//! (MinIO also says `SlowDownRead` and `SlowDownWrite`). The retry engine
//! (`attempts`) sends such a request to another backend once. The body is looked
//! at only while it is small and prompt, and never consumed: when no other backend
//! takes the request, the client gets the answer byte for byte.

use std::time::Duration;

use actix_web::http::StatusCode;

use crate::upstream::{Reply, Response};

/// S3 error bodies are a few hundred bytes of XML: a longer body is not one.
const MAX_BODY: usize = 4096;
/// A body not here by then passes through as it comes, rather than hold the
/// client's answer. Long enough for one written after its head and held back by
/// Nagle's algorithm until a delayed ACK (40 ms).
const PROMPT: Duration = Duration::from_millis(250);

/// Whether `answer` is S3's SlowDown. A HEAD's answer has no body to say so (S3
/// answers a shedding HEAD with a bare 503), so for a HEAD every 503 counts: sent
/// again at most once, within the budget, that costs little.
pub async fn is_slowdown(answer: &mut Response, head_request: bool) -> bool {
    if answer.head.status != StatusCode::SERVICE_UNAVAILABLE {
        return false;
    }
    match &mut answer.body {
        Reply::Empty => head_request,
        Reply::Whole(bytes) => bytes.len() <= MAX_BODY && says_slowdown(bytes),
        Reply::Stream(body) => {
            let peeked = actix_rt::time::timeout(PROMPT, body.peek_whole(MAX_BODY)).await;
            matches!(peeked, Ok(Some(bytes)) if says_slowdown(&bytes))
        }
    }
}

/// An S3 error body whose first `<Code>` starts with `SlowDown`.
pub fn says_slowdown(body: &[u8]) -> bool {
    const OPEN: &[u8] = b"<Code>";
    let Some(start) = find(body, OPEN) else {
        return false;
    };
    let code = &body[start + OPEN.len()..];
    let Some(end) = find(code, b"</Code>") else {
        return false;
    };
    code[..end].trim_ascii().starts_with(b"SlowDown")
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_s3_slowdown_code_says_slow_down() {
        let s3 = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
            <Message>Please reduce your request rate.</Message><RequestId>1</RequestId></Error>";
        assert!(says_slowdown(s3));
        assert!(says_slowdown(b"<Error><Code>SlowDownRead</Code></Error>"));
        assert!(says_slowdown(b"<Error><Code> SlowDown\n</Code></Error>"));
        for other in [
            &b"<Error><Code>ServiceUnavailable</Code></Error>"[..],
            b"<Error><Code>InternalError</Code><Message>SlowDown</Message></Error>",
            b"<Error><Code>SlowDown",
            b"SlowDown",
            b"<html>503 Service Unavailable</html>",
            b"",
        ] {
            assert!(!says_slowdown(other), "{}", String::from_utf8_lossy(other));
        }
    }
}
