//! sidekick: a high-performance sidecar HTTP load balancer. The binary is `main.rs`;
//! the library exists so that the fuzz targets can reach the parsers.

#![forbid(unsafe_code)]

mod admin;
pub mod cache;
pub mod config;
mod conn;
mod http_server;
mod limits;
pub mod observe;
mod pool;
pub mod proxy;
pub mod server;
mod signals;
pub mod tls;
pub mod upstream;
