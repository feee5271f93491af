"""up_100_vars_vs_dynamic and preview_noop_100: the real engine on 100 `vers.EnvVar`s with the native
provider (bench/programs/envvar-100), vs the same program as a Pulumi dynamic provider calling the
same API with requests (bench/programs/dynamic-100), both against the bundled server.

Each repetition uses a fresh stack and a fresh user: the clock covers the whole `pulumi up`
command (engine, language host, plugins, 100 creates), then a `pulumi preview` of the unchanged
program on that stack (which must find no change).
"""

from __future__ import annotations

import itertools

from bench.common import PROGRAMS, Figure, Settings, alternate, ratio_figure, timed
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace


def run(settings: Settings) -> list[Figure]:
    """Two figures: up and no-op preview, each native vs dynamic."""
    count = settings.pick(100, 3)
    previews: dict[str, list[float]] = {"envvar-100": [], "dynamic-100": []}
    fresh = itertools.count()
    with (settings.tmp / "server.log").open("w") as log, ServerProcess(settings.tmp / "data", log=log) as server:

        def up_then_preview(program: str) -> float:
            rep = next(fresh)
            home = settings.tmp / str(rep)
            home.mkdir()
            stack = Workspace(home, PROGRAMS / program, server.url, server.token(f"bench-{rep}"))
            stack.run("config", "set", "count", str(count))
            took = timed(stack.up)
            previews[program].append(timed(lambda: stack.run("preview", "--expect-no-changes")))
            return took

        subjects, baselines = alternate(lambda: up_then_preview("envvar-100"), lambda: up_then_preview("dynamic-100"),
                                        n=settings.pick(5, 1))
    note = f"{count} resources" if count != 100 else ""
    return [ratio_figure("up_100_vars_vs_dynamic", subjects, baselines, "s", target=0.5, note=note),
            ratio_figure("preview_noop_100", previews["envvar-100"], previews["dynamic-100"], "s", note=note)]
