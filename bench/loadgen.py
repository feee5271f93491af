"""A small HTTP/1.1 load generator: `python -m bench.loadgen` reads a job as JSON on stdin, keeps
`connections` keep-alive connections busy with one request for `warmup` then `duration` seconds
(and at most `max_requests`), and prints what it measured as JSON.

It runs in a process of its own so that its CPU is not the server's; one event loop, requests
prepared once, responses parsed no further than their status and length.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections import Counter
from typing import Any

LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def request_bytes(job: dict[str, Any]) -> bytes:
    """The request, headers and body, as sent on every round."""
    body = (job.get("body") or "").encode()
    headers = {"Host": f"{job['host']}:{job['port']}", **job.get("headers", {})}
    if body:
        headers |= {"Content-Type": "application/json", "Content-Length": str(len(body))}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return f"{job['method']} {job['path']} HTTP/1.1\r\n{head}\r\n".encode() + body


async def connection(job: dict[str, Any], request: bytes, phases: list[tuple[float, Counter[int]]],
                     budget: list[int]) -> None:
    """One connection: send, read the whole answer, again, until the last phase ends."""
    reader, writer = await asyncio.open_connection(job["host"], job["port"])
    try:
        for deadline, statuses in phases:
            while time.monotonic() < deadline and budget[0] > 0:
                budget[0] -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = LENGTH.search(head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                statuses[int(head[9:12])] += 1
    finally:
        writer.close()


async def load(job: dict[str, Any]) -> dict[str, Any]:
    """Warm up, then measure; the result counts only the measured phase."""
    request = request_bytes(job)
    start = time.monotonic()
    warm, measured = start + job["warmup"], start + job["warmup"] + job["duration"]
    statuses: Counter[int] = Counter()
    phases = [(warm, Counter[int]()), (measured, statuses)]
    budget = [int(job["max_requests"])]
    await asyncio.gather(*(connection(job, request, phases, budget) for _ in range(job["connections"])))
    elapsed = time.monotonic() - warm  # until the last answer: the budget may end it early
    count = sum(statuses.values())
    return {"requests": count, "seconds": elapsed, "rate": count / elapsed,
            "statuses": {str(code): n for code, n in statuses.items()}}


def main() -> None:
    """Read the job, run it, print the result."""
    print(json.dumps(asyncio.run(load(json.load(sys.stdin)))))


if __name__ == "__main__":
    main()
