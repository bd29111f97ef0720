"""The figures: each measures every proxy and records into ctx.results."""

import os
import statistics
import subprocess
import time
import urllib.request
from pathlib import Path

from .backends import PutSinks
from .clients import (curl, open_idle_connections, parse_wrk, run_client,
                      still_open, wrk, wrk_argv, wrk_failures)
from .processes import (PROCS, busy_percent, busy_seconds, cpu_busy_ticks,
                        cpu_seconds, tail)
from .proxies import Proxy
from .settings import GIB, LATENCY_CONNS, LATENCY_MEAN_DELAY_MS, MIB
from .tail import figure_tail


def each_run(ctx):
    """(run number, proxy) pairs, runs interleaved across proxies so that a
    slow moment on the machine does not land on one proxy only."""
    for run in range(ctx.cfg["runs"]):
        for proxy in ctx.proxies.values():
            yield run, proxy


def measure(ctx, what, proxy, fn):
    """fn()'s value, or None after recording why it failed. A proxy that
    died is restarted first; one that dies during fn fails the measurement
    (sidekick's release build aborts on panic)."""
    try:
        if not proxy.alive():
            proxy.restart()
        value = fn()
        error = None
    except Exception as e:  # one failed measurement must not lose the rest
        error = str(e)
    if not proxy.alive():
        error = (f"{error}; " if error else "") + \
            f"{proxy.instance} exited; log:\n{tail(proxy.log_path)}"
    if error is None:
        return value
    msg = f"{what} / {proxy.instance}: {error}"
    ctx.errors.append(msg)
    print(f"  ERROR {msg}", flush=True)
    return None


def record(ctx, metric, proxy, value):
    ctx.results.setdefault(metric, {}).setdefault(proxy.name, []).append(value)


def warm_up(ctx):
    """One second of load through each proxy: fills upstream connection
    pools and caches before the first measured run."""
    if ctx.warmed_up:
        return
    ctx.warmed_up = True
    for proxy in ctx.proxies.values():
        measure(ctx, "warm-up", proxy,
                lambda: wrk(ctx, proxy.url("/small"), 1))


def figure_small(ctx):
    """1. Keep-alive GET /small at full speed: req/s."""
    warm_up(ctx)
    for run, proxy in each_run(ctx):
        if measure(ctx, "small", proxy,
                   lambda: full_speed(ctx, proxy, "small", run)) is None:
            continue
        if proxy.name.startswith("sidekick"):
            ctx.metrics_seen[proxy.name] = scraped_requests(proxy)
        if proxy.proc:
            record(ctx, "rss_small_mib", proxy, proxy.rss_mib())
    # Growth of the same process from its first run to its last.
    for name, values in ctx.results.get("rss_small_mib", {}).items():
        if len(values) > 1:
            ctx.results.setdefault("rss_growth_pct", {})[name] = \
                [100 * (values[-1] - values[0]) / values[0]]


def full_speed(ctx, proxy, figure, run):
    """Keep-alive GET /small with wrk at full speed; records `<figure>_rps`."""
    pids = proxy.pids()
    cpu_before, busy_before = cpu_seconds(pids), cpu_busy_ticks()
    r = wrk(ctx, proxy.url("/small"), ctx.cfg["small_s"])
    cpu, busy_after = cpu_seconds(pids) - cpu_before, cpu_busy_ticks()
    errors = wrk_failures(r)
    if errors:
        raise RuntimeError(f"{errors} errors in {r}")
    rps = r["requests"] / (r["duration_us"] / 1e6)
    record(ctx, f"{figure}_rps", proxy, rps)
    # Which core limited the run: the proxy's, or the one the load generator
    # and the backends share.
    proxy_busy = busy_percent(busy_before, busy_after, ctx.proxy_cpu)
    load_busy = busy_percent(busy_before, busy_after, ctx.gen_cpu)
    record(ctx, f"{figure}_proxy_core", proxy, proxy_busy)
    record(ctx, f"{figure}_load_core", proxy, load_busy)
    if pinned(proxy):
        # The proxy has its core to itself, so the core's busy time is its
        # whole cost, including the loopback TCP work done in softirq.
        core_us = busy_seconds(busy_before, busy_after, ctx.proxy_cpu) \
            * 1e6 / r["requests"]
        record(ctx, f"{figure}_core_us", proxy, core_us)
    per_cpu = ""
    if pids and cpu > 0:
        record(ctx, f"{figure}_per_cpu", proxy, r["requests"] / cpu)
        per_cpu = f" {r['requests'] / cpu:9,.0f} req/CPU-s"
    print(f"  {figure:6} run {run + 1} {proxy.name:17} {rps:9,.0f} req/s"
          f"{per_cpu}  cores busy: proxy {proxy_busy:3.0f}%"
          f" load {load_busy:3.0f}%", flush=True)
    return rps


