//! Names in the cache bucket. One metadata object per object (the version filled
//! last) under `meta/`, the fleet's claim of its fill under `claims/` (same hash), and the blocks of each version under `blocks/<hash>/`, the hash
//! covering what makes a version: a new ETag or size is new names, so an overwrite on
//! the origin needs no invalidation.

use sha2::{Digest, Sha256};

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The metadata object of an object on the origin.
pub fn meta(prefix: &str, identity: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"sidekick meta v1\0")
        .chain_update(identity.as_bytes())
        .finalize();
    format!("{prefix}meta/{}", hex(&digest))
}

/// The fleet's claim of the fill of an object (`cache::claim`).
pub fn claim(prefix: &str, identity: &str) -> String {
    let meta = meta("", identity);
    format!("{prefix}claims/{}", &meta["meta/".len()..])
}

/// The folder of one version's blocks.
pub fn version(prefix: &str, identity: &str, etag: &str, size: u64, block_size: u64) -> String {
    let digest = Sha256::new()
        .chain_update(b"sidekick blocks v1\0")
        .chain_update(identity.as_bytes())
        .chain_update(b"\0")
        .chain_update(etag.as_bytes())
        .chain_update(b"\0")
        .chain_update(size.to_be_bytes())
        .chain_update(block_size.to_be_bytes())
        .finalize();
    format!("{prefix}blocks/{}", hex(&digest))
}

/// Block `index` of a version.
pub fn block(version: &str, index: u64) -> String {
    format!("{version}/{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_version_changes_its_names() {
        let base = version("p/", "/b/k", "\"e\"", 10, 4);
        assert!(base.starts_with("p/blocks/") && base.len() == "p/blocks/".len() + 64);
        for other in [
            version("p/", "/b/k2", "\"e\"", 10, 4),
            version("p/", "/b/k", "\"f\"", 10, 4),
            version("p/", "/b/k", "\"e\"", 11, 4),
            version("p/", "/b/k", "\"e\"", 10, 8),
        ] {
            assert_ne!(base, other);
        }
        assert_eq!(block(&base, 7), format!("{base}/7"));
        assert_ne!(meta("", "/b/k"), meta("", "/b/k2"));
        assert!(meta("x/", "/b/k").starts_with("x/meta/"));
        assert_eq!(
            claim("x/", "/b/k")["x/claims/".len()..],
            meta("x/", "/b/k")["x/meta/".len()..]
        );
    }
}
