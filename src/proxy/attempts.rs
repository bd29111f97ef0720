//! The retry engine every request to a backend goes through: pick a backend, hold
//! its in-flight count, send, and on an error decide whose fault it was (the Pool
//! hears only of the backend's own) and whether another backend may try, charged
//! to the worker's retry budget. HTTP requests (`forward`) and WebSocket upgrades
//! (`upgrade`) differ only in how they send: each is an `Attempt`.
//!
//! Two more reasons to ask a second backend, each charged to the same budget:
//! a read whose head is late is hedged (`--hedge`: the same request goes to a
//! second backend, the first head wins, the other exchange is dropped), and an
//! answer that says its backend sheds load (S3's `503 SlowDown`) is sent once to
//! another backend.

use std::pin::pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use futures_util::future::{select, Either};
use log::{debug, warn};

use crate::config::Balance;
use crate::observe::metrics::{HEDGES_WON_FIRST, HEDGES_WON_HEDGE, SLOWDOWN_RETRIES};
use crate::observe::trace::requests as trace;
use crate::pool::backend::{Backend, InFlight};
use crate::pool::messages::Failure;
use crate::proxy::error::ProxyError;
use crate::proxy::retry;
use crate::proxy::shared::{Shared, Worker};
use crate::upstream::Error;

/// How one request goes to a backend the engine picked.
// Futures on the data path stay on their worker's thread: no `Send` bound wanted.
#[allow(async_fn_in_trait)]
pub trait Attempt {
    type Answer;

    /// Whether the request could be sent whole once more (any body is still held).
    fn replayable(&self) -> bool;

    /// Sends the request to `backend` and waits for its answer's head.
    async fn send(&mut self, backend: &Arc<Backend>) -> Result<Self::Answer, Failed>;

    /// A second attempt sending the same request while this one is in flight, for
    /// a hedge; `None` for anything but a read without a body.
    fn hedge(&self) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Whether `answer` says that `backend` sheds load and that another backend
    /// may be asked instead; tells `backend`'s stats. May read a small body ahead,
    /// never consuming it.
    async fn shedding(&mut self, answer: &mut Self::Answer, backend: &Backend) -> bool {
        let _ = (answer, backend);
        false
    }
}

/// Why an attempt ended without an answer (made from an `upstream::Error` by `?`).
#[derive(Debug)]
pub enum Failed {
    /// The exchange with the backend failed.
    Upstream(Error),
    /// The client's request broke while it was going out, or the client went away:
    /// the client gets 400 now, and the backend did nothing wrong.
    Client,
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        match e {
            Error::Body(_) => Failed::Client,
            e => Failed::Upstream(e),
        }
    }
}

/// Whose fault a failed exchange is: that decides what the Pool hears of it.
#[derive(Debug, PartialEq, Eq)]
enum Fault {
    /// sidekick ran out of open files: refused here, like a connection over the limit.
    Ours,
    /// A kept connection the backend closed as the request went out: counted, but
    /// no sign of the backend failing.
    Race,
    /// The backend failed: the Pool takes it down.
    Backend,
}

fn fault(error: &Error) -> Fault {
    match error {
        Error::Stale => Fault::Race,
        e if e.out_of_files() => Fault::Ours,
        _ => Fault::Backend,
    }
}

/// What one try came to: the request's, and its hedge's when one was sent.
struct Round<T> {
    outcome: Outcome<T>,
    /// The exchanges that failed, the last one deciding a retry.
    failures: Vec<(Arc<Backend>, Error)>,
    /// Hedged: whose answer it is.
    won: Option<Won>,
}

enum Outcome<T> {
    Answer(T, InFlight),
    Failed,
    Client,
}

#[derive(Clone, Copy)]
enum Won {
    First,
    Hedge,
}

impl<T> Round<T> {
    /// The round of one request, not hedged.
    fn of(sent: Result<T, Failed>, guard: InFlight) -> Self {
        let (outcome, failures) = match sent {
            Ok(answer) => (Outcome::Answer(answer, guard), Vec::new()),
            Err(Failed::Upstream(e)) => (Outcome::Failed, vec![(guard.backend().clone(), e)]),
            Err(Failed::Client) => (Outcome::Client, Vec::new()),
        };
        Round {
            outcome,
            failures,
            won: None,
        }
    }
}

/// One client request on its way to the backends.
pub struct Attempts<'a> {
    pub req: &'a HttpRequest,
    /// The raw path without the query, as error bodies and log lines name it (a
    /// query may hold a presigned URL's signature).
    pub resource: &'a str,
    pub shared: &'a Shared,
    pub worker: &'a Worker,
}

