"""The Markdown report: sections and tables, targets, what limited the
throughput figures, the machine."""

import datetime
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

from .settings import (LATENCY_CONNS, LATENCY_MEAN_DELAY_MS, PROXIES, ROOT,
                       TAIL_CONNS, TAIL_RATE)
from .tail import LABELS, SCENARIOS


# Per section: (metric, title, format, show ratios). Ratios are medians over
# the reference's median.
SECTIONS = [
    ("1. Small requests", [
        ("small_rps", "Keep-alive GET /small, `wrk -t1 -c64` (req/s, "
         "higher is better)", "{:,.0f}", True),
        ("small_proxy_core", "Same runs: how busy the proxy's core was (%; "
         "sidekick-default is not pinned)", "{:.0f}", False),
        ("small_load_core", "Same runs: how busy the core of the load "
         "generator and backends was (%)", "{:.0f}", False),
        ("small_core_us", "Same runs: the proxy core's busy time per request "
         "(µs; user, system, interrupt and softirq time from /proc/stat, so "
         "the loopback TCP work is included; lower is better; pinned proxies "
         "only)", "{:.2f}", True),
        ("small_per_cpu", "Same runs: requests per CPU-second charged to the "
         "proxy's processes (user + system time; higher is better). Interrupt "
         "and softirq time, where much of loopback TCP runs, is charged to no "
         "process, so this leaves out part of each proxy's cost", "{:,.0f}", True),
    ]),
    ("2. Added latency", [
        ("lat_p50_ms", "p50 at a steady ~2,000 req/s, `wrk -t1 -c16` with a "
         "random 1–15 ms pause before each request (ms)", "{:.3f}", True),
        ("lat_p99_ms", "p99 at the same rate (ms)", "{:.3f}", True),
        ("added_lat_p50_ms", "Added p50: minus direct's median (ms)",
         "{:+.3f}", False),
        ("added_lat_p99_ms", "Added p99: minus direct's median (ms)",
         "{:+.3f}", False),
    ]),
    ("3. Large objects", [
        ("get_1g_mbs", "One 1 GiB GET, curl (MB/s, higher is better)",
         "{:,.0f}", True),
        ("put_1g_mbs", "One 1 GiB PUT, curl -T (MB/s, higher is better)",
         "{:,.0f}", True),
        ("get_8x128m_mbs", "Eight parallel 128 MiB GETs, aggregate (MB/s, "
         "higher is better)", "{:,.0f}", True),
        ("get_1g_load_s", "1 GiB GET: busy time of the core shared by curl "
         "and the backends (CPU-s, lower is better)", "{:.2f}", True),
        ("put_1g_load_s", "1 GiB PUT: busy time of the core shared by curl "
         "and the sink (CPU-s, lower is better)", "{:.2f}", True),
    ]),
    ("4. Memory", [
        ("rss_idle_mib", "RSS idle, fresh process (MiB)", "{:.1f}", True),
        ("rss_conns_mib", "RSS with 1,000 idle keep-alive client connections "
         "(MiB)", "{:.1f}", True),
        ("rss_peak_mib", "Peak RSS (VmHWM) during figure 3 (MiB)", "{:.1f}",
         True),
        ("rss_small_mib", "RSS after each run of figure 1, same process "
         "throughout (MiB)", "{:.1f}", True),
        ("rss_growth_pct", "RSS growth from the first run of figure 1 to the "
         "last, same process (%)", "{:+.1f}", False),
    ]),
    ("6. HTTPS", [
        ("tls_rps", "Keep-alive GET /small over TLS 1.3, same ECDSA "
         "certificate, `wrk -t1 -c64` (req/s, higher is better)", "{:,.0f}",
         True),
        ("tls_proxy_core", "Same runs: how busy the proxy's core was (%)",
         "{:.0f}", False),
        ("tls_core_us", "Same runs: the proxy core's busy time per request "
         "(µs, lower is better)", "{:.2f}", True),
        ("tls_per_cpu", "Same runs: requests per CPU-second charged to the "
         "proxy's processes (higher is better)", "{:,.0f}", True),
    ]),
    ("5. Failover", [
        ("failover_failed", "Failed requests (non-2xx/3xx + socket errors) "
         "while backend 0 is killed and restarted", "{:,.0f}", True),
        ("failover_requests", "Requests completed during the same run",
         "{:,.0f}", False),
    ]),
]


