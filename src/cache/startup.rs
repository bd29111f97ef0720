//! The cache bucket's read-write check: once a cache node is up, one small object is
//! written and read back, and the result logged. Until it passes (a store down at
//! start, wrong credentials, a missing bucket) sidekick serves without the cache,
//! checking again every little while.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log::{info, warn};

use crate::cache::Cache;
use crate::config::Config;
use crate::pool::events::TARGET;
use crate::upstream::Upstream;

/// How long start waits for a cache node before saying none is up.
const FIRST_WAIT: Duration = Duration::from_secs(3);
/// How often the view is looked at while no node is up (it changes by health checks).
const POLL: Duration = Duration::from_millis(100);
/// Between two checks that failed.
const RETRY: Duration = Duration::from_secs(10);

/// Runs the check on the current arbiter until it passes.
pub fn watch(cache: Arc<Cache>, cfg: &Config) {
    let up = Upstream::new(cfg);
    actix_rt::spawn(async move {
        let bucket = cache.cfg.bucket.clone();
        let mut waited = Duration::ZERO;
        let mut said_down = false;
        loop {
            if !cache.store.up() {
                if waited >= FIRST_WAIT && !said_down {
                    said_down = true;
                    warn!(
                        target: TARGET,
                        "cache bucket {bucket}: no cache node is up; serving without cache until \
                         one is"
                    );
                }
                actix_rt::time::sleep(POLL).await;
                waited += POLL;
                continue;
            }
            match check(&cache, &up).await {
                Ok(()) => {
                    cache.set_usable(true);
                    info!(target: TARGET, "cache bucket {bucket}: readable and writable");
                    return;
                }
                Err(why) => {
                    warn!(
                        target: TARGET,
                        "cache bucket {bucket}: {why}; serving without cache until it works"
                    );
                    actix_rt::time::sleep(RETRY).await;
                }
            }
        }
    });
}

async fn check(cache: &Cache, up: &Upstream) -> Result<(), String> {
    let name = format!("{}sidekick-check", cache.cfg.prefix);
    let token = Bytes::from(format!("sidekick {}", fastrand::u64(..)));
    cache
        .store
        .put(up, &name, token.clone())
        .await
        .map_err(|e| format!("cannot write: {e}"))?;
    match cache.store.get(up, &name, token.len()).await {
        Ok(Some(read)) if read == token => Ok(()),
        Ok(Some(_)) => Err("reads back something else than it wrote".into()),
        Ok(None) => Err("what was written cannot be read back".into()),
        Err(e) => Err(format!("cannot read: {e}")),
    }
}
