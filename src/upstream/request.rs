//! The request body sidekick sends to a backend, and how it is framed.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::Stream;

/// How the request body sidekick sends is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
}

/// The request body, read ahead when it is small enough to be sent again.
pub enum Body {
    None,
    /// Whole body in memory; `chunked` keeps the client's framing.
    Buffered {
        bytes: Bytes,
        chunked: bool,
    },
    /// Streamed with a Content-Length; sent once.
    Sized(u64, Option<Payload>),
    /// Streamed chunked (what was read ahead, then the rest); sent once.
    Chunked(Option<Box<dyn Stream<Item = Result<Bytes, PayloadError>> + Unpin>>),
}

impl Body {
    pub fn replayable(&self) -> bool {
        matches!(self, Body::None | Body::Buffered { .. })
    }

    /// How the body is framed towards the backend.
    pub fn framing(&self) -> Framing {
        match self {
            Body::None => Framing::None,
            Body::Buffered {
                chunked: false,
                bytes,
            } => Framing::Length(bytes.len() as u64),
            Body::Sized(n, _) => Framing::Length(*n),
            Body::Buffered { chunked: true, .. } | Body::Chunked(_) => Framing::Chunked,
        }
    }
}
