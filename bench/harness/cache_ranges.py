"""The S3 cache against the readers it serves, with a far origin: a Parquet-like
read pattern (footer reads, then unaligned column chunks) by a cold sidekick A and
then by a warm sidekick B on the same cache bucket, against a sidekick without the
cache; whole reads of a large object against the far origin and the cache store read
directly; sidekick's RSS while it fills. Two Garage nodes: the origin, behind a
relay that paces and delays it, and the cache store, on loopback."""

import os
import random
import statistics
import threading
import time
from pathlib import Path

from .garage import Garage, curl, fills_written, http_ok, metric, wait_until
from .processes import free_port, status_kib
from .relay import Relay

MIB = 1 << 20
FOOTER = 256 << 10
CHUNKS = 12


def pattern(size):
    """The footer reads, then 12 column chunks at offsets no block size lines up with
    (every other of 24 random segments of what precedes the footer)."""
    rng = random.Random(20)
    cuts = sorted(rng.sample(range(1, size - FOOTER), 2 * CHUNKS - 1))
    edges = [0, *cuts, size - FOOTER]
    chunks = [(edges[i], edges[i + 1] - 1) for i in range(0, 2 * CHUNKS, 2)]
    return [("bytes=-8", size - 8, size - 1),
            (f"bytes=-{FOOTER}", size - FOOTER, size - 1),
            *[(f"bytes={a}-{b}", a, b) for a, b in chunks]]


