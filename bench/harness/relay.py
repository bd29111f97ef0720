"""A relay in front of an origin that makes it far: each request waits a fixed
delay before it is passed on, the answers are paced to a rate, and the bytes the
origin sent are counted (read from a second port: one line, the total)."""

import sys
from pathlib import Path

from .garage import wait_until
from .processes import free_port

PROGRAM = r"""
import asyncio, sys, time
listen, stats, target = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rate, delay = float(sys.argv[4]) * 1e6, float(sys.argv[5]) / 1e3
sent_total = 0

async def requests(reader, writer):
    # Every read from the client is (a part of) a request: it arrives `delay` later.
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def answers(reader, writer):
    global sent_total
    start, sent = time.monotonic(), 0
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
            sent_total += len(data)
            if rate:
                # Paced from the first byte of a burst: an idle connection does not
                # bank credit for the next answer.
                now = time.monotonic()
                if now - start > sent / rate + 0.05:
                    start, sent = now, 0
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
    await asyncio.gather(requests(client_r, origin_w), answers(origin_r, client_w))

async def report(_r, w):
    w.write(f"{sent_total}\n".encode())
    await w.drain()
    w.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", listen)
    await asyncio.start_server(report, "127.0.0.1", stats)
    print("ready", flush=True)
    await server.serve_forever()

asyncio.run(main())
"""


class Relay:
    """`rate` in MB/s (0: unpaced), `delay_ms` added to every request."""

    def __init__(self, procs, work, target_port, rate, delay_ms):
        self.port, self.stats = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = work / "relay.py"
        script.write_text(PROGRAM)
        log = work / f"relay-{self.port}.log"
        procs.start([sys.executable, str(script), str(self.port), str(self.stats),
                     str(target_port), str(rate), str(delay_ms)], log)
        wait_until("the relay", lambda: Path(log).exists() and "ready" in log.read_text())

    def bytes_sent(self):
        """The bytes the origin has sent through the relay so far."""
        import socket
        with socket.create_connection(("127.0.0.1", self.stats)) as s:
            return int(s.makefile().readline())
