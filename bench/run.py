#!/usr/bin/env python3
"""Benchmark sidekick against nginx and HAProxy on this machine.

    python3 bench/run.py          # full run, writes bench/RESULTS.md
    python3 bench/run.py --quick  # short run (CI): bench/RESULTS-quick.md

Installs the tools it needs (nginx-light, haproxy, wrk, curl) with apt-get
when they are missing, builds sidekick with `cargo build --release`, starts
four nginx backends plus every proxy under test on free loopback ports,
measures, prints the results and writes them as Markdown. Every process it
starts is stopped when it exits.

CPU budget: the proxy under test runs on CPU 1; the load generators, the
backends and this script share CPU 0 (sidekick-default excepted, see Proxy).

Useful while developing: --only direct,nginx,haproxy (no sidekick needed),
--figures small,latency, --runs N, --no-build, --sidekick-bin PATH. A run
that is not a complete full one writes bench/RESULTS-quick.md or
bench/RESULTS-partial.md instead of bench/RESULTS.md.
"""

import argparse
import atexit
import datetime
import fcntl
import http.client
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import urllib.request
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SIDEKICK = ROOT / "target" / "release" / "sidekick"

PROXIES = ["direct", "sidekick", "sidekick-default", "nginx", "haproxy"]
FIGURES = ["small", "latency", "large", "memory", "failover", "tls"]
APT_PACKAGES = ["nginx-light", "haproxy", "wrk", "curl", "openssl"]
TOOLS = ["nginx", "haproxy", "wrk", "curl", "taskset", "openssl"]

GIB = 1 << 30
MIB = 1 << 20
SMALL_BODY = 100
BACKENDS = 4

# Durations and repetitions. --quick keeps every figure but shortens it so CI
# proves the harness works in well under three minutes.
SETTINGS = {
    "full": dict(runs=3, small_s=10, latency_s=10, failover_s=20,
                 kill_at=5, restart_at=12, settle_s=3, idle_conns=1000),
    "quick": dict(runs=1, small_s=3, latency_s=3, failover_s=6,
                  kill_at=2, restart_at=4, settle_s=1, idle_conns=1000),
}
# Figure 2's steady rate: 16 connections, each waiting 8 ms on average
# between requests: about 2,000 req/s, a small fraction of what any of the
# proxies sustains on one core. (h2load --rps was tried: its clients fire
# in step, so it measures queueing behind bursts, ~0.8 ms p50 even direct.)
LATENCY_CONNS = 16
LATENCY_MEAN_DELAY_MS = 8


# ---------------------------------------------------------------- processes

class Processes:
    """Everything this script starts, each in its own process group so that
    a proxy's or nginx's workers go down with it."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log_path, cpu=None):
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        log = open(log_path, "ab")
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        proc.log_path = log_path
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM, timeout=5.0):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Reap stragglers (an nginx worker outliving a killed master).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(reversed(self.procs)):
            self.stop(proc, timeout=3.0)


PROCS = Processes()
TMP_DIRS = []


def cleanup():
    PROCS.stop_all()
    for d in TMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)
    TMP_DIRS.clear()


def on_signal(signum, _frame):
    # Unwind through the try/finally in main(), which cleans up.
    raise SystemExit(128 + signum)


def group_pids(pgid):
    """PIDs of every process in a process group (nginx: master + worker)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Fields after the ")" that ends the command name: state ppid pgrp.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def status_kib(pids, field):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids):
    """User + system CPU time of `pids` (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_busy_ticks():
    """Busy and total clock ticks per CPU from /proc/stat: {cpu: (busy, total)}."""
    ticks = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            values = [int(v) for v in values]
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            ticks[int(name[3:])] = (sum(values) - idle, sum(values))
    return ticks


def busy_percent(before, after, cpu):
    busy = after[cpu][0] - before[cpu][0]
    total = after[cpu][1] - before[cpu][1]
    return 100.0 * busy / total if total else 0.0


def busy_seconds(before, after, cpu):
    """CPU time `cpu` spent busy between two cpu_busy_ticks() readings: user,
    system, interrupt and softirq time of whatever ran there."""
    return (after[cpu][0] - before[cpu][0]) / os.sysconf("SC_CLK_TCK")


def free_port(taken=set()):  # taken: ports already handed out this run
    """A free loopback port: bind port 0 and let the kernel choose."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in taken:
            taken.add(port)
            return port


