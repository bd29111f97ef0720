//! The client's request body: read ahead whole when it is small enough to be sent
//! again on a retry, else streamed through once.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH, TRANSFER_ENCODING};
use bytes::BytesMut;
use futures_util::{stream, StreamExt};

use crate::proxy::headers;
use crate::upstream::request::Body;

/// Reads a body of at most `limit` bytes whole, so that it can be sent again.
/// HTTP/2 frames bodies itself: without a Content-Length, the body is whatever DATA
/// frames come (none for most GETs), sent on chunked when there is any.
pub async fn read_ahead(
    headers: &HeaderMap,
    mut payload: Payload,
    limit: u64,
) -> Result<Body, PayloadError> {
    let h2 = matches!(payload, Payload::H2 { .. });
    let h2_unsized = h2 && !headers.contains_key(CONTENT_LENGTH);
    if headers.contains_key(TRANSFER_ENCODING) || h2_unsized {
        let mut chunks = Vec::new();
        let mut size = 0u64;
        while size <= limit {
            match payload.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    size += chunk.len() as u64;
                    chunks.push(Ok(chunk));
                }
                None if h2_unsized && size == 0 => return Ok(Body::None),
                None => {
                    let mut bytes = BytesMut::with_capacity(size as usize);
                    for chunk in chunks.into_iter().flatten() {
                        bytes.extend_from_slice(&chunk);
                    }
                    let bytes = bytes.freeze();
                    return Ok(Body::Buffered {
                        bytes,
                        chunked: true,
                    });
                }
            }
        }
        let rest = stream::iter(chunks).chain(payload);
        return Ok(Body::Chunked(Some(Box::new(rest))));
    }
    match headers
        .contains_key(CONTENT_LENGTH)
        .then(|| headers::content_length(headers))
    {
        None => Ok(Body::None),
        Some(None) => Err(PayloadError::Incomplete(None)),
        Some(Some(n)) if n > limit => Ok(Body::Sized(n, Some(payload))),
        Some(Some(n)) => {
            let mut bytes = BytesMut::with_capacity(n as usize);
            while let Some(chunk) = payload.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            if bytes.len() as u64 != n {
                return Err(PayloadError::Incomplete(None));
            }
            Ok(Body::Buffered {
                bytes: bytes.freeze(),
                chunked: false,
            })
        }
    }
}
