//! Test harness: the real sidekick binary, raw HTTP/1.1 backends that record exactly
//! what reaches them, a raw client that sees exactly what sidekick sends back, TLS
//! material, a Garage S3 cluster, an S3-like raw origin, boto3 as a helper process,
//! the cache store of the S3 shared cache, a raw one with conditional writes and a
//! raw one that lies (these raw servers share one accept and request loop), and raw
//! backends whose every answer a test scripts. Tests `use common::*`.
#![allow(dead_code)]

mod backend;
pub mod boto;
pub mod cache_store;
mod client;
pub mod conditional_store;
pub mod garage;
pub mod hostile_store;
pub mod origin;
mod pattern;
mod process;
pub mod raw_server;
mod scrape;
mod scripted;
pub mod tls;
mod tools;

pub use backend::*;
pub use client::*;
pub use pattern::*;
pub use process::*;
pub use scrape::*;
pub use scripted::*;
#[allow(unused_imports)] // not every test binary drives a tool
pub use tools::*;
