//! The S3 shared cache: the bytes clients read through sidekick are kept, in whole
//! blocks and pieces of blocks, in one bucket shared by every sidecar. The origin
//! still authorises and revalidates every request (`proxy::cached` drives that);
//! this layer knows what is cacheable, where things live in the bucket, what covers
//! a request, and reads and fills blocks and pieces.

pub mod block;
pub mod claim;
pub mod cover;
pub mod fill;
pub mod hit;
pub mod key;
pub mod lock;
pub mod meta;
pub mod range;
pub mod recent;
pub mod request;
pub mod startup;
pub mod store;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use actix::Addr;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::http::StatusCode;
use futures_util::future;
use futures_util::stream::{self, StreamExt};

use crate::cache::cover::{Layout, Part, Span};
use crate::cache::key::Version;
use crate::cache::lock::{Claim, Fill, FillGuard, Fills};
use crate::cache::meta::Meta;
use crate::cache::recent::Recent;
use crate::cache::request::Lookup;
use crate::cache::store::{Store, LOOKUP_TIMEOUT};
use crate::config::cache_flags::CacheConfig;
use crate::observe::cache_stats::STATS;
use crate::pool::view::SharedView;
use crate::pool::Pool;
use crate::upstream::head::ResponseHead;
use crate::upstream::Upstream;

/// Requests to the store at once while finding what covers a range.
const PROBES: usize = 8;

pub struct Cache {
    pub cfg: CacheConfig,
    pub store: Store,
    pub fills: Arc<Fills>,
    pub recent: Recent,
    /// The bucket passed its read-write check (`startup`).
    usable: AtomicBool,
    /// The store honours conditional writes (found by `startup`): claims are atomic.
    conditional: AtomicBool,
}

/// The version of an object the cache holds, as far as it knows.
pub struct Known {
    pub meta: Arc<Meta>,
    /// This sidekick is filling the bytes asked for now.
    pub filling: Option<Arc<Fill>>,
    /// The bytes asked for (`None`: an unsatisfiable range) and the stored spans
    /// that hold them, when they all are.
    pub need: Option<Span>,
    pub cover: Option<Vec<Part>>,
}

impl Known {
    /// The cache can answer once the origin confirms the version.
    pub fn covers(&self) -> bool {
        self.need.is_none() || self.cover.is_some()
    }
}

/// What the cache has for a request, found before the origin is asked.
pub enum Found {
    /// A version, covering the request or not.
    Known(Known),
    /// Nothing: the request claimed the object's fill (`None`: another fill of other
    /// bytes is in progress, or the claim is not to be had).
    Nothing(Option<FillGuard>),
}

/// A fill to start once the answer is on its way: the version, the names of its
/// stored bytes and which bytes of the object the answer brings.
pub struct Plan {
    /// Held when this fill claimed the object: readers wait for it.
    pub guard: Option<FillGuard>,
    pub meta: Arc<Meta>,
    pub version: Version,
    pub span: Span,
}

/// Why an answer is not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum Unstored {
    /// Not a storable answer (a 404, no ETag, `no-store`, …): still a miss.
    Answer,
    /// The object is smaller than `--cache-min-size` or larger than the maximum: the
    /// request is counted as a bypass.
    Size,
}

impl Cache {
    pub fn new(cfg: CacheConfig, view: SharedView, pool: Addr<Pool>) -> Self {
        let store = Store::new(&cfg, view, pool);
        let recent = Recent::new(cfg.remember);
        Cache {
            cfg,
            store,
            fills: Arc::default(),
            recent,
            usable: AtomicBool::new(false),
            conditional: AtomicBool::new(false),
        }
    }

    /// The cache can be used now: the bucket works and a node is up.
    pub fn ready(&self) -> bool {
        self.usable.load(Relaxed) && self.store.up()
    }

    fn set_usable(&self, usable: bool) {
        self.usable.store(usable, Relaxed);
    }

    /// Whether the store honours `If-None-Match: *` and `If-Match` on a PUT.
    pub fn conditional(&self) -> bool {
        self.conditional.load(Relaxed)
    }

    fn set_conditional(&self, conditional: bool) {
        self.conditional.store(conditional, Relaxed);
    }

