//! Tracing health checks (`--trace minio|all`): the Pool's check hook.

use std::fmt::Display;
use std::time::{Instant, SystemTime};

use actix_web::http::{StatusCode, Uri};

use crate::observe::trace::event::{Event, Kind};
use crate::observe::trace::tracer;
use crate::pool::health::CheckDone;

/// A health check being traced.
struct HealthTrace {
    time: SystemTime,
    started: Instant,
    backend: String,
    path: String,
}

/// Starts tracing one health check when `--trace minio|all` is on (the Pool's check
/// hook); what it returns writes the line when the check ends.
pub fn health_check(backend: &str, url: &Result<Uri, String>) -> Option<CheckDone> {
    if !tracer().is_some_and(|t| t.health) {
        return None;
    }
    let path = match url {
        Ok(url) => url.path_and_query().map_or("/", |p| p.as_str()).to_string(),
        Err(_) => String::new(),
    };
    let trace = HealthTrace {
        time: SystemTime::now(),
        started: Instant::now(),
        backend: backend.to_string(),
        path,
    };
    Some(Box::new(move |result| trace.finish(result)))
}

impl HealthTrace {
    fn finish(self, result: Result<StatusCode, &dyn Display>) {
        let Some(tracer) = tracer() else { return };
        let (status, error) = match result {
            Ok(status) => (status.as_u16(), None),
            Err(e) => (0, Some(e.to_string())),
        };
        tracer.send(Event {
            kind: Kind::Health,
            time: self.time,
            client: None,
            source: None,
            method: "GET".into(),
            path: self.path,
            status,
            error,
            backend: Some(self.backend),
            duration: self.started.elapsed(),
            first_byte: None,
            bytes_in: 0,
            bytes_out: 0,
            cache: None,
            hedged: None,
            slowdown: None,
            request_headers: None,
            response_headers: None,
        });
    }
}
