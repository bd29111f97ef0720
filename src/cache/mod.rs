//! The S3 shared cache: objects read through sidekick are kept, in blocks, in one
//! bucket shared by every sidecar. The origin still authorises and revalidates every
//! request (`proxy::cached` drives that); this layer knows what is cacheable, where
//! things live in the bucket, and reads and fills blocks.

pub mod block;
pub mod fill;
pub mod hit;
pub mod key;
pub mod lock;
pub mod meta;
pub mod range;
pub mod request;
pub mod startup;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use actix::Addr;
use actix_web::http::header::CACHE_CONTROL;
use actix_web::http::StatusCode;

use crate::cache::lock::{Fill, FillGuard, Fills};
use crate::cache::meta::Meta;
use crate::cache::request::Lookup;
use crate::cache::store::{Store, LOOKUP_TIMEOUT};
use crate::config::cache_flags::CacheConfig;
use crate::observe::cache_stats::STATS;
use crate::pool::view::SharedView;
use crate::pool::Pool;
use crate::upstream::head::ResponseHead;
use crate::upstream::Upstream;

pub struct Cache {
    pub cfg: CacheConfig,
    pub store: Store,
    pub fills: Arc<Fills>,
    /// The bucket passed its read-write check (`startup`).
    usable: AtomicBool,
}

/// The version of an object the cache holds, as far as it knows.
pub struct Known {
    pub meta: Arc<Meta>,
    /// This sidekick is filling it now.
    pub filling: Option<Arc<Fill>>,
}

/// A fill to start once the answer is on its way: the version, the folder of its
/// blocks and where the answer's bytes begin in the object.
pub struct Plan {
    pub guard: FillGuard,
    pub meta: Arc<Meta>,
    pub version: String,
    pub offset: u64,
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
        Cache {
            cfg,
            store,
            fills: Arc::default(),
            usable: AtomicBool::new(false),
        }
    }

    /// The cache can be used now: the bucket works and a node is up.
    pub fn ready(&self) -> bool {
        self.usable.load(Relaxed) && self.store.up()
    }

    fn set_usable(&self, usable: bool) {
        self.usable.store(usable, Relaxed);
    }

    /// What the cache holds of the object: the fill in progress here, else the
    /// metadata in the store. `Err` when the store failed to say.
    pub async fn known(&self, up: &Upstream, lookup: &Lookup) -> Result<Option<Known>, String> {
        let name = self.meta_name(lookup);
        if let Some((fill, meta)) = self.fills.current(&name) {
            return Ok(Some(Known {
                meta,
                filling: Some(fill),
            }));
        }
        let read = self.store.get(up, &name, meta::MAX_META);
        let stored = match actix_rt::time::timeout(LOOKUP_TIMEOUT, read).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(STATS.error("metadata lookup timed out".to_string())),
        };
        Ok(stored
            .and_then(|bytes| Meta::decode(&bytes, &lookup.identity, self.cfg.max_size))
            .map(|meta| Known {
                meta: Arc::new(meta),
                filling: None,
            }))
    }

    pub fn meta_name(&self, lookup: &Lookup) -> String {
        key::meta(&self.cfg.prefix, &lookup.identity)
    }

    /// A fill of this answer under the claim `guard`, when it may be stored: a 200
    /// or a 206 of known total size, with a strong ETag and a length, not
    /// `no-store` or `private`, no SSE-C, within the size bounds.
    pub fn plan(
        &self,
        lookup: &Lookup,
        head: &ResponseHead,
        guard: FillGuard,
    ) -> Result<Plan, Unstored> {
        if self.outside_bounds(head) {
            return Err(Unstored::Size);
        }
        let (offset, size) = self.extent(head).ok_or(Unstored::Answer)?;
        let (meta, version) = self.version(lookup, head, size).ok_or(Unstored::Answer)?;
        guard.begin(meta.clone(), version.clone());
        Ok(Plan {
            guard,
            meta,
            version,
            offset,
        })
    }

    /// The answer is of an object smaller or larger than the cache keeps.
    pub fn outside_bounds(&self, head: &ResponseHead) -> bool {
        self.extent(head)
            .is_some_and(|(_, size)| size < self.cfg.min_size || size > self.cfg.max_size)
    }

    /// Where an answer's bytes begin in the object, and the object's size.
    fn extent(&self, head: &ResponseHead) -> Option<(u64, u64)> {
        let length = head.length?;
        let (offset, size) = match head.status {
            StatusCode::OK => (0, length),
            StatusCode::PARTIAL_CONTENT => {
                let value = head.headers.get("content-range")?.to_str().ok()?;
                let (start, end, size) = range::content_range(value)?;
                (end - start + 1 == length).then_some((start, size))?
            }
            _ => return None,
        };
        (size > 0).then_some((offset, size))
    }

    /// The version an answer carries, if it may be stored.
    fn version(
        &self,
        lookup: &Lookup,
        head: &ResponseHead,
        size: u64,
    ) -> Option<(Arc<Meta>, String)> {
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
        let version = key::version(&self.cfg.prefix, &lookup.identity, &etag, size, block_size);
        let meta = Arc::new(Meta {
            identity: lookup.identity.clone(),
            etag,
            size,
            block_size,
            headers: meta::representation(head),
            complete: false,
        });
        Some((meta, version))
    }
}
