"""The provider's Vertra AppEnvironments over gRPC, as the engine drives it, against a real reference server."""

from __future__ import annotations

from collections.abc import Callable
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
from tests.conftest import Api, arm
from tests.plugin import Plugin, configured, plain, secret
from tests.test_provider_grpc_hoody import partial_state, token
from tests.vertra import delete, new_app, notes, put, running_env, stored

ENV = "envvars:vertra:AppEnvironments"
DIFF = provider_pb2.PropertyDiff
check, diff, create, update, read, remove = (partial(call, type_=ENV) for call in (
    calls.check, calls.diff, calls.create, calls.update, calls.read, calls.remove))


def env(app: str, variables: dict[str, str], notes_: dict[str, str] | None = None,
        restart: bool = False) -> dict[str, Any]:
    return {"appId": app, "vars": secret(variables), **({"notes": notes_} if notes_ else {}),
            "restartOnChange": restart}


def failure(error: Any) -> str:
    return str(error.value.details())


def test_check_wraps_values_as_secrets_and_fills_the_default(plugin: Plugin) -> None:
    response = check(plugin, "app", {"appId": "app1", "vars": {"A": "plain-value"}, "notes": {"A": "why"}})
    assert not response.failures
    assert plain(response.inputs) == {"appId": "app1", "vars": secret({"A": "plain-value"}), "notes": {"A": "why"},
                                      "restartOnChange": False}
    assert not check(plugin, "later", {"appId": UNKNOWN, "vars": {"K": UNKNOWN}}).failures
    assert not check(plugin, "full", {"appId": "app2", "vars": {f"K{n}": "v" for n in range(25)}}).failures


@pytest.mark.parametrize(("variables", "reason"), [
    ({"PORT": "v"}, "env var key 'PORT' is reserved by Vertra (in any case) and cannot be set"),
    ({"path": "v"}, "env var key 'path' is reserved by Vertra (in any case) and cannot be set"),
    ({"K" * 101: "v"}, f"env var key {'K' * 64 + '…'!r} is too long: 101 chars, the limit is 100"),
    ({"V": "x" * 1001}, "value of env var 'V' is too long: 1001 chars, the limit is 1000"),
    ({f"K{n:02}": "v" for n in range(26)},
     "too many env vars: the set would hold 26 after this change, the limit on Vertra is 25"),
])
def test_check_refuses_what_vertra_refuses_naming_the_key(plugin: Plugin, variables: dict, reason: str) -> None:
    response = check(plugin, "app", {"appId": "app1", "vars": secret(variables)})
    # No property named: the engine would print a named property's (secret) value beside the reason.
    assert [(f.property, f.reason) for f in response.failures] == [("", reason)]


def test_check_refuses_notes_of_other_keys_and_a_key_managed_twice_in_one_app(plugin: Plugin) -> None:
    failures = check(plugin, "noted", {"appId": "app0", "vars": {"A": "1"}, "notes": {"B": "why"}}).failures
    assert [(f.property, f.reason) for f in failures] == [
        ("notes", "notes has a note for 'B', which is not in vars: a note describes one of the resource's variables")]
    failures = check(plugin, "long", {"appId": "app9", "vars": {"A": "1"}, "notes": {"A": "n" * 1001}}).failures
    assert [f.reason for f in failures] == ["note of env var 'A' is too long: 1001 chars, the limit is 1000"]
    assert not check(plugin, "one", {"appId": "app1", "vars": {"A": "1"}}).failures
    assert not check(plugin, "elsewhere", {"appId": "app2", "vars": {"A": "1"}}).failures
    # `APP_ID-ORG_ID` names the same app.
    assert [f.reason for f in check(plugin, "two", {"appId": "app1-org1", "vars": {"A": "2"}}).failures] == [
        "key 'A' is also managed by 'one': manage each key in exactly one resource"]


def test_check_names_the_token_when_unset(tmp_path: Path, server: ServerProcess) -> None:
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"vertraUrl": server.url})))
        assert [f.reason for f in check(plugin, "app", {"appId": "app1", "vars": {"A": "1"}}).failures] == [
            "no Vertra token is configured: set envvars:vertraToken (`pulumi config set --secret "
            "envvars:vertraToken TOKEN`) or the VERTRA_TOKEN environment variable"]
    finally:
        plugin.close()


