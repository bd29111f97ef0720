//! Names in the cache bucket. One metadata object per object (the version filled
//! last) under `meta/`, the fleet's claim of its fill under `claims/` (same hash);
//! each version's whole blocks under `blocks/<hash>/<index>` and the pieces of blocks
//! a range covered only in part under `pieces/<hash>/<block>/<first>-<last>` (object
//! offsets, inclusive), so that a repeat of a range finds its pieces by name and one
//! listing finds a block's pieces. The hash covers what makes a version: a new ETag
//! or size is new names, so an overwrite on the origin needs no invalidation.

use sha2::{Digest, Sha256};

use crate::cache::cover::Span;

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

/// The names of one version's stored bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    prefix: String,
    hash: String,
    block_size: u64,
}

impl Version {
    pub fn new(prefix: &str, identity: &str, etag: &str, size: u64, block_size: u64) -> Version {
        let digest = Sha256::new()
            .chain_update(b"sidekick blocks v1\0")
            .chain_update(identity.as_bytes())
            .chain_update(b"\0")
            .chain_update(etag.as_bytes())
            .chain_update(b"\0")
            .chain_update(size.to_be_bytes())
            .chain_update(block_size.to_be_bytes())
            .finalize();
        Version {
            prefix: prefix.to_string(),
            hash: hex(&digest),
            block_size,
        }
    }

    /// Block `index`.
    pub fn block(&self, index: u64) -> String {
        format!("{}blocks/{}/{index}", self.prefix, self.hash)
    }

    /// Where the pieces of block `index` are: the prefix of one listing.
    pub fn pieces_of(&self, index: u64) -> String {
        format!("{}pieces/{}/{index}/", self.prefix, self.hash)
    }

    /// The stored object that holds `span`: its block when `whole`, else a piece.
    pub fn name(&self, span: Span, whole: bool) -> String {
        let index = span.first / self.block_size;
        match whole {
            true => self.block(index),
            false => format!("{}{}-{}", self.pieces_of(index), span.first, span.last),
        }
    }
}

/// The span a piece's name (the last part of its key, `<first>-<last>`) says.
pub fn piece_span(key: &str) -> Option<Span> {
    let tail = key.rsplit('/').next()?;
    let (first, last) = tail.split_once('-')?;
    let (first, last) = (first.parse().ok()?, last.parse().ok()?);
    (first <= last).then_some(Span { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_of_a_version_changes_its_names() {
        let base = Version::new("p/", "/b/k", "\"e\"", 10, 4);
        let block = base.block(7);
        assert!(block.starts_with("p/blocks/") && block.len() == "p/blocks/".len() + 64 + 2);
        for other in [
            Version::new("p/", "/b/k2", "\"e\"", 10, 4),
            Version::new("p/", "/b/k", "\"f\"", 10, 4),
            Version::new("p/", "/b/k", "\"e\"", 11, 4),
            Version::new("p/", "/b/k", "\"e\"", 10, 8),
        ] {
            assert_ne!(base.block(7), other.block(7));
        }
        assert!(block.ends_with("/7"));
        assert_eq!(base.name(Span { first: 4, last: 7 }, true), base.block(1));
        let piece = base.name(Span { first: 5, last: 6 }, false);
        assert!(
            piece.starts_with("p/pieces/") && piece.ends_with("/1/5-6"),
            "{piece}"
        );
        assert!(piece.starts_with(&base.pieces_of(1)));
        assert_eq!(piece_span(&piece), Some(Span { first: 5, last: 6 }));
        assert_eq!(piece_span("x/6-5"), None);
        assert_ne!(meta("", "/b/k"), meta("", "/b/k2"));
        assert!(meta("x/", "/b/k").starts_with("x/meta/"));
        assert_eq!(
            claim("x/", "/b/k")["x/claims/".len()..],
            meta("x/", "/b/k")["x/meta/".len()..]
        );
    }
}