    /// What the cache holds of the object and whether it covers the request: a fill
    /// in progress here that brings those bytes, else what this sidekick remembers,
    /// else the metadata and the spans in the store. When nothing is held, the
    /// object's fill is claimed, or, claimed by another request, waited for (a
    /// short wait). `Err` when the store failed to say.
    pub async fn find(&self, up: &Upstream, lookup: &Lookup) -> Result<Found, String> {
        let name = self.meta_name(lookup);
        if let Some((fill, meta, span)) = self.fills.current(&name) {
            if let Some(known) = joined(fill, meta, span, lookup) {
                return Ok(Found::Known(known));
            }
        }
        let (meta, mut held) = match self.recent.get(&name) {
            Some(remembered) => remembered,
            None => match self.stored_meta(up, lookup, &name).await? {
                Some(meta) => (meta, Vec::new()),
                None => return Ok(self.claim(&name, lookup).await),
            },
        };
        let need = lookup.need(meta.size);
        let mut known = Known {
            cover: need.and_then(|need| self.cover(&meta, need, &held)),
            meta,
            filling: None,
            need,
        };
        if let (Some(need), None) = (need, &known.cover) {
            let probe = self.probe(up, &known.meta, need, &held);
            let found = actix_rt::time::timeout(LOOKUP_TIMEOUT, probe).await;
            let found = found.unwrap_or_default();
            self.recent.held(&name, &known.meta, found.iter().copied());
            held.extend(found);
            known.cover = self.cover(&known.meta, need, &held);
        }
        Ok(Found::Known(known))
    }

