"""The provider's Sevalla EnvVar and EnvVars over gRPC, as the engine drives them, against a real reference server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from envvars_provider.protos import provider_pb2
from envvars_provider.values import UNKNOWN, to_struct
from envvars_server.launch import ServerProcess
from tests.conftest import Api, arm, injected
from tests.plugin import Plugin, plain, secret, urn
from tests.sevalla import create as oob_create
from tests.sevalla import delete as oob_delete
from tests.sevalla import flags, listed, new_application, stored
from tests.sevalla import update as oob_update
from tests.test_provider_grpc_hoody import partial_state, token

VARS = "envvars:sevalla:EnvVars"
VAR = "envvars:sevalla:EnvVar"
DIFF = provider_pb2.PropertyDiff
APP = "fb5e5168-4281-4bec-94c5-0d1584e9e657"
OTHER_APP = "0b0ad0e2-27a5-4f5e-9d0a-8d7e1e0c3f10"


def check(plugin: Plugin, name: str, news: dict[str, Any], type_: str = VARS) -> provider_pb2.CheckResponse:
    return plugin.stub.Check(provider_pb2.CheckRequest(urn=urn(type_, name), type=type_, news=to_struct(news)))


def diff(plugin: Plugin, olds: dict[str, Any], news: dict[str, Any], type_: str = VARS) -> provider_pb2.DiffResponse:
    return plugin.stub.Diff(provider_pb2.DiffRequest(
        id="x", urn=urn(type_, "r"), type=type_, olds=to_struct(olds), news=to_struct(news)))


def create(plugin: Plugin, name: str, properties: dict[str, Any], type_: str = VARS,
           preview: bool = False) -> provider_pb2.CreateResponse:
    return plugin.stub.Create(provider_pb2.CreateRequest(urn=urn(type_, name), type=type_, preview=preview,
                                                         properties=to_struct(properties)))


def update(plugin: Plugin, name: str, olds: Any, news: dict[str, Any], type_: str = VARS,
           preview: bool = False) -> SimpleNamespace:
    """An update of the resource `olds` (a response or namespace: its id and properties) to `news`; the
    resource's id and new properties."""
    response = plugin.stub.Update(provider_pb2.UpdateRequest(
        id=olds.id, urn=urn(type_, name), type=type_, olds=olds.properties, news=to_struct(news), preview=preview))
    return SimpleNamespace(id=olds.id, properties=response.properties)


def read(plugin: Plugin, name: str, resource_id: str, properties: Any = None,
         type_: str = VARS) -> provider_pb2.ReadResponse:
    return plugin.stub.Read(provider_pb2.ReadRequest(id=resource_id, urn=urn(type_, name), type=type_,
                                                     properties=properties))


def remove(plugin: Plugin, name: str, resource: Any, type_: str = VARS) -> None:
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=resource.id, urn=urn(type_, name), type=type_,
                                                  properties=resource.properties))


def env(app: str, variables: dict[str, str], runtime: bool = True, buildtime: bool = True) -> dict[str, Any]:
    return {"applicationId": app, "vars": secret(variables), "isRuntime": runtime, "isBuildtime": buildtime}


def one(app: str, key: str, value: str, runtime: bool = True, buildtime: bool = True) -> dict[str, Any]:
    return {"applicationId": app, "key": key, "value": secret(value), "isRuntime": runtime, "isBuildtime": buildtime}


def ids(api: Api, app: str) -> dict[str, str]:
    return {item["key"]: item["id"] for item in listed(api, app)}


def without_ids(properties: Any) -> dict[str, Any]:
    state = plain(properties)
    state.pop("envVarIds")
    return state


# -- check and diff ---------------------------------------------------------------------------


