//! Serving a hit: the blocks that cover the requested bytes, each checked whole
//! before a byte of it is sent. Before the head goes out, the first 8 MiB of blocks
//! (at least two) are read and checked, and every later one is found present (unless
//! one fill stored them all), so that a block missing or corrupt then is a miss (the
//! origin answers). Later blocks are read ahead as the first ones are sent; one that
//! fails then cuts the connection, and the metadata is overwritten so that the next
//! reader refills the object instead of meeting the same block.

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
/// Bytes of blocks read (and checked) ahead of the one being sent, at least two
/// blocks: enough to keep the store busy, little enough for many readers at once.
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
    let ahead = (READ_AHEAD / bs).max(2);
    let checked_last = last.min(first + ahead - 1);
    let checked: Vec<Bytes> = stream::iter(first..=checked_last)
        .map(|index| {
            let version = &version;
            async move {
                let (from, to) = span(index);
                read(cache, up, version, meta, index)
                    .await
                    .map(|data| data.slice(from..to))
            }
        })
        .buffered(ahead as usize)
        .try_collect()
        .await?;
    let present = known_present
        || stream::iter(checked_last + 1..=last)
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
    let rest = stream::iter(checked_last + 1..=last)
        .map(move |index| {
            let (cache, up, meta, version) =
                (cache.clone(), up.clone(), meta.clone(), version.clone());
            async move {
                let (from, to) = span(index);
                match read(&cache, &up, &version, &meta, index).await {
                    Ok(data) => Ok(data.slice(from..to)),
                    Err(e) => {
                        forget(&cache, &up, &meta).await;
                        Err(PayloadError::Io(std::io::Error::other(e)))
                    }
                }
            }
        })
        .buffered(ahead as usize);
    Ok(stream::iter(checked.into_iter().map(Ok))
        .chain(rest)
        .inspect_ok(|data| {
            STATS.from_cache.fetch_add(data.len() as u64, Relaxed);
        }))
}

/// A block went bad after the head was sent (expired by the bucket's lifecycle
/// rule, damaged): the metadata is overwritten with nothing sidekick reads as
/// metadata, so that the next reader misses and its fill writes the object anew.
/// sidekick needs no permission to delete.
async fn forget(cache: &Cache, up: &Upstream, meta: &Meta) {
    let name = key::meta(&cache.cfg.prefix, &meta.identity);
    if let Err(e) = cache.store.put(up, &name, Bytes::from_static(b"{}")).await {
        log::debug!("metadata of {} not cleared: {e}", meta.identity);
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
