//! The S3 shared cache's store for the tests: a bucket in a Garage cluster with a
//! key of its own, the `--cache-*` flags that point sidekick at it (or at a raw
//! store), sidekick started on it with Garage as the origin too, and waiting on
//! sidekick's cache (readiness, fills) by its log and metrics.

use std::time::Duration;

use super::boto::{Boto, S3Key};
use super::garage::{Garage, REGION};
use super::{wait_for, wait_until, Sidekick};

/// A cache bucket, and sidekick's own key for it (allowed on that bucket alone).
#[derive(Clone, Debug)]
pub struct CacheStore {
    pub bucket: String,
    /// The key, signing for node 0 directly (to look into the bucket).
    pub key: S3Key,
    /// Every node's S3 endpoint: the `--cache-endpoint`.
    pub site: String,
    pub admin_port: u16,
}

/// How long a fill or a cache store's first check may take.
pub const CACHE_WAIT: Duration = Duration::from_secs(30);

impl CacheStore {
    pub fn in_garage(g: &Garage, bucket: &str) -> CacheStore {
        let (access, secret) = g.bucket_with_own_key(bucket);
        CacheStore {
            bucket: bucket.into(),
            key: S3Key {
                endpoint: g.endpoint(0),
                access,
                secret,
                region: REGION.into(),
            },
            site: g.site(),
            admin_port: g.admin_port,
        }
    }

    /// The flags that turn the cache on with this store, for small test objects.
    pub fn flags(&self) -> Vec<String> {
        store_flags(
            &self.site,
            &self.bucket,
            (&self.key.access, &self.key.secret),
            &[
                "--cache-region",
                REGION,
                "--cache-health-port",
                &self.admin_port.to_string(),
            ],
        )
    }

    /// The objects under `prefix` (`meta/`, `blocks/`) in the bucket.
    pub fn list(&self, boto: &Boto, prefix: &str) -> Vec<(String, u64)> {
        boto.list(&self.key, &self.bucket, prefix)
    }

    /// Waits until the bucket holds at least `n` objects under `prefix`.
    pub fn wait_objects(&self, boto: &Boto, prefix: &str, n: usize) {
        wait_for(
            &format!("{n} object(s) under {prefix} in the cache bucket"),
            CACHE_WAIT,
            || self.list(boto, prefix).len() >= n,
        );
    }
}

/// The `--cache-*` flags that point sidekick at the store at `endpoint` with `key`
/// (access, secret) for small test objects (every size cached, 64 KiB blocks,
/// readiness on `/health`), and `more`.
pub fn store_flags(endpoint: &str, bucket: &str, key: (&str, &str), more: &[&str]) -> Vec<String> {
    [
        "--cache-endpoint",
        endpoint,
        "--cache-bucket",
        bucket,
        "--cache-access-key",
        key.0,
        "--cache-secret-key",
        key.1,
        "--cache-health-path",
        "/health",
        "--cache-min-size",
        "0",
        "--cache-block-size",
        "64KiB",
    ]
    .iter()
    .chain(more)
    .map(|s| s.to_string())
    .collect()
}

impl Sidekick {
    /// Starts sidekick with the cache on `store` and `args` (the origin site
    /// last), and waits until its start check has found the bucket usable.
    pub fn start_cached(store: &CacheStore, args: &[&str]) -> Sidekick {
        let mut all: Vec<String> = store.flags();
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let sk = Sidekick::start(&all);
        sk.wait_cache_ready(&store.bucket);
        sk
    }

    /// Starts sidekick with the cache on `store`, the flags `more`, and `g`'s nodes as
    /// the origin's site (each node's admin `/health` its readiness), and waits until
    /// the bucket is usable and every node is up.
    pub fn start_on_garage(g: &Garage, store: &CacheStore, more: &[&str]) -> Sidekick {
        let port = g.admin_port.to_string();
        let site = g.site();
        let mut args = more.to_vec();
        args.extend([
            "--health-port",
            &port,
            "--health-path",
            "/health",
            "--health-duration",
            "500ms",
            &site,
        ]);
        let sk = Sidekick::start_cached(store, &args);
        sk.wait_up(g.len());
        sk
    }

    /// Waits for the start check's line saying the bucket can be used.
    pub fn wait_cache_ready(&self, bucket: &str) {
        let line = format!("cache bucket {bucket}");
        wait_until("the cache bucket usable", CACHE_WAIT, || {
            let log = self.log.lock().unwrap();
            let ready = log
                .iter()
                .any(|l| l.contains(&line) && l.contains("readable and writable"));
            match ready {
                true => Ok(()),
                false => Err(format!(
                    "no line saying the cache bucket {bucket} is usable in the log:\n{}",
                    log.join("\n")
                )),
            }
        });
    }

    /// A cache metric in a fresh scrape (`label` as in `sample_with`), 0 if absent.
    pub fn cache_metric(&self, name: &str, label: &str) -> f64 {
        self.sample_with(name, label).unwrap_or(0.0)
    }

    /// Bytes the cache fills have written so far.
    pub fn fill_bytes(&self) -> u64 {
        self.cache_metric("sidekick_cache_fill_bytes_total", "") as u64
    }

    /// Waits until fills have written `total` bytes (since start), and checks that
    /// they did not write more.
    pub fn wait_filled(&self, total: u64) {
        wait_until(&format!("{total} bytes filled"), CACHE_WAIT, || {
            let filled = self.fill_bytes();
            let dropped = self.cache_metric("sidekick_cache_fills_dropped_total", "");
            // A dropped fill never gets there: say so at once.
            assert!(
                dropped == 0.0,
                "{dropped} fills dropped, {filled} bytes filled"
            );
            (filled >= total)
                .then_some(())
                .ok_or(format!("{filled} bytes filled"))
        });
        assert_eq!(self.fill_bytes(), total, "fill bytes");
    }
}
