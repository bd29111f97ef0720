"""The clients: wrk, curl, idle keep-alive connections."""

import json
import socket
import subprocess

from .settings import BENCH


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

