//! A request with the cache on, in the order it goes: bypass what is not cacheable;
//! find the version the cache holds and whether its stored bytes (or a fill on its
//! way, here or in another sidecar) cover the request; when they do, revalidate
//! with the origin and read the first of them at once; serve them after the
//! origin's confirmation, or forward; store what the origin sent. A cacheable GET
//! of a version the cache covers goes to the origin as the client signed it plus
//! `If-None-Match` with the cached ETag; one the cache cannot cover goes as sent, so
//! that it never needs a second trip. Every other answer reaches the client as it
//! is, and a storable one fills the cache on its way. The answer says `X-Cache:
//! HIT`, `MISS` or `BYPASS`.

use std::pin::{pin, Pin};
use std::sync::Arc;

use actix_web::body::{BoxBody, SizedStream};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT_RANGES, CONTENT_RANGE};
use actix_web::http::{Method, StatusCode};
use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::future::{self, Either};
use futures_util::Stream;
use log::debug;

use crate::cache::cover::Span;
use crate::cache::hit::{self, Miss};
use crate::cache::lock::{Claim, FillGuard};
use crate::cache::meta::{self, Meta};
use crate::cache::range::Spec;
use crate::cache::request::{self, Lookup};
use crate::cache::{claim, fill, Cache, Found, Known};
use crate::observe::cache_stats::{Outcome, STATS};
use crate::pool::backend::InFlight;
use crate::proxy::error::ProxyError;
use crate::proxy::forward::Exchange;
use crate::proxy::request_body::Upload;
use crate::proxy::respond::respond;
use crate::upstream::request::Body;
use crate::upstream::Response;

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

pub async fn answer(
    ex: &Exchange<'_>,
    cache: &Arc<Cache>,
    body: &mut Body,
    upload: Option<&Upload>,
) -> HttpResponse {
    let Some(lookup) = cacheable(ex, cache, body) else {
        return bypass(ex, body, upload).await;
    };
    let mut read = Read {
        ex,
        cache,
        lookup,
        outcome: Outcome::Miss,
    };
    match read.find().await {
        Some(Found::Known(known)) if known.covers() => read.revalidate(known, body).await,
        Some(Found::Known(known)) => read.forward(body, None, Some(&known.meta)).await,
        Some(Found::Nothing(claim)) => read.forward(body, claim, None).await,
        None => read.forward(body, None, None).await,
    }
}

/// The object and range of a request the cache may answer.
fn cacheable(ex: &Exchange<'_>, cache: &Cache, body: &Body) -> Option<Lookup> {
    if !cache.ready() || !matches!(body, Body::None) {
        return None;
    }
    let (path, query) = match ex.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (ex.path, None),
    };
    let req = ex.req;
    let authority = req.uri().authority().map(|a| a.as_str());
    request::lookup(req.method(), path, query, req.headers(), authority)
}

async fn bypass(ex: &Exchange<'_>, body: &mut Body, upload: Option<&Upload>) -> HttpResponse {
    let head_request = ex.req.method() == Method::HEAD;
    let res = match ex.forward(body, upload, None).await {
        Ok((res, guard)) => respond(head_request, res, guard, ex.shared, None),
        Err(res) => res,
    };
    tagged(res, Outcome::Bypass)
}

/// A range asking for fewer bytes than a block, known before the object's size is.
fn short(lookup: &Lookup, block_size: u64) -> bool {
    match lookup.range {
        Some(Spec::Suffix(n)) => n < block_size,
        Some(Spec::From {
            start,
            end: Some(end),
        }) => end.saturating_sub(start) < block_size,
        _ => false,
    }
}

/// One cacheable request on its way.
struct Read<'a, 'r> {
    ex: &'a Exchange<'r>,
    cache: &'a Arc<Cache>,
    lookup: Lookup,
    /// `Miss`, or `Error` once the cache failed this request.
    outcome: Outcome,
}

type Opened = Result<Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>>, Miss>;

