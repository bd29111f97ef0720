//! Serving a hit: the blocks that cover the requested bytes, each checked whole
//! before a byte of it is sent. The first block is read, and every other one found
//! present (unless one fill stored them all), before the head goes out, so that a
//! block missing or corrupt then is a miss (the origin answers); one failing later
//! cuts the connection.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use crate::cache::lock::Fill;
use crate::cache::meta::Meta;
use crate::cache::{block, key, Cache};
use crate::observe::cache_stats::STATS;
use crate::upstream::Upstream;

/// Blocks checked for presence at once.
const CHECKS: usize = 8;
/// Bytes of blocks read ahead while one is sent (at least two blocks): enough to
/// keep the store busy, little enough for many readers at once.
const READ_AHEAD: u64 = 8 << 20;

/// Why a hit could not be served; the origin answers instead.
pub type Miss = String;

/// The bytes `start..=end` of the cached version `meta`, ready to stream.
pub async fn open(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    meta: &Meta,
    filling: Option<&Fill>,
    (start, end): (u64, u64),
) -> Result<impl Stream<Item = Result<Bytes, PayloadError>> + 'static, Miss> {
    let bs = meta.block_size;
    let (first, last) = (start / bs, end / bs);
    let version = key::version(&cache.cfg.prefix, &meta.identity, &meta.etag, meta.size, bs);
    // Blocks a fill here just stored, or a complete fill stored, are not looked for.
    let mut known_present = meta.complete;
    if let Some(fill) = filling {
        if !fill.wait_for(first, last).await {
            return Err("the fill in progress stopped before these blocks".into());
        }
        known_present = true;
    }
    let span = move |index: u64| {
        let at = index * bs;
        let from = start.max(at) - at;
        let to = end.min(at + bs - 1) - at;
        (from as usize, to as usize + 1)
    };
    let head = read(cache, up, &version, meta, first).await?;
    let (from, to) = span(first);
    let head = head.slice(from..to);
    let present = known_present
        || stream::iter(first + 1..=last)
            .map(|index| {
                let name = key::block(&version, index);
                async move { cache.store.has(up, &name).await }
            })
            .buffer_unordered(CHECKS)
            .try_all(|present| async move { present })
            .await
            .map_err(|e| e.to_string())?;
    if !present {
        return Err("a block is missing".into());
    }
    let (cache, up, meta) = (cache.clone(), up.clone(), meta.clone());
    let ahead = (READ_AHEAD / bs).max(2) as usize;
    let rest = stream::iter(first + 1..=last)
        .map(move |index| {
            let (cache, up, meta, version) =
                (cache.clone(), up.clone(), meta.clone(), version.clone());
            async move {
                let (from, to) = span(index);
                match read(&cache, &up, &version, &meta, index).await {
                    Ok(data) => Ok(data.slice(from..to)),
                    Err(e) => {
                        if meta.complete {
                            forget_complete(&cache, &up, &meta).await;
                        }
                        Err(PayloadError::Io(std::io::Error::other(e)))
                    }
                }
            }
        })
        .buffered(ahead);
    Ok(stream::once(async move { Ok(head) })
        .chain(rest)
        .inspect_ok(|data| {
            STATS.from_cache.fetch_add(data.len() as u64, Relaxed);
        }))
}

/// A block of a complete version is gone (the bucket's lifecycle rule, a cleanup):
/// the metadata stops saying complete, so that the next reader looks for its blocks
/// before it answers and refills what is missing.
async fn forget_complete(cache: &Cache, up: &Upstream, meta: &Meta) {
    let name = key::meta(&cache.cfg.prefix, &meta.identity);
    let partial = Meta {
        complete: false,
        ..meta.clone()
    };
    if let Err(e) = cache.store.put(up, &name, partial.encode().into()).await {
        log::debug!("metadata of {} not updated: {e}", meta.identity);
    }
}

/// One block, checked.
async fn read(
    cache: &Cache,
    up: &Upstream,
    version: &str,
    meta: &Meta,
    index: u64,
) -> Result<Bytes, Miss> {
    let expected = meta.block_size.min(meta.size - index * meta.block_size);
    let name = key::block(version, index);
    let max = block::HEADER + expected as usize;
    match cache.store.get(up, &name, max).await {
        Ok(Some(stored)) => block::decode(stored, expected).map_err(|e| format!("{name}: {e}")),
        Ok(None) => Err(format!("{name} is missing")),
        Err(e) => Err(e.to_string()),
    }
}
