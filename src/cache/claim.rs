//! Claims of a fill across the fleet: before a cold read asks the origin for the body,
//! its sidekick claims the object's fill in the bucket (`claims/<hash>`). The claim
//! says who holds it, when it was last written, the version filled and the bytes of
//! it the fill brings (once the origin's answer shows them) and how far the fill got.
//! The others mirror that progress into a local fill (`cache::lock`), so their
//! readers whose bytes it brings wait for the version, revalidate it with the origin
//! and read the spans as they land, as if the fill were their own.
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
//! a span stored; bytes received alone are not progress). A claim that shows no progress for `LEASE` —
//! its holder died, or its client reads slowly — is given up: the mirror ends, its
//! readers go to the origin, and the next cold read takes the claim over.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use log::debug;
use serde::{Deserialize, Serialize};

use crate::cache::cover::Span;
use crate::cache::lock::{Claim, Fill, FillGuard, Progress, STALL};
use crate::cache::meta::{self, Meta};
use crate::cache::request::Lookup;
use crate::cache::store::{Condition, StoreError, Written, LOOKUP_TIMEOUT};
use crate::cache::{joined, key, wait_joined, Cache, Found, Known};
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
    /// The bytes of it the fill brings, `first..=last` (with `meta`).
    pub first: u64,
    pub last: u64,
    /// How many of those bytes are stored, from `first` on.
    pub stored: u64,
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
        let span_ok = record.first <= record.last
            && record.stored <= (record.last - record.first).saturating_add(1);
        (owner_ok && span_ok).then_some(record)
    }

    /// The version it fills and the bytes of it the fill brings, checked as
    /// metadata read from the store is; its blocks no larger than this sidekick's
    /// (`max_block`), as a reader holds a few of them.
    fn version(&self, identity: &str, max_size: u64, max_block: u64) -> Option<(Meta, Span)> {
        let meta = Meta::decode(self.meta.as_ref()?.as_bytes(), identity, max_size)?;
        // Bounds the memory a mirror spends on the fill's spans.
        let sane =
            meta.size <= max_size && meta.block_size >= 64 << 10 && meta.block_size <= max_block;
        let span = Span {
            first: self.first,
            last: self.last,
        };
        (sane && span.last < meta.size).then_some((meta, span))
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

    /// Whether the fill it shows may bring the bytes `lookup` asks for: it does, or
    /// the origin has not answered it yet.
    fn may_bring(&self, lookup: &Lookup, max_size: u64, max_block: u64) -> bool {
        let Some((meta, span)) = self.version(&lookup.identity, max_size, max_block) else {
            return true;
        };
        match lookup.need(meta.size) {
            Some(need) => span.contains(need),
            None => true,
        }
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
    if let Taken::Won(_) = &taken {
        STATS.claims_won.fetch_add(1, Relaxed);
    }
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
        // Bytes stored are progress; bytes received alone are not: a fill whose
        // client reads slowly stores nothing new, and its lease must lapse.
        let moved = (&now.version, now.stored, now.ended)
            != (&written.version, written.stored, written.ended);
        if due && moved {
            holder.record.meta = now
                .version
                .as_ref()
                .and_then(|(m, _)| String::from_utf8(m.encode()).ok());
            if let Some((_, span)) = now.version {
                (holder.record.first, holder.record.last) = (span.first, span.last);
            }
            holder.record.stored = now.stored;
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

/// Mirrors another sidecar's fill, as its claim `first` shows it, into the local
/// fill of `guard`: at once, then in the background until that fill ends, or shows
/// no progress for `LEASE` (then counted as expired). Local readers wait on the
/// local fill as on one of their own.
fn follow(cache: &Arc<Cache>, up: &Rc<Upstream>, identity: &str, guard: FillGuard, first: Record) {
    STATS.claims_waited.fetch_add(1, Relaxed);
    if mirror(cache, identity, &guard, &Record::default(), &first) {
        guard.fill.nudge();
    }
    let (cache, up, identity) = (cache.clone(), up.clone(), identity.to_string());
    actix_rt::spawn(keep_following(cache, up, identity, guard, first));
}

async fn keep_following(
    cache: Arc<Cache>,
    up: Rc<Upstream>,
    identity: String,
    guard: FillGuard,
    mut seen: Record,
) {
    let name = key::claim(&cache.cfg.prefix, &identity);
    let mut progressed = Instant::now();
    // Every span stored, or the holder gave up: either way, over.
    while !seen.done {
        if progressed.elapsed() >= LEASE {
            STATS.claims_expired.fetch_add(1, Relaxed);
            debug!("claim {name}: no progress for {LEASE:?}, given up");
            return;
        }
        actix_rt::time::sleep(POLL).await;
        let now = match read(&cache, &up, &name).await {
            Ok(Some((now, _))) => now,
            // Gone (the lifecycle rule): nothing to follow.
            Ok(None) => return,
            Err(e) => {
                debug!("claim {name} not read: {e}");
                continue;
            }
        };
        if now.owner != seen.owner {
            // A new holder: a takeover, or (best effort) the claim settling on its
            // winner. Its fill of the same bytes stores the same spans.
            seen = Record::default();
        }
        if mirror(&cache, &identity, &guard, &seen, &now) {
            progressed = Instant::now();
            guard.fill.nudge();
        }
        seen = now;
    }
}

/// Brings the local fill up to the claim `now` (`seen` was the last one read);
/// whether it progressed.
fn mirror(cache: &Cache, identity: &str, guard: &FillGuard, seen: &Record, now: &Record) -> bool {
    let Some((meta, span)) = now.version(identity, cache.cfg.max_size, cache.cfg.block_size) else {
        return now.done != seen.done;
    };
    let fill = &guard.fill;
    match fill.version() {
        None => guard.begin(Arc::new(meta.clone()), span),
        // A new holder filling another version (the object changed on the origin),
        // or other bytes of it: nothing of it counts as progress here.
        Some((known, brings)) if !known.same_version(&meta) || brings != span => return false,
        Some(_) => {}
    }
    // The spans `seen` showed stored are marked already.
    let marked = match seen.meta.is_some() && (seen.first, seen.last) == (now.first, now.last) {
        true => seen.stored.min(now.stored),
        false => 0,
    };
    let (from, to) = (span.first + marked, span.first + now.stored);
    for stored in meta.layout().cut(span) {
        if from <= stored.last && stored.last < to {
            fill.stored(stored);
        }
    }
    // Only what is stored counts as progress (see `hold`).
    (&now.meta, now.stored, now.done) != (&seen.meta, seen.stored, seen.done)
}

/// A cold read claimed the object's fill in this sidekick (`guard`): it claims it
/// in the bucket too, so that the fleet fills it once. When another sidecar holds
/// that claim, the local fill follows that one and the request waits on it like any
/// local waiter (`cache::wait_joined`), unless that fill is known to bring other
/// bytes than those asked for: then this request fills alone.
pub async fn claim(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    guard: FillGuard,
    lookup: &Lookup,
) -> Found {
    let identity = &lookup.identity;
    match take(cache, up, identity).await {
        Taken::Won(holder) => {
            let fill = guard.fill.clone();
            actix_rt::spawn(hold(cache.clone(), up.clone(), holder, fill));
            Found::Nothing(Some(guard))
        }
        Taken::Held(record)
            if !record.may_bring(lookup, cache.cfg.max_size, cache.cfg.block_size) =>
        {
            debug!("fill of {identity} claimed in the bucket for other bytes");
            Found::Nothing(Some(guard))
        }
        Taken::Held(record) => {
            let fill = guard.fill.clone();
            follow(cache, up, identity, guard, record);
            wait_joined(fill, lookup).await
        }
        Taken::Unknown(why) => {
            debug!("fill of {identity} not claimed in the bucket: {why}");
            Found::Nothing(Some(guard))
        }
    }
}

/// A version held whose stored spans do not cover the request (`known`): its bytes
/// may be on their way in a fill another sidecar runs. That fill, as its claim
/// shows it, followed here and joined, when it fills that version and brings them.
pub async fn join(
    cache: &Arc<Cache>,
    up: &Rc<Upstream>,
    known: &Known,
    lookup: &Lookup,
) -> Option<Known> {
    let (meta, need) = (&known.meta, known.need?);
    let claim = key::claim(&cache.cfg.prefix, &meta.identity);
    let read = actix_rt::time::timeout(LOOKUP_TIMEOUT, read(cache, up, &claim));
    let (record, _) = read.await.ok()?.ok()??;
    let (version, span) =
        record.version(&meta.identity, cache.cfg.max_size, cache.cfg.block_size)?;
    if !record.worth_following() || !version.same_version(meta) || !span.contains(need) {
        return None;
    }
    let Claim::Mine(guard) = cache.fills.claim(&cache.meta_name(lookup))? else {
        return None;
    };
    let fill = guard.fill.clone();
    follow(cache, up, &meta.identity, guard, record);
    let (meta, span) = fill.version()?;
    joined(fill, meta, span, lookup)
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
            confirmed: 0,
        }
    }

    #[test]
    fn a_claim_round_trips_and_a_hostile_one_is_refused() {
        let mut r = Record::new(owner());
        r.meta = String::from_utf8(meta(200_000).encode()).ok();
        (r.first, r.last, r.stored) = (1000, 199_999, 2 << 16);
        let bytes = r.encode();
        assert_eq!(r.seq, 1);
        let back = Record::decode(&bytes).unwrap();
        assert_eq!(back, r);
        let span = Span {
            first: 1000,
            last: 199_999,
        };
        assert_eq!(
            back.version("/b/k", 1 << 30, 64 << 20),
            Some((meta(200_000), span))
        );
        // Another object's metadata, one too large, a tiny block size, bytes past
        // the object's end: not followed.
        assert_eq!(back.version("/b/other", 1 << 30, 64 << 20), None);
        assert_eq!(back.version("/b/k", 100_000, 64 << 20), None);
        r.last = 200_000;
        assert_eq!(r.version("/b/k", 1 << 30, 64 << 20), None);
        let mut tiny = meta(10);
        tiny.block_size = 1;
        r.meta = String::from_utf8(tiny.encode()).ok();
        assert_eq!(r.version("/b/k", 1 << 30, 64 << 20), None);
        for bad in [
            &b"garbage"[..],
            br#"{"owner":"","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":0,"last":0,"stored":0,"received":0}"#,
            br#"{"owner":"a\r\nb","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":0,"last":0,"stored":0,"received":0}"#,
            br#"{"owner":"ab","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":3,"last":2,"stored":0,"received":0}"#,
            br#"{"owner":"ab","seq":1,"at_ms":1,"lease_ms":1,"done":false,"meta":null,"first":2,"last":3,"stored":3,"received":0}"#,
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
        (r.last, r.stored) = (199_999, 200_000);
        assert!(
            !r.worth_following(),
            "a fill that ended, even with every block"
        );
    }
}