impl Attempts<'_> {
    /// Sends through `attempt` to picked backends until one answers or no retry is
    /// allowed. The answer comes with its backend's in-flight count, held; `Err` is
    /// sidekick's own answer for the client.
    pub async fn run<A: Attempt>(
        &self,
        attempt: &mut A,
    ) -> Result<(A::Answer, InFlight), HttpResponse> {
        let (req, shared) = (self.req, self.shared);
        // The backends this request failed on or was shed by: not picked again.
        let mut failed: Vec<usize> = Vec::new();
        // Already picked for a retry after a SlowDown.
        let mut next: Option<Arc<Backend>> = None;
        // One hedge, on the first try only; one SlowDown retry.
        let mut twin = if shared.hedge { attempt.hedge() } else { None };
        let mut shed = false;
        loop {
            let picked = next
                .take()
                .or_else(|| shared.view.load().pick(shared.balance, &failed));
            let Some(backend) = picked else {
                debug!(
                    "{} {}: no backend up to try ({} failed)",
                    req.method(),
                    self.resource,
                    failed.len()
                );
                return Err(ProxyError::BackendDown.response(self.resource));
            };
            let guard = InFlight::new(backend);
            trace::attempt(req, guard.backend());
            let round = match twin.take() {
                Some(twin) => self.hedged(attempt, twin, guard, &failed).await,
                None => Round::of(attempt.send(guard.backend()).await, guard),
            };
            let mut out_of_files = false;
            let mut last = None;
            for (backend, error) in round.failures {
                trace::failed(req, &error);
                out_of_files |= self.blame(&backend, &error);
                failed.push(backend.id);
                last = Some((backend, error));
            }
            match round.outcome {
                Outcome::Client => return Err(ProxyError::BadRequest.response(self.resource)),
                Outcome::Answer(mut answer, guard) => {
                    // p2c's latency sample; not a streamed upload's, whose head waits
                    // for the client's whole body.
                    if shared.balance == Balance::P2c && attempt.replayable() {
                        guard.head_received();
                    }
                    let backend = guard.backend();
                    if let Some(won) = round.won {
                        self.hedge_won(backend, won);
                    }
                    let shedding = attempt.shedding(&mut answer, backend).await;
                    if !shedding || shed || !attempt.replayable() {
                        return Ok((answer, guard));
                    }
                    // Another backend may have room. Without one, or without
                    // budget, the client gets the answer as the backend sent it.
                    failed.push(backend.id);
                    let other = shared.view.load().pick(shared.balance, &failed);
                    let Some(other) = other.filter(|_| self.worker.budget.try_retry()) else {
                        return Ok((answer, guard));
                    };
                    SLOWDOWN_RETRIES.fetch_add(1, Relaxed);
                    trace::slowdown(req, backend);
                    debug!(
                        "{} {}: {} sheds load, asking {}",
                        req.method(),
                        self.resource,
                        backend.name,
                        other.name
                    );
                    shed = true;
                    next = Some(other);
                    // The shed answer goes here: a body still unread closes its
                    // connection.
                }
                Outcome::Failed => {
                    let Some((backend, error)) = last else {
                        return Err(ProxyError::BadGateway.response(self.resource));
                    };
                    if out_of_files {
                        return Err(ProxyError::TooManyConnections.response(self.resource));
                    }
                    let retry = attempt.replayable()
                        && failed.len() <= shared.max_retries
                        && retry::is_safe(req.method(), &error)
                        && self.worker.budget.try_retry();
                    if !retry {
                        warn!(
                            "{} {} failed on {}: {error}",
                            req.method(),
                            self.resource,
                            backend.name
                        );
                        return Err(ProxyError::BadGateway.response(self.resource));
                    }
                    backend.stats.retries.fetch_add(1, Relaxed);
                    debug!(
                        "retrying {} {} after {}: {error}",
                        req.method(),
                        self.resource,
                        backend.name
                    );
                }
            }
        }
    }

    /// Tells the Pool of a failed exchange when the backend is to blame; true when
    /// sidekick is out of open files.
    fn blame(&self, backend: &Backend, error: &Error) -> bool {
        match fault(error) {
            Fault::Ours => {
                warn!(
                    "{} {}: no backend connection, sidekick is out of open files: {error}",
                    self.req.method(),
                    self.resource
                );
                return true;
            }
            Fault::Race => {
                backend.stats.failures.fetch_add(1, Relaxed);
            }
            Fault::Backend => self.shared.pool.do_send(Failure {
                id: backend.id,
                error: error.to_string(),
            }),
        }
        false
    }

    /// Sends the request, and when its head is late (`hedge::Delays`) the same
    /// request to a second backend too, if one is up and the budget allows. The
    /// first head wins; the other exchange is dropped, which closes its connection
    /// (an exchange owns its connection until it hands over a head, so none goes
    /// back to the idle pool half-read), and its backend is not blamed: late is not
    /// failed. Both in-flight counts are held while both are pending. When one fails
    /// the other's answer is awaited.
    async fn hedged<A: Attempt>(
        &self,
        attempt: &mut A,
        mut twin: A,
        first: InFlight,
        exclude: &[usize],
    ) -> Round<A::Answer> {
        let shared = self.shared;
        let b1 = first.backend().clone();
        let delay = {
            let view = shared.view.load();
            self.worker.hedge_delays.delay(b1.site, view.site(b1.site))
        };
        let mut sending = pin!(attempt.send(&b1));
        let late = pin!(actix_rt::time::sleep(delay));
        if let Either::Left((sent, _)) = select(sending.as_mut(), late).await {
            return Round::of(sent, first);
        }
        let mut others = exclude.to_vec();
        others.push(b1.id);
        // Within the site: a later site is there for when this one is down, and
        // a hedge is a guess.
        let b2 = shared.view.load().pick(shared.balance, &others);
        let b2 = b2.filter(|b2| b2.site == b1.site && self.worker.budget.try_retry());
        let Some(b2) = b2 else {
            return Round::of(sending.await, first);
        };
        debug!(
            "{} {}: no answer from {} after {delay:?}, hedging on {}",
            self.req.method(),
            self.resource,
            b1.name,
            b2.name
        );
        let second = InFlight::new(b2.clone());
        // Boxed, and only once a hedge goes out: a second exchange inline would
        // double every request's state, hedged or not.
        let hedging = Box::pin(twin.send(&b2));
        let (won, sent, failures) = match select(sending, hedging).await {
            Either::Left((Ok(answer), _)) => (Won::First, Ok(answer), Vec::new()),
            Either::Right((Ok(answer), _)) => (Won::Hedge, Ok(answer), Vec::new()),
            Either::Left((Err(Failed::Upstream(e)), hedging)) => (
                Won::Hedge,
                hedging.await,
                vec![(first.backend().clone(), e)],
            ),
            Either::Right((Err(Failed::Upstream(e)), sending)) => (
                Won::First,
                sending.await,
                vec![(second.backend().clone(), e)],
            ),
            Either::Left((Err(Failed::Client), _)) | Either::Right((Err(Failed::Client), _)) => {
                (Won::First, Err(Failed::Client), Vec::new())
            }
        };
        let guard = match won {
            Won::First => first,
            Won::Hedge => second,
        };
        let mut round = Round::of(sent, guard);
        round.failures.splice(0..0, failures);
        if matches!(round.outcome, Outcome::Answer(..)) {
            round.won = Some(won);
        }
        round
    }

    /// A hedged request got its answer from `backend`: counted, and traced.
    fn hedge_won(&self, backend: &Arc<Backend>, won: Won) {
        let (counter, label) = match won {
            Won::First => (&HEDGES_WON_FIRST, "first"),
            Won::Hedge => (&HEDGES_WON_HEDGE, "hedge"),
        };
        counter.fetch_add(1, Relaxed);
        trace::hedged(self.req, backend, label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_backends_own_failures_are_its_fault() {
        let io = |code: rustix::io::Errno| std::io::Error::from_raw_os_error(code.raw_os_error());
        assert_eq!(
            fault(&Error::Connect(io(rustix::io::Errno::MFILE))),
            Fault::Ours
        );
        assert_eq!(
            fault(&Error::Connect(io(rustix::io::Errno::NFILE))),
            Fault::Ours
        );
        assert_eq!(fault(&Error::Stale), Fault::Race);
        assert_eq!(
            fault(&Error::Connect(io(rustix::io::Errno::CONNREFUSED))),
            Fault::Backend
        );
        assert_eq!(
            fault(&Error::Read(io(rustix::io::Errno::MFILE))),
            Fault::Backend
        );
        assert_eq!(fault(&Error::Timeout), Fault::Backend);
        let body = actix_web::error::PayloadError::Incomplete(None);
        assert!(matches!(Failed::from(Error::Body(body)), Failed::Client));
    }
}
