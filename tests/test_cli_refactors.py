"""Everyday refactors through the real CLI: no variable is lost, and previews say what an up will do.

A key moved between resources, a renamed resource, two keys swapped: each `up` is repeated with
`--parallel 1` and `--parallel 16`, and with create-before-delete and delete-before-create
replacements, because the engine orders the steps differently each time. After every `up` the
server holds every key, and the state records exactly what the server holds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from envvars_server.launch import ServerProcess
from tests.conftest import Api
from tests.figures import figure
from tests.test_cli import (
    STACK,
    Workspace,
    configure,
    live_vms,
    preview_json,
    refresh_preview,
    resources,
    stored,
    workspace,
)

pytestmark = pytest.mark.slow

PARALLELISM = ("1", "16")
ROUNDS = 2  # each direction of each move, per parallelism


def shown(value: Any) -> Any:
    """A state value from `stack export --show-secrets`: a secret's plaintext is JSON-encoded."""
    return json.loads(value["plaintext"]) if isinstance(value, dict) and "plaintext" in value else value


def state_vars(ws: Workspace) -> dict[str, str]:
    """Every variable the state says the stack's resources hold on the server."""
    deployment = json.loads(ws.run("stack", "export", "--show-secrets").stdout)["deployment"]
    held: dict[str, str] = {}
    for resource in deployment["resources"]:
        outputs = resource.get("outputs") or {}
        if resource["type"] == "envvars:vers:EnvVars":
            held |= shown(outputs["vars"])
        elif resource["type"] == "envvars:vers:EnvVar":
            held[outputs["key"]] = shown(outputs["value"])
    return held


def moves(ws: Workspace, api: Api, shapes: list[dict[str, Any]], managed: dict[str, str],
          unmanaged: dict[str, str] | None = None) -> int:
    """Up each shape in turn, ROUNDS times per parallelism; after each, the state holds `managed` and the
    server that and `unmanaged`."""
    ups = 0
    for parallel in PARALLELISM:
        for _ in range(ROUNDS):
            for shape in shapes:
                configure(ws, **{"sets": {}, "vars": {}, **shape})
                ws.up("--parallel", parallel)
                ups += 1
                assert stored(api) == {**(unmanaged or {}), **managed}, (shape, parallel)
                assert state_vars(ws) == managed, (shape, parallel)
    return ups


def test_moving_a_key_between_resources_never_loses_it(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    abc = {"A": "1", "B": "2", "C": "3"}
    configure(ws, sets={"set1": {"vars": abc}})
    ws.up()
    # EnvVars → EnvVar and back; then EnvVars → EnvVars and back.
    ups = moves(ws, api, [{"sets": {"set1": {"vars": {"A": "1", "B": "2"}}}, "vars": {"c": {"key": "C", "value": "3"}}},
                          {"sets": {"set1": {"vars": abc}}}], abc)
    ups += moves(ws, api, [{"sets": {"set1": {"vars": {"A": "1"}}, "set2": {"vars": {"B": "2", "C": "3"}}}},
                           {"sets": {"set1": {"vars": {"A": "1", "C": "3"}}, "set2": {"vars": {"B": "2"}}}}], abc)
    # A plain preview afterwards has nothing to do: the state matches the server.
    assert preview_json(ws)[1] == {"same": 3}
    figure("key moves", ups=ups, keys_lost=0)


def test_renaming_a_resource_keeps_its_keys(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "kept"}}).raise_for_status()
    y, s = {"key": "Y", "value": "y"}, {"vars": {"S": "s"}}
    ups = moves(ws, api, [{"vars": {"x": y}, "sets": {"s": s}}, {"vars": {"x_renamed": y}, "sets": {"s_renamed": s}}],
                {"Y": "y", "S": "s"}, {"OTHER": "kept"})
    # An exclusive set renamed: the old one's delete must not empty the set the new one owns.
    configure(ws, sets={}, vars={})
    ws.up()
    ups += moves(ws, api, [{"sets": {"all": {"vars": {"Y": "y"}, "exclusive": True}}},
                           {"sets": {"all_renamed": {"vars": {"Y": "y"}, "exclusive": True}}}], {"Y": "y"})
    figure("renames", ups=ups, keys_lost=0)


