//! Test harness: the real sidekick binary, raw HTTP/1.1 backends that record exactly
//! what reaches them, a raw client that sees exactly what sidekick sends back, TLS
//! material, and a Garage S3 cluster. Tests `use common::*`.
#![allow(dead_code)]

mod backend;
mod client;
pub mod garage;
mod pattern;
mod process;
mod scrape;
pub mod tls;
mod tools;

pub use backend::*;
pub use client::*;
pub use pattern::*;
pub use process::*;
pub use scrape::*;
#[allow(unused_imports)] // not every test binary drives a tool
pub use tools::*;
