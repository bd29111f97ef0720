//! What this sidekick knows of recently read objects: their metadata and the spans
//! of their version it saw stored (filled here, found in the store, read in a hit).
//! It spares the store a lookup before the origin is asked; it changes nothing
//! about safety, since the origin confirms every request with the ETag. Bounded
//! (`--cache-remember` objects, 0: none): two generations of at most half of them
//! each (the older is dropped whole when the newer is full), at most `SPANS` spans
//! per object, and none whose headers take more than `HEADERS` bytes (metadata may
//! hold 64 KiB; thousands of those would be a lot of memory for a shortcut).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::cache::cover::Span;
use crate::cache::meta::Meta;

const SPANS: usize = 256;
const HEADERS: usize = 4 << 10;

pub struct Recent {
    gens: Mutex<Gens>,
}

#[derive(Default)]
struct Gens {
    new: HashMap<String, Entry>,
    old: HashMap<String, Entry>,
    /// Objects in each generation, at most.
    half: usize,
}

struct Entry {
    meta: Arc<Meta>,
    held: BTreeSet<Span>,
}

impl Gens {
    /// The entry of `name`, moved into the newer generation.
    fn entry(&mut self, name: &str) -> Option<&mut Entry> {
        if !self.new.contains_key(name) {
            let entry = self.old.remove(name)?;
            self.insert(name.to_string(), entry);
        }
        self.new.get_mut(name)
    }

    fn insert(&mut self, name: String, entry: Entry) {
        if self.half == 0 {
            return;
        }
        if self.new.len() >= self.half {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(name, entry);
    }
}

impl Recent {
    /// Remembers at most `objects` objects.
    pub fn new(objects: usize) -> Recent {
        let gens = Gens {
            half: objects.div_ceil(2),
            ..Gens::default()
        };
        Recent {
            gens: Mutex::new(gens),
        }
    }

    /// The metadata of `name`, and the spans of its version seen stored.
    pub fn get(&self, name: &str) -> Option<(Arc<Meta>, Vec<Span>)> {
        let mut gens = self.gens.lock().ok()?;
        let entry = gens.entry(name)?;
        Some((entry.meta.clone(), entry.held.iter().copied().collect()))
    }

    /// `meta` is the version of `name` now: its spans are kept when the version is
    /// the same (new headers), forgotten otherwise.
    pub fn remember(&self, name: &str, meta: Arc<Meta>) {
        let size: usize = meta.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
        let Ok(mut gens) = self.gens.lock() else {
            return;
        };
        if size > HEADERS {
            // Not kept; nor an older entry of it, which these headers replace.
            gens.new.remove(name);
            gens.old.remove(name);
            return;
        }
        match gens.entry(name) {
            Some(entry) if entry.meta.same_version(&meta) => entry.meta = meta,
            _ => gens.insert(
                name.to_string(),
                Entry {
                    meta,
                    held: BTreeSet::new(),
                },
            ),
        }
    }

    /// The store holds `spans` of the version `meta` of `name`.
    pub fn held(&self, name: &str, meta: &Meta, spans: impl IntoIterator<Item = Span>) {
        let Ok(mut gens) = self.gens.lock() else {
            return;
        };
        if let Some(entry) = gens.entry(name).filter(|e| e.meta.same_version(meta)) {
            for span in spans {
                if entry.held.len() >= SPANS {
                    break;
                }
                entry.held.insert(span);
            }
        }
    }

    /// A stored span of `name` turned out missing or bad.
    pub fn forget(&self, name: &str) {
        if let Ok(mut gens) = self.gens.lock() {
            gens.new.remove(name);
            gens.old.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRIES: usize = 64;

    fn meta(etag: &str) -> Arc<Meta> {
        Arc::new(Meta {
            identity: "/b/k".into(),
            etag: etag.into(),
            size: 10,
            block_size: 4,
            headers: Vec::new(),
            complete: false,
            confirmed: 0,
        })
    }

    #[test]
    fn spans_of_the_version_remembered_until_it_changes() {
        let r = Recent::new(ENTRIES);
        let (a, b) = (Span { first: 0, last: 3 }, Span { first: 4, last: 7 });
        let held = |r: &Recent| r.get("m").unwrap().1;
        assert!(r.get("m").is_none());
        r.remember("m", meta("\"a\""));
        r.held("m", &meta("\"a\""), [a]);
        r.held("m", &meta("\"b\""), [b]);
        assert_eq!(held(&r), vec![a], "another version's span");
        r.remember("m", meta("\"a\""));
        r.held("m", &meta("\"a\""), [b]);
        assert_eq!(held(&r), vec![a, b], "new headers, the same version");
        r.remember("m", meta("\"b\""));
        assert_eq!(held(&r), vec![]);
        r.forget("m");
        assert!(r.get("m").is_none());
        for i in 0..ENTRIES {
            r.remember(&i.to_string(), meta("\"a\""));
        }
        let gens = r.gens.lock().unwrap();
        assert!(gens.new.len() + gens.old.len() <= ENTRIES);
        drop(gens);
        let none = Recent::new(0);
        none.remember("m", meta("\"a\""));
        assert!(none.get("m").is_none());
    }

    #[test]
    fn metadata_with_large_headers_is_not_remembered() {
        let r = Recent::new(ENTRIES);
        r.remember("m", meta("\"a\""));
        let mut large = (*meta("\"a\"")).clone();
        large.headers = vec![("x-amz-meta-a".into(), "v".repeat(HEADERS))];
        r.remember("m", Arc::new(large));
        assert!(r.get("m").is_none(), "nor its older headers");
    }
}
