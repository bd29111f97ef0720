//! The catch-all forwarding handler: answers sidekick's own paths, refuses what must
//! not pass, hands WebSockets to `upgrade` and cacheable reads to `cached`, and
//! forwards the rest (`forward`, `respond`).

use actix_web::http::{Method, Version};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::paths::is_own;
use crate::conn::closing;
use crate::conn::conn_info::ConnInfo;
use crate::proxy::error::ProxyError;
use crate::proxy::forward::Exchange;
use crate::proxy::request_body::read_ahead;
use crate::proxy::respond::respond;
use crate::proxy::shared::{Shared, Worker};
use crate::proxy::upgrade;
use crate::proxy::validate;
use crate::upstream::request::Body;

pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
    worker: web::Data<Worker>,
) -> HttpResponse {
    let conn = req.conn_data::<ConnInfo>();
    let h1 = req.version() < Version::HTTP_2;
    if h1 && conn.is_some_and(ConnInfo::closing) {
        return closing::unanswered().await;
    }
    let mut res = answer(&req, payload, &shared, &worker, conn).await;
    if h1 && closing::closes(&req, &res) {
        closing::close(&mut res);
        if let Some(conn) = conn {
            conn.mark_closing();
        }
    }
    res
}

async fn answer(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
    worker: &Worker,
    conn: Option<&ConnInfo>,
) -> HttpResponse {
    if is_own(req) {
        // An own answer reads the body sent with it (one past --retry-buffer is
        // refused, and the connection closes): left unread, actix would close after
        // the answer and still start the requests read behind it.
        let body = read_ahead(req.headers(), payload.into_inner(), shared.retry_buffer).await;
        if !matches!(body, Ok((Body::None | Body::Buffered { .. }, _))) {
            return ProxyError::BadRequest.response(req.path());
        }
        return crate::admin::route(req, &shared.view, &shared.pool, shared.cache.as_deref()).await;
    }
    if conn.is_some_and(ConnInfo::over_limit) {
        return ProxyError::TooManyConnections.response(req.path());
    }
    if let Err(e) = validate::check(req.head(), shared.limits) {
        return e.response(req.path());
    }
    let websocket = match upgrade::wanted(req.head()) {
        Ok(websocket) => websocket,
        Err(e) => return e.response(req.path()),
    };
    // Once per client request, however many backends it tries: the budget's share.
    worker.budget.request();
    // The rarer paths are boxed: an async fn's state is as large as its largest
    // branch, and actix moves the handler's whole state once per request.
    if websocket {
        return Box::pin(forward_upgrade(req, payload, shared, worker)).await;
    }
    let Some(path) = req.uri().path_and_query() else {
        return ProxyError::BadRequest.response(req.path());
    };
    let (mut body, upload) =
        match read_ahead(req.headers(), payload.into_inner(), shared.retry_buffer).await {
            Ok(read) => read,
            // The client went away or sent a broken body: nothing was forwarded.
            Err(_) => return ProxyError::BadRequest.response(path.path()),
        };
    let head_request = req.method() == Method::HEAD;
    let exchange = Exchange {
        req,
        path: path.as_str(),
        conn,
        shared,
        worker,
    };
    if let Some(cache) = &shared.cache {
        return Box::pin(crate::proxy::cached::answer(
            &exchange,
            cache,
            &mut body,
            upload.as_ref(),
        ))
        .await;
    }
    match exchange.forward(&mut body, upload.as_ref(), None).await {
        Ok((res, guard)) => respond(head_request, res, guard, shared, None),
        Err(res) => res,
    }
}

/// A WebSocket request, through `proxy::upgrade`.
async fn forward_upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    shared: &Shared,
    worker: &Worker,
) -> HttpResponse {
    match upgrade::forward(req, payload.into_inner(), shared, worker).await {
        upgrade::Outcome::Answer(res) => res,
        upgrade::Outcome::Refused(res, guard) => respond(false, res, guard, shared, None),
    }
}
