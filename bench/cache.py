#!/usr/bin/env python3
"""The S3 cache, measured. Two sets of figures (--figures):

blocks (the default): one Garage node on loopback is both the origin (one bucket)
and the cache store (another bucket, its own key); one object is read through
sidekick (release build) with the cache at each block size: a miss (the origin's
bytes, filling the cache), then hits. Also read directly and through sidekick
without the cache, in the same run. Prints medians of wall time per GET and ratios to
the direct read; curl signs with SigV4 and discards the body. With --origin-rate, the
origin is reached through a relay that paces its answers to that many MB/s.

ranges: the readers the cache exists for, with a far origin (one Garage node behind
a relay paced to --origin-rate MB/s, default 40, and --origin-delay ms added to every
request, default 10) and the cache store on another Garage node: a Parquet-like
pattern (footer reads, then 12 unaligned column chunks of a --size MiB object) by a
cold sidekick A, then by a warm sidekick B on the same bucket, against no cache;
whole reads of a --whole-size MiB object against the far origin and the store read
directly; sidekick's RSS while it fills. Prints each target as met or not met.

Usage: bench/cache.py [--figures blocks|ranges] [--size MiB] [--runs N]
                      [--blocks 1,4,8] [--origin-rate MB/s] [--origin-delay ms]
                      [--whole-size MiB] [--sidekick-bin PATH]

Needs garage (cargo install garage@2.5.0 --locked --no-default-features --features
bundled-libs,sqlite), curl, taskset and boto3; sidekick and load are pinned to
different cores when there are two.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import cache_ranges  # noqa: E402
from harness.garage import Garage, curl, http_ok, metric, wait_until  # noqa: E402
from harness.processes import Processes, free_port  # noqa: E402
from harness.relay import Relay  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--figures", choices=["blocks", "ranges"], default="blocks")
    ap.add_argument("--size", type=int, default=64, help="object size in MiB")
    ap.add_argument("--whole-size", type=int, default=256,
                    help="ranges: the whole-read object's size in MiB")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--blocks", default="1,4,8", help="blocks: block sizes in MiB")
    ap.add_argument("--origin-rate", type=float, help="pace the origin's answers (MB/s)")
    ap.add_argument("--origin-delay", type=float, default=10.0,
                    help="ranges: delay added to every request to the origin (ms)")
    ap.add_argument("--sidekick-bin", default=str(ROOT / "target/release/sidekick"))
    args = ap.parse_args()
    if not Path(args.sidekick_bin).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    two = (os.cpu_count() or 1) >= 2
    pin = (lambda argv: ["taskset", "-c", "0", *argv]) if two else (lambda argv: argv)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="sidekick-cache-bench."))
    try:
        if args.figures == "ranges":
            args.origin_rate = args.origin_rate or 40.0
            cache_ranges.run(args, procs, work, args.sidekick_bin, pin)
        else:
            blocks(args, procs, work, pin)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def blocks(args, procs, work, pin):
    g = Garage(procs, work)
    okey, osecret = g.bucket_with_key("origin")
    ckey, csecret = g.bucket_with_key("cache")
    store = origin = g.url
    g.client(okey, osecret).put_object(Bucket="origin", Key="object",
                                       Body=os.urandom(args.size << 20))
    if args.origin_rate:
        origin = Relay(procs, work, g.s3, args.origin_rate, 0).url

    def timed(port):
        return statistics.median(
            curl(f"http://127.0.0.1:{port}/origin/object", okey, osecret)
            for _ in range(args.runs))

    def sidekick(extra):
        port = free_port()
        argv = pin([args.sidekick_bin, "-a", f"127.0.0.1:{port}",
                    "--health-port", str(g.admin), "--health-path", "/health",
                    "--health-duration", "500ms", *extra, origin])
        proc = procs.start(argv, work / f"sidekick-{port}.log")
        wait_until("sidekick", lambda: http_ok(f"http://127.0.0.1:{port}/v1/health"))
        return proc, port

    rows = [("direct", statistics.median(
        curl(f"{origin}/origin/object", okey, osecret) for _ in range(args.runs)))]
    proc, port = sidekick([])
    rows.append(("sidekick, no cache", timed(port)))
    procs.stop(proc)
    for mib in [int(b) for b in args.blocks.split(",")]:
        proc, port = sidekick([
            "--cache-endpoint", store, "--cache-bucket", "cache",
            "--cache-access-key", ckey, "--cache-secret-key", csecret,
            "--cache-region", "garage", "--cache-health-port", str(g.admin),
            "--cache-health-path", "/health", "--cache-min-size", "0",
            "--cache-block-size", f"{mib}MiB", "--cache-prefix", f"b{mib}/"])
        log = Path(proc.log_path)
        wait_until("the cache check", lambda: "readable and writable" in log.read_text())
        miss = curl(f"http://127.0.0.1:{port}/origin/object", okey, osecret)
        wait_until("the fill", lambda: metric(port, "sidekick_cache_fill_bytes_total")
                   >= args.size << 20, 120)
        hits_before = metric(port, 'sidekick_cache_requests_total{result="hit"}')
        rows.append((f"miss, {mib} MiB blocks", miss))
        rows.append((f"hit, {mib} MiB blocks", timed(port)))
        hits = metric(port, 'sidekick_cache_requests_total{result="hit"}') - hits_before
        if hits != args.runs:
            sys.exit(f"bench/cache.py: {hits:.0f} of {args.runs} reads were hits")
        procs.stop(proc)
    direct = rows[0][1]
    paced = f", origin paced to {args.origin_rate:g} MB/s" if args.origin_rate else ""
    print(f"GET of a {args.size} MiB object{paced}, median of {args.runs} (miss: one read)")
    for name, seconds in rows:
        print(f"  {name:24} {seconds * 1e3:9.1f} ms  {seconds / direct:5.2f}x direct")


if __name__ == "__main__":
    main()
