//! The integration tests, one module per concern, in one binary: it links once, and
//! its tests run side by side. Each starts the real sidekick against real backends on
//! loopback (`common`).

mod common;

mod balancing;
mod cache;
mod cache_cacheable;
mod cache_flags;
mod cache_fleet;
mod cache_headers;
mod cache_memory;
mod cache_ranges;
mod cache_store_faults;
mod cache_store_hostile;
mod cache_wire;
mod cli;
mod console;
mod console_table;
mod faults;
mod fd_limits;
mod forwarding;
mod go_json;
mod hedging;
mod hostile;
mod http2;
mod large_objects;
mod metrics;
mod outage_log;
mod p2c;
mod rr_dns;
mod s3;
mod slowdown;
mod systemd;
mod tls;
mod trace;
mod websocket;
