//! Fills in progress in this sidekick, one claimed per object. The first reader of
//! an object the cache does not hold claims it before asking the origin; readers
//! that come while it waits for the origin's answer wait for the version it fills (a
//! short wait) and, when the bytes it brings hold theirs, revalidate with the origin
//! using that ETag, then wait for the spans they need to be written. So concurrent
//! misses of the same bytes fetch them once.
//!
//! Across sidecars the same happens through the bucket (`cache::claim`): the local
//! claimer also takes the fleet's claim, or, when another sidecar holds it, mirrors
//! that fill's version, the bytes it brings and its progress into its local `Fill`,
//! so local waiters wait the same way.

use std::collections::{BTreeSet, HashMap};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cache::cover::Span;
use crate::cache::meta::Meta;

/// Longest wait for the next step of a fill in progress (its version, a block); also
/// the lease of a fleet claim without progress.
pub const STALL: Duration = Duration::from_secs(2);

/// The fills in progress, by metadata name.
#[derive(Default)]
pub struct Fills {
    map: Mutex<HashMap<String, Arc<Fill>>>,
}

pub struct Fill {
    state: Mutex<State>,
    changed: Notify,
    /// Bytes of the answer seen by the fill (progress, even inside a block).
    received: AtomicU64,
}

/// Where a fill stands, for the fleet's claim.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The version filled and the bytes the fill brings.
    pub version: Option<(Arc<Meta>, Span)>,
    /// How many of those bytes are stored, from the first on (a fill stores its
    /// spans in order).
    pub stored: u64,
    pub received: u64,
    pub ended: bool,
}

#[derive(Default)]
struct State {
    /// What is being filled, once the origin answered: the version and the bytes
    /// of it the answer brings.
    version: Option<(Arc<Meta>, Span)>,
    stored: BTreeSet<Span>,
    ended: bool,
}

/// Held by the one filling; ends the fill (and wakes its waiters) when dropped.
pub struct FillGuard {
    fills: Arc<Fills>,
    name: String,
    pub fill: Arc<Fill>,
}

pub enum Claim {
    Mine(FillGuard),
    /// Another request claimed the object first.
    Theirs(Arc<Fill>),
}

impl Fills {
    /// Claims the fill of `name`, or says who has it.
    pub fn claim(self: &Arc<Self>, name: &str) -> Option<Claim> {
        let mut map = self.map.lock().ok()?;
        if let Some(fill) = map.get(name) {
            return Some(Claim::Theirs(fill.clone()));
        }
        let fill = Arc::new(Fill {
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            received: AtomicU64::new(0),
        });
        map.insert(name.to_string(), fill.clone());
        Some(Claim::Mine(FillGuard {
            fills: self.clone(),
            name: name.to_string(),
            fill,
        }))
    }

    /// The fill of `name` in progress with its version known, and what it brings.
    pub fn current(&self, name: &str) -> Option<(Arc<Fill>, Arc<Meta>, Span)> {
        let fill = self.map.lock().ok()?.get(name).cloned()?;
        let (meta, span) = fill.version()?;
        Some((fill, meta, span))
    }
}

impl FillGuard {
    /// Says what is filled: the waiters may go on.
    pub fn begin(&self, meta: Arc<Meta>, span: Span) {
        if let Ok(mut state) = self.fill.state.lock() {
            state.version = Some((meta, span));
        }
        self.fill.changed.notify_waiters();
    }
}

impl Fill {
    pub fn version(&self) -> Option<(Arc<Meta>, Span)> {
        self.state.lock().ok()?.version.clone()
    }

    pub fn stored(&self, span: Span) {
        if let Ok(mut state) = self.state.lock() {
            state.stored.insert(span);
        }
        self.changed.notify_waiters();
    }

    /// Counts bytes of the answer seen.
    pub fn received(&self, bytes: u64) {
        self.received.fetch_add(bytes, Relaxed);
    }

    /// Wakes the waiters with no change: the fill is alive (its holder in another
    /// sidecar progressed), so the stall bound starts again.
    pub fn nudge(&self) {
        self.changed.notify_waiters();
    }

    /// Where the fill stands.
    pub fn progress(&self) -> Progress {
        let received = self.received.load(Relaxed);
        let Ok(state) = self.state.lock() else {
            return Progress {
                ended: true,
                ..Progress::default()
            };
        };
        let stored = match &state.version {
            Some((_, span)) => {
                let from = Span {
                    first: span.first,
                    last: span.first,
                };
                let mut next = span.first;
                for stored in state.stored.range(from..) {
                    if stored.first != next || stored.last > span.last {
                        break;
                    }
                    next = stored.last + 1;
                }
                next - span.first
            }
            None => 0,
        };
        Progress {
            version: state.version.clone(),
            stored,
            received,
            ended: state.ended,
        }
    }

