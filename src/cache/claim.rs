//! Claims of a fill across the fleet: before a cold read asks the origin for the body,
//! its sidekick claims the object's fill in the bucket (`claims/<hash>`). The claim
//! says who holds it, when it was last written, the version filled (once the origin's
//! answer shows it) and how far the fill got. The others mirror that progress into a
//! local fill (`cache::lock`), so their readers wait for the version, revalidate it
//! with the origin and read the blocks as they land, as if the fill were their own.
//!
//! * A store that honours conditional writes (AWS S3, MinIO) makes the claim atomic:
//!   `If-None-Match: *` creates it, `If-Match: <its ETag>` takes over one that ended
//!   or lapsed, and renews it while it is held.
//! * A store that ignores them and overwrites (Garage 2.5) gets a best-effort claim:
//!   each writes a unique owner, reads back after `SETTLE`, and the owner that stayed
//!   wins. Two sidecars may both win; each then fills, and the blocks they write are
//!   the same bytes under the same names.
//!
//! The holder rewrites the claim only when its fill progressed (the version known,
//! bytes received, a block stored). A claim that shows no progress for `LEASE` —
//! its holder died, or its client reads slowly — is given up: the mirror ends, its
//! readers go to the origin, and the next cold read takes the claim over.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log::debug;
use serde::{Deserialize, Serialize};

use crate::cache::lock::{Claim, Fill, FillGuard, Progress, STALL};
use crate::cache::meta::{self, Meta};
use crate::cache::store::{Condition, StoreError, Written, LOOKUP_TIMEOUT};
use crate::cache::{key, Cache};
use crate::observe::cache_stats::STATS;
use crate::upstream::Upstream;

/// A claim that shows no progress for this long is given up.
pub const LEASE: Duration = STALL;
/// A claim last written longer ago than this, by the writer's clock, is dead
/// whatever it says: its lease, and 5 s for clocks of the fleet that disagree.
const DEAD_AFTER: Duration = Duration::from_millis(LEASE.as_millis() as u64 + 5000);
/// Best effort: how long after writing its owner a claimer reads the claim back.
const SETTLE: Duration = Duration::from_millis(250);
/// How often a mirror reads the claim it follows.
const POLL: Duration = Duration::from_millis(200);
/// Shortest time between two writes of a held claim (the first version excepted).
const RENEW: Duration = Duration::from_millis(250);
/// The largest claim read back: the metadata and a few numbers.
const MAX_CLAIM: usize = meta::MAX_META + 1024;
/// The longest owner token accepted from the store.
const MAX_OWNER: usize = 64;

/// The claim object's content.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Unique to one claim: a sidecar that claims again is a new owner.
    pub owner: String,
    /// Bumped at every write.
    pub seq: u64,
    /// When it was last written (Unix milliseconds, the writer's clock).
    pub at_ms: u64,
    /// The lease, for whoever reads the bucket.
    pub lease_ms: u64,
    /// The fill ended (all stored, or given up).
    pub done: bool,
    /// The version filled (`Meta::encode`), once the origin answered.
    pub meta: Option<String>,
    /// Blocks `first..next` are stored.
    pub first: u64,
    pub next: u64,
    /// Bytes of the origin's answer the holder has seen.
    pub received: u64,
}

impl Record {
    fn new(owner: String) -> Record {
        Record {
            owner,
            lease_ms: LEASE.as_millis() as u64,
            ..Record::default()
        }
    }

    fn encode(&mut self) -> Bytes {
        self.seq += 1;
        self.at_ms = now_ms();
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    /// A claim read from the store: nothing in it is trusted beyond its shape.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let record: Record = serde_json::from_slice(bytes).ok()?;
        let owner_ok = !record.owner.is_empty()
            && record.owner.len() <= MAX_OWNER
            && record.owner.bytes().all(|b| b.is_ascii_alphanumeric());
        (owner_ok && record.first <= record.next).then_some(record)
    }

    /// The version it fills, checked as metadata read from the store is.
    fn version(&self, identity: &str, max_size: u64) -> Option<Meta> {
        let meta = Meta::decode(self.meta.as_ref()?.as_bytes(), identity, max_size)?;
        // Bounds the memory a mirror spends on the fill's blocks.
        let sane = meta.size <= max_size && meta.block_size >= 64 << 10;
        sane.then_some(meta)
    }

