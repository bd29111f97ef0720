//! When a failed request may be sent again: the safety rule and the retry budget.

use std::cell::Cell;
use std::time::{Duration, Instant};

use actix_web::http::Method;

use crate::upstream::Error;

/// Safe to send again elsewhere: nothing reached the backend, or the method is
/// idempotent (and no response head arrived, or there would be no error).
pub fn is_safe(method: &Method, error: &Error) -> bool {
    error.nothing_sent() || idempotent(method)
}

/// Methods whose effect is the same however often they are sent (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

const WINDOW: Duration = Duration::from_secs(10);
/// Retries always allowed per window, so that a quiet client still gets its retries.
const MIN_RETRIES: u64 = 10;

/// Retries at most `percent` of requests over a sliding 10 s window, so that a sick
/// cluster is not hammered. The counts halve once per window gone by, however long
/// nothing was counted: an hour of health must not buy an outage unlimited retries.
/// One per worker: no sharing, no atomics.
pub struct Budget {
    percent: u64,
    /// When the current window began.
    start: Cell<Instant>,
    requests: Cell<u64>,
    retries: Cell<u64>,
}

impl Budget {
    pub fn new(percent: u32) -> Self {
        Self::starting(percent, Instant::now())
    }

    fn starting(percent: u32, now: Instant) -> Self {
        Budget {
            percent: u64::from(percent),
            start: Cell::new(now),
            requests: Cell::new(0),
            retries: Cell::new(0),
        }
    }

    /// Counts one client request.
    pub fn request(&self) {
        self.request_at(Instant::now());
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_retry(&self) -> bool {
        self.try_retry_at(Instant::now())
    }

    fn request_at(&self, now: Instant) {
        self.roll(now);
        self.requests.set(self.requests.get().saturating_add(1));
    }

    fn try_retry_at(&self, now: Instant) -> bool {
        self.roll(now);
        let allowed = (self.requests.get() * self.percent / 100).max(MIN_RETRIES);
        if self.retries.get() >= allowed {
            return false;
        }
        self.retries.set(self.retries.get() + 1);
        true
    }

    /// Halves the counts once per whole window gone by since the current one began
    /// (halving rather than zeroing keeps some memory of the last window).
    fn roll(&self, now: Instant) {
        let start = self.start.get();
        let windows = now.saturating_duration_since(start).as_nanos() / WINDOW.as_nanos();
        if windows == 0 {
            return;
        }
        // Past 63 windows every count is zero; `checked_shr` says so for 64 and more.
        let shift = u32::try_from(windows).unwrap_or(u32::MAX);
        let halve = |c: &Cell<u64>| c.set(c.get().checked_shr(shift).unwrap_or(0));
        halve(&self.requests);
        halve(&self.retries);
        // The next window begins where this one's whole windows end, not at `now`.
        self.start.set(match u32::try_from(windows) {
            Ok(n) if n < 64 => start + WINDOW * n,
            _ => now,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_retries_at_a_share_of_requests() {
        let b = Budget::new(20);
        for _ in 0..1000 {
            b.request();
        }
        let granted = (0..1000).filter(|_| b.try_retry()).count();
        assert_eq!(granted, 200);
        let quiet = Budget::new(20);
        quiet.request();
        assert_eq!((0..100).filter(|_| quiet.try_retry()).count(), 10);
        let none = Budget::new(0);
        assert_eq!((0..20).filter(|_| none.try_retry()).count(), 10);
    }

    /// `n` requests and as many retries as the budget grants at `now`.
    fn granted(b: &Budget, now: Instant, requests: u64) -> usize {
        for _ in 0..requests {
            b.request_at(now);
        }
        (0..).take_while(|_| b.try_retry_at(now)).count()
    }

    #[test]
    fn the_counts_halve_once_per_window_gone_by() {
        let t0 = Instant::now();
        let b = Budget::starting(20, t0);
        assert_eq!(granted(&b, t0, 1000), 200);
        // One window later: 500 requests and 100 retries remembered, none left.
        assert_eq!(granted(&b, t0 + WINDOW, 0), 0);

        let b = Budget::starting(20, t0);
        for _ in 0..1000 {
            b.request_at(t0);
        }
        // Three windows gone by with nothing counted: 1000 / 8 requests remembered.
        assert_eq!(granted(&b, t0 + Duration::from_secs(35), 0), 25);
        // Within the same window nothing decays.
        assert_eq!(granted(&b, t0 + Duration::from_secs(39), 0), 0);
        // That window began at t0 + 30 s, not when it was first seen: at t0 + 40 s
        // the counts halve (62 requests, 12 retries).
        assert_eq!(granted(&b, t0 + WINDOW * 4, 438), 100 - 12);
    }

    #[test]
    fn an_hour_of_health_buys_an_outage_no_more_than_the_floor() {
        let t0 = Instant::now();
        let b = Budget::starting(20, t0);
        // An hour of healthy traffic, 100 requests a second, no retry needed.
        for s in 0..3600 {
            for _ in 0..100 {
                b.request_at(t0 + Duration::from_secs(s));
            }
        }
        // The outage a minute later: what the last 10 s or so earned, not the hour.
        let outage = t0 + Duration::from_secs(3660);
        assert_eq!(granted(&b, outage, 0), MIN_RETRIES as usize);
        // And after a long silence, only the floor.
        let b = Budget::starting(20, t0);
        assert_eq!(granted(&b, t0, 1_000_000), 200_000);
        let later = t0 + Duration::from_secs(86_400);
        assert_eq!(granted(&b, later, 0), MIN_RETRIES as usize);
    }

    #[test]
    fn only_unsent_requests_or_idempotent_methods_are_safe() {
        let refused = Error::Connect(std::io::ErrorKind::ConnectionRefused.into());
        let reset = Error::Send(std::io::ErrorKind::ConnectionReset.into());
        assert!(is_safe(&Method::POST, &refused));
        assert!(!is_safe(&Method::POST, &reset));
        assert!(is_safe(&Method::GET, &reset));
        assert!(is_safe(&Method::PUT, &reset));
    }
}
