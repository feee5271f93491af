"""The provider's Phala CvmEnv over gRPC, as the engine drives it, against a real reference server: sealed whole
sets, per-key diffs without values, the on-chain registration with and without a registrar, 409 and timeouts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from envvars_provider.protos import provider_pb2
from envvars_provider.values import UNKNOWN, to_struct
from envvars_server.launch import ServerProcess
from tests import test_provider_grpc_sevalla as calls
from tests.conftest import Api, arm, injected
from tests.phala import LEDGER, allowed, info, new_cvm, oob_update, register, running_env, settled
from tests.plugin import Plugin, configured, plain, secret, urn
from tests.test_provider_grpc_hoody import partial_state, token

ENV = "envvars:phala:CvmEnv"
DIFF = provider_pb2.PropertyDiff
check, diff, create, read, remove = (partial(call, type_=ENV) for call in (
    calls.check, calls.diff, calls.create, calls.read, calls.remove))


def env(cvm: str, variables: dict[str, str], keys: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """Inputs as Check leaves them: `envKeys` the sorted keys of `vars` unless given."""
    return {"cvmId": cvm, "vars": secret(variables), "envKeys": sorted(variables) if keys is None else keys, **extra}


def update(plugin: Plugin, olds: Any, news: dict[str, Any], timeout: float = 0.0) -> SimpleNamespace:
    response = plugin.stub.Update(provider_pb2.UpdateRequest(
        id=olds.id, urn=urn(ENV, "cvm"), type=ENV, olds=olds.properties, news=to_struct(news), timeout=timeout))
    return SimpleNamespace(id=olds.id, properties=response.properties)


def failure(caught: Any) -> str:
    return str(caught.value.details())


@pytest.fixture
def registrar(tmp_path: Path, server: ServerProcess, api: Api) -> Iterator[Plugin]:
    """The provider configured with the reference server's ledger as its registrar."""
    with configured(tmp_path / "registrar.stderr", server.url, token(api), phalaRegistrarUrl=server.url + LEDGER,
                    phalaRegistrarToken=secret(token(api))) as plugin:
        yield plugin


def test_check_fills_env_keys_and_refuses_what_phala_refuses(plugin: Plugin) -> None:
    response = check(plugin, "a", {"cvmId": "cvm-1", "vars": {"B": "plain-value", "A": "1"}})
    assert not response.failures
    assert plain(response.inputs) == env("cvm-1", {"A": "1", "B": "plain-value"})
    given = check(plugin, "b", {"cvmId": "cvm-2", "vars": {"A": "1"}, "envKeys": ["Z", "A", "Z"]})
    assert plain(given.inputs)["envKeys"] == ["A", "Z"]
    assert not check(plugin, "later", {"cvmId": UNKNOWN, "vars": {"K": UNKNOWN}}).failures
    assert plain(check(plugin, "whole", {"cvmId": "cvm-5", "vars": UNKNOWN}).inputs)["envKeys"] == UNKNOWN
    bad = check(plugin, "bad", {"cvmId": "cvm-3", "vars": secret({"1X": "v"}), "envKeys": ["OK", "BAD KEY"],
                                "composeHash": "ab" * 32})
    assert [(f.property, f.reason) for f in bad.failures] == [
        ("", "env var key '1X' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
        ("envKeys", "envKeys: env var key 'BAD KEY' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
        ("composeHash", "composeHash and transactionHash go together: give both (the hash a failed apply named, "
                        "and the transaction that registered it) or neither")]
    # One resource holds a CVM's whole set.
    assert [f.reason for f in check(plugin, "c", {"cvmId": "cvm-1", "vars": {"C": "3"}}).failures] == [
        "this resource manages the whole set of its CVM (Phala replaces it on every write) but 'a' manages the same "
        "CVM: put all its variables in one CvmEnv"]
    # A key outside envKeys is accepted, with a warning naming it (never its value).
    assert not check(plugin, "d", {"cvmId": "cvm-4", "vars": {"A": "1", "HIDDEN": "h"}, "envKeys": ["A"]}).failures
    time.sleep(0.1)
    assert "env var 'HIDDEN' is not in envKeys: it is not sent, as the CVM would drop it" in plugin.stderr_text()


def test_check_names_the_api_key_when_unset(tmp_path: Path, server: ServerProcess) -> None:
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"phalaUrl": server.url})))
        assert [f.reason for f in check(plugin, "a", {"cvmId": "c", "vars": {"A": "1"}}).failures] == [
            "no Phala API key is configured: set envvars:phalaApiKey (`pulumi config set --secret "
            "envvars:phalaApiKey API_KEY`) or the PHALA_CLOUD_API_KEY environment variable"]
    finally:
        plugin.close()


