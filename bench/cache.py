#!/usr/bin/env python3
"""The S3 cache's block size, measured: one Garage node on loopback is both the
origin (one bucket) and the cache store (another bucket, its own key); one object is
read through sidekick (release build) with the cache at each block size: a miss (the
origin's bytes, filling the cache), then hits. Also read directly and through sidekick
without the cache, in the same run. Prints medians of wall time per GET and ratios
to the direct read; curl signs with SigV4 and discards the body.

With --origin-rate, the origin is reached through a relay that paces its answers to
that many MB/s (a far or busy origin; the cache store stays on loopback).

Usage: bench/cache.py [--size MiB] [--runs N] [--blocks 1,4,8] [--origin-rate MB/s]
                      [--sidekick-bin PATH]

Needs garage (cargo install garage@2.5.0 --locked --no-default-features --features
bundled-libs,sqlite), curl, taskset and boto3 (for the upload); sidekick and load are pinned to different
cores when there are two.
"""

import argparse
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness.processes import Processes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REGION = "garage"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"bench/cache.py: timed out waiting for {what}")
        time.sleep(0.05)


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Garage:
    """One node, replication factor 1, data in a temporary directory."""

    def __init__(self, procs, work):
        self.bin = shutil.which("garage") or sys.exit("bench/cache.py: garage is not installed")
        self.s3, self.rpc, self.admin = free_port(), free_port(), free_port()
        self.conf = work / "garage.toml"
        self.conf.write_text(f"""metadata_dir = "{work}/meta"
data_dir = "{work}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{self.rpc}"
rpc_public_addr = "127.0.0.1:{self.rpc}"
rpc_secret = "{secrets.token_hex(32)}"
[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{self.s3}"
[admin]
api_bind_addr = "127.0.0.1:{self.admin}"
admin_token = "{secrets.token_hex(16)}"
""")
        procs.start([self.bin, "-c", str(self.conf), "server"], work / "garage.log")
        wait_until("garage", lambda: self.cli_ok("node", "id", "-q"))
        node = self.cli("node", "id", "-q").split("@")[0]
        self.cli("layout", "assign", "-z", "z", "-c", "1G", node)
        self.cli("layout", "apply", "--version", "1")
        wait_until("garage health", lambda: http_ok(f"http://127.0.0.1:{self.admin}/health"))

    def cli_ok(self, *args):
        return subprocess.run([self.bin, "-c", str(self.conf), *args],
                              capture_output=True).returncode == 0

    def cli(self, *args):
        deadline = time.monotonic() + 30
        while True:
            r = subprocess.run([self.bin, "-c", str(self.conf), *args],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return r.stdout.strip()
            if time.monotonic() > deadline:
                sys.exit(f"bench/cache.py: garage {' '.join(args)}: {r.stderr}")
            time.sleep(0.2)

    def bucket_with_key(self, bucket):
        key = "GK" + secrets.token_hex(12)
        secret = secrets.token_hex(32)
        self.cli("key", "import", "--yes", "-n", bucket, key, secret)
        self.cli("bucket", "create", bucket)
        self.cli("bucket", "allow", "--read", "--write", "--owner", bucket, "--key", key)
        return key, secret


RELAY = r"""
import asyncio, sys, time
listen, target, rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) * 1e6

async def pipe(reader, writer, paced):
    start, sent = time.monotonic(), 0
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            if paced:
                sent += len(data)
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    except OSError:
        pass
    finally:
        writer.close()

async def serve(client_r, client_w):
    origin_r, origin_w = await asyncio.open_connection("127.0.0.1", target)
    await asyncio.gather(pipe(client_r, origin_w, False), pipe(origin_r, client_w, True))

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


def curl(url, key, secret):
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
            "--aws-sigv4", f"aws:amz:{REGION}:s3", "--user", f"{key}:{secret}",
            # Garage wants the payload hash header, which curl 7.x does not add.
            "-H", "x-amz-content-sha256: " + EMPTY_SHA256, url]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    code, seconds = out.split()
    if code != "200":
        sys.exit(f"bench/cache.py: GET {url} answered {code}")
    return float(seconds)


def metric(port, name):
    """The sum of a metric's samples whose name and labels start with `name`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/.prometheus/metrics") as r:
        lines = r.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith(name) and line[len(name)] in " {")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="object size in MiB")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--blocks", default="1,4,8", help="block sizes in MiB")
    ap.add_argument("--origin-rate", type=float, help="pace the origin's answers (MB/s)")
    ap.add_argument("--sidekick-bin", default=str(ROOT / "target/release/sidekick"))
    args = ap.parse_args()
    if not Path(args.sidekick_bin).exists():
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    two = (os.cpu_count() or 1) >= 2
    pin = (lambda argv: ["taskset", "-c", "0", *argv]) if two else (lambda argv: argv)
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="sidekick-cache-bench."))
    try:
        g = Garage(procs, work)
        okey, osecret = g.bucket_with_key("origin")
        ckey, csecret = g.bucket_with_key("cache")
        blob = work / "object"
        blob.write_bytes(os.urandom(args.size << 20))
        store = origin = f"http://127.0.0.1:{g.s3}"
        import boto3  # only for the upload: curl 7.x does not sign S3 payloads
        boto3.client("s3", endpoint_url=origin, region_name=REGION, aws_access_key_id=okey,
                     aws_secret_access_key=osecret).upload_file(str(blob), "origin", "object")

        if args.origin_rate:
            relay = free_port()
            (work / "relay.py").write_text(RELAY)
            procs.start([sys.executable, str(work / "relay.py"), str(relay), str(g.s3),
                         str(args.origin_rate)], work / "relay.log")
            log = work / "relay.log"
            wait_until("the relay", lambda: "ready" in log.read_text())
            origin = f"http://127.0.0.1:{relay}"

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
                "--cache-region", REGION, "--cache-health-port", str(g.admin),
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
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
