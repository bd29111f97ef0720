//! The command line and what it becomes: flags, endpoints and their ellipses, and the
//! validated `Config` every other layer reads.

pub mod cli;
pub mod endpoints;
pub mod paths;
pub mod trace_flags;