def median_of(ctx, metric, proxy):
    values = ctx.results.get(metric, {}).get(proxy)
    return statistics.median(values) if values else None


def ratio(value, ref):
    if value is None or not ref:
        return "n/a"
    r = value / ref
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


def metric_table(ctx, metric, fmt, ratios):
    rows = ["| Proxy | Median | Min–max | vs HAProxy | vs direct |",
            "| --- | ---: | ---: | ---: | ---: |"]
    by_proxy = ctx.results.get(metric, {})
    for name in PROXIES:
        values = by_proxy.get(name)
        if not values:
            continue
        med = statistics.median(values)
        spread = f"{fmt.format(min(values))}–{fmt.format(max(values))}"
        if ratios:
            vs_haproxy = ratio(med, median_of(ctx, metric, "haproxy"))
            vs_direct = ratio(med, median_of(ctx, metric, "direct"))
        else:
            vs_haproxy = vs_direct = "—"
        rows.append(f"| {name} | {fmt.format(med)} | {spread} | {vs_haproxy}"
                    f" | {vs_direct} |")
    return rows


def targets(ctx):
    """(target, measured, met) for sidekick --workers 1, on medians."""
    def med(metric, proxy="sidekick"):
        return median_of(ctx, metric, proxy)

    def vs(metric, ref, minimum, label):
        value, base = med(metric), med(metric, ref)
        if value is None or base is None:
            return (label, "not measured", None)
        r = value / base
        return (label, f"{r:.2f}x", r >= minimum)

    def at_most(metric, limit, label, unit):
        value = med(metric)
        if value is None:
            return (label, "not measured", None)
        shown = {"ms": f"{value:.3f} ms", "%": f"{value:+.1f}%"}.get(
            unit, f"{value:.1f} {unit}")
        return (label, shown, value <= limit)

    failed, haproxy_failed = med("failover_failed"), \
        med("failover_failed", "haproxy")
    failover = ("Failover: failed requests <= HAProxy's",
                "not measured", None)
    if failed is not None and haproxy_failed is not None:
        failover = (failover[0], f"{failed:,.0f} vs {haproxy_failed:,.0f}",
                    failed <= haproxy_failed)
    return [
        vs("small_rps", "haproxy", 1.2, "Small requests >= 1.2x HAProxy"),
        vs("small_rps", "nginx", 1.2, "Small requests >= 1.2x nginx"),
        vs("get_1g_mbs", "direct", 0.9, "1 GiB GET >= 0.9x direct"),
        vs("put_1g_mbs", "direct", 0.9, "1 GiB PUT >= 0.9x direct"),
        at_most("added_lat_p99_ms", 0.3, "Added p99 latency <= 0.3 ms", "ms"),
        at_most("rss_idle_mib", 10, "RSS idle <= 10 MiB", "MiB"),
        at_most("rss_conns_mib", 40,
                "RSS with 1,000 idle connections <= 40 MiB", "MiB"),
        at_most("rss_growth_pct", 5,
                "RSS growth across repeated runs <= 5%", "%"),
        failover,
    ] + [row for label in judged_variants(ctx) for row in tail_targets(ctx, label)]


def judged_variants(ctx):
    """The sidekick variants figure 7's targets judge: the default (p2c) and
    p2c with hedging, those that ran; least when neither did."""
    ran = [label for label in ("sidekick p2c", "sidekick p2c --hedge")
           if median_of(ctx, "tail_healthy_p99_ms", label) is not None]
    return ran or ["sidekick least"]


