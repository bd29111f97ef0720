//! `--max-conns`: connections past the limit are answered 503 and closed, never
//! left waiting in the accept queue.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

/// Held in each connection's data from accept until the connection closes.
pub struct ConnSlot {
    open: Arc<AtomicUsize>,
    over: bool,
}

impl ConnSlot {
    pub fn new(open: Arc<AtomicUsize>, max: usize) -> Self {
        let before = open.fetch_add(1, Relaxed);
        ConnSlot {
            open,
            over: before >= max,
        }
    }

    /// True when this connection was opened past the limit.
    pub fn over_limit(&self) -> bool {
        self.over
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}
