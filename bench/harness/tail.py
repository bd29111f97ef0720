"""Figure 7, the tail: four backends, one of them sick, under paced load.

Scenarios: all healthy; the sick backend delays every 5th request it serves
by 200 ms (`slow`); it answers 30% of its requests 503 SlowDown
(`slowdown`). Variants: sidekick with `--host-balance least`, with `p2c`,
with `p2c --hedge`; HAProxy (leastconn, redispatch, retry-on 503); nginx
(least_conn, proxy_next_upstream ... http_503). A variant whose flags the
binary lacks is skipped and listed. Each measurement starts a fresh proxy,
so no variant carries what it learnt from one scenario into the next.

The cost part: small-request throughput with the figure 1 load on the nginx
backends, sidekick least against the p2c variants (runs interleaved).
"""

import json
import re
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from .clients import run_client, wrk, wrk_failures
from .processes import PROCS, free_port, tail, wait_http
from .proxies import Proxy
from .settings import BACKENDS, TAIL_CONNS, TAIL_RATE

HERE = Path(__file__).resolve().parent
SCENARIOS = ("healthy", "slow", "slowdown")


class Variant:
    def __init__(self, key, label, kind, args=(), needs=(), retry_503=False):
        # needs: (help text pattern, what is missing when it does not match)
        self.key, self.label, self.kind = key, label, kind
        self.args, self.needs, self.retry_503 = list(args), needs, retry_503


P2C = (r"\bp2c\b", "p2c (--host-balance)")
HEDGE = (r"--hedge\b(?!-)", "--hedge")
VARIANTS = [
    Variant("least", "sidekick least", "sidekick",
            ["--host-balance", "least"]),
    Variant("p2c", "sidekick p2c", "sidekick", ["--host-balance", "p2c"],
            needs=(P2C,)),
    Variant("hedge", "sidekick p2c --hedge", "sidekick",
            ["--host-balance", "p2c", "--hedge"], needs=(P2C, HEDGE)),
    Variant("haproxy", "HAProxy", "haproxy", retry_503=True),
    Variant("nginx", "nginx", "nginx", retry_503=True),
]
LABELS = [v.label for v in VARIANTS]


class SickBackends:
    """sick_backends.py: four backends in one process on the load core,
    the first one sick, switched between scenarios by its control port."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.control = free_port()
        self.ports = [free_port() for _ in range(BACKENDS)]
        self.proc = None

    def start(self):
        self.proc = PROCS.start(
            [sys.executable, str(HERE / "sick_backends.py"),
             str(self.control)] + [str(p) for p in self.ports],
            self.ctx.dir / "sick-backends.log", cpu=self.ctx.gen_cpu)
        for port in self.ports:
            wait_http(port, "/health/ready", self.proc)

    def command(self, line):
        """Sends a mode name or `counts`; returns the requests per backend."""
        with socket.create_connection(("127.0.0.1", self.control),
                                      timeout=5) as s:
            s.sendall(line.encode() + b"\n")
            return json.loads(s.makefile().readline())

    def stop(self):
        if self.proc is not None:
            PROCS.stop(self.proc)


def usable_variants(ctx):
    """The variants to run, after recording why the others are skipped."""
    try:
        help_text = subprocess.run([str(ctx.sidekick), "--help"],
                                   capture_output=True, text=True,
                                   timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        help_text = ""
    chosen = []
    for variant in VARIANTS:
        if variant.key not in ctx.tail_variants:
            continue
        if variant.kind not in ctx.proxies:
            reason = f"{variant.kind} is not among the proxies run"
        else:
            missing = [what for pattern, what in variant.needs
                       if not re.search(pattern, help_text)]
            reason = f"binary has no {', '.join(missing)}" if missing else None
        if reason:
            print(f"  tail: {variant.label}: skipped: {reason}", flush=True)
            ctx.skipped.append(f"tail, {variant.label}: {reason}")
        else:
            chosen.append(variant)
    return chosen


def attempt(ctx, what, fn):
    """fn()'s value, or None after recording why it failed."""
    try:
        return fn()
    except Exception as e:  # one failed measurement must not lose the rest
        ctx.errors.append(f"{what}: {e}")
        print(f"  ERROR {what}: {e}", flush=True)
        return None


def record(ctx, metric, variant, value):
    ctx.results.setdefault(metric, {}).setdefault(variant.label, []) \
        .append(value)


