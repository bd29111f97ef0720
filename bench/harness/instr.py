"""The instruction figure (`run.py --instr`): user-space instructions each
proxy spends per proxied small keep-alive GET, counted by callgrind.

A sidecar's instructions are taken from the application on the same cores;
wall-clock throughput on a small machine is set by the kernel's TCP work and
the load generator, so this count is where the proxies differ. callgrind's
count is deterministic: a busy machine slows the run, it does not change it.

Each proxy runs on one thread under `valgrind --tool=callgrind` in front of
the same nginx backend (not under valgrind), with no health checks of its
own. One client connection sends WARM requests, then the counters are
zeroed, N1 requests sent and the counters dumped, then N2 sent and dumped
again: (dump 2 - dump 1) / (N2 - N1) is the figure, what zeroing and dumping
cost cancelling out. Every thread of the proxy's process is counted.

callgrind counts each byte a `rep stosb` or `rep movsb` moves as one
instruction (glibc's memset and memcpy use them from 2 KiB), where a core
moves a 3 KiB block in a few dozen cycles: a large memset weighs more in
this figure than in CPU time.
"""

import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from .backends import Backend
from .processes import PROCS, free_port, render, wait_http
from .setup import ensure_tools

WARM = 200
N1 = 1000
N2 = 3000
TOP = 15
REQUEST = b"GET /small HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
PROXIES = ["sidekick", "haproxy", "nginx"]


def keep_alive_gets(port, count, sock=None):
    """`count` GETs of /small, one after the other on one connection; returns
    the connection for the next batch."""
    if sock is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    data = b""
    for _ in range(count):
        sock.sendall(REQUEST)
        while b"\r\n\r\n" not in data:
            data += recv(sock)
        head, _, data = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer {head[:60]!r}")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if match is None:
            raise RuntimeError(f"no Content-Length in {head!r}")
        length = int(match.group(1))
        while len(data) < length:
            data += recv(sock)
        data = data[length:]
    return sock


def recv(sock):
    chunk = sock.recv(65536)
    if not chunk:
        raise RuntimeError("the proxy closed the connection")
    return chunk


def command(ctx, name, port, backend_port):
    d = ctx.dir
    if name == "sidekick":
        # One worker; an hour between health checks keeps them out of the count.
        return [str(ctx.sidekick), "--address", f"127.0.0.1:{port}",
                "--workers", "1", "--health-path", "/health/ready",
                "--health-duration", "1h", "--quiet",
                f"http://127.0.0.1:{backend_port}"]
    if name == "haproxy":
        conf = render("haproxy.cfg.tmpl", dir=d, name=name,
                      bind=f"127.0.0.1:{port}",
                      servers=f"    server b0 127.0.0.1:{backend_port}",
                      retry_on="")
        # No health checks: their cost would be counted per second, not per
        # request.
        conf = replace_once(conf, "default-server check inter 1s fall 1 rise 1",
                            "default-server")
        path = d / "haproxy.cfg"
        path.write_text(conf)
        return ["haproxy", "-db", "-f", str(path)]
    if name == "nginx":
        conf = render("nginx-proxy.conf.tmpl", user=ctx.nginx_user, dir=d,
                      name=name, port=port,
                      servers=f"        server 127.0.0.1:{backend_port};",
                      next_upstream="")
        # One process, so that valgrind follows the one that proxies.
        conf = replace_once(conf, "master_process on;", "master_process off;")
        path = d / "nginx.conf"
        path.write_text(conf)
        return ["nginx", "-c", str(path), "-p", str(d), "-e", "stderr"]
    raise ValueError(name)


def replace_once(text, old, new):
    if text.count(old) != 1:
        raise ValueError(f"expected one {old!r} in the config template")
    return text.replace(old, new)


