"""server_throughput: requests/s of GET and PUT /api/v1/env_vars at 16 concurrent connections, vs a
FastAPI hello-world route served the same way (bench/hello_app.py).

The load comes from bench/loadgen.py in a process of its own, bounded in time and in count.
GET reads a 20-key set; PUT upserts one key, as the provider does for a changed value; every
acknowledged PUT is durable (SQLite WAL, synchronous=FULL), so each waits for an fsync.
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from typing import Any

import requests

from bench.common import REPO, Figure, Settings, alternate, ratio_figure
from envvars_server.launch import ServerProcess, free_port, wait_until_answers

CONNECTIONS = 16
MAX_REQUESTS = 500_000
PUT_BODY = json.dumps({"vars": {"BENCH_KEY_00": "value"}, "replace": False})


def rate(port: int, method: str, path: str, settings: Settings, headers: dict[str, str] | None = None) -> float:
    """Requests/s the server on `port` answered; any answer but 200 fails the benchmark."""
    job = {"host": "127.0.0.1", "port": port, "method": method, "path": path, "headers": headers or {},
           "body": PUT_BODY if method == "PUT" else None, "connections": CONNECTIONS,
           "warmup": settings.pick(1.0, 0.2), "duration": settings.pick(4.0, 0.5), "max_requests": MAX_REQUESTS}
    done = subprocess.run([sys.executable, "-m", "bench.loadgen"], input=json.dumps(job), capture_output=True,
                          text=True, cwd=REPO, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    if set(result["statuses"]) != {"200"}:
        raise AssertionError(f"{method} {path} answered {result['statuses']}")
    return float(result["rate"])


class HelloServer:
    """bench/hello_app.py in a child process on a free port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "bench.hello_app", "--port", str(self.port)],
                                        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until_answers("the hello-world server", f"http://127.0.0.1:{self.port}/hello", self.process, 30)
        except RuntimeError:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate it."""
        self.process.terminate()
        self.process.wait(timeout=15)


def run(settings: Settings) -> list[Figure]:
    """Two figures: GET and PUT."""
    with ServerProcess(settings.tmp / "data") as server:
        auth = {"Authorization": f"Bearer {server.token('bench')}"}
        seed = {"vars": {f"BENCH_KEY_{n:02d}": f"value-{n}" for n in range(20)}, "replace": True}
        requests.put(f"{server.url}/api/v1/env_vars", json=seed, headers=auth, timeout=30).raise_for_status()
        hello = HelloServer()
        try:
            figures = []
            for method in ("GET", "PUT"):
                subjects, baselines = alternate(partial(rate, server.port, method, "/api/v1/env_vars", settings, auth),
                                                partial(rate, hello.port, method, "/hello", settings),
                                                n=settings.pick(5, 1))
                figures.append(ratio_figure(f"server_throughput.{method.lower()}", subjects, baselines, "req/s",
                                            target=0.5, higher_is_better=True))
        finally:
            hello.stop()
    return figures
