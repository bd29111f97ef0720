//! The response relay: streams a backend's body to the client, holding the
//! backend's in-flight count and cutting a body that ends short of its length.

use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;
use log::warn;

use crate::pool::backend::InFlight;

/// Streams a backend's response body to the client, holding the backend's
/// in-flight count until the last byte (or until the client goes away).
pub struct Relay<S> {
    body: S,
    guard: InFlight,
    /// The backend's Content-Length, if it sent one, and what has been relayed.
    expected: Option<u64>,
    relayed: u64,
}

impl<S> Relay<S> {
    pub fn new(body: S, guard: InFlight, expected: Option<u64>) -> Self {
        Relay {
            body,
            guard,
            expected,
            relayed: 0,
        }
    }

    fn failed(&self, why: &dyn std::fmt::Display) {
        let backend = self.guard.backend();
        backend.stats.failures.fetch_add(1, Relaxed);
        warn!("{} failed mid-response: {why}", backend.name);
    }
}

impl<S> Stream for Relay<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                self.relayed += n;
                self.guard.backend().stats.tx_bytes.fetch_add(n, Relaxed);
            }
            // Returning an error cuts the client's connection: a short body must
            // never look complete.
            Poll::Ready(Some(Err(e))) => match self.expected {
                Some(expected) => {
                    let why = format!("body ended at {} of {expected} bytes: {e}", self.relayed);
                    self.failed(&why);
                }
                None => self.failed(e),
            },
            Poll::Ready(None) => {
                if let Some(expected) = self.expected.filter(|e| *e > self.relayed) {
                    let why = format!("body ended at {} of {expected} bytes", self.relayed);
                    self.failed(&why);
                    return Poll::Ready(Some(Err(PayloadError::Incomplete(None))));
                }
            }
            Poll::Pending => {}
        }
        next
    }
}
