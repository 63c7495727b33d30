"""An HTTP/1.1 load generator on raw asyncio sockets: keep-alive, TCP_NODELAY, N connections.

    python -m bench.httpload --port 8000 --path /api/v1/lines/line-1 \
        --header 'Authorization: Bearer k' --mode open --rate 200 --seconds 20 \
        --connections 8 --out lat.json

- `open`: request i is due at start + i/rate whatever happened before (open loop); a free
  connection takes the oldest due request; latency is measured from the *scheduled* time,
  so a stall shows up in every request it delayed (no coordinated omission).
- `closed`: every connection sends its next request as soon as the answer is in (saturation).

Writes {"latencies_ms": [...], "errors": n, "sent": n, "seconds": s, "statuses": {...},
"late_ms_max": n} (late: how far the scheduler itself fell behind, a client-side problem).
A separate process, so the load does not share an event loop with what measures latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path

from bench.harness import nodelay_transport


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: bytes) -> None:
        self.reader, self.writer, self.request = reader, writer, request

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status


async def connect(port: int, request: bytes) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**22)
    nodelay_transport(writer.transport)
    return Conn(reader, writer, request)


async def run(args: argparse.Namespace) -> dict[str, object]:
    headers = "".join(f"{h}\r\n" for h in args.header)
    request = (f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1:{args.port}\r\n{headers}"
               "Connection: keep-alive\r\n\r\n").encode()
    conns = [await connect(args.port, request) for _ in range(args.connections)]
    for c in conns:  # one warm-up request each (connection set-up is not the figure)
        await c.get()
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    late_max = 0.0
    start = time.perf_counter() + 0.05
    end = start + args.seconds

    async def one(c: Conn, scheduled: float) -> None:
        nonlocal errors
        try:
            status = await c.get()
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            return
        statuses[status] += 1
        latencies.append((time.perf_counter() - scheduled) * 1000)

    if args.mode == "closed":
        async def loop(c: Conn) -> None:
            while time.perf_counter() < end:
                await one(c, time.perf_counter())

        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        await asyncio.gather(*(loop(c) for c in conns))
        sent = len(latencies) + errors
    else:
        due: asyncio.Queue[float] = asyncio.Queue()

        async def worker(c: Conn) -> None:
            while True:
                scheduled = await due.get()
                if scheduled < 0:
                    return
                await one(c, scheduled)

        workers = [asyncio.create_task(worker(c)) for c in conns]
        sent = int(args.seconds * args.rate)
        for i in range(sent):
            at = start + i / args.rate
            wait = at - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            else:
                late_max = max(late_max, -wait)
            due.put_nowait(at)
        for _ in workers:
            due.put_nowait(-1.0)
        await asyncio.gather(*workers)
    seconds = time.perf_counter() - start
    for c in conns:
        c.writer.close()
    return {"latencies_ms": latencies, "errors": errors, "sent": sent,
            "seconds": round(seconds, 3), "statuses": dict(statuses),
            "late_ms_max": round(late_max * 1000, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--mode", choices=["open", "closed"], required=True)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.write_text(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