def totals(path):
    """The instructions a callgrind dump counted."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith(("totals:", "summary:")):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def control(pid, flag):
    done = subprocess.run(["callgrind_control", flag, str(pid)],
                          capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"callgrind_control {flag} {pid}: "
                           f"{done.stderr.strip() or done.stdout.strip()}")


def wait_dump(out, number, timeout=60.0):
    """callgrind writes a dump at its next chance after being asked."""
    path = Path(f"{out}.{number}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and "totals:" in path.read_text(errors="replace"):
            return path
        time.sleep(0.2)
    raise RuntimeError(f"no callgrind dump {path}")


def measure(ctx, name, backend_port):
    """(instructions per request, path of the dump of N2 requests)."""
    port = free_port()
    out = ctx.dir / f"{name}.callgrind"
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
            "--dump-instr=no"] + command(ctx, name, port, backend_port)
    proc = PROCS.start(argv, ctx.dir / f"{name}.log", cpu=ctx.proxy_cpu)
    try:
        ready = "/v1/health" if name == "sidekick" else "/health/ready"
        wait_http(port, ready, proc, timeout=180)
        sock = keep_alive_gets(port, WARM)
        control(proc.pid, "-z")
        keep_alive_gets(port, N1, sock)
        control(proc.pid, "-d")
        first = wait_dump(out, 1)
        keep_alive_gets(port, N2, sock)
        control(proc.pid, "-d")
        second = wait_dump(out, 2)
        sock.close()
        return (totals(second) - totals(first)) / (N2 - N1), second
    finally:
        PROCS.stop(proc, timeout=30)


def top_functions(dump, per, inclusive):
    """The TOP costliest functions of a dump: (instructions per request, name)."""
    done = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
         "--threshold=100", str(dump)],
        capture_output=True, text=True, timeout=300)
    rows, total = [], None
    for line in done.stdout.splitlines():
        match = re.match(r"\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.+)$", line)
        if match is None:
            continue
        cost = int(match.group(1).replace(",", ""))
        name = match.group(2)
        if name.startswith("PROGRAM TOTALS"):
            total = cost
            continue
        if ":" not in name:
            continue
        # Functions under way when the dump was taken (a thread's entry, the
        # event loop) are listed with their inclusive cost in the self list too.
        if not inclusive and total and cost > 0.9 * total:
            continue
        # "file:function [binary]": the function is what the reader wants.
        name = re.sub(r"^(\?\?\?|\.?/[^:]*):", "", name)
        name = re.sub(r"::h[0-9a-f]{16}", "", name)
        name = re.sub(r" \[[^\]]*\]$", "", name)
        rows.append((cost / per, name))
        if len(rows) == TOP:
            break
    return rows


def short(name, width=110):
    return name if len(name) <= width else name[:width - 3] + "..."


def run_instr(ctx, names):
    ensure_tools(["valgrind", "callgrind_control", "callgrind_annotate"],
                 ["valgrind"])
    www = ctx.dir / "www"
    www.mkdir()
    ctx.www = www
    backend = Backend(ctx, 0)
    backend.start()
    figures, dumps = {}, {}
    for name in names:
        print(f"callgrind: {name}", flush=True)
        started = time.monotonic()
        figures[name], dumps[name] = measure(ctx, name, backend.port)
        print(f"  {figures[name]:,.0f} instructions per request "
              f"({time.monotonic() - started:.0f} s)", flush=True)
    lines = [
        "| proxy | instructions per request |",
        "| --- | ---: |",
    ]
    lines += [f"| {n} | {figures[n]:,.0f} |" for n in names]
    if "sidekick" in figures and "haproxy" in figures:
        met = figures["sidekick"] <= figures["haproxy"]
        lines += ["", f"target sidekick <= HAProxy: {'met' if met else 'not met'} "
                  f"({figures['sidekick'] / figures['haproxy']:.2f}x HAProxy"
                  + (f", {figures['sidekick'] / figures['nginx']:.2f}x nginx"
                     if "nginx" in figures else "") + ")"]
    if "sidekick" in dumps:
        for inclusive in (True, False):
            kind = "inclusive" if inclusive else "self"
            lines += ["", f"sidekick's top {TOP} functions by {kind} cost, "
                      "instructions per request:", ""]
            lines += [f"{cost:>9,.0f}  {short(name)}" for cost, name
                      in top_functions(dumps["sidekick"], N2, inclusive)]
    text = "\n".join(lines)
    print("\n" + text)
    return text


SECTION = "## Instructions per request"


def carry_over(old, new):
    """`new`, a report run.py is about to write over `old`, with `old`'s
    instruction section kept: --instr writes no report, the section is kept by
    hand."""
    start = old.find("\n" + SECTION)
    if start < 0 or SECTION in new:
        return new
    end = old.find("\n## ", start + 1)
    section = old[start:] if end < 0 else old[start:end]
    at = new.find("\n## Setup")
    if at < 0:
        return new.rstrip("\n") + "\n" + section.rstrip("\n") + "\n"
    return new[:at] + section.rstrip("\n") + "\n" + new[at:]


def keep_dumps(ctx, where):
    """Copies the callgrind dumps out of the run's temporary directory."""
    where.mkdir(parents=True, exist_ok=True)
    for path in ctx.dir.glob("*.callgrind.*"):
        shutil.copy(path, where / path.name)
    print(f"callgrind dumps in {where}", file=sys.stderr)
