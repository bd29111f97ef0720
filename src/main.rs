//! sidekick: a high-performance sidecar HTTP load balancer.

use std::process::ExitCode;

use sidekick::config::cli;
use sidekick::observe::{logging, trace};
use sidekick::server;

fn main() -> ExitCode {
    let cfg = match cli::parse(std::env::args_os()) {
        Ok(cfg) => cfg,
        Err(cli::Exit::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(cli::Exit::Usage(line)) => {
            eprintln!("{line}");
            return ExitCode::from(2);
        }
    };
    if cfg.check {
        print!("{}", cfg.describe());
        return ExitCode::SUCCESS;
    }
    logging::init(&cfg);
    trace::init(&cfg.trace, cfg.json, cfg.quiet);
    match actix_rt::System::new().block_on(server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
