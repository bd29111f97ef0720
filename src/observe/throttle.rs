//! Holds back a line that repeats: at most one per period, the next one telling how
//! many were held back since.

use std::time::{Duration, Instant};

pub struct Throttle {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl Throttle {
    pub const fn new(period: Duration) -> Self {
        Throttle {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)`: write this line, `n` were held back before it; `None`: hold it back.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.period => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_period_with_the_count_held_back() {
        let mut t = Throttle::new(Duration::from_secs(1));
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(t.admit(at(0)), Some(0));
        assert_eq!(t.admit(at(500)), None);
        assert_eq!(t.admit(at(999)), None);
        assert_eq!(t.admit(at(1000)), Some(2));
        assert_eq!(t.admit(at(1500)), None);
        // A quiet spell: the next line goes out at once with what was held.
        assert_eq!(t.admit(at(9000)), Some(1));
        assert_eq!(t.admit(at(10_000)), Some(0));
    }
}