def tail_targets(ctx, label):

    def med(scenario, stat, variant=label):
        return median_of(ctx, f"tail_{scenario}_{stat}", variant)

    def target(name, measured, met):
        name = f"{name} ({label})"
        return (name, "not measured", None) if measured is None \
            else (name, measured, met)

    rows = []
    slow, healthy = med("slow", "p99_ms"), med("healthy", "p99_ms")
    rows.append(target(
        "Tail, one slow backend: p99 <= 1.5x the p99 with all healthy",
        None if None in (slow, healthy) else
        f"{slow:.1f} vs {healthy:.1f} ms ({slow / healthy:.2f}x)",
        slow is not None and healthy and slow <= 1.5 * healthy))
    peers = [med("slow", "p99_ms", p) for p in ("HAProxy", "nginx")]
    rows.append(target(
        "Tail, one slow backend: p99 below HAProxy's and nginx's",
        None if None in [slow] + peers else
        f"{slow:.1f} vs {peers[0]:.1f} / {peers[1]:.1f} ms",
        None not in [slow] + peers and slow < min(peers)))
    answers = sum(ctx.results.get("tail_slowdown_answers", {}).get(label, []))
    shed = sum(ctx.results.get("tail_slowdown_503", {}).get(label, []))
    rows.append(target(
        "Tail, SlowDown: no 503 reaches the client",
        f"{shed:,.0f} of {answers:,.0f}" if answers else None,
        answers > 0 and shed == 0))
    extra = [med(s, "extra_pct") for s in SCENARIOS]
    rows.append(target(
        "Tail: extra backend requests <= 5% in every scenario",
        None if None in extra else " / ".join(f"{e:+.1f}%" for e in extra),
        None not in extra and max(extra) <= 5))
    rps, least = median_of(ctx, "tail_cost_rps", label), \
        median_of(ctx, "tail_cost_rps", "sidekick least")
    rows.append(target(
        "Tail, cost: small-request req/s, all healthy, >= 0.97x least's",
        None if label == "sidekick least" or None in (rps, least) else
        f"{rps / least:.3f}x",
        rps is not None and least and rps >= 0.97 * least))
    return rows


TAIL_TITLES = {
    "healthy": "All four backends healthy",
    "slow": "One backend delays every 5th request it serves by 200 ms",
    "slowdown": "One backend answers 30% of its requests `503 SlowDown`",
}


