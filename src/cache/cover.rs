//! Which stored bytes serve a range. An object version is kept as spans, each inside
//! one block: whole blocks, and pieces of blocks that a range covered only in part.
//! A range is covered when stored spans hold every byte of it, whichever earlier
//! reads stored them; the cover is the chain of spans to read, in order.

/// Bytes `first..=last` of an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub first: u64,
    pub last: u64,
}

impl Span {
    /// How many bytes it holds.
    pub fn bytes(self) -> u64 {
        self.last - self.first + 1
    }

    pub fn contains(self, other: Span) -> bool {
        self.first <= other.first && other.last <= self.last
    }
}

/// The block layout of one version.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub size: u64,
    pub block_size: u64,
}

impl Layout {
    /// Block `index` whole.
    pub fn block(self, index: u64) -> Span {
        let first = index * self.block_size;
        Span {
            first,
            last: (first + self.block_size).min(self.size) - 1,
        }
    }

    pub fn is_block(self, span: Span) -> bool {
        self.block(span.first / self.block_size) == span
    }

    /// The whole blocks that `span` touches.
    pub fn blocks(self, span: Span) -> impl Iterator<Item = Span> + Clone {
        let bs = self.block_size;
        (span.first / bs..=span.last / bs).map(move |index| self.block(index))
    }

    /// `span` cut at block boundaries: what a fill of those bytes stores, one span
    /// per block (whole blocks, and pieces at the edges).
    pub fn cut(self, span: Span) -> impl Iterator<Item = Span> + Clone {
        let bs = self.block_size;
        (span.first / bs..=span.last / bs).map(move |index| {
            let block = self.block(index);
            Span {
                first: span.first.max(block.first),
                last: span.last.min(block.last),
            }
        })
    }
}

/// One stored span to read, and the part of it the range wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub stored: Span,
    pub serve: Span,
}

/// The spans of `held` that together hold every byte of `need`, in order, fewest
/// bytes read first among equals; `None` when some byte is in none of them. One
/// sort and one sweep: a whole read of a large object meets every one of its blocks.
pub fn cover(need: Span, held: impl Iterator<Item = Span>) -> Option<Vec<Part>> {
    let mut spans: Vec<Span> = held
        .filter(|s| s.first <= need.last && s.last >= need.first)
        .collect();
    spans.sort_unstable_by_key(|s| s.first);
    let mut spans = spans.into_iter().peekable();
    let mut parts = Vec::new();
    let mut at = need.first;
    // Of the spans starting at or before `at`, the one reaching furthest (the
    // shortest of those): it holds byte `at` if any does.
    let mut best: Option<Span> = None;
    loop {
        while let Some(s) = spans.next_if(|s| s.first <= at) {
            if best.map_or(true, |b| (s.last, s.first) > (b.last, b.first)) {
                best = Some(s);
            }
        }
        let stored = best.filter(|b| b.last >= at)?;
        let serve = Span {
            first: at,
            last: stored.last.min(need.last),
        };
        parts.push(Part { stored, serve });
        if serve.last == need.last {
            return Some(parts);
        }
        at = serve.last + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(first: u64, last: u64) -> Span {
        Span { first, last }
    }

    #[test]
    fn a_span_is_cut_at_block_boundaries() {
        let l = Layout {
            size: 10,
            block_size: 4,
        };
        let cut: Vec<Span> = l.cut(s(1, 9)).collect();
        assert_eq!(cut, vec![s(1, 3), s(4, 7), s(8, 9)]);
        assert!(!l.is_block(s(1, 3)) && l.is_block(s(4, 7)) && l.is_block(s(8, 9)));
        assert_eq!(l.cut(s(5, 6)).collect::<Vec<_>>(), vec![s(5, 6)]);
        let blocks: Vec<Span> = l.blocks(s(5, 9)).collect();
        assert_eq!(blocks, vec![s(4, 7), s(8, 9)]);
    }

    #[test]
    fn ranges_are_covered_by_any_spans_that_hold_their_bytes() {
        let held = [s(0, 3), s(5, 6), s(6, 7), s(9, 9), s(8, 9)];
        let c = |need| cover(need, held.iter().copied());
        assert_eq!(c(s(2, 9)), None, "byte 4 is held by no span");
        let parts = c(s(5, 9)).unwrap();
        let stored: Vec<Span> = parts.iter().map(|p| p.stored).collect();
        assert_eq!(stored, vec![s(5, 6), s(6, 7), s(8, 9)]);
        let served: Vec<Span> = parts.iter().map(|p| p.serve).collect();
        assert_eq!(served, vec![s(5, 6), s(7, 7), s(8, 9)]);
        // The shortest of the spans that reach as far.
        assert_eq!(c(s(9, 9)).unwrap()[0].stored, s(9, 9));
        assert_eq!(
            c(s(1, 2)).unwrap(),
            vec![Part {
                stored: s(0, 3),
                serve: s(1, 2)
            }]
        );
    }
}