    /// The metadata in the store, remembered.
    async fn stored_meta(
        &self,
        up: &Upstream,
        lookup: &Lookup,
        name: &str,
    ) -> Result<Option<Arc<Meta>>, String> {
        let read = self.store.get(up, name, meta::MAX_META);
        let stored = match actix_rt::time::timeout(LOOKUP_TIMEOUT, read).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(STATS.error("metadata lookup timed out".to_string())),
        };
        // Blocks larger than this sidekick's would make each reader hold more than
        // its bound (a few blocks): a miss, refilled with this sidekick's blocks.
        let meta = stored
            .and_then(|bytes| Meta::decode(&bytes, &lookup.identity, self.cfg.max_size))
            .filter(|meta| meta.block_size <= self.cfg.block_size);
        Ok(meta.map(|meta| {
            let meta = Arc::new(meta);
            self.recent.remember(name, meta.clone());
            meta
        }))
    }

    /// Nothing held: the fill is claimed, or the one claimed meanwhile by another
    /// request is waited for and joined when it brings the bytes asked for.
    async fn claim(&self, name: &str, lookup: &Lookup) -> Found {
        match self.fills.claim(name) {
            Some(Claim::Mine(guard)) => Found::Nothing(Some(guard)),
            Some(Claim::Theirs(fill)) => wait_joined(fill, lookup).await,
            None => Found::Nothing(None),
        }
    }

    /// The stored spans of `held` that cover `need`: all blocks when one fill
    /// stored them all.
    fn cover(&self, meta: &Meta, need: Span, held: &[Span]) -> Option<Vec<Part>> {
        let layout = meta.layout();
        match meta.complete {
            true => cover::cover(need, layout.blocks(need)),
            false => cover::cover(need, held.iter().copied()),
        }
    }

    /// Looks in the store for what holds the bytes of `need` that `held` does not:
    /// for each block, the block; for a block the range covers in part, also the
    /// piece of exactly those bytes (a repeat of the range finds it by name), and
    /// when neither is there, the block's pieces listed. Failures find nothing. It
    /// stops at the first block not covered: the request is then a miss.
    async fn probe(&self, up: &Upstream, meta: &Meta, need: Span, held: &[Span]) -> Vec<Span> {
        let layout = meta.layout();
        let version = Version::new(
            &self.cfg.prefix,
            &meta.identity,
            &meta.etag,
            meta.size,
            meta.block_size,
        );
        let missing = layout
            .cut(need)
            .filter(|want| cover::cover(*want, held.iter().copied()).is_none());
        let version = &version;
        let probed = stream::iter(missing)
            .map(|want| async move { (want, self.probe_block(up, version, layout, want).await) })
            .buffered(PROBES);
        let mut probed = std::pin::pin!(probed);
        let mut found = Vec::new();
        while let Some((want, spans)) = probed.next().await {
            let covered = cover::cover(want, spans.iter().copied()).is_some();
            found.extend(spans);
            if !covered {
                break;
            }
        }
        found
    }

    /// The spans found in the store that hold `want`, inside one block.
    async fn probe_block(
        &self,
        up: &Upstream,
        version: &Version,
        layout: Layout,
        want: Span,
    ) -> Vec<Span> {
        let index = want.first / layout.block_size;
        let block = layout.block(index);
        let has = |name: String| async move { self.store.has(up, &name).await.unwrap_or(false) };
        let exact = async {
            match want == block {
                true => false,
                false => has(version.name(want, false)).await,
            }
        };
        match future::join(has(version.block(index)), exact).await {
            (true, _) => return vec![block],
            (_, true) => return vec![want],
            _ => {}
        }
        let pieces = match self.store.list(up, &version.pieces_of(index)).await {
            Ok(keys) => keys,
            Err(_) => return Vec::new(),
        };
        pieces
            .iter()
            .filter_map(|key| key::piece_span(key))
            .filter(|span| block.contains(*span))
            .collect()
    }

    /// `meta` (a version with the headers of a full answer) is remembered, and when
    /// `store`, written for the other sidekicks in the background.
    pub fn keep(self: &Arc<Self>, up: Rc<Upstream>, meta: Arc<Meta>, store: bool) {
        let name = key::meta(&self.cfg.prefix, &meta.identity);
        self.recent.remember(&name, meta.clone());
        if !store {
            return;
        }
        let cache = self.clone();
        actix_rt::spawn(async move {
            if let Err(e) = cache.store.put(&up, &name, meta.encode().into()).await {
                log::debug!("metadata of {} not stored: {e}", meta.identity);
            }
        });
    }

    pub fn meta_name(&self, lookup: &Lookup) -> String {
        key::meta(&self.cfg.prefix, &lookup.identity)
    }

    /// A fill of this answer (under the claim `guard`, when it has it), when it may
    /// be stored: a 200 or a 206 of known total size, with a strong ETag and a
    /// length, not `no-store` or `private`, no SSE-C, within the size bounds.
    /// `known` is the version held before: when it is this one, it stays complete.
    pub fn plan(
        &self,
        lookup: &Lookup,
        head: &ResponseHead,
        guard: Option<FillGuard>,
        known: Option<&Meta>,
    ) -> Result<Plan, Unstored> {
        if self.outside_bounds(head) {
            return Err(Unstored::Size);
        }
        let (span, size) = self.extent(head).ok_or(Unstored::Answer)?;
        let (mut meta, version) = self.version(lookup, head, size).ok_or(Unstored::Answer)?;
        if known.is_some_and(|k| k.complete && k.same_version(&meta)) {
            meta.complete = true;
        }
        let meta = Arc::new(meta);
        self.recent.remember(&self.meta_name(lookup), meta.clone());
        if let Some(guard) = &guard {
            guard.begin(meta.clone(), span);
        }
        Ok(Plan {
            guard,
            meta,
            version,
            span,
        })
    }

    /// The answer is of an object smaller or larger than the cache keeps.
    pub fn outside_bounds(&self, head: &ResponseHead) -> bool {
        self.extent(head)
            .is_some_and(|(_, size)| size < self.cfg.min_size || size > self.cfg.max_size)
    }

    /// Which bytes of the object an answer brings, and the object's size.
    fn extent(&self, head: &ResponseHead) -> Option<(Span, u64)> {
        let length = head.length?;
        let (first, size) = match head.status {
            StatusCode::OK => (0, length),
            StatusCode::PARTIAL_CONTENT => {
                let value = head.headers.get("content-range")?.to_str().ok()?;
                let (start, end, size) = range::content_range(value)?;
                (end - start + 1 == length).then_some((start, size))?
            }
            _ => return None,
        };
        let span = Span {
            first,
            last: (first + length).checked_sub(1)?,
        };
        (size > 0).then_some((span, size))
    }

    /// The version an answer carries, if it may be stored.
    fn version(&self, lookup: &Lookup, head: &ResponseHead, size: u64) -> Option<(Meta, Version)> {
        let private = head.headers.get_all(CACHE_CONTROL).any(|v| {
            v.to_str().unwrap_or("").split(',').any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("no-store") || d.eq_ignore_ascii_case("private")
            })
        });
        let sse_c = head
            .headers
            .contains_key("x-amz-server-side-encryption-customer-algorithm");
        if private || sse_c {
            return None;
        }
        let etag = meta::strong_etag(&head.headers)?.to_string();
        let block_size = self.cfg.block_size;
        let version = Version::new(&self.cfg.prefix, &lookup.identity, &etag, size, block_size);
        let meta = Meta {
            identity: lookup.identity.clone(),
            etag,
            size,
            block_size,
            headers: meta::representation(head),
            complete: false,
            confirmed: meta::unix_now(),
        };
        Some((meta, version))
    }
}

/// A fill claimed by another request (or mirrored here from another sidecar's):
/// its version waited for (a short wait), and the fill joined when the bytes it
/// brings hold those asked for.
pub async fn wait_joined(fill: Arc<Fill>, lookup: &Lookup) -> Found {
    match fill.wait_version().await {
        Some((meta, span)) => match joined(fill, meta, span, lookup) {
            Some(known) => Found::Known(known),
            None => Found::Nothing(None),
        },
        None => Found::Nothing(None),
    }
}

/// A fill in progress here, when the bytes it brings hold those asked for: the
/// request waits for its spans.
pub fn joined(fill: Arc<Fill>, meta: Arc<Meta>, span: Span, lookup: &Lookup) -> Option<Known> {
    let need = lookup.need(meta.size);
    let cover = match need {
        Some(need) if span.contains(need) => cover::cover(need, meta.layout().cut(span))?,
        Some(_) => return None,
        None => Vec::new(),
    };
    Some(Known {
        meta,
        filling: Some(fill),
        need,
        cover: Some(cover),
    })
}
