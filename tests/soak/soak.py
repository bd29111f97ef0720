#!/usr/bin/env python3
"""Soak: concurrent S3 PUTs and GETs through sidekick while Garage nodes are killed.

    python3 tests/soak/soak.py [--seconds 600] [--binary target/release/sidekick]

A four-node Garage cluster (replication factor 3, on 127.0.1.1-4) sits behind
sidekick; eight boto3 workers PUT random objects and read them back while a chaos
thread SIGKILLs a random node every few seconds and restarts it (the next kill waits
until the cluster is whole again, as three copies survive only one node down).
Fails when a PUT that succeeded reads back different, when sidekick's RSS at the end
is more than 10% above its level after five minutes (half of a shorter run; medians
of once-a-second readings), or when its open file descriptors grew. Needs `garage`
and boto3 (`.ci/run` installs both). Everything started is stopped on exit.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

try:
    import boto3
    from botocore.config import Config
except ImportError:
    boto3 = None

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IPS = [f"127.0.1.{n}" for n in range(1, 5)]
BUCKET = "soak"


def free_ports(count):
    """Ports free on every node address right now."""
    found = []
    while len(found) < count:
        with socket.socket() as s:
            s.bind((IPS[0], 0))
            port = s.getsockname()[1]
        try:
            for ip in IPS:
                with socket.socket() as s:
                    s.bind((ip, port))
        except OSError:
            continue
        if port not in found:
            found.append(port)
    return found


def wait(what, seconds, cond):
    deadline = time.time() + seconds
    while not cond():
        if time.time() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.1)  # paces the polling


class Garage:
    """Four Garage nodes, each on its own address with the same three ports."""

    def __init__(self, root):
        self.root = root
        self.s3_port, self.rpc_port, self.admin_port = free_ports(3)
        self.token = os.urandom(16).hex()
        self.access_key, self.secret_key = "GK" + os.urandom(12).hex(), os.urandom(32).hex()
        self.procs = {}
        secret = os.urandom(32).hex()
        for i, ip in enumerate(IPS):
            home = os.path.join(root, f"node{i}")
            os.makedirs(home)
            with open(self.config(i), "w") as f:
                f.write(f"""metadata_dir = "{home}/meta"
