//! Serving a hit: the blocks that cover the requested bytes, each checked whole
//! before a byte of it is sent. The first block is read and every other one found
//! present before the head goes out, so that a block missing or corrupt then is a
//! miss (the origin answers); one failing later cuts the connection.

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

/// Blocks checked for presence at once, and read ahead while one is sent.
const CHECKS: usize = 8;
const READ_AHEAD: usize = 2;

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
    if let Some(fill) = filling {
        if !fill.wait_for(first, last).await {
            return Err("the fill in progress stopped before these blocks".into());
        }
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
    let present = stream::iter(first + 1..=last)
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
    let rest = stream::iter(first + 1..=last)
        .map(move |index| {
            let (cache, up, meta, version) =
                (cache.clone(), up.clone(), meta.clone(), version.clone());
            async move {
                let (from, to) = span(index);
                read(&cache, &up, &version, &meta, index)
                    .await
                    .map(|data| data.slice(from..to))
                    .map_err(|e| PayloadError::Io(std::io::Error::other(e)))
            }
        })
        .buffered(READ_AHEAD);
    Ok(stream::once(async move { Ok(head) })
        .chain(rest)
        .inspect_ok(|data| {
            STATS.from_cache.fetch_add(data.len() as u64, Relaxed);
        }))
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
