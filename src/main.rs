//! sidekick: a high-performance sidecar HTTP load balancer.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use sidekick::config;
use sidekick::observe::{logging, trace};
use sidekick::server;

fn main() -> ExitCode {
    let cfg = match config::parse(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(config::Exit::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(config::Exit::Usage(line)) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    if cfg.check {
        print!("{}", cfg.describe());
        return ExitCode::SUCCESS;
    }
    let listeners = match server::bind(&cfg.listen) {
        Ok(listeners) => listeners,
        Err(line) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    logging::init(&cfg);
    trace::init(&cfg.trace, cfg.json, cfg.quiet);
    match actix_rt::System::new().block_on(server::run(cfg, listeners)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
