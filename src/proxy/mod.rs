//! The data path: the catch-all handler, what it refuses, the header rules towards
//! backends, request bodies, the response relay, retries, hedged reads, S3's
//! SlowDown, WebSocket pass-through and the errors it answers.

pub mod attempts;
pub mod cached;
pub mod error;
pub mod forward;
pub mod handler;
pub mod headers;
pub mod hedge;
pub mod relay;
pub mod request_body;
pub mod respond;
pub mod retry;
pub mod shared;
pub mod slowdown;
pub mod upgrade;
pub mod validate;