    /// Returns when something changed, or after `within`.
    pub async fn changed(&self, within: Duration) {
        let _ = actix_rt::time::timeout(within, self.changed.notified()).await;
    }

    /// Waits until `ready` says yes (`Some`) or no (`None` in its `Option`), the
    /// fill ends, or nothing changes for `STALL`.
    async fn wait<T>(&self, ready: impl Fn(&State) -> Option<Option<T>>) -> Option<T> {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the check, so that no wake-up is missed.
            changed.as_mut().enable();
            {
                let state = self.state.lock().ok()?;
                if let Some(answer) = ready(&state) {
                    return answer;
                }
                if state.ended {
                    return None;
                }
            }
            actix_rt::time::timeout(STALL, changed).await.ok()?;
        }
    }

    /// The version being filled and the bytes it brings, once the origin's answer
    /// said them.
    pub async fn wait_version(&self) -> Option<(Arc<Meta>, Span)> {
        self.wait(|s| s.version.clone().map(Some)).await
    }

    /// Waits until `spans` are stored: false when the fill ended without them, or
    /// stored nothing for `STALL` (its client reads slowly: the origin serves this
    /// reader faster).
    pub async fn wait_for(&self, spans: &[Span]) -> bool {
        let ready = |s: &State| {
            spans
                .iter()
                .all(|x| s.stored.contains(x))
                .then_some(Some(()))
        };
        self.wait(ready).await.is_some()
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        if let Ok(mut state) = self.fill.state.lock() {
            state.ended = true;
        }
        self.fill.changed.notify_waiters();
        if let Ok(mut map) = self.fills.map.lock() {
            map.remove(&self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(first: u64, last: u64) -> Span {
        Span { first, last }
    }

    fn meta() -> Arc<Meta> {
        Arc::new(Meta {
            identity: "/b/k".into(),
            etag: "\"e\"".into(),
            size: 10,
            block_size: 4,
            headers: Vec::new(),
            complete: false,
            confirmed: 0,
        })
    }

    #[actix_rt::test]
    async fn one_fill_per_object_and_waiters_see_its_version_and_blocks() {
        let fills = Arc::new(Fills::default());
        let Some(Claim::Mine(guard)) = fills.claim("m") else {
            panic!("the first claim is not mine");
        };
        let Some(Claim::Theirs(fill)) = fills.claim("m") else {
            panic!("the second claim is mine too");
        };
        assert!(fills.current("m").is_none());
        let version = actix_rt::spawn({
            let fill = fill.clone();
            async move { fill.wait_version().await }
        });
        guard.begin(meta(), Span { first: 0, last: 9 });
        assert_eq!(version.await.unwrap().unwrap().0.etag, "\"e\"");
        assert!(fills.current("m").is_some());
        let blocks = actix_rt::spawn({
            let fill = fill.clone();
            async move { fill.wait_for(&[s(4, 7), s(8, 9)]).await }
        });
        guard.fill.stored(s(4, 7));
        guard.fill.stored(s(8, 9));
        assert!(blocks.await.unwrap());
        let never = actix_rt::spawn(async move { fill.wait_for(&[s(0, 3)]).await });
        drop(guard);
        assert!(!never.await.unwrap());
        assert!(matches!(fills.claim("m"), Some(Claim::Mine(_))));
    }

    #[test]
    fn progress_counts_the_bytes_stored_in_order_from_the_first() {
        let fills = Arc::new(Fills::default());
        let Some(Claim::Mine(guard)) = fills.claim("m") else {
            panic!("the first claim is not mine");
        };
        let fill = guard.fill.clone();
        assert_eq!(fill.progress(), Progress::default());
        guard.begin(meta(), s(1, 9));
        fill.stored(s(4, 7));
        assert_eq!(fill.progress().stored, 0, "bytes 1..=3 are not stored yet");
        fill.stored(s(1, 3));
        assert_eq!(fill.progress().stored, 7);
        fill.stored(s(8, 9));
        fill.received(9);
        let p = fill.progress();
        assert_eq!(p.version, Some((meta(), s(1, 9))));
        assert_eq!((p.stored, p.received, p.ended), (9, 9, false));
        drop(guard);
        assert!(fill.progress().ended);
    }
}
