"""Settings shared by the harness's modules: paths, the proxies and figures
it knows, object sizes, durations."""

from pathlib import Path

# This file is bench/harness/settings.py: BENCH is bench/, ROOT the repository.
BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent
SIDEKICK = ROOT / "target" / "release" / "sidekick"

PROXIES = ["direct", "sidekick", "sidekick-default", "nginx", "haproxy"]
FIGURES = ["small", "latency", "large", "memory", "failover", "tls", "tail"]

GIB = 1 << 30
MIB = 1 << 20
SMALL_BODY = 100
BACKENDS = 4

# Durations and repetitions. --quick keeps every figure but shortens it so CI
# proves the harness works in well under three minutes.
SETTINGS = {
    "full": dict(runs=3, small_s=10, latency_s=10, failover_s=20,
                 kill_at=5, restart_at=12, settle_s=3, idle_conns=1000,
                 tail_s=20, tail_warmup_s=1),
    "quick": dict(runs=1, small_s=3, latency_s=3, failover_s=6,
                  kill_at=2, restart_at=4, settle_s=1, idle_conns=1000,
                  tail_s=2, tail_warmup_s=0.5),
}
# Figure 2's steady rate: 16 connections, each waiting 8 ms on average
# between requests: about 2,000 req/s, a small fraction of what any of the
# proxies sustains on one core. (h2load --rps was tried: its clients fire
# in step, so it measures queueing behind bursts, ~0.8 ms p50 even direct.)
LATENCY_CONNS = 16
LATENCY_MEAN_DELAY_MS = 8
# Figure 7's load: paced (open loop), far below what any proxy sustains.
# 20 s at 300 req/s is 6,000 measured requests per run: the p99.9 rests on
# the slowest 6 of them.
TAIL_RATE = 300
TAIL_CONNS = 32