def http_status(port, path, timeout=1.0, tls=False):
    try:
        if tls:
            # The bench's own self-signed certificate: not verified.
            conn = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=timeout,
                context=ssl._create_unverified_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        return resp.status
    except (OSError, http.client.HTTPException):
        return None


def wait_http(port, path, proc=None, timeout=30.0, tls=False):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(port, path, tls=tls) == 200:
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}; "
                               f"log:\n{tail(proc.log_path)}")
        time.sleep(0.1)
    log = f"; log:\n{tail(proc.log_path)}" if proc is not None else ""
    raise RuntimeError(f"GET {path} on port {port} not 200 after "
                       f"{timeout:.0f}s{log}")


def tail(path, lines=15):
    try:
        return "\n".join(Path(path).read_text(errors="replace")
                         .splitlines()[-lines:])
    except OSError:
        return "(no log)"


def render(template, **values):
    text = (BENCH / template).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    left = re.findall(r"\{\{\w+\}\}", text)
    if left:
        raise ValueError(f"unfilled {', '.join(left)} in {template}")
    return text


# ---------------------------------------------------------------- setup

def ensure_tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}; run as root or: "
                 f"apt-get install -y {' '.join(APT_PACKAGES)}")
    print(f"installing {' '.join(APT_PACKAGES)} (missing: "
          f"{', '.join(missing)})", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Stop the packages' maintainer scripts from starting system nginx and
    # HAProxy services: this script runs its own instances.
    policy = Path("/usr/sbin/policy-rc.d")
    added_policy = not policy.exists()
    if added_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y"] + APT_PACKAGES,
                       check=True, env=env)
    finally:
        if added_policy:
            policy.unlink()


def build_sidekick():
    """Returns None when sidekick is usable, else the reason it is not."""
    if shutil.which("cargo") is None:
        return "cargo not found"
    print("building sidekick: cargo build --release", flush=True)
    if subprocess.run(["cargo", "build", "--release"], cwd=ROOT).returncode:
        return "cargo build --release failed"
    return sidekick_usable(SIDEKICK)


