"""An open-loop HTTP/1.1 load generator for the tail figure: requests at a
fixed rate over keep-alive connections, latency measured from each request's
scheduled send time (so a stalled connection cannot hide the requests queued
behind it: coordinated omission corrected, as wrk2 does). A standalone
script (standard library only):

    python3 paced_client.py PORT PATH RATE CONNS SECONDS WARMUP_S

Request i is due at start + i / RATE. A due request goes to a free
connection, or waits for one, its wait counted in its latency. The first
WARMUP_S seconds of requests are sent but not measured. Prints one JSON
line: `sent` (every request, warm-up included), `measured`, p50/p99/p99.9
in ms over the measured ones, `statuses` (answer counts by status, 0 for no
answer: a reset, a closed connection or a 10 s timeout), and `max_lag_ms`,
how far behind its timetable this client fell.
"""

import asyncio
import json
import math
import sys
import time

TIMEOUT_S = 10.0


async def read_answer(reader):
    """Reads one response; returns (status, close)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        key, value = key.strip().lower(), value.strip().lower()
        if key == b"content-length":
            length = int(value)
        elif key == b"transfer-encoding":
            chunked = b"chunked" in value
        elif key == b"connection":
            close = value == b"close"
    if chunked:
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, close


class Connection:
    def __init__(self, port, request):
        self.port, self.request = port, request
        self.reader = self.writer = None

    async def get(self):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                "127.0.0.1", self.port)
        self.writer.write(self.request)
        status, close = await read_answer(self.reader)
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def worker(conn, queue, done):
    loop = asyncio.get_running_loop()
    while True:
        item = await queue.get()
        if item is None:
            conn.close()
            return
        index, due = item
        try:
            status = await asyncio.wait_for(conn.get(), TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError, ValueError, IndexError):
            status = 0
            conn.close()
        done.append((index, loop.time() - due, status))


def percentile(sorted_values, q):
    """Nearest rank."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def timetable(loop, queue, rate, total, workers):
    """Hands request i to the workers at its due time; returns how far
    behind the timetable it fell at worst (s)."""
    start, max_lag = time.monotonic() + 0.05, 0.0
    for index in range(total):
        due = start + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        loop.call_soon_threadsafe(queue.put_nowait, (index, due))
    for _ in range(workers):
        loop.call_soon_threadsafe(queue.put_nowait, None)
    return max_lag


async def main(port, path, rate, conns, seconds, warmup_s):
    loop = asyncio.get_running_loop()
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"User-Agent: paced-client\r\n\r\n").encode()
    queue, done = asyncio.Queue(), []
    workers = [asyncio.create_task(worker(Connection(port, request), queue,
                                          done)) for _ in range(conns)]
    warmup, total = round(rate * warmup_s), round(rate * (warmup_s + seconds))
    # The timetable runs in a thread: time.sleep wakes within tens of µs,
    # the event loop's timers only to the millisecond (epoll's resolution),
    # which would add up to 1 ms to every measured latency.
    lag = await asyncio.to_thread(timetable, loop, queue, rate, total,
                                  len(workers))
    await asyncio.gather(*workers)
    measured = [(lat, status) for index, lat, status in done
                if index >= warmup]
    latencies = sorted(lat * 1000 for lat, _ in measured)
    statuses = {}
    for _, status in measured:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    print(json.dumps({
        "sent": total, "measured": len(measured),
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "p999_ms": percentile(latencies, 0.999),
        "max_ms": latencies[-1] if latencies else None,
        "statuses": statuses, "max_lag_ms": lag * 1000}), flush=True)


if __name__ == "__main__":
    port, path, rate, conns, seconds, warmup_s = sys.argv[1:7]
    asyncio.run(main(int(port), path, float(rate), int(conns), float(seconds),
                     float(warmup_s)))