def test_check_wraps_values_as_secrets_and_fills_the_flags(plugin: Plugin) -> None:
    response = check(plugin, "app", {"applicationId": APP, "vars": {"A": "plain-value"}})
    assert not response.failures
    assert plain(response.inputs) == env(APP, {"A": "plain-value"})
    single = check(plugin, "one", {"applicationId": APP, "key": "B", "value": "v", "isBuildtime": False}, VAR)
    assert not single.failures
    assert plain(single.inputs) == one(APP, "B", "v", buildtime=False)


@pytest.mark.parametrize(("variables", "reason"), [
    ({"A=B": "v"}, "env var key 'A=B' is invalid: keys must match ^[^=\\x00]+$"),
    ({"K" * 256: "v"}, f"env var key {'K' * 64 + '…'!r} is too long: 256 chars, the limit is 255"),
    ({"V": "x" * 32_769}, "value of env var 'V' is too long: 32769 chars, the limit is 32768"),
    ({"V": "a\x00b"}, "value of env var 'V' contains a NUL byte, which no process environment can hold"),
])
def test_check_refuses_what_sevalla_refuses_naming_the_key(plugin: Plugin, variables: dict, reason: str) -> None:
    response = check(plugin, "app", {"applicationId": APP, "vars": secret(variables)})
    assert [(f.property, f.reason) for f in response.failures] == [("", reason)]
    (key, value), = variables.items()
    single = check(plugin, "one", {"applicationId": OTHER_APP, "key": key, "value": secret(value)}, VAR)
    assert [f.reason for f in single.failures] == [reason]


def test_check_accepts_keys_beyond_shell_names_and_unknowns(plugin: Plugin) -> None:
    assert not check(plugin, "dots", {"applicationId": APP, "vars": {"my.key-1 x": "v", "K" * 255: "x" * 32_768}}
                     ).failures
    assert not check(plugin, "many", {"applicationId": APP, "vars": {f"K{n}": "v" for n in range(300)}}).failures
    assert not check(plugin, "later", {"applicationId": UNKNOWN, "vars": {"K": UNKNOWN}}).failures
    assert not check(plugin, "one", {"applicationId": APP, "key": UNKNOWN, "value": UNKNOWN}, VAR).failures


def test_check_refuses_an_application_id_sevalla_would_refuse(plugin: Plugin) -> None:
    failures = check(plugin, "app", {"applicationId": "my-app", "vars": {"A": "1"}}).failures
    assert [(f.property, f.reason) for f in failures] == [
        ("applicationId", "applicationId must be a Sevalla application id, a uuid such as "
                          "fb5e5168-4281-4bec-94c5-0d1584e9e657, got 'my-app'")]


def test_check_refuses_a_key_managed_twice_in_one_application_only(plugin: Plugin) -> None:
    assert not check(plugin, "one", {"applicationId": APP, "vars": {"PORT": "1", "HOST": "h"}}).failures
    assert not check(plugin, "other-app", {"applicationId": OTHER_APP, "vars": {"PORT": "2"}}).failures
    assert not check(plugin, "vers", {"key": "PORT", "value": "3"}, "envvars:vers:EnvVar").failures
    assert not check(plugin, "single-other", {"applicationId": OTHER_APP, "key": "HOST", "value": "h"}, VAR).failures
    twice = "key 'PORT' is also managed by 'one': manage each key in exactly one resource"
    assert [f.reason for f in check(plugin, "two", {"applicationId": APP, "vars": {"PORT": "3"}}).failures] == [twice]
    assert [f.reason for f in check(plugin, "single", {"applicationId": APP, "key": "PORT", "value": "3"}, VAR)
            .failures] == [twice]