impl Read<'_, '_> {
    /// What the cache holds for the request, or a fill that brings it (in this
    /// sidekick, or in another sidecar and followed through its claim in the
    /// bucket); a cold read's claim of the fill, taken in the bucket too. `None`
    /// when the client's own conditions decide, or the store failed to say.
    async fn find(&mut self) -> Option<Found> {
        if self.lookup.own_conditions {
            return None;
        }
        let (cache, up, lookup) = (self.cache, &self.ex.worker.cache_upstream, &self.lookup);
        match cache.find(up, lookup).await {
            // Claimed here: claimed in the bucket too, or another sidecar's fill is
            // followed; not for a read shorter than a block (a footer), which the
            // claim's round trips would cost more than the herd.
            Ok(Found::Nothing(Some(guard))) if !short(lookup, cache.cfg.block_size) => {
                Some(claim::claim(cache, up, guard, lookup).await)
            }
            // Not covered: those bytes may be on their way in another sidecar's fill.
            Ok(Found::Known(known)) if !known.covers() => {
                let joined = claim::join(cache, up, &known, lookup).await;
                Some(Found::Known(joined.unwrap_or(known)))
            }
            Ok(found) => Some(found),
            Err(e) => {
                self.failed(format_args!("lookup: {e}"));
                None
            }
        }
    }

    /// The stored bytes cover the request: the origin is asked (with the cached
    /// ETag) while the first of them are read, and only its confirmation serves
    /// them. Headers not shown by a full answer for `--cache-header-ttl` are asked
    /// for without the condition: a 200 or 206 with the same ETag confirms too, its
    /// body is left unread, and its headers are stored.
    async fn revalidate(mut self, known: Known, body: &mut Body) -> HttpResponse {
        let mut meta = known.meta.clone();
        let ttl = self.cache.cfg.header_ttl.as_secs();
        let shown = !meta.unconfirmed(ttl, meta::unix_now());
        let condition = shown.then_some(("if-none-match", meta.etag.as_str()));
        // The store is read while the origin decides; the origin's answer never
        // waits for the store unless it confirms.
        let mut opening = Box::pin(self.open(&known));
        let (sent, opened) = {
            let revalidated = pin!(self.ex.forward(body, None, condition));
            match future::select(revalidated, opening.as_mut()).await {
                Either::Left((sent, _)) => (sent, None),
                Either::Right((opened, revalidated)) => (revalidated.await, Some(opened)),
            }
        };
        let (mut res, guard) = match sent {
            Ok(sent) => sent,
            Err(res) => return tagged(res, self.outcome),
        };
        let confirmed = meta::confirms(&res.head, &meta.etag);
        let opened = match (opened, confirmed) {
            (Some(opened), _) => {
                drop(opening);
                opened
            }
            (None, true) => opening.await,
            (None, false) => {
                drop(opening);
                Err("not confirmed".into())
            }
        };
        if !confirmed {
            if res.head.status == StatusCode::NOT_MODIFIED {
                self.failed(format_args!("the origin's 304 names another ETag"));
                return self.forward(body, None, None).await;
            }
            return self.pass(res, guard, None, Some(&meta));
        }
        if res.head.status != StatusCode::NOT_MODIFIED {
            meta = self.refresh(&meta, &res);
        }
        let mut fresh = std::mem::take(&mut res.head.headers);
        // Stop reading a 200 that ignored the condition: its connection closes.
        drop((res, guard));
        if meta.rewritten(&fresh) {
            // Written again with the same bytes: its headers are asked for afresh.
            let (res, guard) = match self.ex.forward(body, None, None).await {
                Ok(sent) => sent,
                Err(res) => return tagged(res, self.outcome),
            };
            if !meta::confirms(&res.head, &meta.etag) {
                return self.pass(res, guard, None, Some(&meta));
            }
            meta = self.refresh(&meta, &res);
            fresh = res.head.headers;
            drop(guard);
        }
        match opened {
            Ok(stream) => tagged(self.serve(&meta, &fresh, stream, known.need), Outcome::Hit),
            Err(why) => {
                // The one case worth a second trip: the origin confirmed, the store
                // failed. Asked again as the client sent it.
                self.failed(format_args!("hit not served: {why}"));
                self.cache
                    .recent
                    .forget(&self.cache.meta_name(&self.lookup));
                self.forward(body, None, None).await
            }
        }
    }

