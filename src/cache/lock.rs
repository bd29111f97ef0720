//! Fills in progress in this sidekick, one per object: a concurrent miss of the same
//! object does not fill it again; it revalidates with the origin using the ETag being
//! filled, then waits for the blocks it needs to be written.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cache::meta::Meta;

/// Longest wait for the next block of a fill in progress.
const STALL: Duration = Duration::from_secs(2);

/// The fills in progress, by metadata name.
#[derive(Default)]
pub struct Fills {
    map: Mutex<HashMap<String, Arc<Fill>>>,
}

pub struct Fill {
    pub meta: Arc<Meta>,
    /// The folder of this version's blocks.
    pub version: String,
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    stored: Vec<bool>,
    ended: bool,
}

/// Held by the one filling; ends the fill (and wakes its waiters) when dropped.
pub struct FillGuard {
    fills: Arc<Fills>,
    name: String,
    pub fill: Arc<Fill>,
}

impl Fills {
    /// Registers a fill of `name`, unless one is in progress already.
    pub fn begin(
        self: &Arc<Self>,
        name: &str,
        meta: Arc<Meta>,
        version: String,
    ) -> Option<FillGuard> {
        let mut map = self.map.lock().ok()?;
        if map.contains_key(name) {
            return None;
        }
        let blocks = meta.blocks() as usize;
        let fill = Arc::new(Fill {
            meta,
            version,
            state: Mutex::new(State {
                stored: vec![false; blocks],
                ended: false,
            }),
            changed: Notify::new(),
        });
        map.insert(name.to_string(), fill.clone());
        Some(FillGuard {
            fills: self.clone(),
            name: name.to_string(),
            fill,
        })
    }

    pub fn current(&self, name: &str) -> Option<Arc<Fill>> {
        self.map.lock().ok()?.get(name).cloned()
    }
}

impl Fill {
    pub fn stored(&self, index: u64) {
        if let Ok(mut state) = self.state.lock() {
            if let Some(slot) = state.stored.get_mut(index as usize) {
                *slot = true;
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until blocks `first..=last` are stored: false when the fill ended
    /// without them, or stored nothing for `STALL` (its client reads slowly: the
    /// origin serves this reader faster).
    pub async fn wait_for(&self, first: u64, last: u64) -> bool {
        loop {
            let mut changed = pin!(self.changed.notified());
            // Registered before the check, so that no wake-up is missed.
            changed.as_mut().enable();
            {
                let Ok(state) = self.state.lock() else {
                    return false;
                };
                let span = state.stored.get(first as usize..=last as usize);
                if span.is_some_and(|s| s.iter().all(|&b| b)) {
                    return true;
                }
                if state.ended || span.is_none() {
                    return false;
                }
            }
            if actix_rt::time::timeout(STALL, changed).await.is_err() {
                return false;
            }
        }
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
    async fn one_fill_per_object_and_waiters_see_its_blocks() {
        let fills = Arc::new(Fills::default());
        let guard = fills.begin("m", meta(), "v".into()).unwrap();
        assert!(fills.begin("m", meta(), "v".into()).is_none());
        let fill = fills.current("m").unwrap();
        let waiter = actix_rt::spawn({
            let fill = fill.clone();
            async move { fill.wait_for(1, 2).await }
        });
        guard.fill.stored(1);
        guard.fill.stored(2);
        assert!(waiter.await.unwrap());
        let waiter = actix_rt::spawn(async move { fill.wait_for(0, 0).await });
        drop(guard);
        assert!(!waiter.await.unwrap());
        assert!(fills.current("m").is_none());
    }
}
