//! Fills: an origin answer streams to the client untouched while the whole blocks in
//! it are copied aside and written to the cache store by a background task. Blocks
//! waiting to be written hold memory from one budget per sidekick; a fill that would
//! overrun it is dropped (the client never waits for the cache).

use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};
use log::debug;

use crate::cache::meta::Meta;
use crate::cache::{block, key, Cache, Plan};
use crate::observe::cache_stats::STATS;
use crate::upstream::Upstream;

/// Block bytes held by every fill of this sidekick, copied but not yet stored.
pub const BUDGET: u64 = 64 << 20;
static HELD: AtomicU64 = AtomicU64::new(0);

/// Budget held for one block; given back when dropped.
struct Reservation(u64);

impl Reservation {
    fn take(bytes: u64) -> Option<Reservation> {
        let held = HELD.fetch_add(bytes, Relaxed);
        if held + bytes > BUDGET {
            HELD.fetch_sub(bytes, Relaxed);
            return None;
        }
        Some(Reservation(bytes))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, Relaxed);
    }
}

/// A block copied whole and sealed, on its way to the store.
struct Copied {
    index: u64,
    block: Bytes,
    _budget: Reservation,
}

/// Cuts the bytes of one answer into blocks: `offset` is where in the object the
/// answer's first byte is (a 206 starts anywhere; only whole blocks are kept).
pub struct Filler {
    offset: u64,
    size: u64,
    block_size: u64,
    current: BytesMut,
    budget: Option<Reservation>,
    out: mpsc::UnboundedSender<Copied>,
}

impl Filler {
    fn block_len(&self, index: u64) -> u64 {
        self.block_size.min(self.size - index * self.block_size)
    }

    /// Takes the next bytes of the answer; false once the fill is dropped. Each drop
    /// is counted once, where it happens: here when the budget is spent, by the
    /// writer when the store fails it (which then stops taking blocks).
    fn feed(&mut self, mut data: &[u8]) -> bool {
        while !data.is_empty() && self.offset < self.size {
            let index = self.offset / self.block_size;
            let start = index * self.block_size;
            if self.budget.is_none() && self.offset != start {
                // The answer began inside this block: skip to the next one.
                let skip = (start + self.block_size - self.offset).min(data.len() as u64);
                self.offset += skip;
                data = &data[skip as usize..];
                continue;
            }
            let len = self.block_len(index);
            if self.budget.is_none() {
                match Reservation::take(len) {
                    Some(r) => self.budget = Some(r),
                    None => {
                        STATS.fills_dropped.fetch_add(1, Relaxed);
                        return false;
                    }
                }
                self.current = block::start(len as usize);
            }
            let have = (self.current.len() - block::HEADER) as u64;
            let want = (len - have).min(data.len() as u64) as usize;
            self.current.extend_from_slice(&data[..want]);
            self.offset += want as u64;
            data = &data[want..];
            if have + want as u64 == len {
                let data = block::seal(std::mem::take(&mut self.current));
                let Some(budget) = self.budget.take() else {
                    return false;
                };
                let copied = Copied {
                    index,
                    block: data,
                    _budget: budget,
                };
                if self.out.unbounded_send(copied).is_err() {
                    return false;
                }
            }
        }
        true
    }
}

/// Starts the background writer of one fill; the `Filler` feeds it.
pub fn start(cache: Arc<Cache>, up: Rc<Upstream>, plan: Plan) -> Filler {
    let (tx, rx) = mpsc::unbounded();
    let filler = Filler {
        offset: plan.offset,
        size: plan.meta.size,
        block_size: plan.meta.block_size,
        current: BytesMut::new(),
        budget: None,
        out: tx,
    };
    actix_rt::spawn(write(cache, up, plan, rx));
    filler
}

