//! The retry engine every request to a backend goes through: pick a backend, hold
//! its in-flight count, send, and on an error decide whose fault it was (the Pool
//! hears only of the backend's own) and whether another backend may try, charged
//! to the worker's retry budget. HTTP requests (`forward`) and WebSocket upgrades
//! (`upgrade`) differ only in how they send: each is an `Attempt`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};
use log::{debug, warn};

use crate::config::Balance;
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
        let mut failed: Vec<usize> = Vec::new();
        loop {
            let Some(backend) = shared.view.load().pick(shared.balance, &failed) else {
                debug!(
                    "{} {}: no backend up to try ({} failed)",
                    req.method(),
                    self.resource,
                    failed.len()
                );
                return Err(ProxyError::BackendDown.response(self.resource));
            };
            let guard = InFlight::new(backend);
            let backend = guard.backend();
            trace::attempt(req, backend);
            let error = match attempt.send(backend).await {
                Ok(answer) => {
                    // p2c's latency sample; not a streamed upload's, whose head waits
                    // for the client's whole body.
                    if shared.balance == Balance::P2c && attempt.replayable() {
                        guard.head_received();
                    }
                    return Ok((answer, guard));
                }
                Err(Failed::Upstream(e)) => e,
                Err(Failed::Client) => return Err(ProxyError::BadRequest.response(self.resource)),
            };
            trace::failed(req, &error);
            match fault(&error) {
                Fault::Ours => {
                    warn!(
                        "{} {}: no backend connection, sidekick is out of open files: {error}",
                        req.method(),
                        self.resource
                    );
                    return Err(ProxyError::TooManyConnections.response(self.resource));
                }
                Fault::Race => {
                    backend.stats.failures.fetch_add(1, Relaxed);
                }
                Fault::Backend => shared.pool.do_send(Failure {
                    id: backend.id,
                    error: error.to_string(),
                }),
            }
            failed.push(backend.id);
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
