#!/usr/bin/env python3
"""Benchmark sidekick against nginx and HAProxy on this machine.

    python3 bench/run.py          # full run, writes bench/RESULTS.md
    python3 bench/run.py --quick  # short run (CI): bench/RESULTS-quick.md
    python3 bench/run.py --instr  # instructions per request (callgrind)

Installs the tools it needs (nginx-light, haproxy, wrk, curl) with apt-get
when they are missing, builds sidekick with `cargo build --release`, starts
four nginx backends plus every proxy under test on free loopback ports,
measures, prints the results and writes them as Markdown. Every process it
starts is stopped when it exits.

CPU budget: the proxy under test runs on CPU 1; the load generators, the
backends and this script share CPU 0 (sidekick-default excepted, see Proxy).

Figure 7 (`--figures tail`, harness/tail.py) puts one sick backend among
four raw Python backends: all healthy, one delaying every 5th request it
serves by 200 ms, one answering 30% of its requests 503 SlowDown. A paced
open-loop client (300 req/s, 32 connections) measures p50/p99/p99.9, the
non-2xx share and the extra requests the backends got, through sidekick
`--host-balance least`, `p2c` and `p2c --hedge`, HAProxy and nginx (both
retrying a 503 on another server), and prints its targets as met or not;
it also measures small-request req/s (figure 1's load, all healthy) for
sidekick least against p2c, the cost target. 20 s per scenario and run in
a full run; --quick gives each 2 s, enough to prove the harness works, not
to measure a p99.9. A variant whose flags the binary lacks is skipped and
listed; --tail-variants least,haproxy,nginx picks some.

Useful while developing: --only direct,nginx,haproxy (no sidekick needed),
--figures small,latency, --tail-variants KEYS, --runs N, --no-build,
--sidekick-bin PATH. A run that is not a complete full one writes
bench/RESULTS-quick.md or bench/RESULTS-partial.md instead of
bench/RESULTS.md.

--instr counts instead the user-space instructions sidekick, HAProxy and
nginx each spend per proxied small keep-alive GET, on one thread under
valgrind's callgrind (harness/instr.py says how), and sidekick's costliest
functions; it prints them and writes only what --output names.
"""

import argparse
import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness.backends import Backend, serve_put_sink
from harness.figures import FIGURE_FUNCTIONS
from harness.instr import PROXIES as INSTR_PROXIES
from harness.instr import carry_over, keep_dumps, run_instr
from harness.processes import TMP_DIRS, cleanup, on_signal
from harness.proxies import Proxy
from harness.report import report
from harness.settings import (BACKENDS, BENCH, FIGURES, GIB, PROXIES,
                              SETTINGS, SIDEKICK)
from harness.setup import (build_sidekick, cpu_layout, ensure_tools,
                           make_data, raise_fd_limit, sidekick_usable)
from harness.tail import VARIANTS

TAIL_KEYS = [v.key for v in VARIANTS]


