"""diff_10k: Check + Diff of an `EnvVars` with 10,000 keys, one changed, through the plugin's gRPC server.

The requests are what the engine sends on a `pulumi up` that changes one value: Check with the
program's plain inputs, then Diff of the state against the checked inputs (both secret-wrapped).
They are built before the clock starts; the clock covers the two calls, as the engine waits on
them. The baseline is the same pair for a 1-key set: the fixed cost of two round trips.
"""

from __future__ import annotations

from typing import Any

from bench.common import Figure, Settings, alternate, figure_of, timed
from envvars_provider.protos import provider_pb2
from envvars_provider.values import to_struct
from tests.plugin import Plugin, secret, urn

TOKEN = "envvars:vers:EnvVars"
KEYS = 10_000


def requests_for(size: int) -> tuple[Any, Any, str]:
    """Check and Diff requests for a `size`-key set whose last value changed, and that key's diff path."""
    olds = {f"KEY_{n:05d}": f"value-{n}-" + "x" * 24 for n in range(size)}
    changed = f"KEY_{size - 1:05d}"
    news = {**olds, changed: "changed"}
    check = provider_pb2.CheckRequest(urn=urn(TOKEN, "set"), type=TOKEN, news=to_struct({"vars": news}))
    diff = provider_pb2.DiffRequest(
        id="account", urn=urn(TOKEN, "set"), type=TOKEN,
        olds=to_struct({"vars": secret(olds), "exclusive": False, "revision": 1}),
        news=to_struct({"vars": secret(news), "exclusive": False}),
    )
    return check, diff, f'vars["{changed}"]'


def run(settings: Settings) -> list[Figure]:
    """The figure: the subject's median in ms (a side note: <= 50 ms)."""
    plugin = Plugin(settings.tmp / "plugin.stderr")
    try:
        plugin.configure("http://127.0.0.1:9", "unused")  # Check and Diff send no request

        def check_and_diff(check: Any, diff: Any, path: str) -> float:
            def call() -> None:
                checked = plugin.stub.Check(check)
                diffed = plugin.stub.Diff(diff)
                if checked.failures or list(diffed.detailedDiff) != [path]:
                    raise AssertionError(f"unexpected answer: {checked.failures} {list(diffed.detailedDiff)}")
            return timed(call)

        big, small = requests_for(KEYS), requests_for(1)
        subjects, baselines = alternate(lambda: check_and_diff(*big), lambda: check_and_diff(*small),
                                        n=settings.pick(20, 2), warmup=1)
    finally:
        plugin.close()
    return [figure_of("diff_10k", "value", subjects, baselines, "ms", scale=1000, limit=50,
                      note="baseline: the same two calls for a 1-key set")]
