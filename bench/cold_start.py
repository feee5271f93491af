"""provider_cold_start: spawn the provider plugin until it prints its port, vs Pulumi's dynamic-provider host.

Both are started the way the engine starts a provider plugin: the executable with the engine's
address as argument (neither dials it before its first call), stdout a pipe, and the clock stops
at the port line. The dynamic-provider host is `pulumi-resource-pulumi-python`, the script that
runs `python -u -m pulumi.dynamic` (bench/programs/dynamic-100/bin holds the one the bench uses).
The floor, started the same way in the same run, is bench/empty_provider.py: grpcio serving an
empty servicer.
"""

from __future__ import annotations

import os
import subprocess
import time

from bench.common import PROGRAMS, REPO, VENV_BIN, Figure, Settings, ratio_figure, rotate

ENGINE_ADDRESS = "127.0.0.1:1"  # what the engine passes; unused until the first call
NATIVE = [str(VENV_BIN / "pulumi-resource-envvars"), ENGINE_ADDRESS]
DYNAMIC = [str(PROGRAMS / "dynamic-100" / "bin" / "pulumi-resource-pulumi-python"), ENGINE_ADDRESS]
FLOOR = [str(VENV_BIN / "python"), str(REPO / "bench" / "empty_provider.py"), ENGINE_ADDRESS]


def until_port(command: list[str]) -> float:
    """Seconds from spawning `command` to reading its port line."""
    env = {**os.environ, "PULUMI_PYTHON_CMD": str(VENV_BIN / "python")}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    elapsed = time.perf_counter() - start
    process.terminate()
    process.wait(timeout=10)
    process.stdout.close()
    if not line.strip().isdigit():
        raise RuntimeError(f"{command[0]} printed {line!r} instead of a port")
    return elapsed


def run(settings: Settings) -> list[Figure]:
    """Two figures, vs the dynamic host and vs the floor, after one unmeasured start of each (warm page
    cache and bytecode)."""
    native, dynamic, floor = rotate([lambda: until_port(NATIVE), lambda: until_port(DYNAMIC),
                                     lambda: until_port(FLOOR)], n=settings.pick(20, 3), warmup=1)
    figure = ratio_figure("provider_cold_start", native, dynamic, "ms", scale=1000, target=0.6)
    figure.note = f"side note: subject <= 200 ms {'met' if figure.subject <= 200 else 'NOT met'}"
    return [figure, ratio_figure("provider_cold_start_vs_floor", native, floor, "ms", scale=1000, target=1.2,
                                 note="floor: grpcio serving an empty servicer")]