class RssPeak:
    """The largest VmRSS of a process while it runs."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0, False
        self.thread = threading.Thread(target=self.watch, daemon=True)
        self.thread.start()

    def watch(self):
        while not self.done:
            self.peak = max(self.peak, status_kib([self.pid], "VmRSS"))
            time.sleep(0.02)

    def stop(self):
        self.done = True
        self.thread.join()
        return self.peak << 10


def run(args, procs, work, sidekick_bin, pin):
    origin = Garage(procs, work / "origin")
    store = Garage(procs, work / "store")
    okey, osecret = origin.bucket_with_key("origin")
    ckey, csecret = store.bucket_with_key("cache")
    relay = Relay(procs, work, origin.s3, args.origin_rate, args.origin_delay)
    size = args.size << 20
    blob = os.urandom(size)
    whole_size = args.whole_size << 20
    whole = os.urandom(whole_size)
    up = origin.client(okey, osecret)
    up.put_object(Bucket="origin", Key="parquet", Body=blob)
    up.put_object(Bucket="origin", Key="whole", Body=whole)
    # The same bytes in the store, for the store read directly.
    store.client(ckey, csecret).put_object(Bucket="cache", Key="direct/whole", Body=whole)
    reads = pattern(size)
    read_bytes = sum(b - a + 1 for _, a, b in reads)

    def sidekick(cache_prefix=None):
        port = free_port()
        extra = []
        if cache_prefix is not None:
            extra = ["--cache-endpoint", store.url, "--cache-bucket", "cache",
                     "--cache-access-key", ckey, "--cache-secret-key", csecret,
                     "--cache-region", "garage", "--cache-health-port", str(store.admin),
                     "--cache-health-path", "/health", "--cache-min-size", "0",
                     "--cache-prefix", cache_prefix]
        argv = pin([sidekick_bin, "-a", f"127.0.0.1:{port}", "--health-port",
                    str(origin.admin), "--health-path", "/health",
                    "--health-duration", "500ms", *extra, relay.url])
        proc = procs.start(argv, work / f"sidekick-{port}.log")
        wait_until("sidekick", lambda: http_ok(f"http://127.0.0.1:{port}/v1/health"))
        if cache_prefix is not None:
            log = Path(proc.log_path)
            wait_until("the cache check", lambda: "readable and writable" in log.read_text())
        return proc, port

    def read_pattern(port):
        """Seconds for the whole pattern on one keep-alive client, the origin's bytes
        meanwhile, and each answer's X-Cache; every byte is checked."""
        client = origin.client(okey, osecret, f"http://127.0.0.1:{port}")
        before = relay.bytes_sent()
        tags = []
        start = time.monotonic()
        for spec, a, b in reads:
            r = client.get_object(Bucket="origin", Key="parquet", Range=spec)
            body = r["Body"].read()
            if body != blob[a:b + 1]:
                raise SystemExit(f"bench: {spec} through sidekick: wrong bytes")
            tags.append(r["ResponseMetadata"]["HTTPHeaders"].get("x-cache", "-"))
        seconds = time.monotonic() - start
        return seconds, relay.bytes_sent() - before, tags

    none_t, cold_t, warm_t, cold_o, warm_o, rss = [], [], [], [], [], []
    warm_tags = []
    for run_no in range(args.runs):
        proc, port = sidekick()
        t, _, _ = read_pattern(port)
        none_t.append(t)
        procs.stop(proc)

        prefix = f"r{run_no}-{time.monotonic_ns()}/"
        proc, port = sidekick(prefix)
        peak = RssPeak(proc.pid)
        t, o, _ = read_pattern(port)
        fills_written([port])
        rss.append(peak.stop())
        cold_t.append(t)
        cold_o.append(o)
        procs.stop(proc)

        proc, port = sidekick(prefix)
        t, o, tags = read_pattern(port)
        warm_t.append(t)
        warm_o.append(o)
        warm_tags = tags
        procs.stop(proc)

    # Whole reads of the large object.
    far = curl(f"{relay.url}/origin/whole", okey, osecret)
    proc, port = sidekick(f"whole-{time.monotonic_ns()}/")
    peak = RssPeak(proc.pid)
    curl(f"http://127.0.0.1:{port}/origin/whole", okey, osecret)
    fills_written([port])
    rss.append(peak.stop())
    hits_before = metric(port, 'sidekick_cache_requests_total{result="hit"}')
    # The store read directly and a hit, one after the other in each run: this
    # machine's pace drifts between runs more than between two reads.
    pairs = [(curl(f"{store.url}/cache/direct/whole", ckey, csecret),
              curl(f"http://127.0.0.1:{port}/origin/whole", okey, osecret))
             for _ in range(args.runs)]
    direct_store = statistics.median(d for d, _ in pairs)
    warm_whole = statistics.median(h for _, h in pairs)
    to_store = statistics.median(d / h for d, h in pairs)
    whole_hits = metric(port, 'sidekick_cache_requests_total{result="hit"}') - hits_before
    procs.stop(proc)

    med = statistics.median
    none, cold, warm = med(none_t), med(cold_t), med(warm_t)
    warm_share = med(warm_o) / read_bytes
    far_rate, store_rate, warm_rate = (whole_size / far, whole_size / direct_store,
                                       whole_size / warm_whole)

    def verdict(ok):
        return "met" if ok else "NOT met"

    print(f"# Parquet-like reads of a {args.size} MiB object ({len(reads)} ranges, "
          f"{read_bytes / MIB:.1f} MiB), origin paced to {args.origin_rate:g} MB/s "
          f"+{args.origin_delay:g} ms per request; median of {args.runs} runs")
    print(f"  no cache            {none * 1e3:8.0f} ms")
    print(f"  cold (sidekick A)   {cold * 1e3:8.0f} ms  {cold / none:5.2f}x no cache, "
          f"origin sent {med(cold_o) / read_bytes:6.1%} of the bytes read")
    print(f"  warm (sidekick B)   {warm * 1e3:8.0f} ms  {none / warm:5.2f}x faster than "
          f"no cache, origin sent {warm_share:6.2%}; X-Cache of the last run: "
          f"{', '.join(warm_tags)}")
    print(f"# Whole reads of a {args.whole_size} MiB object")
    print(f"  far origin direct   {far_rate / MIB:8.1f} MiB/s")
    print(f"  cache store direct  {store_rate / MIB:8.1f} MiB/s")
    print(f"  sidekick, warm      {warm_rate / MIB:8.1f} MiB/s  {warm_rate / far_rate:5.1f}x "
          f"the far origin, {to_store:4.2f}x the store (median of the runs' ratios) "
          f"({whole_hits:.0f} of {args.runs} hits)")
    print(f"# RSS of sidekick while filling: {max(rss) / MIB:.1f} MiB at most")
    print("# Targets")
    print(f"  warm >= 3x faster than no cache: {verdict(none / warm >= 3)}")
    print(f"  warm takes <= 1% of its bytes from the origin: {verdict(warm_share <= 0.01)}")
    print(f"  cold <= 1.1x no cache: {verdict(cold <= 1.1 * none)}")
    print(f"  warm whole >= 10x the far origin: {verdict(warm_rate >= 10 * far_rate)}")
    print(f"  warm whole >= 0.8x the store read directly: "
          f"{verdict(to_store >= 0.8)}")
    print(f"  RSS during fills <= 64 MiB: {verdict(max(rss) <= 64 * MIB)}")
