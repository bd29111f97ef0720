//! Fills: an origin answer streams to the client untouched while its bytes are cut at
//! block boundaries, copied aside and written to the cache store by a background
//! task: whole blocks, and the pieces of blocks at the edges of a range. Spans
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

use crate::cache::cover::{Layout, Span};
use crate::cache::lock::Fill;
use crate::cache::meta::Meta;
use crate::cache::{block, key, Cache, Plan};
use crate::observe::cache_stats::STATS;
use crate::upstream::Upstream;

/// Block bytes held by every fill of this sidekick, copied but not yet stored.
pub const BUDGET: u64 = 64 << 20;
static HELD: AtomicU64 = AtomicU64::new(0);

/// Budget held for one span; given back when dropped.
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

/// A span copied whole and sealed, on its way to the store.
struct Copied {
    span: Span,
    block: Bytes,
    _budget: Reservation,
}

/// Cuts the bytes of one answer at block boundaries: `offset` is where in the
/// object the answer's next byte is, `last` its last byte (a 206 starts and ends
/// anywhere: its edges are pieces of their blocks).
pub struct Filler {
    offset: u64,
    last: u64,
    layout: Layout,
    span: Span,
    current: BytesMut,
    budget: Option<Reservation>,
    out: mpsc::UnboundedSender<Copied>,
    /// Told of every byte seen: the fleet's claim shows the progress.
    fill: Option<Arc<Fill>>,
}

impl Filler {
    /// Takes the next bytes of the answer; false once the fill is dropped. Each drop
    /// is counted once, where it happens: here when the budget is spent, by the
    /// writer when the store fails it (which then stops taking spans).
    fn feed(&mut self, mut data: &[u8]) -> bool {
        if let Some(fill) = &self.fill {
            fill.received(data.len() as u64);
        }
        while !data.is_empty() && self.offset <= self.last {
            if self.budget.is_none() {
                let block = self.layout.block(self.offset / self.layout.block_size);
                self.span = Span {
                    first: self.offset,
                    last: block.last.min(self.last),
                };
                match Reservation::take(self.span.bytes()) {
                    Some(r) => self.budget = Some(r),
                    None => {
                        STATS.fills_dropped.fetch_add(1, Relaxed);
                        return false;
                    }
                }
                self.current = block::start(self.span.bytes() as usize);
            }
            let len = self.span.bytes();
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
                    span: self.span,
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

/// Counts a fill's writer in `fills_writing` while it runs, whichever way it ends.
struct Writing;

impl Writing {
    fn start() -> Self {
        STATS.fills_writing.fetch_add(1, Relaxed);
        Writing
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        STATS.fills_writing.fetch_sub(1, Relaxed);
    }
}

/// Starts the background writer of one fill; the `Filler` feeds it.
pub fn start(cache: Arc<Cache>, up: Rc<Upstream>, plan: Plan) -> Filler {
    let (tx, rx) = mpsc::unbounded();
    let filler = Filler {
        offset: plan.span.first,
        last: plan.span.last,
        layout: plan.meta.layout(),
        span: plan.span,
        current: BytesMut::new(),
        budget: None,
        out: tx,
        fill: plan.guard.as_ref().map(|guard| guard.fill.clone()),
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
    let _writing = Writing::start();
    let Plan {
        guard,
        meta,
        version,
        ..
    } = plan;
    let meta_name = key::meta(&cache.cfg.prefix, &meta.identity);
    let layout = meta.layout();
    let mut meta_written = false;
    let mut stored = 0u64;
    while let Some(copied) = blocks.next().await {
        let span = copied.span;
        let whole = layout.is_block(span);
        let name = version.name(span, whole);
        if let Err(e) = cache.store.put(&up, &name, copied.block).await {
            debug!("fill of {} dropped: {e}", meta.identity);
            STATS.fills_dropped.fetch_add(1, Relaxed);
            return;
        }
        STATS.fill_bytes.fetch_add(span.bytes(), Relaxed);
        if let Some(guard) = &guard {
            guard.fill.stored(span);
        }
        cache.recent.held(&meta_name, &meta, [span]);
        stored += u64::from(whole);
        if !meta_written {
            // After the first span: a reader finding the metadata finds bytes too.
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
        cache
            .recent
            .remember(&meta_name, Arc::new(complete.clone()));
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

    fn filler(first: u64, last: u64) -> (Filler, mpsc::UnboundedReceiver<Copied>) {
        let (out, rx) = mpsc::unbounded();
        let span = Span { first, last };
        let filler = Filler {
            offset: first,
            last,
            layout: Layout {
                size: 10,
                block_size: 4,
            },
            span,
            current: BytesMut::new(),
            budget: None,
            out,
            fill: None,
        };
        (filler, rx)
    }

    fn spans(rx: &mut mpsc::UnboundedReceiver<Copied>) -> Vec<(u64, u64, Bytes)> {
        let mut out = Vec::new();
        while let Ok(c) = rx.try_recv() {
            let data = block::decode(c.block, c._budget.0).unwrap();
            out.push((c.span.first, c.span.last, data));
        }
        out
    }

    #[test]
    fn blocks_and_edge_pieces_of_what_arrives_however_it_is_cut() {
        // The whole object (10 bytes, blocks of 4): 0..4, 4..8 and the short 8..10.
        let (mut f, mut rx) = filler(0, 9);
        for piece in [&b"ab"[..], b"cdefg", b"hij"] {
            assert!(f.feed(piece));
        }
        let got = spans(&mut rx);
        assert_eq!(
            got,
            vec![
                (0, 3, Bytes::from_static(b"abcd")),
                (4, 7, Bytes::from_static(b"efgh")),
                (8, 9, Bytes::from_static(b"ij")),
            ]
        );
        // A 206 of bytes 3..=8: a piece of block 0, block 1, a piece of block 2.
        let (mut f, mut rx) = filler(3, 8);
        assert!(f.feed(b"def"));
        assert!(f.feed(b"ghi"));
        assert_eq!(
            spans(&mut rx),
            vec![
                (3, 3, Bytes::from_static(b"d")),
                (4, 7, Bytes::from_static(b"efgh")),
                (8, 8, Bytes::from_static(b"i")),
            ]
        );
        // Inside one block.
        let (mut f, mut rx) = filler(5, 6);
        assert!(f.feed(b"fg"));
        assert_eq!(spans(&mut rx), vec![(5, 6, Bytes::from_static(b"fg"))]);
        drop(f);
        assert_eq!(HELD.load(Relaxed), 0);
    }
}
