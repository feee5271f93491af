"""The benchmarks in smoke mode (`make bench-smoke`): each runs and reports, so they do not rot.

Only that every figure is printed and written is asserted, never a timing: performance is
measured by `make bench`, as ratios against baselines of the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIGURES = [
    "provider_cold_start",
    "provider_cold_start_vs_floor",
    "diff_10k",
    "diff_10k_vs_floor",
    "requests_per_change.vers.create_200",
    "requests_per_change.vers.change_1",
    "requests_per_change.vers.refresh",
    "requests_per_change.hoody.create_200",
    "requests_per_change.hoody.change_1",
    "requests_per_change.hoody.remove_1",
    "requests_per_change.hoody.refresh",
    "requests_per_change.sevalla.create_200",
    "requests_per_change.sevalla.change_1",
    "requests_per_change.sevalla.change_100",
    "requests_per_change.sevalla.remove_1",
    "requests_per_change.sevalla.refresh",
    "requests_per_change.sevalla.wall",
    "requests_per_change.vertra.create_25",
    "requests_per_change.vertra.change_1",
    "requests_per_change.vertra.remove_1",
    "requests_per_change.vertra.refresh",
    "requests_per_change.phala.create_200",
    "requests_per_change.phala.change_1",
    "requests_per_change.phala.remove_1",
    "requests_per_change.phala.refresh",
    "server_throughput.get",
    "server_throughput.put",
    "server_throughput.get_vs_floor",
    "server_throughput.put_vs_floor",
    "server_throughput.cluster_get",
    "server_throughput.cluster_put",
    "boot_injection",
    "boot_injection.concurrent",
    "up_100_vars_vs_dynamic",
    "preview_noop_100",
    "up_100_vars_vs_floor",
    "preview_noop_100_vs_floor",
]


@pytest.mark.slow
def test_bench_smoke_prints_and_writes_every_figure(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--results", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    printed = {line.split(": ", 1)[0] for line in done.stdout.splitlines() if ": " in line}
    assert [name for name in FIGURES if name not in printed] == []
    (written,) = tmp_path.glob("bench-smoke-*.json")
    figures = json.loads(written.read_text())["figures"]
    assert sorted(figure["name"] for figure in figures) == sorted(FIGURES)