def test_diff_is_per_key_for_values_and_notes_and_a_new_app_replaces(plugin: Plugin) -> None:
    state = {**env("app1", {"A": "1", "B": "2", "C": "3"}, {"A": "note"}), "restartPending": False}
    response = diff(plugin, state, env("app1", {"A": "1", "B": "changed", "D": "4"}, {"A": "new note", "D": "d"}))
    assert (sorted(response.diffs), list(response.replaces)) == (["notes", "vars"], [])
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        'vars["B"]': DIFF.UPDATE, 'vars["C"]': DIFF.DELETE, 'vars["D"]': DIFF.ADD,
        'notes["A"]': DIFF.UPDATE, 'notes["D"]': DIFF.ADD}
    assert diff(plugin, state, env("app1", {"A": "1", "B": "2", "C": "3"}, {"A": "note"})).changes == \
        provider_pb2.DiffResponse.DIFF_NONE
    assert list(diff(plugin, state, env("app2", {"A": "1", "B": "2", "C": "3"}, {"A": "note"})).replaces) == ["appId"]
    unnoted = {**env("app1", {"A": "1"}), "restartPending": True}
    assert diff(plugin, unnoted, env("app1", {"A": "1"})).changes == provider_pb2.DiffResponse.DIFF_NONE
    assert {path: d.kind for path, d in diff(plugin, unnoted, env("app1", {"A": "1"}, restart=True))
            .detailedDiff.items()} == {"restartOnChange": DIFF.UPDATE, "restartPending": DIFF.UPDATE}


def test_lifecycle_leaves_other_keys_keeps_notes_and_sees_drift(plugin: Plugin, api: Api) -> None:
    app = new_app(api)
    put(api, app, {"OTHER": "untouched"})
    created = create(plugin, "app", env(app, {"A": "1", "B": "2"}, {"A": "first"}))
    assert created.id == app
    assert plain(created.properties) == {**env(app, {"A": "1", "B": "2"}, {"A": "first"}), "restartPending": True}
    assert stored(api, app) == {"OTHER": "untouched", "A": "1", "B": "2"}
    assert notes(api, app) == {"OTHER": None, "A": "first", "B": None}

    updated = update(plugin, "app", created, env(app, {"A": "1", "C": "3"}, {"C": "third"}))
    assert stored(api, app) == {"OTHER": "untouched", "A": "1", "C": "3"}
    assert notes(api, app) == {"OTHER": None, "A": None, "C": "third"}

    put(api, app, {"A": "drifted", "NEW": "ignored"}, A="out of band")
    delete(api, app, "C")
    refreshed = read(plugin, "app", app, updated.properties)
    assert plain(refreshed.properties) == {**env(app, {"A": "drifted"}, {"A": "out of band"}), "restartPending": True}
    assert plain(refreshed.inputs) == env(app, {"A": "drifted"}, {"A": "out of band"})

    remove(plugin, "app", refreshed)
    assert stored(api, app) == {"OTHER": "untouched", "NEW": "ignored"}


def test_restart_on_change_puts_the_change_in_the_running_app(plugin: Plugin, api: Api) -> None:
    app = new_app(api)
    created = create(plugin, "app", env(app, {"GREETING": "hello"}, restart=True))
    assert plain(created.properties)["restartPending"] is False
    assert running_env(api, app)["GREETING"] == "hello"
    later = update(plugin, "app", created, env(app, {"GREETING": "later"}))
    assert plain(later.properties)["restartPending"] is True
    assert running_env(api, app)["GREETING"] == "hello"
    # Turning it on while a change waits restarts the app at the next apply, with nothing to write.
    resynced = update(plugin, "app", later, env(app, {"GREETING": "later"}, restart=True))
    assert plain(resynced.properties)["restartPending"] is False
    assert running_env(api, app)["GREETING"] == "later"
    remove(plugin, "app", resynced)
    assert "GREETING" not in running_env(api, app)


def test_the_app_limit_fails_the_write_whole_and_a_removal_makes_room_first(plugin: Plugin, api: Api) -> None:
    app = new_app(api)
    others = {f"OTHER_{n:02}": "o" for n in range(22)}
    put(api, app, others)
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "app", env(app, {"A": "1", "B": "2", "C": "3", "D": "4"}))
    assert failure(caught) == (
        f"creating {ENV} 'app': writing 4 variable(s) to app {app!r} failed, none of them written: PUT "
        f"/v1/apps/{app}/environments failed with HTTP 400: ENV_LIMIT_EXCEEDED: "
        "too many env vars: the set would hold 26 after this change, the limit on Vertra is 25. The app holds 22 "
        "variable(s) this resource does not manage (set by another resource or outside Pulumi) and this resource "
        "manages 4: together more than Vertra's 25 per app. Remove variables from the app or from this resource")
    assert stored(api, app) == others

    # The app full, a key renamed: the old one is removed first, so the new one fits.
    made = create(plugin, "app", env(app, {"A": "1", "B": "2", "C": "3"}))
    renamed = update(plugin, "app", made, env(app, {"A": "1", "B": "2", "D": "4"}))
    assert stored(api, app) == {**others, "A": "1", "B": "2", "D": "4"}
    assert plain(renamed.properties)["vars"] == secret({"A": "1", "B": "2", "D": "4"})


