#!/usr/bin/env python3
"""Soak: mixed GET/PUT load through sidekick while backends are killed and restarted.

    python3 tests/soak/soak.py [--seconds 600] [--binary target/release/sidekick]

Four backends (this script, `backend` mode: one process each, sharing a data
directory) sit behind sidekick; workers PUT random objects and read them back while a
chaos thread SIGKILLs a random backend every few seconds and restarts it. Fails when a
PUT that returned 200 reads back different, when sidekick's RSS at the end is more than
10% above its level after five minutes (half of a shorter run; medians of
once-a-second readings), or when its open file descriptors grew. Everything started is stopped on exit.
"""
import argparse
import hashlib
import http.client
import http.server
import os
import random
import signal
import socket
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def backend(port, data):
    """A small object store: PUT/GET /obj/<key>, readiness at /health/ready."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body=b""):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health/ready":
                return self.reply(200)
            path = os.path.join(data, os.path.basename(self.path))
            try:
                with open(path, "rb") as f:
                    body = f.read()
            except FileNotFoundError:
                return self.reply(404)
            self.reply(200, body)

        def do_PUT(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            tmp = os.path.join(data, f".tmp-{port}-{threading.get_ident()}")
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, os.path.join(data, os.path.basename(self.path)))
            self.reply(200)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    Server(("127.0.0.1", port), Handler).serve_forever()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Soak:
    def __init__(self, args):
        self.args = args
        self.data = tempfile.mkdtemp(prefix="sidekick-soak-")
        self.ports = [free_port() for _ in range(4)]
        self.procs = {}
        self.sidekick = None
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stats = dict(puts=0, gets=0, put_failed=0, get_failed=0, corrupt=0, kills=0)

    def start_backend(self, i):
        self.procs[i] = subprocess.Popen(
            [sys.executable, __file__, "backend", str(self.ports[i]), self.data])

    def wait_port(self, port):
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"port {port} never opened")

    def start(self):
        for i in range(4):
            self.start_backend(i)
        for p in self.ports:
            self.wait_port(p)
        site = ",".join(f"http://127.0.0.1:{p}" for p in self.ports)
        self.sidekick = subprocess.Popen(
            [self.args.binary, "--address", "127.0.0.1:0", "--health-duration", "500ms", site],
            stderr=subprocess.PIPE, text=True)
        line = self.sidekick.stderr.readline()
        if "listening on" not in line:
            raise SystemExit(f"sidekick did not start: {line}")
        threading.Thread(target=lambda: [None for _ in self.sidekick.stderr], daemon=True).start()
        self.port = int(line.rsplit(":", 1)[1])
        deadline = time.time() + 20
        while self.get("/v1/health")[0] != 200:
            if time.time() > deadline:
                raise SystemExit("sidekick never became healthy")
            time.sleep(0.05)

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

    def worker(self, wid):
        conn = None
        n = 0
        while not self.stop.is_set():
            n += 1
            # A few keys per worker, rewritten in turn: the data directory stays
            # small however long the soak runs (new keys filled tens of GB in 10 min).
            key = f"w{wid}-{n % 32}"
            body = os.urandom(random.randint(1, 256) * 1024)
            digest = hashlib.sha256(body).hexdigest()
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("PUT", f"/obj/{key}", body=body)
                r = conn.getresponse()
                r.read()
                self.count("puts")
                if r.status != 200:
                    self.count("put_failed")
                    continue
                conn.request("GET", f"/obj/{key}")
                r = conn.getresponse()
                got = r.read()
                self.count("gets")
                if r.status != 200:
                    self.count("get_failed")
                elif hashlib.sha256(got).hexdigest() != digest:
                    self.count("corrupt")
            except (OSError, http.client.HTTPException):
                self.count("get_failed" if n else "put_failed")
                conn = None

    def chaos(self):
        while not self.stop.wait(random.uniform(2, 4)):
            i = random.randrange(4)
            self.procs[i].send_signal(signal.SIGKILL)
            self.procs[i].wait()
            self.count("kills")
            if self.stop.wait(random.uniform(1, 2)):
                break
            self.start_backend(i)

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
        for p in list(self.procs.values()) + [self.sidekick]:
            if p and p.poll() is None:
                p.kill()
                p.wait()
        subprocess.run(["rm", "-rf", self.data])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "backend":
        return backend(int(sys.argv[2]), sys.argv[3])
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "sidekick"))
    args = parser.parse_args()
    soak = Soak(args)
    try:
        return soak.run()
    finally:
        soak.cleanup()


if __name__ == "__main__":
    sys.exit(main())