def test_diff_is_per_key_from_state_and_never_shows_a_value(plugin: Plugin) -> None:
    state = {**env("cvm-1", {"A": "old-a", "B": "old-b", "C": "old-c"}), "appId": "app", "running": True}
    response = diff(plugin, state, env("cvm-1", {"A": "old-a", "B": "new-b", "D": "new-d"}))
    assert (sorted(response.diffs), list(response.replaces)) == (["envKeys", "vars"], [])
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        'vars["B"]': DIFF.UPDATE, 'vars["C"]': DIFF.DELETE, 'vars["D"]': DIFF.ADD, "envKeys": DIFF.UPDATE}
    assert not any(value in str(response) for value in ("old-", "new-"))
    same = env("cvm-1", {"A": "old-a", "B": "old-b", "C": "old-c"})
    assert diff(plugin, state, same).changes == provider_pb2.DiffResponse.DIFF_NONE
    # A registration's proof alone changes nothing; a new CVM replaces; a wait left unfinished is owed.
    proof = {"composeHash": "ab" * 32, "transactionHash": "0x" + "cd" * 32}
    assert diff(plugin, state, {**same, **proof}).changes == provider_pb2.DiffResponse.DIFF_NONE
    assert list(diff(plugin, state, {**same, "cvmId": "cvm-2"}).replaces) == ["cvmId"]
    assert {path: d.kind for path, d in diff(plugin, {**state, "running": False}, same).detailedDiff.items()} == {
        "running": DIFF.UPDATE}


def test_lifecycle_replaces_the_whole_set_and_sends_only_allowed_keys(plugin: Plugin, api: Api) -> None:
    cvm = new_cvm(api)
    created = create(plugin, "cvm", env(cvm, {"A": "1", "B": "2", "HIDDEN": "never"}, ["A", "B"]))
    assert created.id == cvm
    assert plain(created.properties) == {**env(cvm, {"A": "1", "B": "2", "HIDDEN": "never"}, ["A", "B"]),
                                         "appId": info(api, cvm)["app_id"], "running": True}
    assert info(api, cvm)["status"] == "running"  # waited for
    assert ({key: running_env(api, cvm).get(key) for key in ("A", "B", "HIDDEN")}, allowed(api, cvm)) == \
        ({"A": "1", "B": "2", "HIDDEN": None}, ["A", "B"])

    updated = update(plugin, created, env(cvm, {"B": "changed", "C": "3"}))
    assert {key: running_env(api, cvm).get(key) for key in ("A", "B", "C")} == {"A": None, "B": "changed", "C": "3"}
    assert allowed(api, cvm) == ["B", "C"]

    # Refresh: the CVM's allowed keys narrowed by another client are reported; values stay those of the state.
    oob_update(api, cvm, {"B": "other"}, ["B"])
    settled(api, cvm)
    refreshed = read(plugin, "cvm", cvm, updated.properties)
    assert plain(refreshed.inputs) == env(cvm, {"B": "changed", "C": "3"}, ["B"])
    time.sleep(0.1)
    assert f"CVM {cvm!r} no longer allows 'C' (its allowed_envs changed outside this resource)" in \
        plugin.stderr_text()

    # Delete: an empty set, the allowed keys kept (no registration needed).
    remove(plugin, "cvm", refreshed)
    assert not {"A", "B", "C"} & set(running_env(api, cvm))
    assert (allowed(api, cvm), info(api, cvm)["status"]) == (["B"], "running")
    assert read(plugin, "gone", "9b3c1f50-0000-4000-8000-000000000000", to_struct(env("x", {}))).id == ""


def test_onchain_kms_registers_through_the_registrar(registrar: Plugin, api: Api) -> None:
    cvm = new_cvm(api, "onchain")
    created = create(registrar, "cvm", env(cvm, {"A": "1"}))  # allowed_envs [] -> [A]: 465, registered, again
    assert (allowed(api, cvm), running_env(api, cvm)["A"]) == (["A"], "1")
    update(registrar, created, env(cvm, {"A": "2", "B": "3"}))
    assert (allowed(api, cvm), {k: running_env(api, cvm)[k] for k in "AB"}) == (["A", "B"], {"A": "2", "B": "3"})


