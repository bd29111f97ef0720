//! The selection policies of `--host-balance`, one file each (`PoolView::pick` runs
//! the one configured on the up backends of a site), and what two of them share.

pub mod least;
pub mod p2c;
pub mod random;

use std::sync::Arc;

use crate::pool::backend::Backend;

/// The backends of `site` not in `exclude`, starting at a random place: the first
/// that suits a policy is a random one of those that suit it equally.
fn from_random_start<'a>(
    site: &'a [Arc<Backend>],
    exclude: &'a [usize],
) -> impl Iterator<Item = &'a Arc<Backend>> {
    let n = site.len();
    let start = if n == 0 { 0 } else { fastrand::usize(..n) };
    (0..n)
        .map(move |i| &site[(start + i) % n])
        .filter(move |b| !exclude.contains(&b.id))
}
