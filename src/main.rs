//! sidekick: a high-performance sidecar HTTP load balancer.

mod admin;
mod backend;
mod cli;
mod conn_info;
mod endpoints;
mod error;
mod headers;
mod health;
mod logging;
mod pool;
mod proxy;
mod relay;
mod retry;
mod server;
mod signals;
mod tls;
mod validate;

use std::process::ExitCode;

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
    match actix_rt::System::new().block_on(server::run(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