    /// The covering spans of the known version, the first read and checked.
    async fn open(&self, known: &Known) -> Opened {
        let parts = known.cover.clone().unwrap_or_default();
        let up = &self.ex.worker.cache_upstream;
        let filling = known.filling.as_deref();
        let blocks = hit::open(self.cache, up, &known.meta, filling, parts).await?;
        Ok(Box::pin(blocks))
    }

    /// The version `meta` with the headers of the origin's full answer `res`, stored
    /// for the next readers when they changed or had not been shown for the TTL (an
    /// origin that ignores `If-None-Match` sends them every time).
    fn refresh(&self, meta: &Arc<Meta>, res: &Response) -> Arc<Meta> {
        let now = meta::unix_now();
        let fresh = Arc::new(meta.refreshed(&res.head, now));
        let ttl = self.cache.cfg.header_ttl.as_secs();
        let store = fresh.headers != meta.headers || meta.unconfirmed(ttl, now);
        let up = self.ex.worker.cache_upstream.clone();
        self.cache.keep(up, fresh.clone(), store);
        fresh
    }

    /// The cached bytes the request asks for, with the stored headers updated by
    /// the origin's `fresh` ones.
    fn serve(
        &self,
        meta: &Meta,
        fresh: &HeaderMap,
        stream: impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
        need: Option<Span>,
    ) -> HttpResponse {
        let size = meta.size;
        let Some(span) = need else {
            let mut res = ProxyError::InvalidRange.response(self.ex.resource());
            if let Ok(all) = HeaderValue::from_str(&format!("bytes */{size}")) {
                res.headers_mut().insert(CONTENT_RANGE, all);
            }
            return res;
        };
        let status = match self.lookup.range {
            None => StatusCode::OK,
            Some(_) => StatusCode::PARTIAL_CONTENT,
        };
        let body = BoxBody::new(SizedStream::new(span.bytes(), stream));
        let mut res = HttpResponse::with_body(status, body);
        *res.headers_mut() = meta.headers_with(fresh);
        res.headers_mut()
            .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if status == StatusCode::PARTIAL_CONTENT {
            let range = format!("bytes {}-{}/{size}", span.first, span.last);
            if let Ok(range) = HeaderValue::from_str(&range) {
                res.headers_mut().insert(CONTENT_RANGE, range);
            }
        }
        res
    }

    /// The request as the client sent it; its answer passed on.
    async fn forward(
        self,
        body: &mut Body,
        claim: Option<FillGuard>,
        known: Option<&Meta>,
    ) -> HttpResponse {
        match self.ex.forward(body, None, None).await {
            Ok((res, guard)) => self.pass(res, guard, claim, known),
            Err(res) => tagged(res, self.outcome),
        }
    }

    /// The origin's answer to the client, its bytes stored on the way when it may
    /// be (under the object's claim when this request has it or can take it).
    fn pass(
        self,
        res: Response,
        guard: InFlight,
        claim: Option<FillGuard>,
        known: Option<&Meta>,
    ) -> HttpResponse {
        let cache = self.cache;
        let claim = claim.or_else(|| match cache.fills.claim(&cache.meta_name(&self.lookup)) {
            Some(Claim::Mine(guard)) => Some(guard),
            _ => None,
        });
        let mut outcome = self.outcome;
        if outcome == Outcome::Miss && cache.outside_bounds(&res.head) {
            outcome = Outcome::Bypass;
        }
        let up = &self.ex.worker.cache_upstream;
        let filler = cache
            .plan(&self.lookup, &res.head, claim, known)
            .ok()
            .map(|plan| fill::start(cache.clone(), up.clone(), plan));
        tagged(
            respond(false, res, guard, self.ex.shared, Some(filler)),
            outcome,
        )
    }

    fn failed(&mut self, why: std::fmt::Arguments<'_>) {
        self.outcome = Outcome::Error;
        debug!("cache of {}: {why}", self.lookup.identity);
    }
}

fn tagged(mut res: HttpResponse, outcome: Outcome) -> HttpResponse {
    STATS.outcome(outcome);
    res.headers_mut()
        .insert(X_CACHE.clone(), HeaderValue::from_static(outcome.header()));
    res
}
