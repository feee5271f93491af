"""The provider's Hoody ContainerEnv over gRPC, as the engine drives it, against a real reference server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from envvars_provider.protos import provider_pb2
from envvars_provider.values import UNKNOWN, to_struct
from envvars_server.launch import ServerProcess
from tests.conftest import Api, arm
from tests.hoody import delete, new_container, patch, running_env, stored
from tests.plugin import Plugin, plain, secret, urn

ENV = "envvars:hoody:ContainerEnv"
DIFF = provider_pb2.PropertyDiff


def token(api: Api) -> str:
    return str(api.headers["Authorization"]).split()[1]


def check(plugin: Plugin, name: str, news: dict[str, Any], token_: str = ENV) -> provider_pb2.CheckResponse:
    return plugin.stub.Check(provider_pb2.CheckRequest(urn=urn(token_, name), type=token_, news=to_struct(news)))


def diff(plugin: Plugin, olds: dict[str, Any], news: dict[str, Any]) -> provider_pb2.DiffResponse:
    return plugin.stub.Diff(provider_pb2.DiffRequest(
        id="x", urn=urn(ENV, "r"), type=ENV, olds=to_struct(olds), news=to_struct(news)))


def create(plugin: Plugin, name: str, properties: dict[str, Any]) -> provider_pb2.CreateResponse:
    return plugin.stub.Create(provider_pb2.CreateRequest(urn=urn(ENV, name), type=ENV,
                                                         properties=to_struct(properties)))


def update(plugin: Plugin, name: str, olds: Any, news: dict[str, Any]) -> provider_pb2.UpdateResponse:
    """An update of the resource whose state is `olds` (a response holding `properties`) to `news`."""
    return plugin.stub.Update(provider_pb2.UpdateRequest(
        id=news["containerId"], urn=urn(ENV, name), type=ENV, olds=olds.properties, news=to_struct(news)))


def read(plugin: Plugin, name: str, resource_id: str, properties: Any = None) -> provider_pb2.ReadResponse:
    return plugin.stub.Read(provider_pb2.ReadRequest(id=resource_id, urn=urn(ENV, name), type=ENV,
                                                     properties=properties))


def remove(plugin: Plugin, name: str, resource: Any) -> None:
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=resource.id, urn=urn(ENV, name), type=ENV,
                                                  properties=resource.properties))


def env(container: str, variables: dict[str, str], restart: bool = False) -> dict[str, Any]:
    return {"containerId": container, "vars": secret(variables), "restartOnChange": restart}


def test_check_wraps_values_as_secrets_and_fills_the_default(plugin: Plugin) -> None:
    response = check(plugin, "app", {"containerId": "cnt_a", "vars": {"A": "plain-value"}})
    assert not response.failures
    assert plain(response.inputs) == {"containerId": "cnt_a", "vars": secret({"A": "plain-value"}),
                                      "restartOnChange": False}


@pytest.mark.parametrize(("variables", "reason"), [
    ({"HOODY_TOKEN": "v"}, "env var key 'HOODY_TOKEN' uses the prefix 'HOODY_', which Hoody reserves"),
    ({"1BAD": "v"}, "env var key '1BAD' is invalid: keys must match ^[a-zA-Z_][a-zA-Z0-9_]*$"),
    ({"V": "x" * 65_537}, "value of env var 'V' is too long: 65537 chars, the limit is 65536"),
])
def test_check_refuses_what_hoody_refuses_naming_the_key(plugin: Plugin, variables: dict, reason: str) -> None:
    response = check(plugin, "app", {"containerId": "cnt_a", "vars": secret(variables)})
    # No property named: the engine would print a named property's (secret) value beside the reason.
    assert [(f.property, f.reason) for f in response.failures] == [("", reason)]


def test_check_takes_more_keys_than_one_request_holds(plugin: Plugin) -> None:
    assert not check(plugin, "big", {"containerId": "cnt_a", "vars": {f"K{n}": "v" for n in range(450)}}).failures
    assert not check(plugin, "empty", {"containerId": "cnt_b", "vars": {}}).failures
    assert not check(plugin, "later", {"containerId": UNKNOWN, "vars": {"K": UNKNOWN}}).failures


def test_check_compares_claims_per_container_only(plugin: Plugin) -> None:
    assert not check(plugin, "one", {"containerId": "cnt_a", "vars": {"PORT": "1"}}).failures
    assert not check(plugin, "two", {"containerId": "cnt_b", "vars": {"PORT": "2"}}).failures
    assert not check(plugin, "vers", {"key": "PORT", "value": "3"}, "envvars:vers:EnvVar").failures
    failures = check(plugin, "three", {"containerId": "cnt_a", "vars": {"PORT": "3"}}).failures
    assert [f.reason for f in failures] == ["key 'PORT' is also managed by 'one': manage each key in exactly one "
                                            "resource"]


def test_check_names_the_settings_when_unset(tmp_path: Path, server: ServerProcess) -> None:
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"versUrl": server.url})))
        failures = check(plugin, "app", {"containerId": "cnt_a", "vars": {"A": "1"}}).failures
        assert [f.reason for f in failures] == [
            "no Hoody API URL is configured: set envvars:hoodyUrl (`pulumi config set envvars:hoodyUrl URL`) or the "
            "HOODY_URL environment variable",
            "no Hoody token is configured: set envvars:hoodyToken (`pulumi config set --secret envvars:hoodyToken "
            "TOKEN`) or the HOODY_TOKEN environment variable"]
    finally:
        plugin.close()


def test_diff_is_per_key_and_a_new_container_replaces(plugin: Plugin) -> None:
    state = {**env("cnt_a", {"A": "1", "B": "2", "C": "3"}), "synced": True}
    response = diff(plugin, state, env("cnt_a", {"A": "1", "B": "changed", "D": "4"}))
    assert (list(response.diffs), list(response.replaces)) == (["vars"], [])
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        'vars["B"]': DIFF.UPDATE, 'vars["C"]': DIFF.DELETE, 'vars["D"]': DIFF.ADD}
    assert diff(plugin, state, env("cnt_a", {"A": "1", "B": "2", "C": "3"})).changes == \
        provider_pb2.DiffResponse.DIFF_NONE
    assert list(diff(plugin, state, env("cnt_b", {"A": "1", "B": "2", "C": "3"})).replaces) == ["containerId"]


def test_diff_owes_a_restart_while_unsynced_with_restart_on_change(plugin: Plugin) -> None:
    unsynced = {**env("cnt_a", {"A": "1"}), "synced": False}
    assert diff(plugin, unsynced, env("cnt_a", {"A": "1"})).changes == provider_pb2.DiffResponse.DIFF_NONE
    response = diff(plugin, unsynced, env("cnt_a", {"A": "1"}, restart=True))
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        "restartOnChange": DIFF.UPDATE, "synced": DIFF.UPDATE}


def test_lifecycle_leaves_other_keys_and_waits_for_a_restart(plugin: Plugin, api: Api) -> None:
    container = new_container(api)
    patch(api, container, {"OTHER": "untouched"})
    created = create(plugin, "app", env(container, {"A": "1", "B": "2"}))
    assert created.id == container
    assert plain(created.properties) == {**env(container, {"A": "1", "B": "2"}), "synced": False}
    assert stored(api, container) == {"OTHER": "untouched", "A": "1", "B": "2"}
    assert "A" not in running_env(api, container)  # stored, not yet in the running container

    updated = update(plugin, "app", created, env(container, {"A": "1", "C": "3"}))
    assert plain(updated.properties)["synced"] is False
    assert stored(api, container) == {"OTHER": "untouched", "A": "1", "C": "3"}

    patch(api, container, {"A": "drifted", "NEW": "ignored"})
    delete(api, container, "C")
    refreshed = read(plugin, "app", container, updated.properties)
    assert plain(refreshed.properties) == {**env(container, {"A": "drifted"}), "synced": False}
    assert plain(refreshed.inputs) == env(container, {"A": "drifted"})

    remove(plugin, "app", refreshed)
    assert stored(api, container) == {"OTHER": "untouched", "NEW": "ignored"}


def test_restart_on_change_puts_the_change_in_the_running_container(plugin: Plugin, api: Api) -> None:
    container = new_container(api)
    created = create(plugin, "app", env(container, {"GREETING": "hello"}, restart=True))
    assert plain(created.properties)["synced"] is True
    assert running_env(api, container)["GREETING"] == "hello"
    updated = update(plugin, "app", created, env(container, {"GREETING": "bye"}, restart=True))
    assert plain(updated.properties)["synced"] is True
    assert running_env(api, container)["GREETING"] == "bye"
    # Turning it on for a container left unsynced restarts it at the next apply.
    unsynced = update(plugin, "app", updated, env(container, {"GREETING": "later"}))
    assert plain(unsynced.properties)["synced"] is False
    assert running_env(api, container)["GREETING"] == "bye"
    resynced = update(plugin, "app", unsynced, env(container, {"GREETING": "later"}, restart=True))
    assert plain(resynced.properties)["synced"] is True
    assert running_env(api, container)["GREETING"] == "later"


def test_many_keys_are_written_200_to_a_request(plugin: Plugin, api: Api) -> None:
    container = new_container(api)
    variables = {f"K{n:03}": f"v{n}" for n in range(450)}
    create(plugin, "big", env(container, variables))
    assert stored(api, container) == variables


def test_keys_on_other_containers_and_claimed_keys_stay(plugin: Plugin, api: Api) -> None:
    first, second = new_container(api, "first"), new_container(api, "second")
    one = create(plugin, "one", env(first, {"PORT": "1", "MOVED": "m"}))
    two = create(plugin, "two", env(second, {"PORT": "2"}))
    # This deployment's program: `one` gives MOVED to a new resource on the same container.
    assert not check(plugin, "new", {"containerId": first, "vars": {"MOVED": "m"}}).failures
    assert not check(plugin, "one", {"containerId": first, "vars": {"PORT": "1"}}).failures
    update(plugin, "one", one, env(first, {"PORT": "1"}))
    assert stored(api, first) == {"PORT": "1", "MOVED": "m"}
    remove(plugin, "two", two)
    assert stored(api, first) == {"PORT": "1", "MOVED": "m"}
    assert stored(api, second) == {}


def test_another_users_container_is_gone_and_never_written(plugin: Plugin, new_api: Callable[[], Api]) -> None:
    owner = new_api()
    theirs = new_container(owner)
    patch(owner, theirs, {"A": "theirs"})
    assert read(plugin, "theirs", theirs, to_struct(env(theirs, {"A": "1"}))).id == ""
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "theirs", env(theirs, {"A": "1"}))
    assert caught.value.details().startswith(
        f"creating envvars:hoody:ContainerEnv 'theirs': PATCH /api/v1/containers/{theirs}/env failed with HTTP 404: "
        "CONTAINER_NOT_FOUND: ")
    # Deleting a resource whose container is gone (to this user) succeeds, and touches nothing.
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=theirs, urn=urn(ENV, "theirs"), type=ENV, properties=to_struct(
        {**env(theirs, {"A": "1"}), "synced": True})))
    assert stored(owner, theirs) == {"A": "theirs"}


@pytest.mark.parametrize(("suffix", "expected"), [
    ("", {"K1": "1", "K2": "2", "OTHER": "o"}),
    ("/K1,K2", {"K1": "1", "K2": "2"}),
])
def test_import(plugin: Plugin, api: Api, suffix: str, expected: dict[str, str]) -> None:
    container = new_container(api)
    patch(api, container, {"OTHER": "o", "K1": "1", "K2": "2"})
    imported = read(plugin, "imp", container + suffix)
    assert imported.id == container + suffix
    assert plain(imported.inputs) == env(container, expected)
    assert plain(imported.properties)["synced"] is True


@pytest.mark.parametrize(("suffix", "error"), [
    ("/K1,MISSING", "cannot import 'MISSING': container {c!r} has no such variable; import only keys that exist"),
    ("/HOODY_ID", "cannot import 'HOODY_ID': env var key 'HOODY_ID' uses the prefix 'HOODY_', which Hoody reserves"),
    ("/K1,", "import id '{c}/K1,' has an empty key: give CONTAINER_ID or CONTAINER_ID/KEY1,KEY2"),
])
def test_import_of_keys_that_cannot_be_managed_fails_naming_them(plugin: Plugin, api: Api, suffix: str,
                                                                 error: str) -> None:
    container = new_container(api)
    patch(api, container, {"K1": "1"})
    with pytest.raises(grpc.RpcError) as caught:
        read(plugin, "imp", container + suffix)
    assert caught.value.details() == "reading envvars:hoody:ContainerEnv 'imp': " + error.format(c=container)


def test_a_wrong_token_names_the_setting(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    container = new_container(api)
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.configure(server.url, "not-a-valid-token")
        with pytest.raises(grpc.RpcError) as caught:
            read(plugin, "app", container, to_struct(env(container, {"A": "1"})))
        assert "HTTP 401" in caught.value.details()
        assert caught.value.details().endswith(
            "(the token is envvars:hoodyToken or, when that is unset, the HOODY_TOKEN environment variable)")
    finally:
        plugin.close()


def test_a_failed_request_part_way_records_what_was_written(tmp_path: Path, faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("hoody-partial")) as api:
        container = new_container(api)
        plugin = Plugin(tmp_path / "plugin.stderr")
        try:
            plugin.configure(faulty_server.url, token(api))
            arm(faulty_server, {"kind": "status", "status": 400, "methods": ["PATCH"], "every": 2, "count": 1})
            variables = {f"K{n:03}": "v" for n in range(250)}
            with pytest.raises(grpc.RpcError) as caught:
                create(plugin, "big", env(container, variables))
            reached = partial_state(caught.value)
            first_request = dict(sorted(variables.items())[:200])
            assert reached == (container, {**env(container, first_request), "synced": False})
            assert stored(api, container) == first_request
        finally:
            plugin.close()


def test_a_failed_restart_is_retried_at_the_next_apply(tmp_path: Path, faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("hoody-restart")) as api:
        container = new_container(api)
        plugin = Plugin(tmp_path / "plugin.stderr")
        try:
            plugin.configure(faulty_server.url, token(api))
            arm(faulty_server, {"kind": "status", "status": 500, "methods": ["POST"],
                                "path_prefix": f"/api/v1/containers/{container}/restart", "count": 1})
            with pytest.raises(grpc.RpcError) as caught:
                create(plugin, "app", env(container, {"GREETING": "hello"}, restart=True))
            resource_id, reached = partial_state(caught.value)
            assert (resource_id, reached) == (container, {**env(container, {"GREETING": "hello"}, True),
                                                          "synced": False})
            assert stored(api, container) == {"GREETING": "hello"}
            assert "GREETING" not in running_env(api, container)
            # The next up: the same inputs differ from the state by the restart still owed.
            state = to_struct(reached)
            assert {path: d.kind for path, d in diff(plugin, reached, env(container, {"GREETING": "hello"}, True))
                    .detailedDiff.items()} == {"synced": DIFF.UPDATE}
            finished = plugin.stub.Update(provider_pb2.UpdateRequest(
                id=resource_id, urn=urn(ENV, "app"), type=ENV, olds=state,
                news=to_struct(env(container, {"GREETING": "hello"}, True))))
            assert plain(finished.properties)["synced"] is True
            assert running_env(api, container)["GREETING"] == "hello"
        finally:
            plugin.close()


def partial_state(error: Any) -> tuple[str, dict[str, Any]]:
    """The id and state an aborted operation reported as reached (ErrorResourceInitFailed)."""
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    failed = provider_pb2.ErrorResourceInitFailed()
    assert status.details[0].Unpack(failed)
    return failed.id, plain(failed.properties)
