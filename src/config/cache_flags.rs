//! The `--cache-*` flags (flattened into the command line) and their validation into
//! the `CacheConfig` that `cache` reads.

use crate::config::endpoints::{parse_sites, Endpoint};
use crate::config::units::{parse_size, positive_duration};
use crate::config::usage_error::{with_hints, SEE_HELP};

/// Smallest and largest block: below 64 KiB the per-block requests dominate, above
/// 64 MiB one block held for verification costs too much memory per reader.
pub const MIN_BLOCK: u64 = 64 << 10;
pub const MAX_BLOCK: u64 = 64 << 20;

/// The S3 shared cache flags.
#[derive(clap::Args, Clone, Debug, Default)]
#[command(next_help_heading = "S3 shared cache")]
pub struct CacheArgs {
    /// The cache store's S3 endpoint(s), written like a SITE; turns the cache on
    #[arg(long, env = "SIDEKICK_CACHE_ENDPOINT", value_name = "ENDPOINTS")]
    pub cache_endpoint: Option<String>,

    /// Bucket in the cache store (required with --cache-endpoint)
    #[arg(long, env = "SIDEKICK_CACHE_BUCKET", value_name = "NAME")]
    pub cache_bucket: Option<String>,

    /// sidekick's own access key for the cache store (required with --cache-endpoint)
    #[arg(long, env = "SIDEKICK_CACHE_ACCESS_KEY", value_name = "KEY")]
    pub cache_access_key: Option<String>,

    /// sidekick's own secret key for the cache store (required with --cache-endpoint)
    #[arg(
        long,
        env = "SIDEKICK_CACHE_SECRET_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub cache_secret_key: Option<String>,

    /// Region used to sign requests to the cache store
    #[arg(long, env = "SIDEKICK_CACHE_REGION", default_value = "us-east-1")]
    pub cache_region: String,

    /// Key prefix inside the cache bucket, so that deployments can share one
    #[arg(long, env = "SIDEKICK_CACHE_PREFIX", default_value = "")]
    pub cache_prefix: String,

    /// Objects smaller than this are not cached
    #[arg(long, env = "SIDEKICK_CACHE_MIN_SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub cache_min_size: u64,

    /// Objects larger than this are not cached
    #[arg(long, env = "SIDEKICK_CACHE_MAX_SIZE", default_value = "5GiB", value_parser = parse_size)]
    pub cache_max_size: u64,

    /// Unit of storage in the cache and of range hits (64KiB to 64MiB)
    #[arg(long, env = "SIDEKICK_CACHE_BLOCK_SIZE", default_value = "4MiB", value_parser = parse_size)]
    pub cache_block_size: u64,

    /// How long the headers a hit answers with (Content-Type, x-amz-meta-*, …) are
    /// served after a full answer of the origin last showed them, when its 304s do
    /// not show that the object was written again; then one request goes without
    /// the condition to take them afresh
    #[arg(long, env = "SIDEKICK_CACHE_HEADER_TTL", default_value = "60s", value_parser = positive_duration)]
    pub cache_header_ttl: std::time::Duration,

    /// Objects whose metadata and stored blocks this sidekick remembers, so that a
    /// hit needs no lookup in the store first (0: none; each costs a few KiB)
    #[arg(long, env = "SIDEKICK_CACHE_REMEMBER", default_value_t = 4096)]
    pub cache_remember: usize,

    /// Readiness path checked on each cache store node
    #[arg(
        long,
        env = "SIDEKICK_CACHE_HEALTH_PATH",
        default_value = "/minio/health/ready"
    )]
    pub cache_health_path: String,

    /// Port for the cache store's health checks (0 uses each endpoint's own port)
    #[arg(long, env = "SIDEKICK_CACHE_HEALTH_PORT", default_value_t = 0)]
    pub cache_health_port: u16,
}

/// The validated cache settings.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    pub endpoints: Vec<Endpoint>,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub prefix: String,
    pub min_size: u64,
    pub max_size: u64,
    pub block_size: u64,
    pub header_ttl: std::time::Duration,
    pub remember: usize,
    pub health_path: String,
    pub health_port: u16,
}

impl CacheConfig {
    /// What `--check` prints (the secret never).
    pub fn describe(&self) -> String {
        let mut out = format!(
            "cache: bucket {} prefix '{}' region {} access key {} secret key (redacted)\n  \
             objects {}..{} bytes in blocks of {} bytes\n",
            self.bucket,
            self.prefix,
            self.region,
            self.access_key,
            self.min_size,
            self.max_size,
            self.block_size
        );
        for ep in &self.endpoints {
            let health = ep.health_url(self.health_port, &self.health_path);
            out.push_str(&format!("  cache node {ep}  health {health}\n"));
        }
        out
    }
}

