"""Four raw HTTP/1.1 keep-alive backends in one asyncio process, one of them
sick, for the tail figure. A standalone script (standard library only):

    python3 sick_backends.py CONTROL_PORT PORT...

Every backend answers GET /health/ready with 200 (the sick one passes its
health checks: it is slow or shedding load, not down) and any other request
with 200 and a 100-byte body, except the first port's (the sick one) in
these modes:

    healthy   no exception
    slow      every 5th request it serves waits 200 ms before its answer
    slowdown  3 of every 10 requests it serves are answered 503 with S3's
              SlowDown error body

The control port takes one line, a mode name or `counts`, sets the mode and
answers one line: the requests each backend has received so far, health
checks excluded, as JSON. The harness reads them before and after a run to
count what the proxy sent to the backends.
"""

import asyncio
import json
import sys

SICK = 0
SLOW_EVERY, SLOW_S = 5, 0.2
SHED_OF_10 = 3
MODES = ("healthy", "slow", "slowdown")

BODY = b"x" * 99 + b"\n"
OK = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
      b"Content-Length: %d\r\n\r\n" % len(BODY)) + BODY
HEALTH = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<Resource>/small</Resource><RequestId>1A2B3C4D5E6F7890</RequestId>"
    b"</Error>")
SLOWDOWN = (b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\n\r\n" % len(SLOWDOWN_BODY)) + SLOWDOWN_BODY

state = {"mode": "healthy", "sick_served": 0}
counts = []


async def answer(index):
    """The answer of backend `index` to its next request."""
    counts[index] += 1
    if index != SICK or state["mode"] == "healthy":
        return OK
    state["sick_served"] += 1
    n = state["sick_served"]
    if state["mode"] == "slow":
        if n % SLOW_EVERY == 0:
            await asyncio.sleep(SLOW_S)
        return OK
    # 3 of every 10, spread out: the 4th, 7th and 10th of each ten.
    return SLOWDOWN if (n * SHED_OF_10) % 10 < SHED_OF_10 else OK


async def serve(index, reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            target = lines[0].split(b" ")[1] if b" " in lines[0] else b""
            length, close = 0, False
            for line in lines[1:]:
                key, _, value = line.partition(b":")
                key = key.strip().lower()
                if key == b"content-length":
                    length = int(value)
                elif key == b"connection":
                    close = value.strip().lower() == b"close"
            if length:
                await reader.readexactly(length)
            if target == b"/health/ready":
                writer.write(HEALTH)
            else:
                writer.write(await answer(index))
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ConnectionError, ValueError, IndexError):
        pass
    finally:
        writer.close()


async def control(reader, writer):
    try:
        command = (await reader.readline()).decode().strip()
        if command in MODES:
            state["mode"], state["sick_served"] = command, 0
        writer.write((json.dumps(counts) + "\n").encode())
        await writer.drain()
    finally:
        writer.close()


async def main(control_port, ports):
    counts.extend(0 for _ in ports)
    for index, port in enumerate(ports):
        await asyncio.start_server(
            lambda r, w, i=index: serve(i, r, w), "127.0.0.1", port,
            backlog=1024)
    server = await asyncio.start_server(control, "127.0.0.1", control_port)
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