data_dir = "{home}/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 3
rpc_bind_addr = "{ip}:{self.rpc_port}"
rpc_public_addr = "{ip}:{self.rpc_port}"
rpc_bind_outgoing = true
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "{ip}:{self.s3_port}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "{ip}:{self.admin_port}"
admin_token = "{self.token}"
""")

    def config(self, i):
        return os.path.join(self.root, f"node{i}", "garage.toml")

    def cli(self, i, *args):
        r = subprocess.run(["garage", "-c", self.config(i), *args], capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else None

    def retry(self, i, *args):
        """The CLI until it succeeds: a node just started may not take commands yet."""
        deadline = time.time() + 60
        while (out := self.cli(i, *args)) is None:
            if time.time() > deadline:
                raise SystemExit(f"garage {' '.join(args)} kept failing")
            time.sleep(0.1)  # paces the retries
        return out

    def start(self, i):
        log = open(os.path.join(self.root, f"node{i}", "garage.log"), "ab")
        self.procs[i] = subprocess.Popen(["garage", "-c", self.config(i), "server"],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()

    def restart(self, i):
        self.start(i)
        # The restarted node connects to its peers at once, but they count it up
        # only on a connection of their own, and retry a lost peer every 30 s: each
        # is told to connect now, as an operator would.
        for j in range(len(IPS)):
            if j != i:
                self.retry(j, "node", "connect", self.ids[i])

    def kill(self, i):
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def admin(self, i, path):
        try:
            c = http.client.HTTPConnection(IPS[i], self.admin_port, timeout=5)
            c.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            r = c.getresponse()
            return r.status, r.read()
        except (OSError, http.client.HTTPException):
            return 0, b""

    def whole(self, i):
        """Node i serves and is connected to every storage node."""
        status, body = self.admin(i, "/v2/GetClusterHealth")
        return status == 200 and json.loads(body).get("status") == "healthy"

    def up(self):
        for i in range(len(IPS)):
            self.start(i)
        self.ids = ids = [self.retry(i, "node", "id", "-q").strip() for i in range(len(IPS))]
        for node in ids[1:]:
            self.retry(0, "node", "connect", node)
        # A node saves the peers it knows once a minute: one restarted sooner would
        # know none. With every peer in its configuration it connects to them at once.
        line = "bootstrap_peers = [%s]\n" % ", ".join(f'"{n}"' for n in ids)
        for i in range(len(IPS)):
            with open(self.config(i)) as f:
                config = f.read()
            with open(self.config(i), "w") as f:
                f.write(line + config)
        self.retry(0, "layout", "assign", "-z", "dc1", "-c", "1G", *(n.split("@")[0] for n in ids))
        self.retry(0, "layout", "apply", "--version", "1")
        for i in range(len(IPS)):
            wait(f"garage node {i} healthy", 60, lambda: self.whole(i))
        self.retry(0, "key", "import", "--yes", "-n", "soak", self.access_key, self.secret_key)
        self.retry(0, "bucket", "create", BUCKET)
        self.retry(0, "bucket", "allow", "--read", "--write", "--owner", BUCKET, "--key", self.access_key)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


class Soak:
    def __init__(self, args):
        self.args = args
        self.data = tempfile.mkdtemp(prefix="sidekick-soak-")
        self.garage = Garage(self.data)
        self.sidekick = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stats = dict(puts=0, gets=0, put_failed=0, get_failed=0, corrupt=0, kills=0)

    def start(self):
        g = self.garage
        g.up()
        site = ",".join(f"http://{ip}:{g.s3_port}" for ip in IPS)
        self.sidekick = subprocess.Popen(
            [self.args.binary, "--address", "127.0.0.1:0", "--health-port", str(g.admin_port),
             "--health-path", "/health", "--health-duration", "500ms", site],
            stderr=subprocess.PIPE, text=True)
        # Warnings (e.g. about the open-file limit) may come before the listening line.
        seen = []
        for line in self.sidekick.stderr:
            if "listening on" in line:
                break
            seen.append(line)
        else:
            raise SystemExit(f"sidekick did not start: {''.join(seen)}")
        threading.Thread(target=lambda: [None for _ in self.sidekick.stderr], daemon=True).start()
        self.port = int(line.rsplit(":", 1)[1])
        deadline = time.time() + 20
        while self.get("/v1/health")[0] != 200:
            if time.time() > deadline:
                raise SystemExit("sidekick never became healthy")
            time.sleep(0.05)  # paces the polling

    def get(self, path):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read()
        except OSError:
            return 0, b""

    def count(self, key, n=1):
        with self.lock:
            self.stats[key] += n

    def client(self):
        return boto3.client(
            "s3", endpoint_url=f"http://127.0.0.1:{self.port}", region_name="garage",
            aws_access_key_id=self.garage.access_key,
            aws_secret_access_key=self.garage.secret_key,
            config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30,
                          retries={"mode": "standard", "max_attempts": 5}))

    def worker(self, wid):
        s3 = self.client()
        n = 0
        while not self.stop.is_set():
            n += 1
            # A few keys per worker, rewritten in turn: the data directory stays
            # small however long the soak runs (new keys filled tens of GB in 10 min).
            key = f"w{wid}-{n % 32}"
            body = os.urandom(random.randint(1, 256) * 1024)
            digest = hashlib.sha256(body).hexdigest()
            try:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            except Exception:  # noqa: BLE001 - counted; only corruption fails the soak
                self.count("puts")
                self.count("put_failed")
                continue
            self.count("puts")
            try:
                got = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
            except Exception:  # noqa: BLE001 - a body cut short by a kill is one of these
                self.count("gets")
                self.count("get_failed")
                continue
            self.count("gets")
            if hashlib.sha256(got).hexdigest() != digest:
                self.count("corrupt")

    def chaos(self):
        g = self.garage
        while not self.stop.wait(random.uniform(2, 4)):
            i = random.randrange(len(IPS))
            g.kill(i)
            self.count("kills")
            if self.stop.wait(random.uniform(1, 2)):
                break
            g.restart(i)
            # Three copies of each object survive one node down, not two.
            while not all(g.whole(j) for j in range(len(IPS))):
                if self.stop.wait(0.1):
                    return

    def rss_kib(self):
        with open(f"/proc/{self.sidekick.pid}/status") as f:
            return int(next(l for l in f if l.startswith("VmRSS:")).split()[1])

    def fds(self):
        return len(os.listdir(f"/proc/{self.sidekick.pid}/fd"))

    def run(self):
        self.start()
        threads = [threading.Thread(target=self.worker, args=(w,)) for w in range(8)]
        threads.append(threading.Thread(target=self.chaos))
        for t in threads:
            t.start()
        # glibc's per-thread arenas grow for about five minutes under this load and
        # then stay flat (the live heap is flat throughout, heaptrack shows): RSS is
        # compared from then on, or from half-way in a shorter run.
        warm = min(300, self.args.seconds / 2)
        # RSS once a second (this also paces the run: the load goes on meanwhile).
        # Buffers in flight make single readings swing by a few MiB, so the check
        # compares the median of the seconds after warm-up with that of the last ones.
        samples, start = [], time.time()
        while time.time() - start < self.args.seconds:
            time.sleep(1)
            samples.append((time.time() - start, self.rss_kib()))
            if len(samples) == int(warm):
                fds_warm = self.fds()
        fds_end = self.fds()
        window = max(5, int(warm / 4))
        after_warm = [r for t, r in samples if warm <= t < warm + window]
        last = [r for _, r in samples[-window:]]
        rss_warm, rss_end = int(statistics.median(after_warm)), int(statistics.median(last))
        self.stop.set()
        for t in threads:
            t.join()
        s = self.stats
        print(f"soak: {self.args.seconds:.0f}s, {s['puts']} PUTs ({s['put_failed']} failed), "
              f"{s['gets']} GETs ({s['get_failed']} failed), {s['corrupt']} corrupt, "
              f"{s['kills']} backend kills, RSS {rss_warm} -> {rss_end} KiB, fds {fds_warm} -> {fds_end}")
        problems = []
        if s["corrupt"]:
            problems.append(f"{s['corrupt']} objects read back different")
        if s["puts"] == 0:
            problems.append("no PUT completed")
        if rss_end > rss_warm * 1.10:
            problems.append(f"RSS grew from {rss_warm} to {rss_end} KiB")
        # Backend connections come and go with the kills; a leak grows without bound.
        if fds_end > fds_warm + 32:
            problems.append(f"file descriptors grew from {fds_warm} to {fds_end}")
        for p in problems:
            print("FAIL:", p)
        return 1 if problems else 0

    def cleanup(self):
        if self.sidekick and self.sidekick.poll() is None:
            self.sidekick.kill()
            self.sidekick.wait()
        self.garage.stop()
        shutil.rmtree(self.data, ignore_errors=True)


def tools_missing():
    missing = []
    if shutil.which("garage") is None:
        missing.append("garage (cargo install garage@2.5.0 --locked --no-default-features "
                       "--features bundled-libs,sqlite)")
    if boto3 is None:
        missing.append("boto3 (pip install boto3)")
    return missing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "sidekick"))
    args = parser.parse_args()
    missing = tools_missing()
    if missing:
        print("soak: needs " + " and ".join(missing), file=sys.stderr)
        return 2
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
