//! The S3 shared cache's metric families, from `cache_stats` and the cache store's
//! nodes; only in a scrape when the cache is on.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::observe::cache_stats::STATS;

/// Each cache store node by URL: whether it is up, and its failed requests.
#[derive(Debug)]
pub struct CacheFamilies(pub Vec<CacheNode>);

#[derive(Debug)]
pub struct CacheNode {
    pub endpoint: String,
    pub up: bool,
    pub errors: u64,
}

fn labelled(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    label: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family =
        encoder.encode_descriptor(name, help, unit, ConstCounter::new(0u64).metric_type())?;
    for (value, n) in values {
        ConstCounter::new(*n).encode(family.encode_family(&[(label, *value)])?)?;
    }
    Ok(())
}

fn single(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    n: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(n);
    counter.encode(encoder.encode_descriptor(name, help, unit, counter.metric_type())?)
}

impl Collector for CacheFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let s = &STATS;
        labelled(
            e,
            "sidekick_cache_requests",
            "Requests by what the cache made of them: served from it (hit), answered by the origin although cacheable (miss), not cacheable (bypass), cacheable but the cache failed and the origin answered (error).",
            None,
            "result",
            &[
                ("hit", s.hits.load(Relaxed)),
                ("miss", s.misses.load(Relaxed)),
                ("bypass", s.bypasses.load(Relaxed)),
                ("error", s.failed.load(Relaxed)),
            ],
        )?;
        labelled(
            e,
            "sidekick_cache",
            "Body bytes of cacheable requests sent to clients, by where they came from.",
            Some(&Unit::Bytes),
            "source",
            &[
                ("cache", s.from_cache.load(Relaxed)),
                ("origin", s.from_origin.load(Relaxed)),
            ],
        )?;
        single(
            e,
            "sidekick_cache_fill",
            "Block bytes written to the cache store.",
            Some(&Unit::Bytes),
            s.fill_bytes.load(Relaxed),
        )?;
        single(
            e,
            "sidekick_cache_fills_dropped",
            "Fills given up because the cache store failed or could not keep up.",
            None,
            s.fills_dropped.load(Relaxed),
        )?;
        single(
            e,
            "sidekick_cache_errors",
            "Requests to the cache store that failed.",
            None,
            s.errors.load(Relaxed),
        )?;
        single(
            e,
            "sidekick_cache_store_requests",
            "Requests sent to the cache store.",
            None,
            s.store_requests.load(Relaxed),
        )?;
        labelled(
            e,
            "sidekick_cache_claims",
            "Fleet claims of a cold object's fill: taken by this sidekick (won), held by another sidecar and waited on (waited), given up because their holder made no progress for the lease (expired).",
            None,
            "result",
            &[
                ("won", s.claims_won.load(Relaxed)),
                ("waited", s.claims_waited.load(Relaxed)),
                ("expired", s.claims_expired.load(Relaxed)),
            ],
        )?;
        single(
            e,
            "sidekick_cache_bad_metadata",
            "Metadata objects read from the cache store that failed validation (an ETag that is not strong visible ASCII, a header that is not a representation header, sizes out of bounds): each a miss.",
            None,
            s.bad_meta.load(Relaxed),
        )?;
        let writing = ConstGauge::new(i64::try_from(s.fills_writing.load(Relaxed)).unwrap_or(0));
        writing.encode(e.encode_descriptor(
            "sidekick_cache_fills_writing",
            "Fills whose spans are still being written to the cache store.",
            None,
            writing.metric_type(),
        )?)?;
        let mut up = e.encode_descriptor(
            "sidekick_cache_up",
            "Whether the cache store node is up (1) or down (0).",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for node in &self.0 {
            ConstGauge::new(i64::from(node.up))
                .encode(up.encode_family(&[("endpoint", node.endpoint.as_str())])?)?;
        }
        let mut errors = e.encode_descriptor(
            "sidekick_cache_node_errors",
            "Requests that failed on the cache store node (connection errors, broken or too slow bodies), each taking it out until its health check passes again.",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for node in &self.0 {
            ConstCounter::new(node.errors)
                .encode(errors.encode_family(&[("endpoint", node.endpoint.as_str())])?)?;
        }
        Ok(())
    }
}
