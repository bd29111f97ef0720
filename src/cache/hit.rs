//! Serving a hit: the stored spans (whole blocks, pieces) that cover the requested
//! bytes, each checked whole before a byte of it is sent. The spans of the first
//! 8 MiB (at least two) are read and checked before the head goes out, so that one
//! missing or corrupt then is a miss (the origin answers). Later ones are read
//! ahead, 8 MiB of them (at least one span) while one is sent, each on a task of its
//! own; one that fails then cuts the connection, and the metadata is overwritten so
//! that the next reader refills the object instead of meeting the same span.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_rt::task::JoinHandle;
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::stream::{self, Stream, StreamExt, TryStreamExt};

use crate::cache::cover::Part;
use crate::cache::key::{self, Version};
use crate::cache::lock::Fill;
use crate::cache::meta::Meta;
use crate::cache::{block, Cache};
use crate::observe::cache_stats::STATS;
use crate::upstream::Upstream;

/// Bytes of spans read (and checked) ahead of the one being sent, at least two
/// spans: enough to keep the store busy, little enough for many readers at once.
const READ_AHEAD: u64 = 8 << 20;
/// Spans read from the store at once, at most.
const IN_FLIGHT: u64 = 4;

/// Why a hit could not be served; the origin answers instead.
pub type Miss = String;

/// The bytes of `parts` of the cached version `meta`, ready to stream. A fill in
/// progress here that brings them (`filling`) is waited for first.
pub async fn open(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    meta: &Arc<Meta>,
    filling: Option<&Fill>,
    parts: Vec<Part>,
) -> Result<impl Stream<Item = Result<Bytes, PayloadError>> + 'static, Miss> {
    let bs = meta.block_size;
    let version = Version::new(&cache.cfg.prefix, &meta.identity, &meta.etag, meta.size, bs);
    if let Some(fill) = filling {
        let spans: Vec<_> = parts.iter().map(|p| p.stored).collect();
        if !fill.wait_for(&spans).await {
            return Err("the fill in progress stopped before these bytes".into());
        }
    }
    // The first spans, up to READ_AHEAD bytes (at least two), checked before the head.
    let mut bytes = 0;
    let first = parts
        .iter()
        .take_while(|p| {
            bytes += p.stored.bytes();
            bytes <= READ_AHEAD
        })
        .count()
        .max(2)
        .min(parts.len());
    let in_flight = (READ_AHEAD / bs).clamp(1, IN_FLIGHT) as usize;
    let mut parts = parts;
    let rest = parts.split_off(first);
    let checked: Vec<Bytes> = stream::iter(parts)
        .map(|part| read(cache, up, &version, meta, part))
        .buffered(IN_FLIGHT as usize)
        .try_collect()
        .await?;
    let (cache, up, meta) = (cache.clone(), up.clone(), meta.clone());
    let rest = stream::iter(rest)
        .map(move |part| {
            let (cache, up, meta, version) =
                (cache.clone(), up.clone(), meta.clone(), version.clone());
            let ahead = {
                let (cache, up, meta) = (cache.clone(), up.clone(), meta.clone());
                Ahead(actix_rt::spawn(async move {
                    read(&cache, &up, &version, &meta, part).await
                }))
            };
            async move {
                match ahead.await {
                    Ok(data) => Ok(data),
                    Err(e) => {
                        forget(&cache, &up, &meta).await;
                        Err(PayloadError::Io(std::io::Error::other(e)))
                    }
                }
            }
        })
        // The span being sent and `in_flight` read ahead of it.
        .buffered(in_flight + 1);
    Ok(stream::iter(checked.into_iter().map(Ok))
        .chain(rest)
        .inspect_ok(|data| {
            STATS.from_cache.fetch_add(data.len() as u64, Relaxed);
        }))
}

/// A span read ahead on a task of its own: the client's connection polls the body
/// only when it has room to write, so a read polled from there would stall while
/// the span before it is being sent. Stopped when the reader goes first.
struct Ahead(JoinHandle<Result<Bytes, Miss>>);

impl Future for Ahead {
    type Output = Result<Bytes, Miss>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|done| done.unwrap_or_else(|e| Err(format!("read ahead: {e}"))))
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A span went bad after the head was sent (expired by the bucket's lifecycle rule,
/// damaged): the metadata is overwritten with nothing sidekick reads as metadata,
/// so that the next reader misses and its fill writes the object anew. sidekick
/// needs no permission to delete.
pub async fn forget(cache: &Cache, up: &Upstream, meta: &Meta) {
    let name = key::meta(&cache.cfg.prefix, &meta.identity);
    cache.recent.forget(&name);
    if let Err(e) = cache.store.put(up, &name, Bytes::from_static(b"{}")).await {
        log::debug!("metadata of {} not cleared: {e}", meta.identity);
    }
}

/// The bytes `part` serves, from its stored span, checked whole.
async fn read(
    cache: &Cache,
    up: &Upstream,
    version: &Version,
    meta: &Meta,
    part: Part,
) -> Result<Bytes, Miss> {
    let stored = part.stored;
    let name = version.name(stored, meta.layout().is_block(stored));
    let max = block::HEADER + stored.bytes() as usize;
    let data = match cache.store.get(up, &name, max).await {
        Ok(Some(raw)) => block::decode(raw, stored.bytes()).map_err(|e| format!("{name}: {e}"))?,
        Ok(None) => return Err(format!("{name} is missing")),
        Err(e) => return Err(e.to_string()),
    };
    let from = (part.serve.first - stored.first) as usize;
    let to = (part.serve.last - stored.first) as usize + 1;
    Ok(data.slice(from..to))
}
