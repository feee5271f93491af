"""diff_10k: Check + Diff of an `EnvVars` with 10,000 keys, one changed, through the plugin's gRPC server.

The requests are what the engine sends on a `pulumi up` that changes one value: Check with the
program's plain inputs, then Diff of the state against the checked inputs (both secret-wrapped).
They are built before the clock starts; the clock covers the two calls, as the engine waits on
them. The baseline is the same pair for a 1-key set: the fixed cost of two round trips.

The floor, measured in the same run and process, is what gRPC cannot avoid for the same pair: one
serialization and one parse of each of the four messages (the two requests, and the two responses
the plugin gave), with the same protobuf runtime.
"""

from __future__ import annotations

from typing import Any

from bench.common import Figure, Settings, figure_of, ratio_figure, rotate, timed
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
    """Two figures: the subject's median in ms (<= 50 ms), and that over the protobuf floor (<= 2)."""
    plugin = Plugin(settings.tmp / "plugin.stderr")
    try:
        plugin.configure("http://127.0.0.1:9", "unused")  # Check and Diff send no request
        answers: list[Any] = []

        def check_and_diff(check: Any, diff: Any, path: str) -> float:
            def call() -> None:
                checked = plugin.stub.Check(check)
                diffed = plugin.stub.Diff(diff)
                if checked.failures or list(diffed.detailedDiff) != [path]:
                    raise AssertionError(f"unexpected answer: {checked.failures} {list(diffed.detailedDiff)}")
                answers[:] = [checked, diffed]
            return timed(call)

        big, small = requests_for(KEYS), requests_for(1)
        check_and_diff(*big)
        messages = [big[0], big[1], *answers]

        def codec() -> float:
            return timed(lambda: [type(message).FromString(message.SerializeToString()) for message in messages])

        subjects, baselines, floors = rotate([lambda: check_and_diff(*big), lambda: check_and_diff(*small), codec],
                                             n=settings.pick(20, 2), warmup=1)
    finally:
        plugin.close()
    return [figure_of("diff_10k", "value", subjects, baselines, "ms", scale=1000, limit=50,
                      note="baseline: the same two calls for a 1-key set"),
            ratio_figure("diff_10k_vs_floor", subjects, floors, "ms", scale=1000, target=2,
                         note="floor: serializing and parsing the four messages once each")]