def tail_section(ctx):
    """Figure 7: a table per scenario, medians over runs, and the cost."""
    if not any(metric.startswith("tail_") for metric in ctx.results):
        return []
    runs = ctx.cfg["runs"]

    def med(scenario, stat, label):
        return median_of(ctx, f"tail_{scenario}_{stat}", label)

    out = ["", "## 7. Tail latency: one sick backend of four", "",
           f"Paced GET /small at {TAIL_RATE} req/s over {TAIL_CONNS} "
           f"keep-alive connections for {ctx.cfg['tail_s']} s "
           f"({TAIL_RATE * ctx.cfg['tail_s']:,} requests) per run, latency "
           "from each request's scheduled time; medians over the runs, p99 "
           "with its min–max. non-2xx counts answers that were not 2xx or "
           "never came; extra backend requests are the backends' requests "
           "over the client's, minus one."]
    lags = [v for metric, by in ctx.results.items()
            if metric.startswith("tail_") and metric.endswith("_lag_ms")
            for values in by.values() for v in values]
    if lags:
        out[-1] += (f" The client fell behind its timetable by up to "
                    f"{max(lags):.1f} ms")
        out[-1] += (": something else had its core, and latencies of that "
                    "size are partly the machine's." if max(lags) > 5
                    else ".")
    for scenario in SCENARIOS:
        labels = [n for n in LABELS if med(scenario, "p99_ms", n) is not None]
        if not labels:
            continue
        out += ["", f"{TAIL_TITLES[scenario]}:", "",
                "| Variant | p50 (ms) | p99 (ms) | p99.9 (ms) | non-2xx | "
                "503s, all runs | extra backend requests | to the sick "
                "backend |",
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for label in labels:
            p99s = ctx.results[f"tail_{scenario}_p99_ms"][label]
            spread = f" ({min(p99s):.1f}–{max(p99s):.1f})" if runs > 1 else ""
            shed = sum(ctx.results[f"tail_{scenario}_503"][label])
            answers = sum(ctx.results[f"tail_{scenario}_answers"][label])
            out.append(
                f"| {label} | {med(scenario, 'p50_ms', label):.2f} | "
                f"{med(scenario, 'p99_ms', label):.1f}{spread} | "
                f"{med(scenario, 'p999_ms', label):.1f} | "
                f"{med(scenario, 'non2xx_pct', label):.2f}% | "
                f"{shed:,.0f} of {answers:,.0f} | "
                f"{med(scenario, 'extra_pct', label):+.1f}% | "
                f"{med(scenario, 'sick_pct', label):.1f}% |")
        counted = []
        for label in labels:
            said = []
            for stat, name in (("hedges", "hedged"),
                               ("hedges_won", "of them won by the hedge"),
                               ("slowdown_retries", "SlowDown retries")):
                total = sum(ctx.results.get(f"tail_{scenario}_{stat}", {})
                            .get(label, []))
                if total:
                    said.append(f"{total:,.0f} {name}")
            if said:
                counted.append(f"{label} {', '.join(said)}")
        if counted:
            out += ["", "sidekick's own counters (all runs, warm-up "
                    "included): " + "; ".join(counted) + "."]
    cost = ctx.results.get("tail_cost_rps", {})
    least = median_of(ctx, "tail_cost_rps", "sidekick least")
    if cost and least:
        out += ["", "Cost: keep-alive GET /small at full speed, `wrk -t1 "
                "-c64`, the four nginx backends of figure 1, all healthy "
                "(req/s, higher is better):", "",
                "| Variant | Median | Min–max | vs sidekick least |",
                "| --- | ---: | ---: | ---: |"]
        for label in LABELS:
            values = cost.get(label)
            if values:
                out.append(
                    f"| {label} | {statistics.median(values):,.0f} | "
                    f"{min(values):,.0f}–{max(values):,.0f} | "
                    f"{ratio(statistics.median(values), least)} |")
    return out


def limits(ctx):
    """What bounded the two throughput targets, from the same runs: which
    core was full, and what each side cost per request or per GiB."""
    def med(metric, proxy):
        return median_of(ctx, metric, proxy)

    notes = []
    load = {n: med("small_load_core", n) for n in ("sidekick", "haproxy")}
    core = {n: med("small_core_us", n) for n in ("sidekick", "haproxy")}
    if None not in load.values() and None not in core.values():
        direct = med("small_load_core", "direct")
        direct = "" if direct is None else f" (direct: {direct:.0f}%)"
        notes.append(
            f"- Small requests: the core shared by wrk and the backends was "
            f"{load['sidekick']:.0f}% busy during sidekick's runs and "
            f"{load['haproxy']:.0f}% during HAProxy's{direct}, so above ~95% "
            f"that core, not the proxy's, sets the rate. Per request the "
            f"proxy's core spent {core['sidekick']:.2f} µs for sidekick and "
            f"{core['haproxy']:.2f} µs for HAProxy "
            f"({ratio(core['sidekick'], core['haproxy'])}); 1.2x HAProxy's "
            f"rate needs both a load core with room to spare and at most "
            f"{core['haproxy'] / 1.2:.2f} µs per request.")
        rps = {n: med("small_rps", n) for n in ("haproxy", "direct")}
        if None not in rps.values():
            notes[-1] += (
                f" That rate, {1.2 * rps['haproxy']:,.0f} req/s, is "
                f"{ratio(1.2 * rps['haproxy'], rps['direct'])} direct's, and "
                f"direct (no proxy at all) is bounded by the same core.")
    put = {n: med("put_1g_load_s", n) for n in ("direct", "sidekick", "haproxy")}
    if None not in put.values():
        notes.append(
            f"- 1 GiB PUT: curl and the sink needed {put['direct']:.2f} "
            f"CPU-s of their core with no proxy, {put['sidekick']:.2f} through "
            f"sidekick and {put['haproxy']:.2f} through HAProxy: a proxy on "
            f"the other core makes curl's copies dearer (the pages it copies "
            f"into were last touched by the other core), and that core is the "
            f"limit.")
    return notes


def first_line(argv):
    try:
        done = subprocess.run(argv, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def machine_facts(ctx):
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = first_line(["git", "-C", str(ROOT), "describe", "--always",
                         "--dirty"])
    if commit.startswith("fatal"):
        commit = "no commit yet"
    try:
        binary = ctx.sidekick.relative_to(ROOT)
        built = f"`{binary}` built from `{commit}`"
    except ValueError:
        # A binary from elsewhere (--sidekick-bin): this checkout's commit says nothing.
        built = f"`{ctx.sidekick}`"
    # Boot options that decide where threads run and how idle CPUs wake:
    # they shape sidekick-default's spread and the latency tail.
    try:
        boot = [t for t in Path("/proc/cmdline").read_text().split()
                if t.startswith(("sched_", "haltpoll", "cpuidle", "idle="))]
    except OSError:
        boot = []
    return [
        ("CPU", f"{model}, {os.cpu_count()} CPUs (nproc)"),
        ("Kernel", f"{platform.system()} {platform.release()}"),
        ("Scheduler and idle boot options", " ".join(f"`{t}`" for t in boot)
         or "none"),
        ("Load average before the run", " ".join(ctx.loadavg)),
        ("sidekick", built),
        ("nginx", first_line(["nginx", "-v"]).split("/")[-1]),
        ("HAProxy", first_line(["haproxy", "-v"]).split()[2]),
        ("wrk", first_line(["wrk", "-v"]).split()[1]),
        ("curl", first_line(["curl", "--version"]).split()[1]),
    ]


def report(ctx, args):
    cfg = ctx.cfg
    command = " ".join(["python3", "bench/run.py"] + sys.argv[1:])
    now = datetime.datetime.now(datetime.timezone.utc)
    out = ["# sidekick benchmark results", "",
           f"Generated {now:%Y-%m-%d %H:%M} UTC by `{command}`"
           f" ({'quick' if args.quick else 'full'} mode). "
           "Run the same command from the repository root to reproduce.", "",
           "| Machine | |", "| --- | --- |"]
    out += [f"| {k} | {v} |" for k, v in machine_facts(ctx)]
    runs = "once" if cfg["runs"] == 1 else f"{cfg['runs']} times"
    out += ["", f"Each figure ran {runs} per proxy, runs "
            "interleaved across proxies; tables give the median, the min–max "
            "across runs and the median as a ratio to HAProxy's and to "
            "direct's. "
            f"The proxy under test is pinned to CPU {ctx.proxy_cpu}; the "
            "load generators and the backends share CPU "
            f"{ctx.gen_cpu}. MB = 10^6 bytes, MiB = 2^20 bytes.", "",
            "## Targets (sidekick, --workers 1)", "",
            "| Target | Measured | Result |", "| --- | ---: | --- |"]
    for label, measured, met in targets(ctx):
        result = "not measured" if met is None else \
            ("met" if met else "**not met**")
        out.append(f"| {label} | {measured} | {result} |")
    notes = limits(ctx)
    if notes:
        out += ["", "What limited the throughput figures:", ""] + notes
    for heading, metrics in SECTIONS:
        shown = [m for m in metrics if m[0] in ctx.results]
        if not shown:
            continue
        out += ["", f"## {heading}"]
        for metric, title, fmt, ratios in shown:
            out += ["", f"{title}:", ""] + metric_table(ctx, metric, fmt,
                                                          ratios)
    out += tail_section(ctx)
    out += ["", "## Setup", "",
            "- Proxies: **direct** is no proxy (the client talks to backend "
            "0); **sidekick** runs with `--workers 1`; **sidekick-default** "
            "at its default worker count (one per CPU it may use), so it is "
            "not pinned and shares CPU 0 with the load (where its threads run "
            "is the kernel's choice: the proxy-core tables show how much of "
            "CPU 1 it got); "
            "**nginx** and **haproxy** use `bench/nginx-proxy.conf.tmpl` and "
            "`bench/haproxy.cfg.tmpl` (one worker/thread, least connections, "
            "keep-alive upstreams, no buffering).",
            "- Backends: four nginx instances "
            "(`bench/nginx-backend.conf.tmpl`), one worker each, serving "
            "/small from memory (`return 200`, 100 bytes) and the large "
            "objects as files from tmpfs (page cache, sendfile).",
            "- PUT: nginx answers before it has read a body it discards, so "
            "the PUT figure uses four sink ports served by `run.py "
            "--put-sink`, which splices every byte to /dev/null (no copy, as "
            "the GET backends' sendfile) and replies with the byte count "
            "(checked to be 1 GiB); each proxy "
            "gets a second instance in front of those sink ports.",
            f"- Latency: {LATENCY_CONNS} connections, each pausing a random "
            f"1–{2 * LATENCY_MEAN_DELAY_MS - 1} ms before each request (so "
            f"they don't fire in step), for {cfg['latency_s']} s; "
            "percentiles from wrk's per-request latencies.",
            f"- Failover: `wrk -t1 -c64 -d{cfg['failover_s']}s` GET /small; "
            f"backend 0's nginx is SIGKILLed at {cfg['kill_at']} s and "
            f"restarted at {cfg['restart_at']} s. direct targets backend 0, "
            "so it shows what clients see without a balancer.",
            "- Metrics: sidekick's per-request counters are always on; after "
            "each small-request run the harness scrapes `/.prometheus/metrics` "
            "(sidekick_requests_total at the last scrape: "
            + (", ".join(f"{k} {v:,.0f}" for k, v in sorted(ctx.metrics_seen.items())
                         if v is not None) or "none") + ").",
            f"- Memory: {cfg['idle_conns']:,} client connections each make "
            "one keep-alive request and stay open; RSS is VmRSS summed over "
            "the proxy's processes (nginx: master + worker).",
            "- Tail (figure 7): four raw HTTP/1.1 backends in one asyncio "
            "process on CPU 0 (`bench/harness/sick_backends.py`), counting "
            "the requests they get, health checks excluded; the sick one "
            "delays every 5th request it serves by 200 ms (slow) or answers "
            "3 of every 10 with `503` and S3's SlowDown XML body (SlowDown), "
            "and passes every health check. The client "
            "(`bench/harness/paced_client.py`, CPU 0) sends on a fixed "
            f"timetable, after {cfg['tail_warmup_s']} s of unmeasured "
            "warm-up, so a stalled connection delays the requests due "
            "behind it and their latency counts from when they were due "
            "(open loop, as wrk2). Each run starts a fresh proxy: sidekick "
            "`--workers 1 --health-duration 1s` with `--host-balance least`, "
            "`p2c` or `p2c --hedge`; HAProxy `balance leastconn`, `retries "
            "1`, `option redispatch 1`, `retry-on conn-failure "
            "empty-response 503`; nginx `least_conn`, `proxy_next_upstream "
            "error timeout http_503` (with nginx's default `max_fails=1 "
            "fail_timeout=10s`, one 503 also takes a server out for 10 s). "
            "A variant whose flags the binary lacks is listed under Not "
            "measured. Quick mode's p99.9 rests on a handful of requests."]
    if ctx.skipped:
        out += ["", "## Not measured", ""] + [f"- {s}" for s in ctx.skipped]
    if ctx.errors:
        out += ["", "## Errors", ""] + [f"- {e}" for e in ctx.errors]
    return "\n".join(out) + "\n"

