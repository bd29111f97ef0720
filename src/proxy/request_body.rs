//! The client's request body: read ahead whole when it is small enough to be sent
//! again on a retry, else streamed through once; a chunked one streamed is also
//! watched for a malformed tail while the backend is still reading what came before.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, CONTENT_LENGTH, TRANSFER_ENCODING};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use crate::proxy::headers;
use crate::upstream::request::Body;

/// How much of a chunked body the watch reads ahead of the backend.
const LOOKAHEAD: usize = 256 * 1024;

/// Reads a body of at most `limit` bytes whole, so that it can be sent again.
/// HTTP/2 frames bodies itself: without a Content-Length, the body is whatever DATA
/// frames come (none for most GETs), sent on chunked when there is any. A chunked
/// body streamed comes with its `Upload` watch.
pub async fn read_ahead(
    headers: &HeaderMap,
    mut payload: Payload,
    limit: u64,
) -> Result<(Body, Option<Upload>), PayloadError> {
    let h2 = matches!(payload, Payload::H2 { .. });
    let h2_unsized = h2 && !headers.contains_key(CONTENT_LENGTH);
    if headers.contains_key(TRANSFER_ENCODING) || h2_unsized {
        let mut chunks = VecDeque::new();
        let mut size = 0u64;
        while size <= limit {
            match payload.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    size += chunk.len() as u64;
                    chunks.push_back(chunk);
                }
                None if h2_unsized && size == 0 => return Ok((Body::None, None)),
                None => {
                    let mut bytes = BytesMut::with_capacity(size as usize);
                    for chunk in chunks {
                        bytes.extend_from_slice(&chunk);
                    }
                    let bytes = bytes.freeze();
                    let body = Body::Buffered {
                        bytes,
                        chunked: true,
                    };
                    return Ok((body, None));
                }
            }
        }
        let upload = Upload::new(payload, chunks, size as usize);
        return Ok((Body::Chunked(Some(Box::new(upload.clone()))), Some(upload)));
    }
    let body = match headers
        .contains_key(CONTENT_LENGTH)
        .then(|| headers::content_length(headers))
    {
        None => Body::None,
        Some(None) => return Err(PayloadError::Incomplete(None)),
        Some(Some(n)) if n > limit => Body::Sized(n, Some(payload)),
        Some(Some(n)) => {
            let mut bytes = BytesMut::with_capacity(n as usize);
            while let Some(chunk) = payload.next().await {
                bytes.extend_from_slice(&chunk?);
            }
            if bytes.len() as u64 != n {
                return Err(PayloadError::Incomplete(None));
            }
            Body::Buffered {
                bytes: bytes.freeze(),
                chunked: false,
            }
        }
    };
    Ok((body, None))
}

/// A chunked body streamed to a backend, shared by the stream that sends it and a
/// watch that reads ahead. actix takes a malformed chunk for a client that went away
/// and drops the connection at the end of the poll that found it: the 400 gets out
/// only if it is answered in that poll. But the chunks before the fault come first,
/// and the upload may be waiting for a connection to the backend or for it to take
/// the last piece. The watch, polled whenever the upload waits, takes in all that
/// actix has read (never more than its buffers hold), so the fault is seen at once
/// while sidekick holds less than `LOOKAHEAD` beyond what it read ahead.
#[derive(Clone)]
pub struct Upload(Rc<RefCell<Ahead>>);

struct Ahead {
    payload: Payload,
    /// Read from the client, not yet sent.
    queued: VecDeque<Bytes>,
    held: usize,
    /// The watch stops reading at this much held.
    cap: usize,
    failed: Option<PayloadError>,
    ended: bool,
}

impl Upload {
    fn new(payload: Payload, queued: VecDeque<Bytes>, held: usize) -> Self {
        Upload(Rc::new(RefCell::new(Ahead {
            payload,
            queued,
            held,
            cap: held + LOOKAHEAD,
            failed: None,
            ended: false,
        })))
    }

    /// Ready once the body has turned out broken; reads what the client has sent
    /// meanwhile.
    pub fn poll_broken(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ahead = self.0.borrow_mut();
        let ahead = &mut *ahead;
        if ahead.failed.is_some() {
            return Poll::Ready(());
        }
        if ahead.ended || ahead.held >= ahead.cap {
            return Poll::Pending;
        }
        loop {
            match Pin::new(&mut ahead.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    ahead.held += chunk.len();
                    ahead.queued.push_back(chunk);
                }
                Poll::Ready(Some(Err(e))) => {
                    ahead.failed = Some(e);
                    return Poll::Ready(());
                }
                Poll::Ready(None) => {
                    ahead.ended = true;
                    return Poll::Pending;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl Stream for Upload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut ahead = self.0.borrow_mut();
        let ahead = &mut *ahead;
        if let Some(chunk) = ahead.queued.pop_front() {
            ahead.held -= chunk.len();
            return Poll::Ready(Some(Ok(chunk)));
        }
        if let Some(e) = ahead.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if ahead.ended {
            return Poll::Ready(None);
        }
        let next = Pin::new(&mut ahead.payload).poll_next(cx);
        if let Poll::Ready(None) = next {
            ahead.ended = true;
        }
        next
    }
}
