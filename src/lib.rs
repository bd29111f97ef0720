//! sidekick: a high-performance sidecar HTTP load balancer. The binary is `main.rs`;
//! the library exists so that the fuzz targets can reach the parsers.

mod admin;
mod backend;
pub mod cli;
mod conn_info;
mod console;
mod dns;
pub mod endpoints;
mod error;
pub mod headers;
mod health;
mod human;
pub mod logging;
mod metrics;
mod pool;
mod proxy;
mod relay;
mod request_body;
mod retry;
pub mod server;
mod signals;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod validate;
