"""Mixed S3 workload for the local demo: PUT, GET and LIST through sidekick.

Writer threads PUT objects at the same time, each its own keys; reader threads GET
objects already written, checking each body against what was PUT, and LIST now and
then. Half of the reads go to a hot set (the first --hot objects written), as jobs
that read the same files again do, and a quarter of the reads are of one byte range
(`bytes=a-b` or a suffix `bytes=-n`). The run lasts --duration seconds, then a final
paginated LIST must show exactly the objects written.

While it runs, one progress line is redrawn in place (a plain line every few seconds
when stdout is not a terminal), and new lines of the files given with --tail are
printed above it. At the end it prints a summary, with the requests sidekick sent
to each backend and each backend's downtime taken from sidekick's metrics, and exits
1 if any operation failed. With --cache (sidekick runs with its S3 cache) the summary
adds the cache's hits, misses and bypasses, and the bytes it saved the origin, from
the same metrics and from the X-Cache header of each GET; no hit at all is a failure.
"""
import argparse
import collections
import hashlib
import os
import queue
import random
import re
import sys
import threading
import time
import urllib.request

import boto3
import botocore.exceptions
import urllib3.exceptions
from botocore.config import Config

SIZES = [16 << 10, 64 << 10, 256 << 10, 1 << 20]
# A body cut short: the backend died while sending it, and sidekick cut the client's
# connection rather than let a short body look complete. boto3 retries a request
# that failed, but not the read of a body that already began, so the workload
# re-reads it (as boto3's own download_file does).
CUT_SHORT = tuple(
    cls
    for cls in (
        getattr(botocore.exceptions, "ResponseStreamingError", None),
        botocore.exceptions.IncompleteReadError,
        urllib3.exceptions.ProtocolError,
    )
    if cls is not None
)
BUCKET = "sidekick-demo"  # --bucket
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SAMPLE = re.compile(r"(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ops = {"PUT": 0, "GET": 0, "LIST": 0}
        self.errors = 0
        self.retries = 0
        self.rereads = 0
        self.bytes = 0
        self.ranged = 0
        self.x_cache = collections.Counter()  # X-Cache header of each GET: HIT, MISS, BYPASS

    def done(self, op, nbytes, response, ranged=False):
        meta = response.get("ResponseMetadata", {})
        with self.lock:
            self.ops[op] += 1
            self.bytes += nbytes
            self.retries += meta.get("RetryAttempts", 0)
            if op == "GET":
                self.ranged += ranged
                self.x_cache[meta.get("HTTPHeaders", {}).get("x-cache", "none")] += 1

    def failed(self):
        with self.lock:
            self.errors += 1

    def reread(self):
        with self.lock:
            self.rereads += 1

    def snapshot(self):
        with self.lock:
            return dict(self.ops), self.errors, self.retries + self.rereads, self.bytes


def body_for(index):
    size = SIZES[index % len(SIZES)]
    return random.Random(index).randbytes(size)


def writer(s3, stats, objects, keys, stop, problems, wid):
    index = 0
    while not stop.is_set():
        key = f"obj/w{wid}-{index:06d}"
        seed = wid << 32 | index
        body = body_for(seed)
        try:
            resp = s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        except Exception as e:  # noqa: BLE001 - every failure is reported
            stats.failed()
            problems.put(f"PUT {key}: {e}")
        else:
            objects[key] = (hashlib.md5(body).hexdigest(), seed)
            keys.append(key)
            stats.done("PUT", len(body), resp)
        index += 1


def pick_range(rng, size):
    """A Range header value and the (start, end) it selects, end exclusive."""
    if rng.random() < 0.25:
        n = rng.randrange(1, size + 1)
        return f"bytes=-{n}", (size - n, size)
    start = rng.randrange(size)
    end = rng.randrange(start, size)
    return f"bytes={start}-{end}", (start, end + 1)


def reader(s3, stats, objects, keys, stop, problems, seed, hot):
    rng = random.Random(seed)
    while not stop.is_set():
        if not keys:
            time.sleep(0.05)
            continue
        try:
            if rng.random() < 0.1:
                resp = s3.list_objects_v2(Bucket=BUCKET, Prefix="obj/", MaxKeys=200)
                stats.done("LIST", 0, resp)
                continue
            pool = min(hot, len(keys)) if rng.random() < 0.5 else len(keys)
            key = keys[rng.randrange(pool)]
            digest, body_seed = objects[key]
            if rng.random() < 0.25:
                header, (start, end) = pick_range(rng, SIZES[body_seed % len(SIZES)])
                resp, body = get_object(s3, stats, key, Range=header)
                ok = body == body_for(body_seed)[start:end]
            else:
                header = None
                resp, body = get_object(s3, stats, key)
                ok = hashlib.md5(body).hexdigest() == digest
        except Exception as e:  # noqa: BLE001 - every failure is reported
            stats.failed()
            problems.put(f"GET/LIST: {e}")
            continue
        if not ok:
            stats.failed()
            what = f" (Range: {header})" if header else ""
            problems.put(f"GET {key}{what}: body differs from what was written")
        else:
            stats.done("GET", len(body), resp, ranged=header is not None)


def get_object(s3, stats, key, attempts=3, **kwargs):
    for attempt in range(attempts):
        resp = s3.get_object(Bucket=BUCKET, Key=key, **kwargs)
        try:
            return resp, resp["Body"].read()
        except CUT_SHORT:
            if attempt == attempts - 1:
                raise
            stats.reread()


class Tail:
    def __init__(self, label, path):
        self.label, self.path, self.offset, self.partial = label, path, 0, ""

    def new_lines(self):
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                data = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return []
        data = self.partial + data
        lines = data.split("\n")
        self.partial = lines.pop()
        return [f"{self.label:<8} | {ANSI.sub('', line)}" for line in lines if line.strip()]


class Display:
    def __init__(self, tty):
        self.tty = tty
        self.last_plain = 0.0

    def line(self, text):
        if self.tty:
            sys.stdout.write("\r\x1b[K")
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def progress(self, text, final=False):
        now = time.monotonic()
        if self.tty:
            sys.stdout.write("\r\x1b[K" + text + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or now - self.last_plain >= 3:
            self.last_plain = now
            self.line(text)


def progress_text(elapsed, stats):
    ops, errors, retries, nbytes = stats.snapshot()
    total = sum(ops.values())
    mbps = nbytes / 1e6 / elapsed if elapsed > 0 else 0.0
    return (
        f"{elapsed:5.1f}s  ops {total} (put {ops['PUT']}, get {ops['GET']}, list {ops['LIST']})"
        f"  errors {errors}  retries {retries}  {mbps:.1f} MB/s"
    )


def final_listing(s3, objects):
    listed = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="obj/"):
        listed.update(o["Key"] for o in page.get("Contents", []))
    return listed == set(objects), len(listed)


def scrape(endpoint):
    """sidekick's metrics as (name, labels, value) samples."""
    with urllib.request.urlopen(f"{endpoint}/.prometheus/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = []
    for line in text.splitlines():
        m = SAMPLE.fullmatch(line)
        if m and not line.startswith("#"):
            try:
                value = float(m["value"])
            except ValueError:
                continue
            samples.append((m["name"], dict(LABEL.findall(m["labels"] or "")), value))
    return samples


def per_backend(samples):
    """(backend, requests sent to it, seconds down) for each backend."""
    found = {}
    for name, labels, value in samples:
        if name in ("sidekick_requests_total", "sidekick_downtime_seconds_total") and "endpoint" in labels:
            found.setdefault(labels["endpoint"], {})[name] = value
    return [(url, int(v.get("sidekick_requests_total", 0)), v.get("sidekick_downtime_seconds_total", 0.0))
            for url, v in sorted(found.items())]


def cache_figures(samples):
    """The cache's counters: results by kind, bytes by source, fills, nodes up."""
    results, sources, nodes, other = collections.Counter(), collections.Counter(), {}, collections.Counter()
    for name, labels, value in samples:
        if name == "sidekick_cache_requests_total":
            results[labels.get("result", "?")] += value
        elif name == "sidekick_cache_bytes_total":
            sources[labels.get("source", "?")] += value
        elif name == "sidekick_cache_up":
            nodes[labels.get("endpoint", "?")] = value
        elif name.startswith("sidekick_cache_"):
            other[name] += value
    return results, sources, nodes, other


def print_cache(samples, stats):
    """The cache lines of the summary; False when no GET was a hit."""
    results, sources, nodes, other = cache_figures(samples)
    seen = stats.x_cache
    hits = int(results["hit"])
    print(f"  cache         {hits} hits, {int(results['miss'])} misses, {int(results['bypass'])} bypasses,"
          f" {int(results['error'])} errors (sidekick_cache_requests_total)")
    print("                X-Cache on GETs: " + ", ".join(f"{seen[k]} {k}" for k in ("HIT", "MISS", "BYPASS"))
          + "".join(f", {n} {k}" for k, n in sorted(seen.items()) if k not in ("HIT", "MISS", "BYPASS")))
    saved, origin = sources["cache"], sources["origin"]
    share = f" ({100 * saved / (saved + origin):.0f}% of cacheable bytes)" if saved + origin else ""
    print(f"  origin saved  {saved / 1e6:.1f} MB sent from the cache, not the origin{share};"
          f" {origin / 1e6:.1f} MB from the origin (sidekick_cache_bytes_total)")
    print(f"  fills         {other['sidekick_cache_fill_bytes_total'] / 1e6:.1f} MB written to the cache,"
          f" {int(other['sidekick_cache_fills_dropped_total'])} dropped,"
          f" {int(other['sidekick_cache_errors_total'])} cache request errors; nodes "
          + (", ".join(f"{url} {'up' if up else 'DOWN'}" for url, up in sorted(nodes.items())) or "none"))
    return hits > 0 and seen["HIT"] > 0


def main():
    global BUCKET
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--endpoint", required=True, help="sidekick's URL")
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--duration", type=float, default=40.0, help="seconds of load")
    ap.add_argument("--region", default="us-east-1", help="the region the store signs for")
    ap.add_argument("--bucket", default=BUCKET, help="an existing bucket the key may write to")
    ap.add_argument("--writers", type=int, default=3, help="writer threads")
    ap.add_argument("--readers", type=int, default=3, help="reader threads")
    ap.add_argument("--hot", type=int, default=24, help="half of the reads go to the first HOT objects written")
    ap.add_argument("--cache", action="store_true",
                    help="sidekick runs with its S3 cache: report it, and fail if no GET was a hit")
    ap.add_argument("--tail", action="append", default=[], metavar="LABEL=FILE",
                    help="print new lines of FILE above the progress line")
    args = ap.parse_args()
    BUCKET = args.bucket

    config = Config(
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 3},
        connect_timeout=3,
        read_timeout=20,
        max_pool_connections=args.writers + args.readers + 2,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id=args.access_key,
        aws_secret_access_key=args.secret_key,
        region_name=args.region,
        config=config,
    )

    stats, objects, keys = Stats(), {}, []
    problems, stop = queue.Queue(), threading.Event()
    tails = [Tail(*spec.split("=", 1)) for spec in args.tail]
    display = Display(sys.stdout.isatty())
    threads = [
        threading.Thread(target=writer, args=(s3, stats, objects, keys, stop, problems, wid))
        for wid in range(args.writers)
    ]
    threads += [
        threading.Thread(target=reader, args=(s3, stats, objects, keys, stop, problems, seed, args.hot))
        for seed in range(args.readers)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    shown_problems = 0
    try:
        while True:
            elapsed = time.monotonic() - start
            for tail in tails:
                for line in tail.new_lines():
                    display.line(line)
            while not problems.empty():
                problem = problems.get()
                shown_problems += 1
                if shown_problems <= 10:
                    display.line(f"error    | {problem}")
            if elapsed >= args.duration:
                break
            display.progress(progress_text(elapsed, stats))
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join()
    elapsed = time.monotonic() - start
    for tail in tails:
        for line in tail.new_lines():
            display.line(line)
    while not problems.empty():
        display.line(f"error    | {problems.get()}")
    display.progress(progress_text(elapsed, stats), final=True)

    try:
        listing_ok, listed = final_listing(s3, objects)
    except Exception as e:  # noqa: BLE001 - a failed listing is reported
        display.line(f"error    | final LIST: {e}")
        listing_ok, listed = False, 0
    if not listing_ok:
        stats.failed()
    ops, errors, retries, nbytes = stats.snapshot()
    total = sum(ops.values())
    print()
    print("summary")
    print(f"  load          {elapsed:.1f} s, {args.writers} writers + {args.readers} readers through {args.endpoint}")
    print(f"  operations    {total} ({ops['PUT']} PUT, {ops['GET']} GET of which {stats.ranged} ranged,"
          f" {ops['LIST']} LIST), {total / elapsed:.0f} ops/s")
    print(f"  errors        {errors}")
    print(f"  retries       {retries} client-side: {stats.retries} by boto3, {stats.rereads} re-read of a body cut short")
    print(f"  throughput    {nbytes / 1e6:.1f} MB in {elapsed:.1f} s = {nbytes / 1e6 / elapsed:.1f} MB/s")
    print(f"  checks        each GET body, whole or ranged, against what was PUT; final LIST shows {listed} of {len(objects)} objects"
          + ("" if listing_ok else "  << MISMATCH"))
    try:
        samples = scrape(args.endpoint)
    except OSError as e:
        samples = []
        print(f"  (no metrics from sidekick: {e})")
    backends = per_backend(samples)
    cache_ok = True
    if args.cache:
        cache_ok = print_cache(samples, stats)
    if backends:
        print("  per backend   requests sent (sidekick_requests_total), time down (sidekick_downtime_seconds_total)")
        for url, n, down in backends:
            print(f"    {url:<26} {n:>6}" + (f"   down {down:.1f} s" if down >= 0.05 else ""))
    if errors or ops["PUT"] == 0 or ops["GET"] == 0 or not cache_ok:
        print("FAILED" + ("" if cache_ok else ": no GET was a cache hit"))
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
