//! Fills in progress in this sidekick, one per object. The first reader of an object
//! the cache does not hold claims it before asking the origin; readers that come
//! while it waits for the origin's answer wait for the version it fills (a short
//! wait), revalidate with the origin using that ETag, then wait for the blocks they
//! need to be written. So concurrent misses fetch the object's bytes once.
//!
//! Across sidecars the same happens through the bucket (`cache::claim`): the local
//! claimer also takes the fleet's claim, or, when another sidecar holds it, mirrors
//! that fill's progress into its local `Fill`, so local waiters wait the same way.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

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
    pub version: Option<Arc<Meta>>,
    /// Blocks `first..next` are stored (a fill stores its blocks in order).
    pub first: u64,
    pub next: u64,
    pub received: u64,
    pub ended: bool,
}

#[derive(Default)]
struct State {
    /// What is being filled, once the origin answered: the version and the folder
    /// of its blocks.
    version: Option<(Arc<Meta>, String)>,
    stored: Vec<bool>,
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

    /// The fill of `name` in progress with its version known.
    pub fn current(&self, name: &str) -> Option<(Arc<Fill>, Arc<Meta>)> {
        let fill = self.map.lock().ok()?.get(name).cloned()?;
        let (meta, _) = fill.version()?;
        Some((fill, meta))
    }
}

impl FillGuard {
    /// Says what is filled: the waiters may go on.
    pub fn begin(&self, meta: Arc<Meta>, version: String) {
        if let Ok(mut state) = self.fill.state.lock() {
            state.stored = vec![false; meta.blocks() as usize];
            state.version = Some((meta, version));
        }
        self.fill.changed.notify_waiters();
    }
}

impl Fill {
    pub fn version(&self) -> Option<(Arc<Meta>, String)> {
        self.state.lock().ok()?.version.clone()
    }

    pub fn stored(&self, index: u64) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(slot) = state.stored.get_mut(index as usize) {
                *slot = true;
            }
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
        let first = state.stored.iter().position(|&b| b).unwrap_or(0);
        let next = first + state.stored[first..].iter().take_while(|&&b| b).count();
        Progress {
            version: state.version.as_ref().map(|(meta, _)| meta.clone()),
            first: first as u64,
            next: next as u64,
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

    /// The version being filled, once the origin's answer said it.
    pub async fn wait_version(&self) -> Option<Arc<Meta>> {
        self.wait(|s| s.version.as_ref().map(|(meta, _)| Some(meta.clone())))
            .await
    }

    /// Waits until blocks `first..=last` are stored: false when the fill ended
    /// without them, or stored nothing for `STALL` (its client reads slowly: the
    /// origin serves this reader faster).
    pub async fn wait_for(&self, first: u64, last: u64) -> bool {
        let ready = |s: &State| match s.stored.get(first as usize..=last as usize) {
            Some(span) if span.iter().all(|&b| b) => Some(Some(())),
            Some(_) => None,
            None => Some(None),
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

    fn meta() -> Arc<Meta> {
        Arc::new(Meta {
            identity: "/b/k".into(),
            etag: "\"e\"".into(),
            size: 10,
            block_size: 4,
            headers: Vec::new(),
            complete: false,
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
        guard.begin(meta(), "v".into());
        assert_eq!(version.await.unwrap().unwrap().etag, "\"e\"");
        assert!(fills.current("m").is_some());
        let blocks = actix_rt::spawn({
            let fill = fill.clone();
            async move { fill.wait_for(1, 2).await }
        });
        guard.fill.stored(1);
        guard.fill.stored(2);
        assert!(blocks.await.unwrap());
        let never = actix_rt::spawn(async move { fill.wait_for(0, 0).await });
        drop(guard);
        assert!(!never.await.unwrap());
        assert!(matches!(fills.claim("m"), Some(Claim::Mine(_))));
    }
}