def pinned(proxy):
    """Whether the proxy runs alone on the proxy's core."""
    return proxy.name not in ("direct", "sidekick-default")


def scraped_requests(proxy):
    """sidekick_requests_total summed over backends: proves metrics were on."""
    try:
        with urllib.request.urlopen(proxy.url("/.prometheus/metrics"), timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sidekick_requests_total{"))


def figure_latency(ctx):
    """2. Latency at a steady ~2,000 req/s; "added" subtracts direct's."""
    seconds = ctx.cfg["latency_s"]
    env = dict(os.environ, WRK_MEAN_DELAY_MS=str(LATENCY_MEAN_DELAY_MS))
    warm_up(ctx)
    for run, proxy in each_run(ctx):
        def one():
            r = parse_wrk(run_client(ctx, wrk_argv(
                proxy.url("/small"), seconds, conns=LATENCY_CONNS),
                seconds + 30, env=env))
            if wrk_failures(r):
                raise RuntimeError(f"{wrk_failures(r)} failures in {r}")
            p50, p99 = r["p50_us"] / 1000, r["p99_us"] / 1000
            record(ctx, "lat_p50_ms", proxy, p50)
            record(ctx, "lat_p99_ms", proxy, p99)
            rate = r["requests"] / (r["duration_us"] / 1e6)
            print(f"  latency run {run + 1} {proxy.name:17} p50 {p50:.3f} ms"
                  f"  p99 {p99:.3f} ms  at {rate:,.0f} req/s", flush=True)
        measure(ctx, "latency", proxy, one)
    # Added latency per run, against direct's median.
    direct = ctx.results.get("lat_p50_ms", {}).get("direct")
    if direct:
        for metric in ("lat_p50_ms", "lat_p99_ms"):
            base = statistics.median(ctx.results[metric]["direct"])
            for name, values in ctx.results[metric].items():
                ctx.results.setdefault("added_" + metric, {})[name] = \
                    [v - base for v in values]


def get_1g(ctx, proxy):
    code, speed, size = curl(ctx, [
        "-o", "/dev/null", "-w",
        "%{http_code} %{speed_download} %{size_download}", proxy.url("/1g")])
    if code != "200" or int(size) != GIB:
        raise RuntimeError(f"status {code}, {size} bytes")
    return float(speed) / 1e6


def put_1g(ctx, proxy):
    # "Expect:" stops curl from waiting for a 100 Continue that some proxies
    # answer and others forward. The sink's reply is the number of body
    # bytes it read.
    body, code, speed = curl(ctx, [
        "-H", "Expect:", "-T", str(ctx.www / "1g"),
        "-w", "\n%{http_code} %{speed_upload}", proxy.url("/put")])
    if code != "200" or int(body) != GIB:
        raise RuntimeError(f"status {code}, sink got {body} bytes")
    return float(speed) / 1e6


def get_8x128m(ctx, proxy):
    argv = ["--parallel", "--parallel-immediate", "--parallel-max", "8",
            "-w", "%{http_code} %{size_download}\n"]
    for _ in range(8):
        argv += ["-o", "/dev/null", proxy.url("/128m")]
    start = time.monotonic()
    out = curl(ctx, argv)
    elapsed = time.monotonic() - start
    if out[0::2] != ["200"] * 8 or out[1::2] != [str(128 * MIB)] * 8:
        raise RuntimeError(f"replies {out}")
    return 8 * 128 * MIB / elapsed / 1e6


# (metric, label, function, through the PUT sink instance)
LARGE_TRANSFERS = [
    ("get_1g_mbs", "GET", get_1g, False),
    ("put_1g_mbs", "PUT", put_1g, True),
    ("get_8x128m_mbs", "8xGET", get_8x128m, False),
]


# What the core shared by curl and the backends spent per 1 GiB transfer:
# the client's and the backend's work, which a proxy elsewhere cannot take
# away but can add to.
LOAD_COST = {"get_1g_mbs": "get_1g_load_s", "put_1g_mbs": "put_1g_load_s"}


def figure_large(ctx):
    """3. One 1 GiB GET, one 1 GiB PUT, eight parallel 128 MiB GETs (MB/s);
    also each proxy's peak RSS during them."""
    sinks = PutSinks(ctx)
    put_proxies = {name: Proxy(ctx, name, sinks.ports, suffix="-put")
                   for name in ctx.proxies}
    try:
        sinks.start()
        for put_proxy in put_proxies.values():
            put_proxy.start()
        for run, proxy in each_run(ctx):
            instances = [proxy, put_proxies[proxy.name]]
            if proxy.proc:
                for instance in instances:
                    instance.reset_peak()
            line = []
            for metric, label, transfer, on_sink in LARGE_TRANSFERS:
                target = instances[on_sink]
                before = cpu_busy_ticks()
                value = measure(ctx, f"large {label}", target,
                                lambda: transfer(ctx, target))
                after = cpu_busy_ticks()
                if value is not None:
                    record(ctx, metric, proxy, value)
                    line.append(f"{label} {value:,.0f}")
                    if metric in LOAD_COST:
                        # Both 1 GiB transfers move exactly 1 GiB.
                        record(ctx, LOAD_COST[metric], proxy,
                               busy_seconds(before, after, ctx.gen_cpu))
            line = ["  ".join(line) + " MB/s"]
            if proxy.proc:
                peak = max(i.rss_mib("VmHWM") for i in instances)
                record(ctx, "rss_peak_mib", proxy, peak)
                line.append(f"peak RSS {peak:.1f} MiB")
            print(f"  large  run {run + 1} {proxy.name:17} "
                  + ", ".join(line), flush=True)
    finally:
        for put_proxy in put_proxies.values():
            put_proxy.stop()
        if sinks.proc:
            sinks.stop()


def make_certificate(d):
    """One ECDSA P-256 certificate for every TLS terminator (figure 6)."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem")], check=True,
                   capture_output=True)
    (d / "combined.pem").write_text((d / "cert.pem").read_text()
                                    + (d / "key.pem").read_text())


def figure_tls(ctx):
    """6. HTTPS termination: keep-alive GET /small over TLS 1.3 with the same
    certificate, req/s, sidekick (--workers 1) against HAProxy."""
    make_certificate(ctx.dir)
    names = [n for n in ("sidekick", "haproxy") if n in ctx.proxies]
    proxies = {n: Proxy(ctx, n, ctx.proxies[n].backend_ports, suffix="-tls",
                        tls=True) for n in names}
    try:
        for proxy in proxies.values():
            proxy.start()
        for run in range(ctx.cfg["runs"]):
            for proxy in proxies.values():
                measure(ctx, "tls", proxy,
                        lambda: full_speed(ctx, proxy, "tls", run))
    finally:
        for proxy in proxies.values():
            proxy.stop()


def figure_memory(ctx):
    """4. RSS of a freshly started proxy, idle and with idle client
    connections open. (The peak is taken during figure 3.)"""
    count = ctx.cfg["idle_conns"]
    for run, proxy in each_run(ctx):
        if proxy.name == "direct":
            continue

        def one():
            proxy.restart()
            time.sleep(1)
            idle = proxy.rss_mib()
            socks = open_idle_connections(proxy.port, count)
            try:
                time.sleep(1)
                loaded = proxy.rss_mib()
                alive = still_open(socks)
            finally:
                for s in socks:
                    s.close()
            if alive < count:
                raise RuntimeError(f"proxy closed {count - alive} of {count} "
                                   "idle connections within a second")
            record(ctx, "rss_idle_mib", proxy, idle)
            record(ctx, "rss_conns_mib", proxy, loaded)
            print(f"  memory run {run + 1} {proxy.name:17} idle {idle:.1f} MiB"
                  f"  with {count} connections {loaded:.1f} MiB", flush=True)
        measure(ctx, "memory", proxy, one)


def figure_failover(ctx):
    """5. GET load while backend 0 is killed and later restarted; failed
    requests are non-2xx/3xx responses plus socket errors. direct targets
    backend 0 itself: what clients see with no balancer at all."""
    cfg = ctx.cfg
    victim = ctx.backends[0]
    for run, proxy in each_run(ctx):
        def one():
            wrk_proc = PROCS.start(
                wrk_argv(proxy.url("/small"), cfg["failover_s"]),
                ctx.dir / "wrk-failover.log", cpu=ctx.gen_cpu)
            start = time.monotonic()
            try:
                time.sleep(cfg["kill_at"])
                victim.kill()
                time.sleep(max(0.0, start + cfg["restart_at"]
                               - time.monotonic()))
                victim.start()
                wrk_proc.wait(cfg["failover_s"] + 30)
            finally:
                if victim.proc is None or victim.proc.poll() is not None:
                    victim.start()
                PROCS.stop(wrk_proc)
            r = parse_wrk(Path(wrk_proc.log_path).read_text())
            Path(wrk_proc.log_path).unlink()
            failed = wrk_failures(r)
            record(ctx, "failover_failed", proxy, failed)
            record(ctx, "failover_requests", proxy, r["requests"])
            print(f"  failover run {run + 1} {proxy.name:17} {failed:,} failed"
                  f" of {r['requests']:,}", flush=True)
        measure(ctx, "failover", proxy, one)
        time.sleep(cfg["settle_s"])  # every proxy sees backend 0 up again


FIGURE_FUNCTIONS = {
    "small": figure_small,
    "latency": figure_latency,
    "large": figure_large,
    "memory": figure_memory,
    "failover": figure_failover,
    "tls": figure_tls,
    "tail": figure_tail,
}

