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
/// cluster is not hammered. One per worker: no sharing, no atomics.
pub struct Budget {
    percent: u64,
    start: Cell<Instant>,
    requests: Cell<u64>,
    retries: Cell<u64>,
}

impl Budget {
    pub fn new(percent: u32) -> Self {
        Budget {
            percent: u64::from(percent),
            start: Cell::new(Instant::now()),
            requests: Cell::new(0),
            retries: Cell::new(0),
        }
    }

    fn roll(&self, now: Instant) {
        if now.duration_since(self.start.get()) >= WINDOW {
            // Halving instead of zeroing keeps some memory of the last window.
            self.start.set(now);
            self.requests.set(self.requests.get() / 2);
            self.retries.set(self.retries.get() / 2);
        }
    }

    /// Counts one client request.
    pub fn request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    /// Takes one retry from the budget if there is one left.
    pub fn try_retry(&self) -> bool {
        self.roll(Instant::now());
        let allowed = (self.requests.get() * self.percent / 100).max(MIN_RETRIES);
        if self.retries.get() >= allowed {
            return false;
        }
        self.retries.set(self.retries.get() + 1);
        true
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