    /// Written so long ago that its holder is gone, whatever the record says.
    fn dead(&self) -> bool {
        now_ms().saturating_sub(self.at_ms) > DEAD_AFTER.as_millis() as u64
    }

    /// Another sidecar's fill to follow: one still running. A fill that ended is
    /// not: the metadata says what it stored, and a reader that found none (or
    /// metadata cleared after a bad block) must fill again.
    fn worth_following(&self) -> bool {
        !self.done && !self.dead()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn owner() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// What a claim attempt found.
pub enum Taken {
    /// This sidekick fills; the claim is kept by `hold`.
    Won(Holder),
    /// Another sidecar fills: its claim as read, to `follow`.
    Held(Record),
    /// The store could not say: the fill goes on alone, as without claims.
    Unknown(String),
}

/// The claim this sidekick holds.
pub struct Holder {
    name: String,
    record: Record,
    /// The claim's ETag as last written (conditional stores only).
    etag: Option<String>,
}

/// Claims the fill of the object `identity` in the bucket.
pub async fn take(cache: &Cache, up: &Upstream, identity: &str) -> Taken {
    let name = key::claim(&cache.cfg.prefix, identity);
    let attempt = async {
        match cache.conditional() {
            true => take_atomic(cache, up, &name).await,
            false => take_best_effort(cache, up, &name).await,
        }
    };
    let taken = match actix_rt::time::timeout(LOOKUP_TIMEOUT + SETTLE, attempt).await {
        Ok(Ok(taken)) => taken,
        Ok(Err(e)) => Taken::Unknown(e.to_string()),
        Err(_) => Taken::Unknown("the claim timed out".into()),
    };
    match &taken {
        Taken::Won(_) => STATS.claims_won.fetch_add(1, Relaxed),
        Taken::Held(_) => STATS.claims_waited.fetch_add(1, Relaxed),
        Taken::Unknown(_) => 0,
    };
    taken
}

async fn read(
    cache: &Cache,
    up: &Upstream,
    name: &str,
) -> Result<Option<(Record, Option<String>)>, StoreError> {
    Ok(cache
        .store
        .get_tagged(up, name, MAX_CLAIM)
        .await?
        .map(|(bytes, etag)| (Record::decode(&bytes).unwrap_or_default(), etag)))
}

async fn take_atomic(cache: &Cache, up: &Upstream, name: &str) -> Result<Taken, StoreError> {
    let mut record = Record::new(owner());
    let store = &cache.store;
    if let Written::Done(etag) = store
        .put_if(up, name, record.encode(), Condition::Absent)
        .await?
    {
        return Ok(won(name, record, etag));
    }
    let Some((held, etag)) = read(cache, up, name).await? else {
        // Gone between the two requests (the lifecycle rule): the next read claims.
        return Ok(Taken::Unknown("the claim vanished".into()));
    };
    if held.worth_following() {
        return Ok(Taken::Held(held));
    }
    let Some(etag) = etag else {
        return Ok(Taken::Unknown("the store sent no ETag".into()));
    };
    match store
        .put_if(up, name, record.encode(), Condition::Matches(&etag))
        .await?
    {
        Written::Done(etag) => Ok(won(name, record, etag)),
        // Another sidecar took it over first.
        Written::Refused => match read(cache, up, name).await? {
            Some((held, _)) if held.worth_following() => Ok(Taken::Held(held)),
            _ => Ok(Taken::Unknown("the claim changed hands twice".into())),
        },
    }
}

async fn take_best_effort(cache: &Cache, up: &Upstream, name: &str) -> Result<Taken, StoreError> {
    if let Some((held, _)) = read(cache, up, name).await? {
        if held.worth_following() {
            return Ok(Taken::Held(held));
        }
    }
    let mut record = Record::new(owner());
    cache.store.put(up, name, record.encode()).await?;
    // Every sidecar that found no claim wrote its own by now: the last one stays.
    actix_rt::time::sleep(SETTLE).await;
    match read(cache, up, name).await? {
        Some((held, _)) if held.owner == record.owner => Ok(won(name, record, None)),
        Some((held, _)) if held.worth_following() => Ok(Taken::Held(held)),
        _ => Ok(Taken::Unknown("the claim was overwritten".into())),
    }
}

fn won(name: &str, record: Record, etag: Option<String>) -> Taken {
    Taken::Won(Holder {
        name: name.to_string(),
        record,
        etag,
    })
}

/// Keeps the claim while the local `fill` progresses: rewritten with its version as
/// soon as the origin's answer shows it, then with its progress (at most every
/// `RENEW`), and marked done when the fill ends. Writes nothing while the fill is
/// stalled, so that the lease lapses.
pub async fn hold(cache: Arc<Cache>, up: Rc<Upstream>, mut holder: Holder, fill: Arc<Fill>) {
    let mut written = Progress::default();
    let mut last = Instant::now();
    loop {
        let now = fill.progress();
        let published = written.version.is_none() && now.version.is_some();
        let due = now.ended || published || last.elapsed() >= RENEW;
        if due && now != written {
            holder.record.meta = now
                .version
                .as_ref()
                .and_then(|m| String::from_utf8(m.encode()).ok());
            holder.record.first = now.first;
            holder.record.next = now.next;
            holder.record.received = now.received;
            holder.record.done = now.ended;
            match holder.write(&cache, &up).await {
                Ok(true) => {}
                Ok(false) => {
                    debug!("claim {} taken over by another sidecar", holder.name);
                    return;
                }
                Err(e) => debug!("claim {} not renewed: {e}", holder.name),
            }
            last = Instant::now();
            written = now;
        }
        if written.ended {
            return;
        }
        fill.changed(RENEW).await;
    }
}

impl Holder {
    /// Rewrites the claim; false when another sidecar holds it now.
    async fn write(&mut self, cache: &Cache, up: &Upstream) -> Result<bool, StoreError> {
        let data = self.record.encode();
        let Some(etag) = &self.etag else {
            cache.store.put(up, &self.name, data).await?;
            return Ok(true);
        };
        match cache
            .store
            .put_if(up, &self.name, data, Condition::Matches(etag))
            .await?
        {
            Written::Done(etag) => {
                self.etag = etag;
                Ok(true)
            }
            Written::Refused => Ok(false),
        }
    }
}

/// Mirrors another sidecar's fill, as its claim shows it, into the local fill of
/// `guard` until that fill ends, or shows no progress for `LEASE`
/// (then counted as expired). Local readers wait on the local fill as on one of
/// their own.
pub async fn follow(
    cache: Arc<Cache>,
    up: Rc<Upstream>,
    identity: String,
    guard: FillGuard,
    first: Record,
) {
    let name = key::claim(&cache.cfg.prefix, &identity);
    let mut seen = Record::default();
    let mut progressed = Instant::now();
    let mut record = Some(first);
    loop {
        if let Some(now) = record.take() {
            if now.owner != seen.owner {
                // A new holder: a takeover, or (best effort) the claim settling on its
                // winner. Its fill of the same version stores the same blocks.
                seen = Record::default();
            }
            if mirror(&cache, &identity, &guard, &seen, &now) {
                progressed = Instant::now();
                guard.fill.nudge();
            }
            seen = now;
            if seen.done {
                // Every block stored, or the holder gave up: either way, over.
                return;
            }
        }
        if progressed.elapsed() >= LEASE {
            STATS.claims_expired.fetch_add(1, Relaxed);
            debug!("claim {name}: no progress for {LEASE:?}, given up");
            return;
        }
        actix_rt::time::sleep(POLL).await;
        match read(&cache, &up, &name).await {
            Ok(Some((now, _))) => record = Some(now),
            // Gone (the lifecycle rule): nothing to follow.
            Ok(None) => return,
            Err(e) => debug!("claim {name} not read: {e}"),
        }
    }
}

/// Brings the local fill up to the claim `now` (`seen` was the last one read);
/// whether it progressed.
fn mirror(cache: &Cache, identity: &str, guard: &FillGuard, seen: &Record, now: &Record) -> bool {
    let Some(meta) = now.version(identity, cache.cfg.max_size) else {
        return now.done != seen.done;
    };
    let fill = &guard.fill;
    match fill.version() {
        None => {
            let folder = key::version(
                &cache.cfg.prefix,
                identity,
                &meta.etag,
                meta.size,
                meta.block_size,
            );
            guard.begin(Arc::new(meta.clone()), folder);
        }
        // A new holder filling another version (the object changed on the origin),
        // or into other blocks: nothing of it counts as progress here.
        Some((known, _))
            if (&known.etag, known.size, known.block_size)
                != (&meta.etag, meta.size, meta.block_size) =>
        {
            return false
        }
        Some(_) => {}
    }
    let from = now.first.max(seen.next.min(now.next));
    for index in from..now.next.min(meta.blocks()) {
        fill.stored(index);
    }
    (&now.meta, now.next, now.received, now.done)
        != (&seen.meta, seen.next, seen.received, seen.done)
}

/// The claim of a cold object's fill: the local one (`cache::lock`), and, when this
/// request takes it, the fleet's. When another sidecar holds the fleet's, the local
/// fill follows that one and the request waits on it like any local waiter.
pub async fn claim(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    name: &str,
    identity: &str,
) -> Option<Claim> {
    let guard = match cache.fills.claim(name)? {
        Claim::Mine(guard) => guard,
        theirs => return Some(theirs),
    };
    match take(cache, up, identity).await {
        Taken::Won(holder) => {
            let fill = guard.fill.clone();
            actix_rt::spawn(hold(cache.clone(), up.clone(), holder, fill));
            Some(Claim::Mine(guard))
        }
        Taken::Held(record) => {
            let fill = guard.fill.clone();
            let (cache, up, identity) = (cache.clone(), up.clone(), identity.to_string());
            actix_rt::spawn(follow(cache, up, identity, guard, record));
            Some(Claim::Theirs(fill))
        }
        Taken::Unknown(why) => {
            debug!("fill of {identity} not claimed in the bucket: {why}");
            Some(Claim::Mine(guard))
        }
    }
}

/// A version the store holds only in part (its fill may be running in another
/// sidecar): the fill that claim shows, followed here, when it fills that version.
pub async fn join(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    name: &str,
    meta: &Meta,
) -> Option<Arc<Fill>> {
    let claim = key::claim(&cache.cfg.prefix, &meta.identity);
    let read = actix_rt::time::timeout(LOOKUP_TIMEOUT, read(cache, up, &claim));
    let (record, _) = read.await.ok()?.ok()??;
    let same = record
        .version(&meta.identity, cache.cfg.max_size)
        .is_some_and(|v| v.etag == meta.etag && v.size == meta.size);
    if record.done || record.dead() || !same {
        return None;
    }
    let Claim::Mine(guard) = cache.fills.claim(name)? else {
        return None;
    };
    STATS.claims_waited.fetch_add(1, Relaxed);
    let fill = guard.fill.clone();
    let (cache, up, identity) = (cache.clone(), up.clone(), meta.identity.clone());
    actix_rt::spawn(follow(cache, up, identity, guard, record));
    Some(fill)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> Meta {
        Meta {
            identity: "/b/k".into(),
            etag: "\"e\"".into(),
            size,
            block_size: 64 << 10,
            headers: Vec::new(),
            complete: false,
        }
    }

    #[test]
    fn a_claim_round_trips_and_a_hostile_one_is_refused() {
        let mut r = Record::new(owner());
        r.meta = String::from_utf8(meta(200_000).encode()).ok();
        r.next = 2;
        let bytes = r.encode();
        assert_eq!(r.seq, 1);
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.version("/b/k", 1 << 30), Some(meta(200_000)));
        // Another object's metadata, one too large, a tiny block size: not followed.
        assert_eq!(back.version("/b/other", 1 << 30), None);
        assert_eq!(back.version("/b/k", 100_000), None);
        let mut tiny = meta(10);
        tiny.block_size = 1;
        r.meta = String::from_utf8(tiny.encode()).ok();
        assert_eq!(r.version("/b/k", 1 << 30), None);
        for bad in [
            &b"garbage"[..],
            br#"{"owner":"","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":0,"next":0,"received":0}"#,
            br#"{"owner":"a\r\nb","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":0,"next":0,"received":0}"#,
            br#"{"owner":"ab","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":3,"next":2,"received":0}"#,
        ] {
            assert_eq!(Record::decode(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn which_claims_are_followed() {
        let mut r = Record::new(owner());
        r.encode();
        assert!(r.worth_following(), "a fresh claim");
        r.at_ms = now_ms() - DEAD_AFTER.as_millis() as u64 - 1000;
        assert!(!r.worth_following(), "a dead holder's claim");
        r.encode();
        r.done = true;
        r.meta = String::from_utf8(meta(200_000).encode()).ok();
        r.next = 4;
        assert!(
            !r.worth_following(),
            "a fill that ended, even with every block"
        );
    }
}
