//! The cache bucket's read-write check: once a cache node is up, one small object of
//! this sidekick's own (`sidekick-check/<random>`: sidecars starting together never
//! read back each other's) is written and read back, and the result logged. Until it
//! passes (a store down at start, wrong credentials, a missing bucket) sidekick serves
//! without the cache, checking again after a jittered while. The check also finds
//! whether the store honours conditional writes (`cache::claim`). Each start leaves
//! its check object in the bucket, for the bucket's lifecycle rule to remove.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use log::{info, warn};

use crate::cache::store::{Condition, Written};
use crate::cache::Cache;
use crate::config::Config;
use crate::pool::events::TARGET;
use crate::upstream::Upstream;

/// How long start waits for a cache node before saying none is up.
const FIRST_WAIT: Duration = Duration::from_secs(3);
/// How often the view is looked at while no node is up (it changes by health checks).
const POLL: Duration = Duration::from_millis(100);
/// Between two checks that failed, on average (jittered by half either way, so that
/// sidecars that failed together do not retry in step).
const RETRY: Duration = Duration::from_secs(10);
/// An ETag no object has, for `If-Match`.
const NO_ETAG: &str = "\"sidekick-no-such-version\"";

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
                Ok(conditional) => {
                    cache.set_conditional(conditional);
                    cache.set_usable(true);
                    let claims = match conditional {
                        true => "fills are claimed atomically (conditional writes)",
                        false => {
                            "fills are claimed best effort (the store ignores conditional \
                             writes)"
                        }
                    };
                    info!(
                        target: TARGET,
                        "cache bucket {bucket}: readable and writable; {claims}"
                    );
                    return;
                }
                Err(why) => {
                    warn!(
                        target: TARGET,
                        "cache bucket {bucket}: {why}; serving without cache until it works"
                    );
                    actix_rt::time::sleep(RETRY.mul_f64(0.5 + fastrand::f64())).await;
                }
            }
        }
    });
}

/// Writes and reads back this sidekick's own object; whether the store honours
/// conditional writes.
async fn check(cache: &Cache, up: &Upstream) -> Result<bool, String> {
    let random = format!("{:016x}", fastrand::u64(..));
    let name = format!("{}sidekick-check/{random}", cache.cfg.prefix);
    let token = Bytes::from(format!("sidekick {random}"));
    let store = &cache.store;
    store
        .put(up, &name, token.clone())
        .await
        .map_err(|e| format!("cannot write: {e}"))?;
    match store.get(up, &name, token.len()).await {
        Ok(Some(read)) if read == token => {}
        Ok(Some(_)) => return Err("reads back something else than it wrote".into()),
        Ok(None) => return Err("what was written cannot be read back".into()),
        Err(e) => return Err(format!("cannot read: {e}")),
    }
    // Both conditions must fail on the object just written; a store that writes
    // instead ignores them.
    for condition in [Condition::Absent, Condition::Matches(NO_ETAG)] {
        match store.put_if(up, &name, token.clone(), condition).await {
            Ok(Written::Refused) => {}
            Ok(Written::Done(_)) => return Ok(false),
            Err(e) => return Err(format!("cannot write: {e}")),
        }
    }
    Ok(true)
}