def paced_run(ctx, sick, variant, scenario, run):
    cfg = ctx.cfg
    proxy = Proxy(ctx, variant.kind, sick.ports, suffix=f"-tail-{variant.key}",
                  args=variant.args, retry_503=variant.retry_503)
    sick.command(scenario)
    try:
        proxy.start()
        before = sick.command("counts")
        seconds, warmup = cfg["tail_s"], cfg["tail_warmup_s"]
        out = run_client(ctx, [
            sys.executable, str(HERE / "paced_client.py"), str(proxy.port),
            "/small", str(TAIL_RATE), str(TAIL_CONNS), str(seconds),
            str(warmup)], seconds + warmup + 60)
        after = sick.command("counts")
        counters = sidekick_counters(proxy) if variant.kind == "sidekick" \
            else {}
        if not proxy.alive():
            raise RuntimeError(f"{proxy.instance} exited; log:\n"
                               f"{tail(proxy.log_path)}")
    finally:
        proxy.stop()
    r = json.loads(out)
    if not r["measured"]:
        raise RuntimeError(f"no answers measured: {r}")
    got = [a - b for a, b in zip(after, before)]
    measured = r["measured"]
    ok = sum(n for status, n in r["statuses"].items()
             if status.startswith("2"))
    values = {
        "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "p999_ms": r["p999_ms"],
        "non2xx_pct": 100 * (measured - ok) / measured,
        "503": r["statuses"].get("503", 0), "answers": measured,
        # Warm-up included on both sides: the backends' counts cover it.
        "extra_pct": 100 * (sum(got) / r["sent"] - 1),
        "sick_pct": 100 * got[0] / sum(got) if sum(got) else 0.0,
        "lag_ms": r["max_lag_ms"],
    }
    values.update(counters)
    for stat, value in values.items():
        record(ctx, f"tail_{scenario}_{stat}", variant, value)
    said = "".join(f", {name} {counters[key]:,.0f}" for key, name in (
        ("hedges", "hedges"), ("hedges_won", "won by the hedge"),
        ("slowdown_retries", "SlowDown retries")) if key in counters)
    print(f"  tail   run {run + 1} {scenario:8} {variant.label:20} "
          f"p50 {r['p50_ms']:6.2f}  p99 {r['p99_ms']:7.2f}  "
          f"p99.9 {r['p999_ms']:7.2f} ms  non-2xx {values['non2xx_pct']:4.1f}%"
          f"  extra {values['extra_pct']:+5.1f}%  to the sick one "
          f"{values['sick_pct']:4.1f}%  (client lag max "
          f"{r['max_lag_ms']:.1f} ms{said})", flush=True)


# sidekick's counters of what it sent beyond the first attempt, where the
# binary has them: {stat: value}.
COUNTERS = {
    'sidekick_hedges_total{won="first"}': ("hedges",),
    'sidekick_hedges_total{won="hedge"}': ("hedges", "hedges_won"),
    "sidekick_slowdown_retries_total": ("slowdown_retries",),
}


def sidekick_counters(proxy):
    try:
        with urllib.request.urlopen(proxy.url("/.prometheus/metrics"),
                                    timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        for stat in COUNTERS.get(name, ()):
            found[stat] = found.get(stat, 0) + float(value)
    return found


def cost_runs(ctx, variants):
    """Figure 1's load (wrk -c64 GET /small at full speed, nginx backends,
    all healthy) through sidekick least and each p2c variant."""
    sidekicks = [v for v in variants if v.kind == "sidekick"]
    if len(sidekicks) < 2 or sidekicks[0].key != "least":
        print("  tail cost: skipped: needs sidekick least and a p2c variant",
              flush=True)
        return
    ports = [b.port for b in ctx.backends]
    proxies = {v.key: Proxy(ctx, "sidekick", ports, suffix=f"-cost-{v.key}",
                            args=v.args) for v in sidekicks}
    try:
        for proxy in proxies.values():
            proxy.start()
            wrk(ctx, proxy.url("/small"), 1)  # warm-up
        for run in range(ctx.cfg["runs"]):
            for variant in sidekicks:
                proxy = proxies[variant.key]

                def one():
                    r = wrk(ctx, proxy.url("/small"), ctx.cfg["small_s"])
                    if wrk_failures(r):
                        raise RuntimeError(f"{wrk_failures(r)} errors in {r}")
                    return r["requests"] / (r["duration_us"] / 1e6)
                rps = attempt(ctx, f"tail cost / {variant.label}", one)
                if rps is not None:
                    record(ctx, "tail_cost_rps", variant, rps)
                    hedges = sidekick_counters(proxy).get("hedges", 0)
                    print(f"  tail   run {run + 1} cost     {variant.label:20}"
                          f" {rps:9,.0f} req/s  (hedges so far {hedges:,.0f})",
                          flush=True)
    finally:
        for proxy in proxies.values():
            proxy.stop()


def figure_tail(ctx):
    """7. One sick backend of four, paced load: latency percentiles, failed
    answers, extra backend requests; and what p2c costs at full speed."""
    variants = usable_variants(ctx)
    sick = SickBackends(ctx)
    try:
        sick.start()
        for run in range(ctx.cfg["runs"]):
            for scenario in SCENARIOS:
                for variant in variants:
                    attempt(ctx, f"tail {scenario} / {variant.label}",
                            lambda: paced_run(ctx, sick, variant, scenario,
                                              run))
    finally:
        sick.stop()
    cost_runs(ctx, variants)
