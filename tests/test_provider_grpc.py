"""The provider over gRPC, as the engine drives it, against a real reference server."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from envvars_provider.protos import provider_pb2
from envvars_provider.values import UNKNOWN, to_struct
from tests.conftest import Api
from tests.plugin import Plugin, plain, secret, urn

ENV_VARS = "envvars:vers:EnvVars"
ENV_VAR = "envvars:vers:EnvVar"
VM = "envvars:vers:Vm"
DIFF = provider_pb2.PropertyDiff


def check(plugin: Plugin, token: str, name: str, news: dict) -> provider_pb2.CheckResponse:
    return plugin.stub.Check(provider_pb2.CheckRequest(urn=urn(token, name), type=token, news=to_struct(news)))


def diff(plugin: Plugin, token: str, olds: dict, news: dict) -> provider_pb2.DiffResponse:
    return plugin.stub.Diff(provider_pb2.DiffRequest(
        id="x", urn=urn(token, "r"), type=token, olds=to_struct(olds), news=to_struct(news)))


def create(plugin: Plugin, token: str, name: str, properties: dict, preview: bool = False):
    return plugin.stub.Create(provider_pb2.CreateRequest(
        urn=urn(token, name), type=token, properties=to_struct(properties), preview=preview))


def test_check_wraps_plain_values_as_secrets_and_fills_defaults(plugin: Plugin) -> None:
    response = check(plugin, ENV_VARS, "app", {"vars": {"A": "plain-value"}})
    assert not response.failures
    assert plain(response.inputs) == {"vars": secret({"A": "plain-value"}), "exclusive": False}


@pytest.mark.parametrize(("variables", "reason"), [
    ({"1BAD": "v"}, "env var key '1BAD' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"V": "x" * 8193}, "value of env var 'V' is too long: 8193 chars, the limit is 8192"),
    ({"V": "a\nb"}, "value of env var 'V' contains a newline, which /etc/environment cannot represent "
                    "(one variable per line)"),
])
def test_check_reports_rule_failures_like_the_server(plugin: Plugin, variables: dict, reason: str) -> None:
    response = check(plugin, ENV_VARS, "app", {"vars": secret(variables)})
    # No property named: the engine would print a named property's (secret) value beside the reason.
    assert [(f.property, f.reason) for f in response.failures] == [("", reason)]


def test_check_accepts_limits_empty_maps_and_unknowns(plugin: Plugin) -> None:
    assert not check(plugin, ENV_VARS, "a", {"vars": {"K" * 256: "x" * 8192}}).failures
    assert not check(plugin, ENV_VARS, "b", {"vars": {}}).failures
    assert not check(plugin, ENV_VARS, "c", {"vars": UNKNOWN}).failures
    assert not check(plugin, ENV_VARS, "d", {"vars": {"D": UNKNOWN}}).failures


def test_check_refuses_two_resources_managing_one_key(plugin: Plugin) -> None:
    assert not check(plugin, ENV_VARS, "first", {"vars": {"SHARED": "1", "A": "1"}}).failures
    failures = check(plugin, ENV_VAR, "second", {"key": "SHARED", "value": "2"}).failures
    assert [f.reason for f in failures] == [
        "key 'SHARED' is also managed by 'first': manage each key in exactly one resource"]
    assert not check(plugin, ENV_VARS, "first", {"vars": {"SHARED": "1", "A": "2"}}).failures


def test_check_refuses_an_exclusive_set_beside_other_resources(plugin: Plugin) -> None:
    assert not check(plugin, ENV_VAR, "one", {"key": "A", "value": "1"}).failures
    failures = check(plugin, ENV_VARS, "all", {"vars": {"B": "1"}, "exclusive": True}).failures
    assert len(failures) == 1
    assert "this resource is exclusive" in failures[0].reason
    assert "'one' manages variables of the same account" in failures[0].reason


def test_diff_no_change_is_none(plugin: Plugin) -> None:
    state = {"vars": secret({"A": "1"}), "exclusive": False, "revision": 1}
    response = diff(plugin, ENV_VARS, state, {"vars": secret({"A": "1"}), "exclusive": False})
    assert response.changes == provider_pb2.DiffResponse.DIFF_NONE
    assert not response.detailedDiff


def test_diff_is_per_key_and_in_place(plugin: Plugin) -> None:
    state = {"vars": secret({"A": "1", "B": "2", "C": "3"}), "exclusive": False, "revision": 4}
    response = diff(plugin, ENV_VARS, state, {"vars": secret({"A": "1", "B": "changed", "D": "4"}),
                                              "exclusive": False})
    assert response.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(response.diffs) == ["vars"]
    assert not response.replaces
    assert {path: d.kind for path, d in response.detailedDiff.items()} == {
        'vars["B"]': DIFF.UPDATE, 'vars["C"]': DIFF.DELETE, 'vars["D"]': DIFF.ADD}


def test_diff_with_unknowns_means_change(plugin: Plugin) -> None:
    state = {"vars": secret({"A": "1"}), "exclusive": False, "revision": 1}
    assert diff(plugin, ENV_VARS, state, {"vars": UNKNOWN}).changes == provider_pb2.DiffResponse.DIFF_SOME
    vm_state = {"envRevision": 1, "vmId": "v", "state": "running", "ip": "x"}
    response = diff(plugin, VM, vm_state, {"envRevision": UNKNOWN})
    assert list(response.replaces) == ["envRevision"]


def test_diff_replaces_where_stated(plugin: Plugin) -> None:
    response = diff(plugin, ENV_VAR, {"key": "A", "value": secret("1")}, {"key": "B", "value": secret("1")})
    assert list(response.replaces) == ["key"]
    response = diff(plugin, ENV_VAR, {"key": "A", "value": secret("1")}, {"key": "A", "value": secret("2")})
    assert not response.replaces
    assert {p: d.kind for p, d in response.detailedDiff.items()} == {"value": DIFF.UPDATE}
    response = diff(plugin, VM, {"envRevision": 1}, {"envRevision": 2})
    assert list(response.replaces) == ["envRevision"]
    assert diff(plugin, VM, {"envRevision": 1}, {"envRevision": 1}).changes == provider_pb2.DiffResponse.DIFF_NONE


def test_create_preview_returns_the_outputs_it_can_know(plugin: Plugin) -> None:
    response = create(plugin, ENV_VARS, "app", {"vars": secret({"A": "1"}), "exclusive": False}, preview=True)
    assert plain(response.properties)["revision"] == 1  # what create returns, so a Vm fed it previews known
    outputs = plain(create(plugin, VM, "vm", {}, preview=True).properties)
    assert {outputs[name] for name in ("vmId", "state", "ip")} == {UNKNOWN}


def test_lifecycle_non_exclusive_leaves_other_keys(plugin: Plugin, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "untouched"}})
    created = create(plugin, ENV_VARS, "app", {"vars": {"A": "1", "B": "2"}, "exclusive": False})
    state = plain(created.properties)
    assert state == {"vars": secret({"A": "1", "B": "2"}), "exclusive": False, "revision": 1}
    assert api.get("/api/v1/env_vars").json()["vars"] == {"OTHER": "untouched", "A": "1", "B": "2"}

    updated = plugin.stub.Update(provider_pb2.UpdateRequest(
        id=created.id, urn=urn(ENV_VARS, "app"), type=ENV_VARS, olds=created.properties,
        news=to_struct({"vars": secret({"A": "1", "C": "3"}), "exclusive": False})))
    assert plain(updated.properties)["revision"] == 2
    assert api.get("/api/v1/env_vars").json()["vars"] == {"OTHER": "untouched", "A": "1", "C": "3"}

    api.put("/api/v1/env_vars", json={"vars": {"A": "drifted", "NEW": "ignored"}})
    read = plugin.stub.Read(provider_pb2.ReadRequest(
        id=created.id, urn=urn(ENV_VARS, "app"), type=ENV_VARS, properties=updated.properties))
    assert plain(read.properties) == {"vars": secret({"A": "drifted", "C": "3"}), "exclusive": False, "revision": 3}

    plugin.stub.Delete(provider_pb2.DeleteRequest(
        id=created.id, urn=urn(ENV_VARS, "app"), type=ENV_VARS, properties=read.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {"OTHER": "untouched", "NEW": "ignored"}


def test_keys_claimed_by_another_resource_are_never_deleted(plugin: Plugin, api: Api) -> None:
    created = create(plugin, ENV_VARS, "set1", {"vars": {"A": "1", "C": "3"}, "exclusive": False})
    lone = create(plugin, ENV_VAR, "old", {"key": "A", "value": secret("1")})
    # This deployment's program: set1 gives C to a new EnvVar and takes A from the dropped one.
    assert not check(plugin, ENV_VAR, "c", {"key": "C", "value": "3"}).failures
    assert not check(plugin, ENV_VARS, "set1", {"vars": {"A": "1"}}).failures
    plugin.stub.Update(provider_pb2.UpdateRequest(
        id=created.id, urn=urn(ENV_VARS, "set1"), type=ENV_VARS, olds=created.properties,
        news=to_struct({"vars": secret({"A": "1"}), "exclusive": False})))
    plugin.stub.Delete(provider_pb2.DeleteRequest(
        id=lone.id, urn=urn(ENV_VAR, "old"), type=ENV_VAR, properties=lone.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {"A": "1", "C": "3"}
    # A key nobody claims goes as before.
    dropped = create(plugin, ENV_VAR, "z", {"key": "Z", "value": secret("26")})
    plugin.stub.Delete(provider_pb2.DeleteRequest(
        id=dropped.id, urn=urn(ENV_VAR, "z"), type=ENV_VAR, properties=dropped.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {"A": "1", "C": "3"}


@pytest.mark.parametrize(("token", "name", "inputs"), [
    (ENV_VAR, "k", {"key": "K", "value": "1"}),
    (ENV_VARS, "some", {"vars": {"K": "1"}, "exclusive": False}),
    (ENV_VARS, "all", {"vars": {"K": "1"}, "exclusive": True}),
])
def test_a_resource_replaced_under_its_own_urn_keeps_its_keys(
    plugin: Plugin, api: Api, token: str, name: str, inputs: dict,
) -> None:
    """`pulumi up --replace`: the new copy is checked and created, then the old copy deleted."""
    old = create(plugin, token, name, inputs)
    assert not check(plugin, token, name, inputs).failures
    create(plugin, token, name, inputs)
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=old.id, urn=urn(token, name), type=token,
                                                  properties=old.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {"K": "1"}


def test_exclusive_delete_leaves_what_its_successor_owns(plugin: Plugin, api: Api) -> None:
    created = create(plugin, ENV_VARS, "all", {"vars": {"A": "1"}, "exclusive": True})
    assert not check(plugin, ENV_VARS, "all_renamed", {"vars": {"A": "1"}, "exclusive": True}).failures
    plugin.stub.Delete(provider_pb2.DeleteRequest(
        id=created.id, urn=urn(ENV_VARS, "all"), type=ENV_VARS, properties=created.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {"A": "1"}


def test_exclusive_owns_the_whole_set(plugin: Plugin, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "removed"}})
    created = create(plugin, ENV_VARS, "all", {"vars": {"A": "1"}, "exclusive": True})
    assert api.get("/api/v1/env_vars").json()["vars"] == {"A": "1"}
    plugin.stub.Delete(provider_pb2.DeleteRequest(
        id=created.id, urn=urn(ENV_VARS, "all"), type=ENV_VARS, properties=created.properties))
    assert api.get("/api/v1/env_vars").json()["vars"] == {}


def test_read_reports_gone_when_deleted_out_of_band(plugin: Plugin, api: Api) -> None:
    created = create(plugin, ENV_VAR, "one", {"key": "ONE", "value": "1"})
    api.delete("/api/v1/env_vars/ONE")
    read = plugin.stub.Read(provider_pb2.ReadRequest(
        id=created.id, urn=urn(ENV_VAR, "one"), type=ENV_VAR, properties=created.properties))
    assert read.id == ""


def test_import_of_a_key_rebuilds_secret_inputs(plugin: Plugin, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"IMPORTED": "v"}})
    read = plugin.stub.Read(provider_pb2.ReadRequest(id="IMPORTED", urn=urn(ENV_VAR, "imp"), type=ENV_VAR))
    assert read.id == "IMPORTED"
    assert plain(read.inputs) == {"key": "IMPORTED", "value": secret("v")}


def test_server_rejection_is_one_clear_error(plugin: Plugin) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        create(plugin, ENV_VAR, "bad", {"key": "1BAD", "value": "v"})
    assert caught.value.details() == (
        "creating envvars:vers:EnvVar 'bad': PUT /api/v1/env_vars failed with HTTP 400: "
        "env var key '1BAD' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$")


def test_vm_create_read_delete(plugin: Plugin, api: Api) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"A": "1"}})
    created = create(plugin, VM, "vm", {"envRevision": 1})
    state = plain(created.properties)
    assert state["vmId"] == created.id
    assert state["state"] == "running"
    plugin.stub.Delete(provider_pb2.DeleteRequest(id=created.id, urn=urn(VM, "vm"), type=VM,
                                                  properties=created.properties))
    assert api.get(f"/api/v1/vm/{created.id}/metadata").status_code == 404


def test_check_config_rejects_a_malformed_url(plugin: Plugin) -> None:
    response = plugin.stub.CheckConfig(provider_pb2.CheckRequest(
        urn=urn("pulumi:providers:envvars", "default"), news=to_struct({"versUrl": "not a url"})))
    assert [(f.property, f.reason) for f in response.failures] == [
        ("versUrl", "envvars:versUrl must be an http(s) URL such as https://api.vers.sh, got 'not a url'")]


def test_get_schema_is_the_committed_schema(plugin: Plugin) -> None:
    schema = plugin.stub.GetSchema(provider_pb2.GetSchemaRequest()).schema
    assert schema == (Path(__file__).parent.parent / "schema.json").read_text()


def test_refresh_after_every_key_vanished_keeps_the_revision_rising(plugin: Plugin, api: Api) -> None:
    """Re-adding the keys is an update with a new revision, so VMs keyed on it are replaced."""
    created = create(plugin, ENV_VARS, "gone", {"vars": {"G1": "1", "G2": "2"}, "exclusive": False})
    api.delete("/api/v1/env_vars/G1")
    api.delete("/api/v1/env_vars/G2")
    read = plugin.stub.Read(provider_pb2.ReadRequest(
        id=created.id, urn=urn(ENV_VARS, "gone"), type=ENV_VARS, properties=created.properties))
    assert plain(read.properties) == {"vars": secret({}), "exclusive": False, "revision": 2}


@pytest.mark.parametrize(("resource_id", "exclusive", "expected"), [
    ("account", True, {"OTHER": "o", "K1": "1", "K2": "2"}),
    ("K1,K2", False, {"K1": "1", "K2": "2"}),
])
def test_import_of_a_set(plugin: Plugin, api: Api, resource_id: str, exclusive: bool, expected: dict) -> None:
    api.put("/api/v1/env_vars", json={"vars": {"OTHER": "o", "K1": "1", "K2": "2"}})
    read = plugin.stub.Read(provider_pb2.ReadRequest(id=resource_id, urn=urn(ENV_VARS, "imp"), type=ENV_VARS))
    assert read.id == resource_id
    assert plain(read.inputs) == {"vars": secret(expected), "exclusive": exclusive}
    assert plain(read.properties)["revision"] == 1
