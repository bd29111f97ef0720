//! `random`: any backend, uniformly.

use std::sync::Arc;

use crate::pool::backend::Backend;
use crate::pool::balance::from_random_start;

pub fn pick<'a>(site: &'a [Arc<Backend>], exclude: &'a [usize]) -> Option<&'a Arc<Backend>> {
    from_random_start(site, exclude).next()
}