def parse_args():
    parser = argparse.ArgumentParser(
        description="Benchmark sidekick against nginx and HAProxy.")
    parser.add_argument("--quick", action="store_true",
                        help="one short run per figure (CI); writes "
                        "bench/RESULTS-quick.md")
    parser.add_argument("--only", metavar="PROXIES",
                        help="comma-separated subset of " + ",".join(PROXIES))
    parser.add_argument("--figures", metavar="FIGURES",
                        help="comma-separated subset of " + ",".join(FIGURES))
    parser.add_argument("--tail-variants", metavar="VARIANTS",
                        help="the tail figure's variants, a comma-separated "
                        "subset of " + ",".join(TAIL_KEYS))
    parser.add_argument("--runs", type=int, help="override runs per figure")
    parser.add_argument("--no-build", action="store_true",
                        help="use the existing target/release/sidekick")
    parser.add_argument("--sidekick-bin", type=Path, metavar="PATH",
                        help="benchmark this sidekick binary (no build)")
    parser.add_argument("--output", type=Path,
                        help="where to write the Markdown report")
    parser.add_argument("--instr", action="store_true",
                        help="instructions per request under callgrind "
                        "(--only picks from " + ",".join(INSTR_PROXIES) + ")")
    parser.add_argument("--keep-dumps", type=Path, metavar="DIR",
                        help="with --instr: copy the callgrind dumps to DIR")
    parser.add_argument("--put-sink", metavar="PORTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    proxies = INSTR_PROXIES if args.instr else PROXIES
    for attr, allowed in (("only", proxies), ("figures", FIGURES),
                          ("tail_variants", TAIL_KEYS)):
        value = getattr(args, attr)
        chosen = value.split(",") if value else list(allowed)
        unknown = set(chosen) - set(allowed)
        if unknown:
            parser.error(f"--{attr.replace('_', '-')}: unknown "
                         f"{', '.join(sorted(unknown))}")
        setattr(args, attr + "_list", [x for x in allowed if x in chosen])
    return args


class Context:
    pass


def main():
    args = parse_args()
    if args.put_sink:
        serve_put_sink([int(p) for p in args.put_sink.split(",")])
        return 0
    # SIGINT too: a shell starting this in the background ignores it, and
    # an ignored Ctrl-C would leave the servers running.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(cleanup)
    started = time.monotonic()

    ctx = Context()
    ctx.cfg = dict(SETTINGS["quick" if args.quick else "full"])
    if args.runs:
        ctx.cfg["runs"] = args.runs
    ctx.results, ctx.errors, ctx.skipped = {}, [], []
    ctx.warmed_up = False
    ctx.metrics_seen = {}
    ctx.tail_variants = args.tail_variants_list
    ctx.loadavg = Path("/proc/loadavg").read_text().split()[:3]
    names = list(args.only_list)

    ensure_tools()
    ctx.sidekick = (args.sidekick_bin or SIDEKICK).resolve()
    if any(n.startswith("sidekick") for n in names):
        reason = sidekick_usable(ctx.sidekick) \
            if args.no_build or args.sidekick_bin else build_sidekick()
        if reason:
            if args.only:
                sys.exit(f"sidekick unusable: {reason}")
            print(f"warning: skipping sidekick: {reason}", flush=True)
            ctx.skipped.append(f"sidekick, sidekick-default: {reason}")
            names = [n for n in names if not n.startswith("sidekick")]

    if args.instr:
        return instr(ctx, args, names)
    complete = names == PROXIES and args.figures_list == FIGURES \
        and args.tail_variants_list == TAIL_KEYS
    output = args.output or BENCH / (
        "RESULTS-quick.md" if args.quick
        else "RESULTS.md" if complete else "RESULTS-partial.md")

    raise_fd_limit()
    ctx.gen_cpu, ctx.proxy_cpu = cpu_layout()
    # This script opens the idle connections: it counts as load generator.
    os.sched_setaffinity(0, {ctx.gen_cpu})
    ctx.nginx_user = "user root;" if os.geteuid() == 0 else ""
    try:
        # tmpfs keeps the 1.1 GiB of test objects in memory; a small
        # /dev/shm (containers) falls back to the default temp dir.
        shm = Path("/dev/shm")
        on_shm = shm.is_dir() and shutil.disk_usage(shm).free > 2 * GIB
        ctx.dir = Path(tempfile.mkdtemp(prefix="sidekick-bench-",
                                        dir=shm if on_shm else None))
        TMP_DIRS.append(ctx.dir)
        print(f"creating test objects in {ctx.dir}", flush=True)
        ctx.www = make_data(ctx.dir)
        ctx.backends = [Backend(ctx, i) for i in range(BACKENDS)]
        for backend in ctx.backends:
            backend.start()
        ports = [b.port for b in ctx.backends]
        ctx.proxies = {n: Proxy(ctx, n, ports) for n in names}
        for proxy in ctx.proxies.values():
            proxy.start()
        for figure in args.figures_list:
            print(f"figure: {figure}", flush=True)
            figure_started = time.monotonic()
            try:
                FIGURE_FUNCTIONS[figure](ctx)
            except Exception as e:  # keep the other figures' results
                ctx.errors.append(f"figure {figure}: {e}")
                print(f"  ERROR figure {figure}: {e}", flush=True)
            print(f"  ({time.monotonic() - figure_started:.0f} s)",
                  flush=True)
    finally:
        cleanup()

    text = report(ctx, args)
    if output.exists():
        text = carry_over(output.read_text(), text)
    output.write_text(text)
    print("\n" + text)
    print(f"wrote {output} in {time.monotonic() - started:.0f} s")
    if ctx.errors:
        print(f"{len(ctx.errors)} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


def instr(ctx, args, names):
    ctx.gen_cpu, ctx.proxy_cpu = cpu_layout()
    ctx.nginx_user = "user root;" if os.geteuid() == 0 else ""
    try:
        ctx.dir = Path(tempfile.mkdtemp(prefix="sidekick-instr-"))
        TMP_DIRS.append(ctx.dir)
        text = run_instr(ctx, names)
        if args.keep_dumps:
            keep_dumps(ctx, args.keep_dumps)
    finally:
        cleanup()
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