def test_a_write_refused_after_the_removal_records_the_removal(plugin: Plugin, api: Api) -> None:
    app = new_app(api)
    made = create(plugin, "app", env(app, {"A": "1", "B": "2"}))
    put(api, app, {f"OTHER_{n:02}": "o" for n in range(23)})  # 25: full
    with pytest.raises(grpc.RpcError) as caught:
        update(plugin, "app", made, env(app, {"B": "2", "C": "3", "D": "4"}))
    assert "ENV_LIMIT_EXCEEDED" in failure(caught)
    assert partial_state(caught.value) == (app, {**env(app, {"B": "2"}), "restartPending": True})
    assert set(stored(api, app)) == {"B", *(f"OTHER_{n:02}" for n in range(23))}


def test_another_users_app_is_gone_and_never_written(plugin: Plugin, new_api: Callable[[], Api]) -> None:
    owner = new_api()
    theirs = new_app(owner)
    put(owner, theirs, {"A": "theirs"})
    assert read(plugin, "theirs", theirs, to_struct(env(theirs, {"A": "1"}))).id == ""
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "theirs", env(theirs, {"A": "1"}))
    assert f"PUT /v1/apps/{theirs}/environments failed with HTTP 404: APP_NOT_FOUND: " in failure(caught)
    # Deleting a resource whose app is gone (to this user) succeeds, and touches nothing.
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=theirs, urn=f"urn:pulumi:test::project::{ENV}::theirs", type=ENV,
                                                  properties=to_struct({**env(theirs, {"A": "1"}),
                                                                        "restartPending": False})))
    assert stored(owner, theirs) == {"A": "theirs"}


@pytest.mark.parametrize(("suffix", "expected"), [
    ("", ({"K1": "1", "K2": "2", "OTHER": "o"}, {"K1": "first"})),
    ("/K2,OTHER", ({"K2": "2", "OTHER": "o"}, None)),
])
def test_import(plugin: Plugin, api: Api, suffix: str, expected: tuple[dict[str, str], dict[str, str]]) -> None:
    app = new_app(api)
    put(api, app, {"OTHER": "o", "K1": "1", "K2": "2"}, K1="first")
    imported = read(plugin, "imp", app + suffix)
    assert imported.id == app + suffix
    assert plain(imported.inputs) == env(app, *expected)
    assert plain(imported.properties)["restartPending"] is False


@pytest.mark.parametrize(("suffix", "error"), [
    ("/K1,MISSING", "cannot import 'MISSING': app {a!r} has no such variable; import only keys that exist"),
    ("/PORT", "cannot import 'PORT': env var key 'PORT' is reserved by Vertra (in any case) and cannot be set"),
    ("/K1,", "import id '{a}/K1,' has an empty key: give APP_ID or APP_ID/KEY1,KEY2"),
])
def test_import_of_keys_that_cannot_be_managed_fails_naming_them(plugin: Plugin, api: Api, suffix: str,
                                                                 error: str) -> None:
    app = new_app(api)
    put(api, app, {"K1": "1"})
    with pytest.raises(grpc.RpcError) as caught:
        read(plugin, "imp", app + suffix)
    assert failure(caught) == f"reading {ENV} 'imp': " + error.format(a=app)


def test_a_failed_restart_is_retried_at_the_next_apply(tmp_path: Path, faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("vertra-restart")) as api, \
            configured(tmp_path / "plugin.stderr", faulty_server.url, token(api)) as plugin:
        app = new_app(api)
        inputs = env(app, {"GREETING": "hello"}, restart=True)
        arm(faulty_server, {"kind": "status", "status": 500, "methods": ["POST"],
                            "path_prefix": f"/v1/apps/{app}/restart", "count": 1})
        with pytest.raises(grpc.RpcError) as caught:
            create(plugin, "app", inputs)
        resource_id, reached = partial_state(caught.value)
        assert (resource_id, reached, stored(api, app)) == (app, {**inputs, "restartPending": True},
                                                            {"GREETING": "hello"})
        # The next up: the same inputs differ from the state by the restart still owed.
        assert {path: d.kind for path, d in diff(plugin, reached, inputs).detailedDiff.items()} == {
            "restartPending": DIFF.UPDATE}
        finished = update(plugin, "app", SimpleNamespace(id=app, properties=to_struct(reached)), inputs)
        assert plain(finished.properties)["restartPending"] is False
        assert running_env(api, app)["GREETING"] == "hello"
