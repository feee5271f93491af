"""up_100_vars_vs_dynamic and preview_noop_100: the real engine on 100 `vers.EnvVar`s with the native
provider (bench/programs/envvar-100), vs the same program as a Pulumi dynamic provider calling the
same API with requests (bench/programs/dynamic-100), both against the bundled server.

The same run measures the engine floor: envvar-100 unchanged but for its plugin path, which names
the floor provider (bench/floor/main.go, a Go plugin that answers every call at once). What is
left there is the engine, the language host and the program: the `_vs_floor` figures say how
close the native provider gets to that.

Each repetition uses a fresh stack and a fresh user: the clock covers the whole `pulumi up`
command (engine, language host, plugins, 100 creates), then a `pulumi preview` of the unchanged
program on that stack (which must find no change).
"""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path

from bench import floor_provider
from bench.common import PROGRAMS, VENV_BIN, Figure, Settings, ratio_figure, rotate, timed
from envvars_server.launch import ServerProcess
from examples.workspace import Workspace

RUNS = ("native", "dynamic", "floor")


def run(settings: Settings) -> list[Figure]:
    """Four figures: up and no-op preview, native vs dynamic and native vs the floor."""
    count = settings.pick(100, 3)
    previews: dict[str, list[float]] = {name: [] for name in RUNS}
    fresh = itertools.count()
    floor = floor_provider.plugin_dir()
    with (settings.tmp / "server.log").open("w") as log, ServerProcess(settings.tmp / "data", log=log) as server:

        def up_then_preview(name: str) -> float:
            rep = next(fresh)
            home = settings.tmp / str(rep)
            home.mkdir()
            stack = Workspace(home, PROGRAMS / ("dynamic-100" if name == "dynamic" else "envvar-100"), server.url,
                              server.token(f"bench-{rep}"))
            if name == "floor":
                _use_plugin(stack.dir / "Pulumi.yaml", floor)
            stack.run("config", "set", "count", str(count))
            took = timed(stack.up)
            previews[name].append(timed(lambda: stack.run("preview", "--expect-no-changes")))
            return took

        native, dynamic, floored = rotate([partial(up_then_preview, name) for name in RUNS], n=settings.pick(5, 1))
    note = f"{count} resources" if count != 100 else ""
    return [ratio_figure("up_100_vars_vs_dynamic", native, dynamic, "s", target=0.5, note=note),
            ratio_figure("preview_noop_100", previews["native"], previews["dynamic"], "s", note=note),
            ratio_figure("up_100_vars_vs_floor", native, floored, "s", target=1.25, note=note),
            ratio_figure("preview_noop_100_vs_floor", previews["native"], previews["floor"], "s", target=1.25,
                         note=note)]


def _use_plugin(project: Path, folder: Path) -> None:
    """Point the program's `envvars` plugin at `folder` instead of the venv's bin."""
    text = project.read_text()
    venv_bin = f"path: {VENV_BIN}"
    if venv_bin not in text:
        raise AssertionError(f"{project} does not name the plugin as {venv_bin}")
    project.write_text(text.replace(venv_bin, f"path: {folder}"))
