//! A request with the cache on. A cacheable GET of an object the cache holds goes to
//! the origin as the client signed it plus `If-None-Match` with the cached ETag;
//! only the origin's confirmation (a 304, or a 200 with that ETag) lets the cached
//! bytes answer. Every other answer reaches the client as it is, and a storable one
//! fills the cache on its way. The answer says `X-Cache: HIT`, `MISS` or `BYPASS`.

use std::sync::Arc;

use actix_web::body::{BoxBody, SizedStream};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, CONTENT_RANGE};
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use log::debug;

use crate::cache::hit::{self, Miss};
use crate::cache::lock::Claim;
use crate::cache::request::{self, Lookup};
use crate::cache::{claim, fill, meta, Cache, Known};
use crate::observe::cache_stats::{Outcome, STATS};
use crate::proxy::error::ProxyError;
use crate::proxy::forward::Exchange;
use crate::proxy::request_body::Upload;
use crate::proxy::respond::respond;
use crate::upstream::request::Body;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

pub async fn answer(
    ex: &Exchange<'_>,
    cache: &Arc<Cache>,
    body: &mut Body,
    upload: Option<&Upload>,
) -> HttpResponse {
    let (path, query) = match ex.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (ex.path, None),
    };
    let req = ex.req;
    let lookup = (cache.ready() && matches!(body, Body::None))
        .then(|| {
            let authority = req.uri().authority().map(|a| a.as_str());
            request::lookup(req.method(), path, query, req.headers(), authority)
        })
        .flatten();
    let Some(lookup) = lookup else {
        let head_request = req.method() == Method::HEAD;
        let res = match ex.forward(body, upload, None).await {
            Ok((res, guard)) => respond(head_request, res, guard, ex.shared, None),
            Err(res) => res,
        };
        return tagged(res, Outcome::Bypass);
    };
    // A miss the cache failed on counts as an error.
    let mut miss = Outcome::Miss;
    let up = &ex.worker.cache_upstream;
    let name = cache.meta_name(&lookup);
    // The claim to fill the object, taken before the origin is asked when the cache
    // does not hold it: readers that come meanwhile wait for this one's version.
    let mut claim = None;
    let known = match lookup.own_conditions {
        // The client's own conditions decide; its answer is its own.
        true => None,
        false => match cache.known(up, &lookup).await {
            // Held in part: its fill may be running in another sidecar.
            Ok(Some(known)) if known.filling.is_none() && !known.meta.complete => {
                let filling = claim::join(cache, up, &name, &known.meta).await;
                Some(Known { filling, ..known })
            }
            Ok(Some(known)) => Some(known),
            // Claimed in this sidekick and in the bucket: one fill for the fleet.
            Ok(None) => match claim::claim(cache, up, &name, &lookup.identity).await {
                Some(Claim::Mine(guard)) => {
                    claim = Some(guard);
                    None
                }
                Some(Claim::Theirs(fill)) => fill.wait_version().await.map(|meta| Known {
                    meta,
                    filling: Some(fill),
                }),
                None => None,
            },
            Err(e) => {
                miss = Outcome::Error;
                debug!("cache lookup of {}: {e}", lookup.identity);
                None
            }
        },
    };
    let condition = known
        .as_ref()
        .map(|k| ("if-none-match", k.meta.etag.as_str()));
    let (mut res, mut guard) = match ex.forward(body, None, condition).await {
        Ok(sent) => sent,
        Err(res) => return tagged(res, miss),
    };
    if let Some(known) = &known {
        let confirmed = meta::confirms(&res.head, &known.meta.etag);
        if confirmed || res.head.status == StatusCode::NOT_MODIFIED {
            // Stop reading a 200 that ignored the condition: its connection closes.
            let fresh = std::mem::take(&mut res.head.headers);
            drop((res, guard));
            let served = match confirmed {
                true => serve(ex, cache, known, &lookup, &fresh).await,
                false => Err("the origin's 304 names another ETag".into()),
            };
            match served {
                Ok(hit) => return tagged(hit, Outcome::Hit),
                Err(why) => {
                    miss = Outcome::Error;
                    debug!("cache hit of {} not served: {why}", lookup.identity);
                }
            }
            // Asked again as the client sent it.
            (res, guard) = match ex.forward(body, None, None).await {
                Ok(sent) => sent,
                Err(res) => return tagged(res, miss),
            };
        }
    }
    // A fill needs the claim: taken now if not before (and not held by another).
    let claim = claim.or_else(|| match cache.fills.claim(&name) {
        Some(Claim::Mine(guard)) => Some(guard),
        _ => None,
    });
    if miss == Outcome::Miss && cache.outside_bounds(&res.head) {
        miss = Outcome::Bypass;
    }
    let filler = claim
        .and_then(|claim| cache.plan(&lookup, &res.head, claim).ok())
        .map(|plan| fill::start(cache.clone(), up.clone(), plan));
    tagged(respond(false, res, guard, ex.shared, Some(filler)), miss)
}

/// The cached bytes the request asks for, with the stored headers updated by the
/// origin's `fresh` ones.
async fn serve(
    ex: &Exchange<'_>,
    cache: &Arc<Cache>,
    known: &Known,
    lookup: &Lookup,
    fresh: &HeaderMap,
) -> Result<HttpResponse, Miss> {
    let meta = &known.meta;
    let size = meta.size;
    let span = match lookup.range {
        None => (0, size - 1),
        Some(spec) => match spec.resolve(size) {
            Some(span) => span,
            None => {
                let mut res = ProxyError::InvalidRange.response(ex.resource());
                let all = HeaderValue::from_str(&format!("bytes */{size}"));
                if let Ok(all) = all {
                    res.headers_mut().insert(CONTENT_RANGE, all);
                }
                return Ok(res);
            }
        },
    };
    let up = &ex.worker.cache_upstream;
    let blocks = hit::open(cache, up, meta, known.filling.as_deref(), span).await?;
    let (status, length) = match lookup.range {
        None => (StatusCode::OK, size),
        Some(_) => (StatusCode::PARTIAL_CONTENT, span.1 - span.0 + 1),
    };
    let body = BoxBody::new(SizedStream::new(length, blocks));
    let mut res = HttpResponse::with_body(status, body);
    *res.headers_mut() = meta.headers_with(fresh);
    res.headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if status == StatusCode::PARTIAL_CONTENT {
        let range = format!("bytes {}-{}/{size}", span.0, span.1);
        if let Ok(range) = HeaderValue::from_str(&range) {
            res.headers_mut().insert(CONTENT_RANGE, range);
        }
    }
    Ok(res)
}

fn tagged(mut res: HttpResponse, outcome: Outcome) -> HttpResponse {
    STATS.outcome(outcome);
    res.headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static(outcome.header()));
    res
}
