//! Prometheus metrics at `GET /.prometheus/metrics`. The hot path only bumps atomics
//! (in `BackendStats` and here); a scrape builds a registry from them and from the
//! Pool's `Snapshot`, adds the standard `process_*` families, and encodes it with
//! `prometheus-client`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::pool::messages::Status;

/// Trace lines dropped because the writer could not keep up.
pub static TRACE_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Hedged reads (`--hedge`) by whose head was used: the first request's or the
/// hedge's. Bumped by the retry engine, once per hedge that brought an answer.
pub static HEDGES_WON_FIRST: AtomicU64 = AtomicU64::new(0);
pub static HEDGES_WON_HEDGE: AtomicU64 = AtomicU64::new(0);
/// Requests sent to another backend because one answered S3's `503 SlowDown`.
pub static SLOWDOWN_RETRIES: AtomicU64 = AtomicU64::new(0);

/// The text a scrape answers: OpenMetrics when the scraper asks for it (as Prometheus
/// does), else the Prometheus text format 0.0.4. Returns `(content type, body)`.
pub fn render(
    status: Status,
    cache: Option<super::cache_metrics::CacheFamilies>,
    openmetrics: bool,
) -> Result<(&'static str, String), std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register(
        "sidekick_build",
        "sidekick build information",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    registry.register_collector(Box::new(Backends(status)));
    if let Some(cache) = cache {
        registry.register_collector(Box::new(cache));
    }
    registry.register_collector(Box::new(super::process::Process));
    let mut out = String::new();
    if openmetrics {
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok((
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            out,
        ))
    } else {
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
        Ok((
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            out,
        ))
    }
}

/// Encodes every per-backend family from one `Status` snapshot and the atomics.
struct Backends(Status);

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backends")
    }
}

/// One metric family: its name, help, unit, type and a value per backend.
struct Family<'a, V> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: &'a dyn Fn(&crate::pool::messages::BackendStatus) -> V,
}

impl Backends {
    fn family<M: EncodeMetric>(
        &self,
        encoder: &mut DescriptorEncoder,
        family: Family<'_, M>,
    ) -> Result<(), std::fmt::Error> {
        let Some(first) = self.0.backends.first() else {
            return Ok(());
        };
        let kind = (family.value)(first).metric_type();
        let mut metric =
            encoder.encode_descriptor(family.name, family.help, family.unit.as_ref(), kind)?;
        for status in &self.0.backends {
            let site = (status.backend.site + 1).to_string();
            let labels = [
                ("endpoint", status.backend.name.as_str()),
                ("site", site.as_str()),
            ];
            (family.value)(status).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

fn counter(n: &AtomicU64) -> ConstCounter<u64> {
    ConstCounter::new(n.load(Relaxed))
}

fn gauge(n: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A histogram read from `Latency`'s atomics at scrape time.
struct HistogramValue(f64, u64, Vec<(f64, u64)>);

impl EncodeMetric for HistogramValue {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0, self.1, &self.2, None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

impl Collector for Backends {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        self.family(
            e,
            Family {
                name: "sidekick_requests",
                help: "Requests sent to the backend.",
                unit: None,
                value: &|s| counter(&s.backend.stats.calls),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_errors",
                help: "Requests that failed on the backend (connection errors, broken responses).",
                unit: None,
                value: &|s| counter(&s.backend.stats.failures),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_rx",
                help: "Request body bytes received from clients for the backend, and bytes clients sent on upgraded connections.",
                unit: Some(Unit::Bytes),
                value: &|s| counter(&s.backend.stats.rx_bytes),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_tx",
                help: "Response body bytes from the backend sent to clients, and bytes it sent on upgraded connections.",
                unit: Some(Unit::Bytes),
                value: &|s| counter(&s.backend.stats.tx_bytes),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_health_error_counts",
                help: "Failed health checks of the backend.",
                unit: None,
                value: &|s| gauge(s.backend.stats.health_errors.load(Relaxed)),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_up",
                help: "Whether the backend is up (1) or down (0).",
                unit: None,
                value: &|s| gauge(u64::from(s.up)),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_in_flight_requests",
                help: "Requests in flight on the backend.",
                unit: None,
                value: &|s| gauge(s.backend.stats.in_flight.load(Relaxed)),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_request_duration",
                help: "Request durations on the backend, from pick to the last byte.",
                unit: Some(Unit::Seconds),
                value: &|s| {
                    let (sum, count, buckets) = s.backend.stats.latency.histogram();
                    HistogramValue(sum, count, buckets)
                },
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_health_check_duration",
                help: "Duration of the backend's last successful health check.",
                unit: Some(Unit::Seconds),
                value: &|s| {
                    let nanos = s.backend.stats.health_nanos.load(Relaxed);
                    ConstGauge::new(nanos as f64 / 1e9)
                },
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_downtime",
                help: "Time the backend has been down in total, the current outage included.",
                unit: Some(Unit::Seconds),
                value: &|s| ConstCounter::new(s.downtime.as_secs_f64()),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_retries",
                help: "Requests that failed on the backend before a response and were retried elsewhere.",
                unit: None,
                value: &|s| counter(&s.backend.stats.retries),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_upgrades",
                help: "Connections switched to another protocol (WebSocket) through the backend.",
                unit: None,
                value: &|s| counter(&s.backend.stats.upgrades),
            },
        )?;
        self.family(
            e,
            Family {
                name: "sidekick_upgraded_connections",
                help: "Upgraded (WebSocket) connections open through the backend; each is also a request in flight.",
                unit: None,
                value: &|s| gauge(s.backend.stats.upgraded_open.load(Relaxed)),
            },
        )?;
        let failovers = ConstCounter::new(self.0.failovers);
        failovers.encode(encoder.encode_descriptor(
            "sidekick_failovers",
            "Times traffic moved on to a later site because every backend before it was down.",
            None,
            failovers.metric_type(),
        )?)?;
        let mut hedges = encoder.encode_descriptor(
            "sidekick_hedges",
            "Reads sent to a second backend because the first's answer was late, by whose answer was used (won: first, hedge).",
            None,
            MetricType::Counter,
        )?;
        for (won, n) in [("first", &HEDGES_WON_FIRST), ("hedge", &HEDGES_WON_HEDGE)] {
            counter(n).encode(hedges.encode_family(&[("won", won)])?)?;
        }
        let slowdown = counter(&SLOWDOWN_RETRIES);
        slowdown.encode(encoder.encode_descriptor(
            "sidekick_slowdown_retries",
            "Requests sent to another backend because one answered 503 SlowDown (shedding load).",
            None,
            slowdown.metric_type(),
        )?)?;
        let dropped = ConstCounter::new(TRACE_DROPPED.load(Relaxed));
        dropped.encode(encoder.encode_descriptor(
            "sidekick_trace_dropped",
            "Trace lines dropped because the output could not keep up.",
            None,
            dropped.metric_type(),
        )?)?;
        Ok(())
    }
}
