//! `Connection: close` on HTTP/1, and the requests a client pipelines behind it.
//!
//! actix-http decodes every request it has read, also those behind one that closes
//! the connection, and starts each as soon as the answer before it is written. Its
//! codec takes the connection type of the last request decoded, so an answer says
//! `connection: close` only if the response sets it; and where actix closes by
//! itself (a body left unread), requests already read behind are still started.
//! After a close a server must not process further requests (RFC 9112 §9.6), so
//! sidekick marks the connection when an answer closes it (the client asked, or
//! sidekick refused the request), sets `connection: close` on that answer, and a
//! request on a marked connection never runs: no backend sees it and it gets no
//! answer, as behind HAProxy or nginx.

use std::io;
use std::time::Duration;

use actix_web::body::BodyStream;
use actix_web::http::{ConnectionType, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;

/// How long a request behind a close is held before its connection is cut: as long
/// as actix lingers on a connection it closes (its default client disconnect timeout).
const LINGER: Duration = Duration::from_secs(1);

/// True when the answer `res` to `req` ends the connection.
pub fn closes(req: &HttpRequest, res: &HttpResponse) -> bool {
    req.head().connection_type() == ConnectionType::Close
        || res.head().connection_type() == ConnectionType::Close
}

/// Says in `res` that the connection closes after it (actix would otherwise take
/// the connection type of a request decoded after this one).
pub fn close(res: &mut HttpResponse) {
    res.head_mut().set_connection_type(ConnectionType::Close);
}

/// What a request behind a close gets: nothing. Where actix is closing the
/// connection already, it drops this request while it waits. Otherwise it is
/// holding the request as the next one, and the previous answer is being written;
/// once that has had time to leave, a body that fails makes actix drop the
/// connection without writing this head.
pub async fn unanswered() -> HttpResponse {
    actix_rt::time::sleep(LINGER).await;
    let cut = stream::once(async {
        Err::<Bytes, _>(io::Error::other("request after Connection: close"))
    });
    HttpResponse::with_body(StatusCode::BAD_REQUEST, BodyStream::new(cut)).map_into_boxed_body()
}
