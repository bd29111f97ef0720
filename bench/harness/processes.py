"""The processes the harness starts and what it reads about them: process
groups, cleanup and signals, /proc readings, free ports, waiting for HTTP,
the config templates."""

import http.client
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

from .settings import BENCH


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
