"""`python -m bench [--smoke] [--only NAME ...] [--results DIR]`: run the benchmarks, print one line
per figure, and write them all as JSON under bench/results/ (or DIR)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from bench import boot, cold_start, diff_10k, requests_per_change, throughput, up_dynamic
from bench.common import REPO, Settings

# In the order they run: the cheapest first, so a broken setup shows early.
BENCHMARKS = {
    "provider_cold_start": cold_start.run,
    "diff_10k": diff_10k.run,
    "requests_per_change": requests_per_change.run,
    "server_throughput": throughput.run,
    "boot_injection": boot.run,
    "up_100_vars_vs_dynamic": up_dynamic.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; the exit status is 0 unless a benchmark could not run at all."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and n: checks the code, measures nothing")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only these (repeatable)")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "results", help="where the JSON goes")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "full"
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = os.getloadavg()[0]  # others' work on the machine shows in every figure: note it
    print(f"bench ({mode}) on {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {load_before:.2f}", flush=True)
    if args.smoke:
        print("smoke: tiny sizes and n; the figures show that the code runs, they measure nothing", flush=True)
    figures, failed = [], []
    with tempfile.TemporaryDirectory(prefix="envvars-bench-") as tmp:
        for name, run in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            work = Path(tmp) / name
            work.mkdir()
            begin = time.monotonic()
            try:
                results = run(Settings(smoke=args.smoke, tmp=work))
            except Exception as exc:  # report it and go on: one broken benchmark hides no other figure
                print(f"{name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                failed.append(name)
                continue
            for figure in results:
                print(figure.line(), flush=True)
                figures.append(figure)
            print(f"  ({name} took {time.monotonic() - begin:.0f} s)", flush=True)
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"bench-{mode}-{started.replace(':', '').replace('-', '')}.json"
    out.write_text(json.dumps({
        "mode": mode, "started": started, "cores": os.cpu_count(), "python": platform.python_version(),
        "command": f"make {'bench-smoke' if args.smoke else 'bench'}", "failed": failed,
        "load_average": {"start": load_before, "end": os.getloadavg()[0]},
        "figures": [figure.as_json() for figure in figures],
    }, indent=2) + "\n")
    shown = out.relative_to(REPO) if out.is_relative_to(REPO) else out
    print(f"load average {os.getloadavg()[0]:.2f}; results: {shown}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