impl CacheArgs {
    /// `None` when no endpoint is given; an error names the flag at fault.
    pub fn validate(self) -> Result<Option<CacheConfig>, String> {
        let bad = |msg: String| with_hints(&format!("error: {msg}"), [SEE_HELP]);
        let Some(endpoint) = self.cache_endpoint.filter(|e| !e.trim().is_empty()) else {
            return Ok(None);
        };
        let sites = parse_sites(std::slice::from_ref(&endpoint))
            .map_err(|e| bad(format!("invalid --cache-endpoint: {e}")))?;
        let endpoints = sites.into_iter().flatten().collect();
        let required = |value: Option<String>, flag: &str| {
            value.filter(|v| !v.is_empty()).ok_or_else(|| {
                bad(format!(
                    "--cache-endpoint '{endpoint}' needs {flag} as well"
                ))
            })
        };
        let bucket = required(self.cache_bucket, "--cache-bucket")?;
        let access_key = required(self.cache_access_key, "--cache-access-key")?;
        let secret_key = required(self.cache_secret_key, "--cache-secret-key")?;
        let (min_size, max_size, block_size) = (
            self.cache_min_size,
            self.cache_max_size,
            self.cache_block_size,
        );
        if min_size > max_size {
            return Err(bad(format!(
                "--cache-min-size ({min_size} bytes) is larger than --cache-max-size \
                 ({max_size} bytes)"
            )));
        }
        if !(MIN_BLOCK..=MAX_BLOCK).contains(&block_size) {
            return Err(bad(format!(
                "invalid --cache-block-size ({block_size} bytes): must be between 64KiB \
                 and 64MiB"
            )));
        }
        let health_path = match self.cache_health_path.starts_with('/') {
            true => self.cache_health_path,
            false => format!("/{}", self.cache_health_path),
        };
        let prefix = self.cache_prefix.trim_start_matches('/').to_string();
        Ok(Some(CacheConfig {
            endpoints,
            bucket,
            access_key,
            secret_key,
            region: self.cache_region,
            prefix,
            min_size,
            max_size,
            block_size,
            header_ttl: self.cache_header_ttl,
            remember: self.cache_remember,
            health_path,
            health_port: self.cache_health_port,
        }))
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Exit};

    fn usage(args: &[&str]) -> String {
        match parse(["sidekick"].into_iter().chain(args.iter().copied())) {
            Err(Exit::Usage(s)) => s,
            _ => panic!("expected a usage error for {args:?}"),
        }
    }

    const STORE: [&str; 8] = [
        "--cache-endpoint",
        "http://c{1...2}:9000",
        "--cache-bucket",
        "b",
        "--cache-access-key",
        "AK",
        "--cache-secret-key",
        "SECRET",
    ];

    #[test]
    fn an_endpoint_needs_bucket_and_keys() {
        for (i, flag) in ["--cache-bucket", "--cache-access-key", "--cache-secret-key"]
            .into_iter()
            .enumerate()
        {
            let mut args: Vec<&str> = STORE.to_vec();
            args.drain(2 + 2 * i..4 + 2 * i);
            args.push("http://a");
            let msg = usage(&args);
            assert!(msg.lines().next().unwrap().contains(flag), "{msg}");
        }
    }

    #[test]
    fn sizes_and_their_order_are_checked() {
        for (extra, needle) in [
            (["--cache-min-size", "1XB"], "1XB"),
            (["--cache-block-size", "1KiB"], "--cache-block-size"),
            (["--cache-max-size", "1KiB"], "--cache-min-size"),
            (["--cache-endpoint", "ftp://c"], "ftp://c"),
        ] {
            let mut args: Vec<&str> = STORE[2..].to_vec();
            if extra[0] != "--cache-endpoint" {
                args.extend(&STORE[..2]);
            }
            args.extend(extra);
            args.push("http://a");
            let msg = usage(&args);
            assert!(msg.lines().next().unwrap().contains(needle), "{msg}");
        }
    }

    #[test]
    fn check_prints_the_settings_without_the_secret() {
        let mut args: Vec<&str> = STORE.to_vec();
        args.push("http://a");
        let cfg = match parse(["sidekick"].into_iter().chain(args)) {
            Ok(cfg) => cfg,
            Err(_) => panic!("valid cache flags refused"),
        };
        let text = cfg.describe();
        assert!(text.contains("cache node http://c2:9000"), "{text}");
        assert!(text.contains("bucket b") && text.contains("AK"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
