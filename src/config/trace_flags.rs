//! The `--trace` flags, flattened into the command line; `observe::trace` reads them.

use clap::ValueEnum;

/// What `--trace` traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Proxied requests and health checks
    All,
    /// Proxied requests
    Application,
    /// Health checks
    Minio,
}

/// The tracing flags (flattened into the command line).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Args {
    /// Trace HTTP on stdout: one line per proxied request (application), per health
    /// check (minio), or both (all)
    #[arg(
        short = 't',
        long,
        env = "SIDEKICK_TRACE",
        value_enum,
        value_name = "MODE"
    )]
    pub trace: Option<Mode>,

    /// With --trace: add request and response headers (credentials redacted)
    #[arg(long, env = "SIDEKICK_DEBUG")]
    pub debug: bool,

    /// With --trace: only responses with status >= 400 and transport errors
    #[arg(short = 'e', long, env = "SIDEKICK_ERRORS")]
    pub errors: bool,

    /// With --trace: only responses with this status code (repeatable)
    #[arg(long = "status-code", value_name = "N", env = "SIDEKICK_STATUS_CODE",
          value_delimiter = ',', value_parser = clap::value_parser!(u16).range(100..600))]
    pub status_code: Vec<u16>,
}