def sidekick_usable(binary):
    if not binary.exists():
        return f"{binary} does not exist"
    try:
        help_run = subprocess.run([str(binary), "--help"],
                                  capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sidekick --help failed: {e}"
    if help_run.returncode:
        return f"sidekick --help exited with {help_run.returncode}"
    return None


def make_data(data_dir):
    """Objects served by the backends, on tmpfs so they come from memory.
    Real bytes, not sparse files: a hole would skip the page copies."""
    www = data_dir / "www"
    www.mkdir()
    (www / "small").write_bytes(b"x" * (SMALL_BODY - 1) + b"\n")
    chunk = os.urandom(MIB)
    for name, size in (("128m", 128 * MIB), ("1g", GIB)):
        with open(www / name, "wb") as f:
            for _ in range(size // MIB):
                f.write(chunk)
    return www


def cpu_layout():
    """(load generator + backends CPU, proxy CPU)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        print("warning: one CPU only; proxy and load generator share it")
        return cpus[0], cpus[0]
    return cpus[0], cpus[1]


def raise_fd_limit():
    # 1,000 idle client connections live in this process; wrk, nginx and
    # HAProxy inherit the limit too.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ---------------------------------------------------------------- backends

class Backend:
    """One nginx master serving the test objects."""

    def __init__(self, ctx, index):
        self.ctx = ctx
        self.name = f"backend-{index}"
        self.port = free_port()
        self.conf = ctx.dir / f"{self.name}.conf"
        self.conf.write_text(render(
            "nginx-backend.conf.tmpl", user=ctx.nginx_user, dir=ctx.dir,
            name=self.name, port=self.port, www=ctx.www,
            small="x" * (SMALL_BODY - 1) + "\\n"))
        self.proc = None

    def start(self):
        self.proc = PROCS.start(
            ["nginx", "-c", str(self.conf), "-p", str(self.ctx.dir),
             "-e", "stderr"], self.ctx.dir / f"{self.name}.log",
            cpu=self.ctx.gen_cpu)
        wait_http(self.port, "/health/ready", self.proc)

    def kill(self):
        """A crash, not a graceful shutdown: SIGKILL master and worker."""
        PROCS.stop(self.proc, sig=signal.SIGKILL)


# The PUT sink. nginx answers a `return 200` location before the request body
# has arrived and drains the body afterwards, which would let a proxy finish
# early. Making nginx read the body first (echo_read_request_body from the
# echo module) stores it in memory or a temp file, and measured ~1.5x slower
# than this loop. So PUTs go to four sink ports served by
# `run.py --put-sink`: it takes in every byte (Content-Length or chunked) and
# only then replies, with the byte count, which the figure checks. A body
# with a length is spliced from the socket through a pipe to /dev/null, so
# the sink copies nothing, as the GET backends send files with sendfile:
# neither side's backend may be what limits the figure. Chunked bodies are
# read into a reused buffer.

SPLICE_PIPE = MIB
# fcntl.h's value; the fcntl module names it from Python 3.10 on.
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Discard:
    """A pipe into /dev/null: where spliced body bytes go."""

    def __init__(self):
        self.r, self.w = os.pipe()
        try:
            fcntl.fcntl(self.w, F_SETPIPE_SZ, SPLICE_PIPE)
        except OSError:  # pipe-max-size below 1 MiB: the default pipe works too
            pass
        self.null = os.open(os.devnull, os.O_WRONLY)

    def close(self):
        for fd in (self.r, self.w, self.null):
            os.close(fd)


def sink_read_exact(rfile, n, buf, conn=None, discard=None):
    """Takes in n body bytes: first what rfile has buffered, then straight
    from the socket (spliced when a Discard is given, else read into buf)."""
    got = 0
    while got < n:
        ahead = rfile.peek(1)[:n - got]  # buffered bytes, or one read's worth
        if not ahead:
            raise ConnectionError("body cut short")
        got += len(rfile.read(len(ahead)))
        # The buffer is empty now: the rest may bypass it.
        while got < n and discard is not None:
            k = os.splice(conn.fileno(), discard.w, min(n - got, SPLICE_PIPE))
            if not k:
                raise ConnectionError("body cut short")
            got += k
            while k:
                k -= os.splice(discard.r, discard.null, k)
        while got < n and discard is None:
            k = rfile.readinto(buf[:min(len(buf), n - got)])
            if not k:
                raise ConnectionError("body cut short")
            got += k
    return got


def sink_connection(conn):
    discard = Discard() if hasattr(os, "splice") else None
    try:
        sink_requests(conn, discard)
    finally:
        if discard is not None:
            discard.close()


def sink_requests(conn, discard):
    buf = memoryview(bytearray(MIB))
    rfile = conn.makefile("rb", buffering=64 * 1024)
    with conn, rfile:
        while True:
            line = rfile.readline(65536)
            if not line:
                return
            if not line.strip():
                continue
            method, target = line.split()[:2]
            headers = {}
            while True:
                h = rfile.readline(65536)
                if not h.strip():
                    break
                key, _, value = h.partition(b":")
                headers[key.strip().lower()] = value.strip().lower()
            if headers.get(b"expect") == b"100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            received = 0
            if b"chunked" in headers.get(b"transfer-encoding", b""):
                while True:
                    size = int(rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while rfile.readline().strip():  # trailers
                            pass
                        break
                    received += sink_read_exact(rfile, size, buf)
                    rfile.readline()
            else:
                received = sink_read_exact(
                    rfile, int(headers.get(b"content-length", b"0")), buf,
                    conn, discard)
            if method == b"PUT" or target == b"/health/ready":
                status, body = b"200 OK", b"%d\n" % received
            else:
                status, body = b"404 Not Found", b"not found\n"
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: "
                         + b"%d" % len(body) + b"\r\n\r\n" + body)
            if headers.get(b"connection") == b"close":
                return


def serve_put_sink(ports):
    def accept_loop(listener):
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=sink_connection, args=(conn,),
                             daemon=True).start()

    for port in ports:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
        threading.Thread(target=accept_loop, args=(listener,),
                         daemon=True).start()
    threading.Event().wait()


class PutSinks:
    def __init__(self, ctx):
        self.ctx = ctx
        self.ports = [free_port() for _ in range(BACKENDS)]
        self.proc = None

    def start(self):
        self.proc = PROCS.start(
            [sys.executable, str(Path(__file__).resolve()), "--put-sink",
             ",".join(map(str, self.ports))],
            self.ctx.dir / "put-sink.log", cpu=self.ctx.gen_cpu)
        for port in self.ports:
            wait_http(port, "/health/ready", self.proc)

    def stop(self):
        PROCS.stop(self.proc)


# ---------------------------------------------------------------- proxies

class Proxy:
    """One proxy under test in front of a set of backend ports. "direct"
    has no process: its URL is the first backend's."""

    def __init__(self, ctx, name, backend_ports, suffix="", tls=False):
        self.ctx = ctx
        # Terminates TLS with the run's certificate (figure 6).
        self.tls = tls
        self.name = name
        self.instance = name + suffix
        self.backend_ports = backend_ports
        self.port = backend_ports[0] if name == "direct" else free_port()
        self.log_path = ctx.dir / f"{self.instance}.log"
        self.proc = None

    def url(self, path):
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def command(self):
        d, name = self.ctx.dir, self.instance
        if self.name.startswith("sidekick"):
            site = ",".join(f"http://127.0.0.1:{p}"
                            for p in self.backend_ports)
            argv = [str(self.ctx.sidekick),
                    "--address", f"127.0.0.1:{self.port}",
                    "--health-path", "/health/ready",
                    "--health-duration", "1s", "--quiet"]
            if self.name == "sidekick":
                argv += ["--workers", "1"]
            if self.tls:
                argv += ["--cert", str(d / "cert.pem"), "--key", str(d / "key.pem")]
            return argv + [site]
        if self.name == "nginx":
            servers = "\n".join(f"        server 127.0.0.1:{p};"
                                for p in self.backend_ports)
            conf = d / f"{name}.conf"
            conf.write_text(render(
                "nginx-proxy.conf.tmpl", user=self.ctx.nginx_user, dir=d,
                name=name, port=self.port, servers=servers))
            return ["nginx", "-c", str(conf), "-p", str(d), "-e", "stderr"]
        if self.name == "haproxy":
            servers = "\n".join(f"    server b{i} 127.0.0.1:{p}"
                                for i, p in enumerate(self.backend_ports))
            conf = d / f"{name}.cfg"
            bind = f"127.0.0.1:{self.port}"
            if self.tls:
                bind += f" ssl crt {d / 'combined.pem'} alpn http/1.1"
            conf.write_text(render("haproxy.cfg.tmpl", dir=d, name=name,
                                   bind=bind, servers=servers))
            return ["haproxy", "-db", "-f", str(conf)]
        raise ValueError(self.name)

    def start(self):
        if self.name == "direct":
            return
        # sidekick's default worker count is the number of CPUs it may run
        # on, so pinning sidekick-default to one CPU would make it the same
        # as --workers 1: it runs unpinned, sharing CPU 0 with the load.
        cpu = None if self.name == "sidekick-default" else self.ctx.proxy_cpu
        self.proc = PROCS.start(self.command(), self.log_path, cpu=cpu)
        # sidekick has its own health endpoint; the others are ready once a
        # backend's health check answers through them.
        path = "/v1/health" if self.name.startswith("sidekick") \
            else "/health/ready"
        wait_http(self.port, path, self.proc, tls=self.tls)

    def stop(self):
        if self.proc is not None:
            PROCS.stop(self.proc)
            self.proc = None

    def alive(self):
        return self.name == "direct" or (self.proc is not None
                                         and self.proc.poll() is None)

    def restart(self):
        self.stop()
        self.start()

    def pids(self):
        return group_pids(self.proc.pid) if self.proc else []

    def rss_mib(self, field="VmRSS"):
        return status_kib(self.pids(), field) / 1024

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM to the current RSS, so the
        # next reading is the peak since now (Linux >= 4.0).
        for pid in self.pids():
            Path(f"/proc/{pid}/clear_refs").write_text("5")


# ---------------------------------------------------------------- clients

def run_client(ctx, argv, timeout, env=None):
    """A load generator, pinned to the load generator's CPU."""
    done = subprocess.run(["taskset", "-c", str(ctx.gen_cpu)] + argv,
                          capture_output=True, text=True, timeout=timeout,
                          env=env)
    if done.returncode:
        raise RuntimeError(f"{argv[0]} exited with {done.returncode}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def wrk_argv(url, seconds, conns=64):
    return ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "2s",
            "-s", str(BENCH / "wrk-report.lua"), url]


def parse_wrk(output):
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON "):])
    raise RuntimeError(f"no WRK_JSON line in wrk output:\n{output}")


def wrk_failures(r):
    """Socket errors plus responses outside 2xx/3xx."""
    return sum(r[k] for k in ("connect", "read", "write", "timeout", "status"))


def wrk(ctx, url, seconds):
    return parse_wrk(run_client(ctx, wrk_argv(url, seconds), seconds + 30))


def curl(ctx, argv, timeout=300):
    return run_client(ctx, ["curl", "-sS", "--fail"] + argv, timeout).split()


def open_idle_connections(port, count):
    """Client connections that each made one keep-alive request and then
    stay open, idle."""
    request = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        socks.append(s)
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("proxy closed an idle test connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected reply {head[:40]!r}")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("proxy closed an idle test connection")
            body += chunk
    return socks


def still_open(socks):
    count = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1, socket.MSG_PEEK):
                count += 1
        except BlockingIOError:
            count += 1
        except OSError:
            pass
    return count


# ---------------------------------------------------------------- figures

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
}