def test_check_names_the_api_key_when_unset(tmp_path: Path, server: ServerProcess,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEVALLA_API_KEY", raising=False)
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.stub.Configure(provider_pb2.ConfigureRequest(args=to_struct({"sevallaUrl": server.url})))
        failures = check(plugin, "app", {"applicationId": APP, "vars": {"A": "1"}}).failures
        assert [f.reason for f in failures] == [
            "no Sevalla API key is configured: set envvars:sevallaApiKey (`pulumi config set --secret "
            "envvars:sevallaApiKey KEY`) or the SEVALLA_API_KEY environment variable"]
    finally:
        plugin.close()


def test_diff_is_per_key_flags_update_and_a_new_application_replaces(plugin: Plugin) -> None:
    state = {**env(APP, {"A": "1", "B": "2", "C": "3"}), "envVarIds": {"A": "a", "B": "b", "C": "c"}}
    response = diff(plugin, state, env(APP, {"A": "1", "B": "changed", "D": "4"}))
    assert (list(response.diffs), list(response.replaces)) == (["vars"], [])
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        'vars["B"]': DIFF.UPDATE, 'vars["C"]': DIFF.DELETE, 'vars["D"]': DIFF.ADD}
    assert diff(plugin, state, env(APP, {"A": "1", "B": "2", "C": "3"})).changes == provider_pb2.DiffResponse.DIFF_NONE
    flipped = diff(plugin, state, env(APP, {"A": "1", "B": "2", "C": "3"}, buildtime=False))
    assert ({path: d.kind for path, d in flipped.detailedDiff.items()}, list(flipped.replaces)) == (
        {"isBuildtime": DIFF.UPDATE}, [])
    assert list(diff(plugin, state, env(OTHER_APP, {"A": "1", "B": "2", "C": "3"})).replaces) == ["applicationId"]
    single = {**one(APP, "K", "v"), "envVarId": "x", "createdAt": "t", "updatedAt": "t"}
    assert {p: d.kind for p, d in diff(plugin, single, one(APP, "K", "v", runtime=False), VAR).detailedDiff.items()} \
        == {"isRuntime": DIFF.UPDATE}
    assert list(diff(plugin, single, one(APP, "K2", "v"), VAR).replaces) == ["key"]


# -- EnvVars ------------------------------------------------------------------------------------


