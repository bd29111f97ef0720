"""The backends: nginx serving the test objects, and the PUT sink."""

import fcntl
import os
import signal
import socket
import sys
import threading

from .processes import PROCS, free_port, render, wait_http
from .settings import BACKENDS, BENCH, MIB, SMALL_BODY


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
            [sys.executable, str(BENCH / "run.py"), "--put-sink",
             ",".join(map(str, self.ports))],
            self.ctx.dir / "put-sink.log", cpu=self.ctx.gen_cpu)
        for port in self.ports:
            wait_http(port, "/health/ready", self.proc)

    def stop(self):
        PROCS.stop(self.proc)