def test_onchain_kms_without_a_registrar_says_how_to_finish_by_hand(plugin: Plugin, api: Api) -> None:
    cvm = new_cvm(api, "onchain")
    app_id = info(api, cvm)["app_id"]
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "cvm", env(cvm, {"A": "secret-a"}))
    message = failure(caught)
    needed = message.split("needs compose hash ")[1].split()[0]
    assert message == (
        f"creating {ENV} 'cvm': CVM {cvm!r} has its KMS on chain 8453: changing its allowed keys (envKeys) needs "
        f"compose hash {needed} registered for app {app_id} first, and no registrar is configured. Nothing was "
        "changed. Register the hash on the app's contract (addComposeHash), then set "
        f'composeHash: "{needed}" and transactionHash: "<the transaction\'s hash>" on this resource and run '
        "`pulumi up` again; or configure a registrar: `pulumi config set envvars:phalaRegistrarUrl URL`")
    assert (allowed(api, cvm), "A" in running_env(api, cvm)) == ([], False)
    # A proof of another change is named as such; the right one finishes the change.
    stale = {"composeHash": "ab" * 32, "transactionHash": register(api, app_id, "ab" * 32)}
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "cvm", env(cvm, {"A": "secret-a"}, **stale))
    assert f"(composeHash {'ab' * 32!r} is not that hash: it was registered for another change)" in failure(caught)
    proof = {"composeHash": needed, "transactionHash": register(api, app_id, needed)}
    create(plugin, "cvm", env(cvm, {"A": "secret-a"}, **proof))
    assert (allowed(api, cvm), running_env(api, cvm)["A"]) == (["A"], "secret-a")
    assert "secret-a" not in message + plugin.stderr_text()


def test_an_update_in_progress_is_waited_out(plugin: Plugin, api: Api) -> None:
    cvm = new_cvm(api)
    created = create(plugin, "cvm", env(cvm, {"A": "1"}))
    oob_update(api, cvm, {"A": "other"})  # restarting now: the provider's PATCH gets 409 until it runs again
    update(plugin, created, env(cvm, {"A": "2"}))
    assert running_env(api, cvm)["A"] == "2"


def test_409_until_the_timeout_fails_naming_it_and_a_slow_restart_is_owed(tmp_path: Path,
                                                                          faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("phala-busy")) as api, \
            configured(tmp_path / "plugin.stderr", faulty_server.url, token(api)) as plugin:
        cvm = new_cvm(api)
        created = create(plugin, "cvm", env(cvm, {"A": "1"}))
        arm(faulty_server, {"kind": "status", "status": 409, "methods": ["PATCH"], "path_prefix": "/api/v1/cvms",
                            "count": 100})
        started, before = time.monotonic(), injected(faulty_server)
        with pytest.raises(grpc.RpcError) as caught:
            update(plugin, created, env(cvm, {"A": "2"}), timeout=2)
        assert time.monotonic() - started < 5 and injected(faulty_server) - before == 3  # at 0, 0.5 and 1.5 s
        assert failure(caught).startswith(f"updating {ENV} 'cvm': PATCH /api/v1/cvms/{cvm}/envs failed with HTTP 409:")
        assert failure(caught).endswith("(still busy after 3 attempt(s))")
        arm(faulty_server)
        assert running_env(api, cvm)["A"] == "1"

        # A restart slower than the timeout: the set is stored, the state says the CVM is not running yet, and
        # the next apply (owed by the diff) only waits.
        with pytest.raises(grpc.RpcError) as caught:
            update(plugin, created, env(cvm, {"A": "3"}), timeout=0.001)
        assert "did not run again within 0 s (it is 'restarting', an update in progress)" in failure(caught)
        resource_id, reached = partial_state(caught.value)
        assert (resource_id, reached["running"]) == (cvm, False)
        owed = SimpleNamespace(id=cvm, properties=to_struct(reached))
        finished = update(plugin, owed, env(cvm, {"A": "3"}))
        assert plain(finished.properties)["running"] is True
        assert running_env(api, cvm)["A"] == "3"


def test_another_workspaces_cvm_is_refused_naming_the_api_key(plugin: Plugin, new_api: Any) -> None:
    theirs = new_cvm(new_api())
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "theirs", env(theirs, {"A": "1"}))
    assert failure(caught) == (
        f"creating {ENV} 'theirs': GET /api/v1/cvms/{theirs} failed with HTTP 403: CVM not in workspace (the API "
        "key is envvars:phalaApiKey or, when that is unset, the PHALA_CLOUD_API_KEY environment variable)")