async fn write(
    cache: Arc<Cache>,
    up: Rc<Upstream>,
    plan: Plan,
    mut blocks: mpsc::UnboundedReceiver<Copied>,
) {
    let Plan {
        guard,
        meta,
        version,
        ..
    } = plan;
    let fill = guard.fill.clone();
    let meta_name = key::meta(&cache.cfg.prefix, &meta.identity);
    let mut meta_written = false;
    let mut stored = 0u64;
    while let Some(copied) = blocks.next().await {
        let name = key::block(&version, copied.index);
        let len = (copied.block.len() - block::HEADER) as u64;
        if let Err(e) = cache.store.put(&up, &name, copied.block).await {
            debug!("fill of {} dropped: {e}", meta.identity);
            STATS.fills_dropped.fetch_add(1, Relaxed);
            return;
        }
        STATS.fill_bytes.fetch_add(len, Relaxed);
        fill.stored(copied.index);
        stored += 1;
        if !meta_written {
            // After the first block: a reader finding the metadata finds blocks too.
            meta_written = true;
            if let Err(e) = cache.store.put(&up, &meta_name, meta.encode().into()).await {
                debug!("metadata of {} not stored: {e}", meta.identity);
            }
        }
    }
    // Every block of the object is stored: readers need not look for them first.
    if stored == meta.blocks() {
        let complete = Meta {
            complete: true,
            ..(*meta).clone()
        };
        if let Err(e) = cache
            .store
            .put(&up, &meta_name, complete.encode().into())
            .await
        {
            debug!("metadata of {} not stored: {e}", meta.identity);
        }
    }
    drop(guard);
}

/// An answer's body that came whole with its head, counted and filled like `Tee`.
pub fn whole(data: &[u8], filler: Option<Filler>) {
    STATS.from_origin.fetch_add(data.len() as u64, Relaxed);
    if let Some(mut filler) = filler {
        filler.feed(data);
    }
}

/// The body of an answer from the origin for a cacheable request: counted, and
/// copied into a fill when there is one.
pub struct Tee<S> {
    body: S,
    filler: Option<Filler>,
}

impl<S> Tee<S> {
    pub fn new(body: S, filler: Option<Filler>) -> Self {
        Tee { body, filler }
    }
}

impl<S> Stream for Tee<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.body).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(chunk))) => {
                STATS.from_origin.fetch_add(chunk.len() as u64, Relaxed);
                if let Some(filler) = self.filler.as_mut() {
                    if !filler.feed(chunk) {
                        self.filler = None;
                    }
                }
            }
            // A broken answer fills nothing more; what was stored is whole blocks.
            Poll::Ready(Some(Err(_))) => self.filler = None,
            Poll::Ready(None) | Poll::Pending => {}
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filler(offset: u64, size: u64) -> (Filler, mpsc::UnboundedReceiver<Copied>) {
        let (out, rx) = mpsc::unbounded();
        let filler = Filler {
            offset,
            size,
            block_size: 4,
            current: BytesMut::new(),
            budget: None,
            out,
        };
        (filler, rx)
    }

    fn blocks(rx: &mut mpsc::UnboundedReceiver<Copied>) -> Vec<(u64, Bytes)> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            out.push((c.index, block::decode(c.block, c._budget.0).unwrap()));
        }
        out
    }

    #[test]
    fn whole_blocks_of_what_arrives_however_it_is_cut() {
        // The whole object (10 bytes, blocks of 4): 0..4, 4..8 and the short 8..10.
        let (mut f, mut rx) = filler(0, 10);
        for piece in [&b"ab"[..], b"cdefg", b"hij"] {
            assert!(f.feed(piece));
        }
        let got = blocks(&mut rx);
        assert_eq!(
            got,
            vec![
                (0, Bytes::from_static(b"abcd")),
                (1, Bytes::from_static(b"efgh")),
                (2, Bytes::from_static(b"ij")),
            ]
        );
        // A 206 of bytes 3..=8: only block 1 (4..8) is whole in it.
        let (mut f, mut rx) = filler(3, 10);
        assert!(f.feed(b"defghi"));
        assert_eq!(blocks(&mut rx), vec![(1, Bytes::from_static(b"efgh"))]);
        drop(f);
        assert_eq!(HELD.load(Relaxed), 0);
    }
}
