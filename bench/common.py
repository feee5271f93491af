"""What every benchmark shares: alternating runs, medians, figures and their one-line report."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PROGRAMS = REPO / "bench" / "programs"


@dataclass(frozen=True)
class Settings:
    """One run of the benchmarks: full, or smoke (same code, tiny sizes, to keep it from rotting)."""

    smoke: bool
    tmp: Path

    def pick(self, full: Any, smoke: Any) -> Any:
        """`full` in a full run, `smoke` in a smoke run."""
        return smoke if self.smoke else full


@dataclass
class Figure:
    """One reported figure: the subject's and the baseline's medians and what they make together."""

    name: str
    value: float
    subject: float
    baseline: float
    n: int
    unit: str  # of the medians
    kind: str = "ratio"  # ratio (subject / baseline), count, value (the subject's), added (subject - baseline)
    target: str = ""
    met: bool | None = None
    note: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)

    def line(self) -> str:
        """`NAME: <ratio or count> (subject median, baseline median, n)`, then target and note."""
        value = {"ratio": f"{self.value:.2f}", "count": f"{self.value:g}", "value": f"{self.value:.1f} {self.unit}",
                 "added": f"{self.value:+.1f} {self.unit}"}[self.kind]
        text = (f"{self.name}: {value} (subject median {_show(self.subject)} {self.unit}, "
                f"baseline median {_show(self.baseline)} {self.unit}, n={self.n})")
        if self.target:
            text += f"  target {self.target}: {'met' if self.met else 'NOT met'}"
        if self.note:
            text += f"; {self.note}"
        return text

    def as_json(self) -> dict[str, Any]:
        """The figure with its samples, for bench/results/."""
        return asdict(self)


def _show(number: float) -> str:
    return f"{number:.0f}" if abs(number) >= 100 else f"{number:.3g}"


def median(values: list[float]) -> float:
    """The median of a non-empty list."""
    return float(statistics.median(values))


def alternate(subject: Callable[[], float], baseline: Callable[[], float], n: int,
              warmup: int = 0) -> tuple[list[float], list[float]]:
    """Run subject and baseline `n` times each, interleaved (AB BA AB ...) so drift hits both alike.

    Each callable returns its own measurement (seconds, a rate, a count); `warmup` rounds of
    each run first and are dropped.
    """
    subjects, baselines = rotate([subject, baseline], n, warmup)
    return subjects, baselines


def rotate(calls: list[Callable[[], float]], n: int, warmup: int = 0) -> list[list[float]]:
    """`alternate` for any number of callables (ABC CBA ABC ...): each one's `n` measurements, in order."""
    for _ in range(warmup):
        for call in calls:
            call()
    measured: list[list[float]] = [[] for _ in calls]
    for rep in range(n):
        order = list(enumerate(calls))
        for index, call in order if rep % 2 == 0 else reversed(order):
            measured[index].append(call())
    return measured


def ratio_figure(name: str, subjects: list[float], baselines: list[float], unit: str, scale: float = 1.0,
                 target: float | None = None, higher_is_better: bool = False, note: str = "") -> Figure:
    """subject median / baseline median; `target` is a ceiling (a floor when higher is better)."""
    subject, baseline = median(subjects), median(baselines)
    value = subject / baseline
    met = None if target is None else (value >= target if higher_is_better else value <= target)
    bound = "" if target is None else f"{'>=' if higher_is_better else '<='} {target:g}"
    return Figure(name, value, subject * scale, baseline * scale, len(subjects), unit, "ratio", bound, met, note,
                  {"subject": [s * scale for s in subjects], "baseline": [b * scale for b in baselines]})


def figure_of(name: str, kind: str, subjects: list[float], baselines: list[float], unit: str,
              scale: float = 1.0, limit: float | None = None, note: str = "") -> Figure:
    """A figure whose value is the subject's median (`value`, `count`) or its excess over the
    baseline's (`added`); `limit` is a ceiling on that value."""
    subject, baseline = median(subjects) * scale, median(baselines) * scale
    value = subject - baseline if kind == "added" else subject
    target = "" if limit is None else f"<= {limit:g}" + ("" if kind == "count" else f" {unit}")
    met = None if limit is None else value <= limit
    return Figure(name, value, subject, baseline, len(subjects), unit, kind, target, met, note,
                  {"subject": [s * scale for s in subjects], "baseline": [b * scale for b in baselines]})


def timed(call: Callable[[], Any]) -> float:
    """Seconds `call` took."""
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
