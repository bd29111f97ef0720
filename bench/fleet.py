#!/usr/bin/env python3
"""A fleet on one cache bucket, measured: N sidekicks (--sidecars, default 32, each
--workers 1) on loopback share one cache store (a Garage node) in front of one origin
(another Garage node behind a relay paced to --origin-rate MB/s, default 80). All N
read one cold --size MiB object at the same moment, then read it again warm.

Reports, for each round: the origin's bytes as a multiple of the object (counted by
the relay, heads included) and the body bytes sidekicks took from the origin; the
time to the last byte; requests to the cache store per client read; each sidekick's
RSS (min / median / max). Then, when memory allows (--big, default 200, with a
--big-size MiB object, default 4), the same with that many sidecars. Targets, printed
met / not met: cold origin bytes <= 2x the object for the fleet (<= 3x for the big
one), warm origin body bytes 0, every byte exact.

Usage: bench/fleet.py [--sidecars N] [--size MiB] [--origin-rate MB/s]
                      [--big N] [--big-size MiB] [--sidekick-bin PATH]

Needs garage (cargo install garage@2.5.0 --locked --no-default-features --features
bundled-libs,sqlite) and boto3.
"""

import argparse
import hashlib
import http.client
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.garage import Garage, fills_written, http_ok, metric, wait_until  # noqa: E402
from harness.processes import Processes, free_port, status_kib  # noqa: E402
from harness.relay import Relay  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20
# What one sidekick takes at rest, and then some: a fleet larger than memory allows
# is not started.
RSS_GUESS = 40 * MIB


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sidecars", type=int, default=32)
    ap.add_argument("--size", type=int, default=32, help="object size in MiB")
    ap.add_argument("--origin-rate", type=float, default=80.0, help="MB/s")
    ap.add_argument("--big", type=int, default=200, help="sidecars of the big fleet (0: none)")
    ap.add_argument("--big-size", type=int, default=4, help="its object's size in MiB")
    ap.add_argument("--sidekick-bin", default=str(ROOT / "target/release/sidekick"))
    args = ap.parse_args()
    if not Path(args.sidekick_bin).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="sidekick-fleet-bench."))
    try:
        bench = Bench(args, procs, work)
        ok = bench.round(args.sidecars, args.size, 2.0)
        if args.big:
            need = args.big * RSS_GUESS
            have = available()
            if need > have:
                print(f"# {args.big} sidecars not started: they would need about "
                      f"{need / MIB:.0f} MiB, {have / MIB:.0f} MiB is available")
            else:
                ok = bench.round(args.big, args.big_size, 3.0) and ok
        sys.exit(0 if ok else 1)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) << 10
    return 0


