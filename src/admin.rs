//! sidekick's own paths. `GET /v1/health`: 200 while any site has a backend up.
//! `GET /.prometheus/metrics`: Prometheus metrics.

use std::sync::atomic::Ordering::Relaxed;

use actix::Addr;
use actix_web::http::header::{ACCEPT, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse};

use crate::cache::Cache;
use crate::config::paths::{CERTIFICATES_PATH, METRICS_PATH};
use crate::observe::cache_metrics::{CacheFamilies, CacheNode};
use crate::pool::messages::Snapshot;
use crate::pool::view::SharedView;
use crate::pool::Pool;

/// Answers one of sidekick's own paths (`config::paths::is_own`).
pub async fn route(
    req: &HttpRequest,
    view: &SharedView,
    pool: &Addr<Pool>,
    cache: Option<&Cache>,
) -> HttpResponse {
    match req.path() {
        METRICS_PATH => metrics(req, pool, cache).await,
        CERTIFICATES_PATH => crate::tls::certificates(req),
        _ => health(view),
    }
}

fn health(view: &SharedView) -> HttpResponse {
    if view.load().any_up() {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::BadGateway().finish()
    }
}

/// Asks the Pool for every backend's state and encodes it with the hot-path counters.
async fn metrics(req: &HttpRequest, pool: &Addr<Pool>, cache: Option<&Cache>) -> HttpResponse {
    let openmetrics = req.headers().get_all(ACCEPT).any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let cache = match cache {
        Some(c) => match c.store.pool.send(Snapshot).await {
            Ok(nodes) => Some(CacheFamilies(
                nodes
                    .backends
                    .iter()
                    .map(|n| CacheNode {
                        endpoint: n.backend.endpoint.to_string(),
                        up: n.up,
                        errors: n.backend.stats.failures.load(Relaxed),
                    })
                    .collect(),
            )),
            Err(_) => None,
        },
        None => None,
    };
    let rendered = match pool.send(Snapshot).await {
        Ok(status) => {
            crate::observe::metrics::render(status, cache, openmetrics).map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match rendered {
        Ok((content_type, body)) => HttpResponse::Ok()
            .insert_header((CONTENT_TYPE, content_type))
            .body(body),
        Err(e) => {
            log::error!("metrics: {e}");
            HttpResponse::InternalServerError().finish()
        }
    }
}
