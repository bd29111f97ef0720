//! Request tracing (`--trace`): one line per proxied request and/or health check, as
//! text or JSON (`--json`), with headers under `--debug` (secrets redacted), filtered
//! by `--errors` and `--status-code`. Lines go through a bounded channel to a writer
//! thread: when the output cannot keep up they are dropped and counted, and requests
//! never wait. With tracing off, the hooks cost one branch.

pub mod event;
pub mod health;
mod redact;
pub mod requests;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;

use crate::config::trace_flags::{Args, Mode};
use crate::observe::metrics::TRACE_DROPPED;
use crate::observe::trace::event::Event;
use crate::observe::trace::writer::write_lines;

/// Lines waiting for the writer; beyond this they are dropped.
const QUEUE: usize = 4096;

pub struct Tracer {
    requests: bool,
    health: bool,
    json: bool,
    debug: bool,
    errors: bool,
    codes: Vec<u16>,
    queue: SyncSender<Event>,
    dropped: &'static AtomicU64,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();

/// Starts tracing to stdout when `--trace` is given (and not `--quiet`).
pub fn init(args: &Args, json: bool, quiet: bool) {
    let Some(mode) = args.trace.filter(|_| !quiet) else {
        return;
    };
    let (tracer, lines) = Tracer::new(mode, args, json, QUEUE, &TRACE_DROPPED);
    let json = tracer.json;
    let spawned = std::thread::Builder::new()
        .name("trace".into())
        .spawn(move || write_lines(lines, std::io::stdout(), json));
    match spawned {
        Ok(_) => {
            let _ = TRACER.set(tracer);
        }
        Err(e) => log::error!("tracing disabled: {e}"),
    }
}

pub fn tracer() -> Option<&'static Tracer> {
    TRACER.get()
}

/// True when proxied requests are traced (the server then installs `middleware`).
pub fn requests_on() -> bool {
    tracer().is_some_and(|t| t.requests)
}

impl Tracer {
    fn new(
        mode: Mode,
        args: &Args,
        json: bool,
        capacity: usize,
        dropped: &'static AtomicU64,
    ) -> (Tracer, Receiver<Event>) {
        let (queue, lines) = sync_channel(capacity);
        let tracer = Tracer {
            requests: matches!(mode, Mode::All | Mode::Application),
            health: matches!(mode, Mode::All | Mode::Minio),
            json,
            debug: args.debug,
            errors: args.errors,
            codes: args.status_code.clone(),
            queue,
            dropped,
        };
        (tracer, lines)
    }

    /// `--errors` and `--status-code` must both let the event through.
    fn wanted(&self, status: u16, error: bool) -> bool {
        let failed = error || status == 0 || status >= 400;
        (!self.errors || failed) && (self.codes.is_empty() || self.codes.contains(&status))
    }

    fn send(&self, event: Event) {
        if !self.wanted(event.status, event.error.is_some()) {
            return;
        }
        if let Err(TrySendError::Full(_)) = self.queue.try_send(event) {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::trace::event::sample as event;
    use serde_json::Value;

    fn tracer(args: Args, capacity: usize) -> (Tracer, Receiver<Event>) {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        Tracer::new(Mode::All, &args, false, capacity, &DROPPED)
    }

    #[test]
    fn filters_errors_and_status_codes() {
        let (t, _rx) = tracer(Args::default(), 1);
        assert!(t.wanted(200, false));
        let errors = Args {
            errors: true,
            ..Args::default()
        };
        let (t, _rx) = tracer(errors, 1);
        assert!(!t.wanted(200, false) && !t.wanted(304, false));
        assert!(t.wanted(404, false) && t.wanted(502, false));
        assert!(t.wanted(200, true) && t.wanted(0, true));
        let codes = Args {
            status_code: vec![204, 404],
            ..Args::default()
        };
        let (t, _rx) = tracer(codes, 1);
        assert!(t.wanted(204, false) && t.wanted(404, false));
        assert!(!t.wanted(200, false) && !t.wanted(500, false));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        static DROPPED: AtomicU64 = AtomicU64::new(0);
        let (t, rx) = Tracer::new(Mode::All, &Args::default(), false, 2, &DROPPED);
        for _ in 0..5 {
            t.send(event(200));
        }
        assert_eq!(DROPPED.load(Relaxed), 3);
        assert_eq!(rx.try_iter().count(), 2);
    }

    #[test]
    fn writer_writes_each_event_on_a_line() {
        let (t, rx) = tracer(Args::default(), 8);
        t.send(event(200));
        t.send(event(500));
        drop(t);
        let mut out = Vec::new();
        write_lines(rx, &mut out, true);
        let text = String::from_utf8(out).unwrap();
        let statuses: Vec<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["status"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(statuses, [200, 500]);
    }
}