# ---------------------------------------------------------------- report

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
    ]


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
    except ValueError:
        binary = ctx.sidekick
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
        ("sidekick", f"`{binary}` built from `{commit}`"),
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
            "the proxy's processes (nginx: master + worker)."]
    if ctx.skipped:
        out += ["", "## Not measured", ""] + [f"- {s}" for s in ctx.skipped]
    if ctx.errors:
        out += ["", "## Errors", ""] + [f"- {e}" for e in ctx.errors]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- main

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
    parser.add_argument("--runs", type=int, help="override runs per figure")
    parser.add_argument("--no-build", action="store_true",
                        help="use the existing target/release/sidekick")
    parser.add_argument("--sidekick-bin", type=Path, metavar="PATH",
                        help="benchmark this sidekick binary (no build)")
    parser.add_argument("--output", type=Path,
                        help="where to write the Markdown report")
    parser.add_argument("--put-sink", metavar="PORTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for attr, allowed in (("only", PROXIES), ("figures", FIGURES)):
        value = getattr(args, attr)
        chosen = value.split(",") if value else list(allowed)
        unknown = set(chosen) - set(allowed)
        if unknown:
            parser.error(f"--{attr}: unknown {', '.join(sorted(unknown))}")
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

    complete = names == PROXIES and args.figures_list == FIGURES
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
    output.write_text(text)
    print("\n" + text)
    print(f"wrote {output} in {time.monotonic() - started:.0f} s")
    if ctx.errors:
        print(f"{len(ctx.errors)} measurement(s) failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