class Bench:
    def __init__(self, args, procs, work):
        self.args, self.procs, self.work = args, procs, work
        self.origin = Garage(procs, work / "origin")
        self.store = Garage(procs, work / "store")
        self.okey, self.osecret = self.origin.bucket_with_key("origin")
        self.ckey, self.csecret = self.store.bucket_with_key("cache")
        self.relay = Relay(procs, work, self.origin.s3, args.origin_rate, 0)
        self.up = self.origin.client(self.okey, self.osecret)
        # Signed for the relay's host: sidekick passes the Host on unchanged.
        self.signer = self.origin.client(self.okey, self.osecret, self.relay.url)

    def sidekick(self, prefix):
        port = free_port()
        argv = [self.args.sidekick_bin, "-a", f"127.0.0.1:{port}", "--workers", "1",
                "--health-port", str(self.origin.admin), "--health-path", "/health",
                "--health-duration", "500ms",
                "--cache-endpoint", self.store.url, "--cache-bucket", "cache",
                "--cache-access-key", self.ckey, "--cache-secret-key", self.csecret,
                "--cache-region", "garage", "--cache-health-port", str(self.store.admin),
                "--cache-health-path", "/health", "--cache-min-size", "0",
                "--cache-prefix", prefix, self.relay.url]
        proc = self.procs.start(argv, self.work / f"sidekick-{port}.log")
        return proc, port

    def start_fleet(self, n, prefix):
        fleet = [self.sidekick(prefix) for _ in range(n)]
        for proc, port in fleet:
            log = Path(proc.log_path)
            wait_until("sidekick", lambda: http_ok(f"http://127.0.0.1:{port}/v1/health"), 120)
            wait_until("the cache check", lambda: "readable and writable" in log.read_text(),
                       120)
        return fleet

    def read_all(self, fleet, key, blob):
        """Every sidekick GETs `key` at once; (seconds to the last byte, wrong reads)."""
        url = urllib.parse.urlsplit(self.signer.generate_presigned_url(
            "get_object", Params={"Bucket": "origin", "Key": key}, ExpiresIn=600))
        target = f"{url.path}?{url.query}"
        want = hashlib.sha256(blob).hexdigest()
        barrier = threading.Barrier(len(fleet) + 1)
        ends, wrong = [], []

        def read(port):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            barrier.wait()
            try:
                conn.putrequest("GET", target, skip_host=True)
                conn.putheader("Host", url.netloc)
                conn.endheaders()
                r = conn.getresponse()
                h = hashlib.sha256()
                while chunk := r.read(1 << 16):
                    h.update(chunk)
                if r.status != 200 or h.hexdigest() != want:
                    wrong.append((port, r.status))
            except OSError as e:
                wrong.append((port, str(e)))
            ends.append(time.monotonic())

        threads = [threading.Thread(target=read, args=(port,)) for _, port in fleet]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.monotonic()
        for t in threads:
            t.join()
        return max(ends) - start, wrong

    def sums(self, fleet, name):
        return sum(metric(port, name) for _, port in fleet)

    def round(self, n, size_mib, cold_target):
        size = size_mib * MIB
        key = f"fleet-{n}-{time.monotonic_ns()}"
        blob = random.Random(n).randbytes(size)
        self.up.put_object(Bucket="origin", Key=key, Body=blob)
        fleet = self.start_fleet(n, f"{key}/")
        kind = ("atomic" if "claimed atomically" in Path(fleet[0][0].log_path).read_text()
                else "best effort")
        print(f"# {n} sidecars (--workers 1), one {size_mib} MiB object, origin paced to "
              f"{self.args.origin_rate:g} MB/s; claims {kind}")
        results = {}
        for name in ("cold", "warm"):
            relay0 = self.relay.bytes_sent()
            body0 = self.sums(fleet, 'sidekick_cache_bytes_total{source="origin"}')
            store0 = self.sums(fleet, "sidekick_cache_store_requests_total")
            outcomes0 = {r: self.sums(fleet, f'sidekick_cache_requests_total{{result="{r}"}}')
                         for r in ("hit", "miss", "error")}
            seconds, wrong = self.read_all(fleet, key, blob)
            fills_written([port for _, port in fleet])
            sent = (self.relay.bytes_sent() - relay0) / size
            body = (self.sums(fleet, 'sidekick_cache_bytes_total{source="origin"}')
                    - body0) / size
            store = (self.sums(fleet, "sidekick_cache_store_requests_total") - store0) / n
            rss = sorted(status_kib([p.pid], "VmHWM") / 1024 for p, _ in fleet)
            results[name] = (sent, body, wrong)
            outcomes = {r: self.sums(fleet, f'sidekick_cache_requests_total{{result="{r}"}}')
                        - outcomes0[r] for r in outcomes0}
            print(f"  {name}: origin sent {sent:6.2f}x the object ({body:.2f}x as bodies to "
                  f"clients), last byte after {seconds:6.2f} s, {store:5.1f} cache store "
                  f"requests per read, {len(wrong)} wrong reads {wrong[:3]}; "
                  f"{outcomes['hit']:.0f} hits, {outcomes['miss']:.0f} misses, "
                  f"{outcomes['error']:.0f} cache errors (the origin answered)")
            print(f"        peak RSS per sidekick: min {rss[0]:.1f} MiB, median "
                  f"{statistics.median(rss):.1f} MiB, max {rss[-1]:.1f} MiB")
        claims = {r: self.sums(fleet, f'sidekick_cache_claims_total{{result="{r}"}}')
                  for r in ("won", "waited", "expired")}
        print(f"  claims: {claims['won']:.0f} won, {claims['waited']:.0f} waited, "
              f"{claims['expired']:.0f} expired")
        for proc, _ in fleet:
            self.procs.stop(proc)

        def verdict(ok):
            return "met" if ok else "NOT met"

        cold_ok = results["cold"][0] <= cold_target
        warm_ok = results["warm"][1] == 0
        exact = not results["cold"][2] and not results["warm"][2]
        print(f"  cold origin bytes <= {cold_target:g}x the object: {verdict(cold_ok)}")
        print(f"  warm origin body bytes 0: {verdict(warm_ok)}")
        print(f"  every byte exact: {verdict(exact)}")
        return cold_ok and warm_ok and exact


if __name__ == "__main__":
    main()