def test_lifecycle_of_a_map_leaves_other_variables(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    oob_create(api, app, "OTHER", "untouched", is_buildtime=False)
    preview = create(plugin, "app", env(app, {"A": "1", "B": "2"}), preview=True)
    assert plain(preview.properties)["envVarIds"] == UNKNOWN
    created = create(plugin, "app", env(app, {"A": "1", "B": "2"}))
    assert created.id == app
    assert plain(created.properties) == {**env(app, {"A": "1", "B": "2"}),
                                         "envVarIds": {k: v for k, v in ids(api, app).items() if k != "OTHER"}}
    assert stored(api, app) == {"OTHER": "untouched", "A": "1", "B": "2"}
    first_ids = ids(api, app)

    news = env(app, {"A": "changed", "C": "3"})
    assert plain(update(plugin, "app", created, news, preview=True).properties)["envVarIds"] == UNKNOWN
    updated = update(plugin, "app", created, news)
    assert stored(api, app) == {"OTHER": "untouched", "A": "changed", "C": "3"}
    assert ids(api, app)["A"] == first_ids["A"]  # updated in place, by its id
    assert plain(updated.properties)["envVarIds"] == {"A": first_ids["A"], "C": ids(api, app)["C"]}
    kept = update(plugin, "app", updated, env(app, {"A": "changed"}), preview=True)
    assert plain(kept.properties)["envVarIds"] == {"A": first_ids["A"]}

    remove(plugin, "app", updated)
    assert stored(api, app) == {"OTHER": "untouched"}


def test_a_flag_change_rewrites_every_variable_in_place(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    created = create(plugin, "app", env(app, {"A": "1", "B": "2"}))
    before = ids(api, app)
    update(plugin, "app", created, env(app, {"A": "1", "B": "2"}, runtime=False))
    assert flags(api, app) == {"A": (False, True), "B": (False, True)}
    assert ids(api, app) == before


def test_refresh_sees_drift_and_an_up_restores_it(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    created = create(plugin, "app", env(app, {"A": "1", "B": "2", "C": "3"}))
    oob_update(api, app, "A", value="drifted")
    oob_update(api, app, "B", is_runtime=False)
    oob_delete(api, app, "C")
    oob_create(api, app, "NEW", "ignored")
    refreshed = read(plugin, "app", app, created.properties)
    # One variable took the other runtime flag: reported as the flag changed, so the next up writes it to all.
    assert without_ids(refreshed.properties) == env(app, {"A": "drifted", "B": "2"}, runtime=False)
    assert plain(refreshed.inputs) == env(app, {"A": "drifted", "B": "2"}, runtime=False)

    update(plugin, "app", refreshed, env(app, {"A": "1", "B": "2", "C": "3"}))
    assert stored(api, app) == {"A": "1", "B": "2", "C": "3", "NEW": "ignored"}
    assert flags(api, app) == {"A": (True, True), "B": (True, True), "C": (True, True), "NEW": (True, True)}


def test_a_variable_deleted_since_the_last_refresh_is_created_again(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    created = create(plugin, "app", env(app, {"A": "1", "B": "2"}))
    oob_delete(api, app, "A")
    updated = update(plugin, "app", created, env(app, {"A": "new", "B": "2"}))
    assert stored(api, app) == {"A": "new", "B": "2"}
    assert plain(updated.properties)["envVarIds"] == ids(api, app)


def test_existing_variables_of_the_keys_are_taken_over(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    oob_create(api, app, "A", "old", is_runtime=False)
    oob_create(api, app, "B", "same")
    before = ids(api, app)
    created = create(plugin, "app", env(app, {"A": "new", "B": "same", "C": "3"}))
    assert stored(api, app) == {"A": "new", "B": "same", "C": "3"}
    assert flags(api, app)["A"] == (True, True)
    assert plain(created.properties)["envVarIds"] == {**before, "C": ids(api, app)["C"]}


def test_many_variables_one_request_each_all_written(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    variables = {f"K{n:03}": f"v{n}" for n in range(130)}
    created = create(plugin, "big", env(app, variables))
    assert stored(api, app) == variables  # listed over two pages
    assert len(set(plain(created.properties)["envVarIds"].values())) == 130
    refreshed = read(plugin, "big", app, created.properties)
    assert plain(refreshed.properties) == plain(created.properties)


def test_another_users_application_is_gone_and_never_written(plugin: Plugin, new_api: Callable[[], Api]) -> None:
    owner = new_api()
    theirs = new_application(owner)
    oob_create(owner, theirs, "A", "theirs")
    state = to_struct({**env(theirs, {"A": "1"}), "envVarIds": ids(owner, theirs)})
    assert read(plugin, "theirs", theirs, state).id == ""
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, "theirs", env(theirs, {"A": "1"}))
    assert caught.value.details().startswith(
        f"creating envvars:sevalla:EnvVars 'theirs': writing key 'A' failed: POST /v3/applications/{theirs}/env-vars "
        "failed with HTTP 404: application-not-found: ")
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=theirs, urn=urn(VARS, "theirs"), type=VARS, properties=state))
    assert stored(owner, theirs) == {"A": "theirs"}


@pytest.mark.parametrize(("suffix", "expected"), [
    ("", {"K1": "1", "K2": "2", "OTHER": "o"}),
    ("/K1,K2", {"K1": "1", "K2": "2"}),
])
def test_import_a_map(plugin: Plugin, api: Api, suffix: str, expected: dict[str, str]) -> None:
    app = new_application(api)
    for key, value in {"OTHER": "o", "K1": "1", "K2": "2"}.items():
        oob_create(api, app, key, value, is_buildtime=False)
    imported = read(plugin, "imp", app + suffix)
    assert imported.id == app + suffix
    assert plain(imported.inputs) == env(app, expected, buildtime=False)
    assert plain(imported.properties)["envVarIds"] == {k: v for k, v in ids(api, app).items() if k in expected}


@pytest.mark.parametrize(("suffix", "error"), [
    ("/K1,MISSING", "cannot import 'MISSING': application {a!r} has no such variable; import only keys that exist"),
    ("/K1,", "import id '{a}/K1,' has an empty key: give APPLICATION_ID or APPLICATION_ID/KEY1,KEY2"),
    ("", "cannot import these variables as one resource: 'K1' have is_runtime true and the others false; import "
         "each group with APPLICATION_ID/KEY1,KEY2"),
])
def test_import_of_a_map_that_cannot_be_one_resource_fails_naming_why(plugin: Plugin, api: Api, suffix: str,
                                                                      error: str) -> None:
    app = new_application(api)
    oob_create(api, app, "K1", "1")
    oob_create(api, app, "K2", "2", is_runtime=False)
    with pytest.raises(grpc.RpcError) as caught:
        read(plugin, "imp", app + suffix)
    assert caught.value.details() == "reading envvars:sevalla:EnvVars 'imp': " + error.format(a=app)


# -- EnvVar -------------------------------------------------------------------------------------


def test_lifecycle_of_one_variable(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    oob_create(api, app, "OTHER", "untouched")
    created = create(plugin, "one", one(app, "GREETING", "hello"), VAR)
    (made,) = [item for item in listed(api, app) if item["key"] == "GREETING"]
    assert created.id == f"{app}/{made['id']}"
    assert plain(created.properties) == {**one(app, "GREETING", "hello"), "envVarId": made["id"],
                                         "createdAt": made["created_at"], "updatedAt": made["updated_at"]}

    preview = plain(update(plugin, "one", created, one(app, "GREETING", "hello", buildtime=False), VAR,
                           preview=True).properties)
    assert (preview["envVarId"], preview["createdAt"], preview["updatedAt"]) == (made["id"], made["created_at"],
                                                                                   UNKNOWN)
    updated = update(plugin, "one", created, one(app, "GREETING", "bye", buildtime=False), VAR)
    assert flags(api, app)["GREETING"] == (True, False)
    assert stored(api, app)["GREETING"] == "bye"
    assert plain(updated.properties)["envVarId"] == made["id"]

    oob_update(api, app, "GREETING", value="drifted")
    refreshed = read(plugin, "one", created.id, updated.properties, VAR)
    assert plain(refreshed.inputs) == one(app, "GREETING", "drifted", buildtime=False)
    oob_delete(api, app, "GREETING")
    assert read(plugin, "one", created.id, updated.properties, VAR).id == ""  # gone: the next up creates it again
    with pytest.raises(grpc.RpcError) as caught:
        update(plugin, "one", refreshed, one(app, "GREETING", "again", buildtime=False), VAR)
    assert caught.value.details().endswith("was deleted outside Pulumi: run `pulumi up --refresh` to create it again")

    again = create(plugin, "one", one(app, "GREETING", "again"), VAR)
    remove(plugin, "one", again, VAR)
    remove(plugin, "one", again, VAR)  # already gone is fine
    assert stored(api, app) == {"OTHER": "untouched"}


def test_import_one_variable(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    made = oob_create(api, app, "K", "v", is_runtime=False)
    imported = read(plugin, "imp", f"{app}/{made['id']}", type_=VAR)
    assert imported.id == f"{app}/{made['id']}"
    assert plain(imported.inputs) == one(app, "K", "v", runtime=False)
    assert plain(imported.properties)["envVarId"] == made["id"]
    assert read(plugin, "imp", f"{app}/{uuid.uuid4()}", type_=VAR).id == ""
    with pytest.raises(grpc.RpcError) as caught:
        read(plugin, "imp", app, type_=VAR)
    assert caught.value.details() == (f"reading envvars:sevalla:EnvVar 'imp': import id {app!r} is not "
                                      "APPLICATION_ID/ENV_VAR_ID (two uuids)")


def test_one_variable_takes_over_an_existing_key(plugin: Plugin, api: Api) -> None:
    app = new_application(api)
    made = oob_create(api, app, "K", "old", is_runtime=False)
    created = create(plugin, "one", one(app, "K", "new"), VAR)
    assert created.id == f"{app}/{made['id']}"
    assert (stored(api, app), flags(api, app)) == ({"K": "new"}, {"K": (True, True)})


def test_a_wrong_api_key_names_the_setting(tmp_path: Path, server: ServerProcess, api: Api) -> None:
    app = new_application(api)
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.configure(server.url, "not-a-valid-token")
        with pytest.raises(grpc.RpcError) as caught:
            read(plugin, "app", app, to_struct(env(app, {"A": "1"})))
        assert "HTTP 401" in caught.value.details()
        assert caught.value.details().endswith(
            "(the API key is envvars:sevallaApiKey or, when that is unset, the SEVALLA_API_KEY environment variable)")
    finally:
        plugin.close()


# -- failures -----------------------------------------------------------------------------------


def test_a_failure_part_way_records_exactly_what_was_reached(tmp_path: Path, faulty_server: ServerProcess) -> None:
    with Api(faulty_server.url, faulty_server.token("sevalla-partial")) as api:
        app = new_application(api)
        plugin = Plugin(tmp_path / "plugin.stderr")
        try:
            plugin.configure(faulty_server.url, token(api))
            arm(faulty_server, {"kind": "status", "status": 400, "methods": ["POST"], "every": 3, "count": 4})
            variables = {f"K{n:02}": "v" for n in range(20)}
            with pytest.raises(grpc.RpcError) as caught:
                create(plugin, "big", env(app, variables))
            assert "writing key 'K" in caught.value.details()
            assert "(and 3 more of 20 requests)" in caught.value.details()
            resource_id, reached = partial_state(caught.value)
            assert resource_id == app
            assert len(reached["vars"]["value"]) == 16
            assert reached == {**env(app, stored(api, app)), "envVarIds": ids(api, app)}

            # The next up: an update from the state reached writes just the rest.
            arm(faulty_server)
            olds = SimpleNamespace(id=resource_id, properties=to_struct(reached))
            finished = update(plugin, "big", olds, env(app, variables))
            assert stored(api, app) == variables
            assert plain(finished.properties)["envVarIds"] == ids(api, app)
        finally:
            plugin.close()


def test_a_create_whose_answer_is_lost_is_found_not_sent_again(tmp_path: Path, faulty_server: ServerProcess,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVVARS_HTTP_TIMEOUT", "1")
    with Api(faulty_server.url, faulty_server.token("sevalla-lost")) as api:
        app = new_application(api)
        plugin = Plugin(tmp_path / "plugin.stderr")
        try:
            plugin.configure(faulty_server.url, token(api))
            before = injected(faulty_server)
            arm(faulty_server, {"kind": "late", "seconds": 3, "methods": ["POST"], "count": 2})
            created = create(plugin, "one", one(app, "SINGLE", "s"), VAR)
            made = create(plugin, "many", env(app, {"A": "1"}))
            assert injected(faulty_server) == before + 2
            assert stored(api, app) == {"SINGLE": "s", "A": "1"}
            assert created.id == f"{app}/{ids(api, app)['SINGLE']}"
            assert plain(made.properties)["envVarIds"] == {"A": ids(api, app)["A"]}
        finally:
            plugin.close()


def test_a_base_url_given_with_its_version_means_the_same_api(tmp_path: Path, server: ServerProcess,
                                                              api: Api) -> None:
    app = new_application(api)
    plugin = Plugin(tmp_path / "plugin.stderr")
    try:
        plugin.configure(server.url + "/v3/", token(api))
        create(plugin, "app", env(app, {"A": "1"}))
        assert stored(api, app) == {"A": "1"}
    finally:
        plugin.close()