@pytest.mark.parametrize("delete_first", [False, True], ids=["create-before-delete", "delete-before-create"])
def test_swapping_keys_between_two_env_vars_keeps_both(
    tmp_path: Path, server: ServerProcess, api: Api, delete_first: bool,
) -> None:
    ws = workspace(tmp_path, server, api)

    def pair(a_key: str, b_key: str) -> dict[str, Any]:
        return {"vars": {"a": {"key": a_key, "value": "from-a", "dbr": delete_first},
                         "b": {"key": b_key, "value": "from-b", "dbr": delete_first}}}

    configure(ws, **pair("A", "B"))
    ws.up()
    # Each up swaps the keys: the values move with them.
    for parallel in PARALLELISM:
        for a_key, b_key in [("B", "A"), ("A", "B")] * ROUNDS:
            configure(ws, **pair(a_key, b_key))
            ws.up("--parallel", parallel)
            assert stored(api) == {a_key: "from-a", b_key: "from-b"}, (a_key, parallel)
            assert state_vars(ws) == stored(api)
    assert preview_json(ws)[1] == {"same": 3}


def test_switching_exclusive_previews_what_it_removes(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    configure(ws, sets={"app": {"vars": {"A": "1"}}}, vms={"w": "app"})
    ws.up()
    vm_id = ws.outputs()["vmIds"]["w"]
    api.put("/api/v1/env_vars", json={"vars": {"OOB": "by hand"}}).raise_for_status()

    # false → true: the preview names the variable the exclusive write removes, and the VM fed the
    # revision is replaced (its environment changes); `up` does exactly that.
    configure(ws, sets={"app": {"vars": {"A": "1"}, "exclusive": True}}, vms={"w": "app"})
    steps, _ = preview_json(ws)
    assert steps["app"] == ("update", {"exclusive": "update", 'vars["OOB"]': "delete"})
    assert steps["w"][0] == "replace"
    text = ws.preview().stdout
    assert re.search(r"~ vars +: \{\n +- OOB: \[secret\]\n +\}", text), text
    assert re.search(r"~ envRevision: 1 => 2", text) and previewed_revision(ws, "app") == (1, 2), text
    ws.up()
    assert stored(api) == {"A": "1"}
    revision = ws.outputs()["revisions"]["app"]
    vm_id = ws.outputs()["vmIds"]["w"]

    # true → false: nothing changes on the server, so the revision stays and the VM stays.
    configure(ws, sets={"app": {"vars": {"A": "1"}, "exclusive": False}}, vms={"w": "app"})
    steps, counts = preview_json(ws)
    # The VM wired to `revision` is unchanged in the preview: the revision is known and the same.
    assert steps["app"] == ("update", {"exclusive": "update"}) and "w" not in steps, steps
    ws.up()
    assert ws.outputs()["revisions"]["app"] == revision and ws.outputs()["vmIds"]["w"] == vm_id
    assert live_vms(api) == {vm_id}

    # A changed value: one more revision, known in the preview.
    configure(ws, sets={"app": {"vars": {"A": "2"}}}, vms={"w": "app"})
    assert previewed_revision(ws, "app") == (revision, revision + 1)
    ws.up()
    assert ws.outputs()["revisions"]["app"] == revision + 1 and ws.outputs()["vmIds"]["w"] != vm_id


def previewed_revision(ws: Workspace, name: str) -> tuple[int, int]:
    """The set's revision before and after, from the stack outputs a `preview --diff` shows; both known."""
    text = ws.preview().stdout
    change = re.search(rf"{name}\s*:\s*(\d+)\s*=>\s*(\d+)", text)
    assert change, text
    return int(change[1]), int(change[2])


def test_importing_missing_keys_fails_and_imports_nothing(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"C": "c"}}).raise_for_status()
    ws = workspace(tmp_path, server, api)
    for name, ids, missing in (("ghost", "NOPE1,NOPE2", ["NOPE1", "NOPE2"]), ("partial", "C,NOPE3", ["NOPE3"])):
        result = ws.run("import", "envvars:vers:EnvVars", name, ids, "--yes", "--protect=false",
                        "--generate-code=false", check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert f"cannot import {', '.join(map(repr, missing))}: the account's env set has no such variable" in output
    assert resources(ws) == {}
    assert stored(api) == {"C": "c"}


def test_an_imported_vm_matches_a_program_that_leaves_defaults_unset(
    tmp_path: Path, server: ServerProcess, api: Api,
) -> None:
    created = api.post("/api/v1/vm/new_root", params={"wait_boot": "true"}, json={"vm_config": {}})
    assert created.status_code in (200, 201), created.text
    vm_id = created.json()["vm_id"]
    ws = workspace(tmp_path, server, api)
    ws.run("import", "envvars:vers:Vm", "impvm", vm_id, "--yes", "--protect=false", "--generate-code=false")
    assert resources(ws)["impvm"]["inputs"]["vcpuCount"] == 1
    configure(ws, vms={"impvm": None})
    assert preview_json(ws) == ({STACK: ("same", {})}, {"same": 2})
    # The other way: spelling out the server's defaults on a VM created without them changes nothing.
    configure(ws, vms={"impvm": None, "made": None})
    ws.up()
    configure(ws, vms={"impvm": None, "made": {"vcpu_count": 1, "mem_size_mib": 512, "fs_size_mib": 1024,
                                               "image_name": "default", "kernel_name": "default.bin"}})
    assert preview_json(ws)[1] == {"same": 3}
    ws.destroy()
    assert live_vms(api) == set()


def test_api_key_problems_name_the_setting(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    ws = workspace(tmp_path, server, api)
    configure(ws, sets={"app": {"vars": {"A": "1"}}})
    # No key at all: preview fails, before anything is sent.
    token = ws.env.pop("VERS_API_KEY")
    result = ws.preview(check=False)
    assert result.returncode != 0
    assert ("no Vers API key is configured: set envvars:versApiKey (`pulumi config set --secret "
            "envvars:versApiKey KEY`) or the VERS_API_KEY environment variable") in result.stdout + result.stderr
    # A wrong key: refresh and destroy fail with the platform's 401 and where the key comes from.
    ws.env["VERS_API_KEY"] = token
    ws.up()
    ws.env["VERS_API_KEY"] = "not-a-valid-token"
    for command in (("refresh", "--yes", "--skip-preview"), ("destroy", "--yes", "--skip-preview")):
        result = ws.run(*command, check=False)
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        assert re.search(r"HTTP 401: .*\(the API key is envvars:versApiKey or, when that is unset, the "
                         r"VERS_API_KEY environment variable\)", output), output
        assert "not-a-valid-token" not in output
    assert stored(api) == {"A": "1"}


def test_refresh_preview_after_moves_is_clean(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    """A key moved and a resource renamed in one up: a refresh afterwards finds nothing missing."""
    ws = workspace(tmp_path, server, api)
    configure(ws, sets={"set1": {"vars": {"A": "1", "C": "3"}}}, vars={"x": {"key": "Y", "value": "y"}})
    ws.up()
    configure(ws, sets={"set1": {"vars": {"A": "1"}}},
              vars={"c": {"key": "C", "value": "3"}, "x2": {"key": "Y", "value": "y"}})
    ws.up()
    steps, counts = refresh_preview(ws)
    assert counts == {"same": 4}, steps


def test_replacing_a_resource_in_place_keeps_its_keys(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    """`pulumi up --replace`: the old copy's delete runs after the new copy wrote the same keys."""
    ws = workspace(tmp_path, server, api)
    shapes = [({"vars": {"x": {"key": "Y", "value": "y"}}, "sets": {"some": {"vars": {"A": "1"}}}}, ["EnvVar::x",
                                                                                                  "EnvVars::some"]),
              ({"vars": {}, "sets": {"all": {"vars": {"A": "1", "Y": "y"}, "exclusive": True}}}, ["EnvVars::all"])]
    for shape, replaced in shapes:
        configure(ws, **shape)
        ws.up()
        for resource in replaced:
            ws.up("--replace", f"urn:pulumi:dev::envvars-cli-test::envvars:vers:{resource}")
            assert stored(api) == {"A": "1", "Y": "y"}, resource
            assert state_vars(ws) == stored(api), resource
