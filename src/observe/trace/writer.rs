//! The writer thread: trace lines leave the request path through a bounded queue.

use std::io::Write;
use std::sync::mpsc::Receiver;

use crate::observe::trace::event::{to_json, write_text, Event};

/// The writer thread: flushes whenever the queue is empty, ends when the senders do.
pub fn write_lines(lines: Receiver<Event>, out: impl Write, json: bool) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(mut event) = lines.recv() {
        loop {
            let written = if json {
                writeln!(out, "{}", to_json(&event))
            } else {
                write_text(&mut out, &event)
            };
            if written.is_err() {
                return;
            }
            match lines.try_recv() {
                Ok(next) => event = next,
                Err(_) => break,
            }
        }
        if out.flush().is_err() {
            return;
        }
    }
}
