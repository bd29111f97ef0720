//! Byte ranges: the one `Range: bytes=…` a cacheable request may carry, resolved
//! against an object's size, and the `Content-Range` of a 206 being stored.

/// One byte range as requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `bytes=a-b` or `bytes=a-` (`end` inclusive).
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

/// A `Range` header value: `Ok(None)` when it is not one range sidekick can answer
/// itself (several ranges, another unit, bad syntax); those go to the origin as sent.
pub fn parse(value: &str) -> Option<Spec> {
    let set = value.trim().strip_prefix("bytes=")?.trim();
    if set.contains(',') {
        return None;
    }
    let (first, last) = set.split_once('-')?;
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if first.trim().is_empty() {
        return number(last).map(Spec::Suffix);
    }
    let start = number(first)?;
    if last.trim().is_empty() {
        return Some(Spec::From { start, end: None });
    }
    let end = number(last)?;
    // `bytes=5-2` is invalid, not unsatisfiable: the origin ignores it.
    (end >= start).then_some(Spec::From {
        start,
        end: Some(end),
    })
}

impl Spec {
    /// The inclusive byte span this range selects of an object of `size` bytes, or
    /// `None` when it is unsatisfiable (RFC 9110 §14.1.2): the answer is then 416.
    pub fn resolve(self, size: u64) -> Option<(u64, u64)> {
        match self {
            Spec::From { start, .. } if start >= size => None,
            Spec::From { start, end } => Some((start, end.map_or(size - 1, |e| e.min(size - 1)))),
            Spec::Suffix(0) => None,
            Spec::Suffix(_) if size == 0 => None,
            Spec::Suffix(n) => Some((size.saturating_sub(n), size - 1)),
        }
    }
}

/// A 206's `Content-Range: bytes a-b/size`: the inclusive span and the total size.
pub fn content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (span, size) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, size) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        size.trim().parse().ok()?,
    );
    (a <= b && b < size).then_some((a, b, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_range_of_each_form() {
        assert_eq!(
            parse("bytes=0-99"),
            Some(Spec::From {
                start: 0,
                end: Some(99)
            })
        );
        assert_eq!(
            parse("bytes=100-"),
            Some(Spec::From {
                start: 100,
                end: None
            })
        );
        assert_eq!(parse("bytes=-5"), Some(Spec::Suffix(5)));
        for other in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=-",
            "bytes=a-b",
            "0-1",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn resolved_against_the_size() {
        let from = |start, end| Spec::From { start, end };
        assert_eq!(from(0, Some(99)).resolve(50), Some((0, 49)));
        assert_eq!(from(10, None).resolve(50), Some((10, 49)));
        assert_eq!(from(50, None).resolve(50), None);
        assert_eq!(Spec::Suffix(10).resolve(50), Some((40, 49)));
        assert_eq!(Spec::Suffix(80).resolve(50), Some((0, 49)));
        assert_eq!(Spec::Suffix(0).resolve(50), None);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(content_range("bytes 0-9/*"), None);
        assert_eq!(content_range("bytes 9-0/100"), None);
        assert_eq!(content_range("bytes 0-100/100"), None);
    }
}
