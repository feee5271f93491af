"""The fast paths of Check and Diff (diff_10k) answer exactly as the general code does: whole-map operations as
key-by-key ones, values copied on the wire as values built, Check's inputs taken back as decoded ones."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import struct_pb2

from envvars.diff import KeyDiff, diff_keys
from envvars.envfile import login_alteration
from envvars.rules import KeyRules, key_violation, value_violation, violations
from envvars.rules.vers import RULES
from envvars_provider.protos import provider_pb2
from envvars_provider.resources.checks import login_warnings
from envvars_provider.server import Provider
from envvars_provider.values import UNKNOWN, from_struct, reveal, revealed, secret, to_struct
from tests.test_rules import EXAMPLE, INVALID

MANY = {f"KEY_{n:04d}": f"value-{n}" for n in range(1000)}
CASES = [variables for variables, _ in INVALID] + [{"PORT": "1"}, {"EX_A": "2"}, {"A": "12345"}, {5: "v"}]


def key_by_key(rules: KeyRules, variables: dict[Any, Any], unknown: object) -> list[Any]:
    found = []
    for key in sorted(variables, key=str):
        problem = key_violation(rules, key)
        if problem is None and variables[key] != unknown:
            problem = value_violation(rules, key, variables[key])
        if problem is not None:
            found.append(problem)
    return found


@pytest.mark.parametrize("bad", CASES, ids=lambda v: repr(v)[:40])
@pytest.mark.parametrize("rules", [RULES, EXAMPLE], ids=["vers", "example"])
def test_violations_in_a_large_map_are_the_key_by_key_ones(rules: KeyRules, bad: dict[Any, Any]) -> None:
    variables = {**MANY, **bad, "PENDING": UNKNOWN}
    expected = key_by_key(rules, variables, UNKNOWN)
    assert violations(rules, variables, unknown=UNKNOWN, one_request=False) == expected
    assert violations(RULES, MANY, unknown=UNKNOWN) == []


@pytest.mark.parametrize("odd", [{"HASH": "a#b"}, {"LONG": "x" * 9000}, {"WIDE": "é" * 2100}, {"N": 5},
                                 {"U": UNKNOWN}, {}], ids=repr)
def test_login_warnings_in_a_large_map_are_the_key_by_key_ones(odd: dict[str, Any]) -> None:
    variables = {**MANY, **odd}
    expected = [f"env var {key!r}: {login_alteration(key, value)}; it is stored as written"
                for key, value in sorted(variables.items())
                if isinstance(value, str) and value != UNKNOWN and login_alteration(key, value)]
    assert login_warnings(variables) == expected


SAMPLES: list[Any] = [
    {"vars": {"A": "x", "EMPTY": "", "NUM": 1.5, "YES": True, "NONE": None, "LIST": ["a", "", 2.0]}},
    {"vars": secret({"A": "x", "B": ""}), "exclusive": False},
    {"vars": {"A": secret("x"), "B": "y"}},
    {"vars": {"inner": {"deep": secret(["s", ""])}}, "empty": {}, "none": []},
    {"sealed": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}},
    {"notsecret": {"4dabf18193072939515e22adb298388d": "other", "value": "v"}},
]


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda v: repr(v)[:50])
def test_struct_conversion_matches_the_generic_walk(sample: dict[str, Any]) -> None:
    generic = struct_pb2.Struct()
    generic.update(sample)
    assert to_struct(sample) == generic
    parsed = struct_pb2.Struct.FromString(generic.SerializeToString())
    assert from_struct(parsed) == sample
    for key, value in parsed.fields.items():
        assert revealed(value) == reveal(from_struct(parsed)[key])


def test_diff_keys_sorts_added_updated_and_deleted() -> None:
    old = {"KEEP": "1", "CHANGE": "1", "GONE": "1", "ALSO_GONE": "1"}
    new = {"KEEP": "1", "CHANGE": "2", "NEW": "1", "B_NEW": "1"}
    assert diff_keys(old, new) == KeyDiff(added=["B_NEW", "NEW"], updated=["CHANGE"], deleted=["ALSO_GONE", "GONE"])
    assert diff_keys(new, new) == KeyDiff([], [], [])
    assert diff_keys({"A": "1", "B": "1"}, {"A": "1", "C": "1"}) == KeyDiff(["C"], [], ["B"])


def _provider() -> Provider:
    """A servicer in this process (no platform is called: Check, and Diff of non-exclusive sets)."""
    return Provider()


SETS = "envvars:vers:EnvVars"
CHECKED: list[tuple[str, dict[str, Any]]] = [
    (SETS, {"vars": dict(list(MANY.items())[:50])}),
    (SETS, {"vars": secret({"A": "x", "B": ""}), "exclusive": secret(True)}),
    (SETS, {"vars": {"A": secret("x"), "B": "y"}}),  # a secret inside: built, not copied
    (SETS, {"vars": {"A": UNKNOWN, "B": ""}, "exclusive": UNKNOWN}),
    (SETS, {"vars": UNKNOWN}),
    (SETS, {"vars": {}, "unknownProp": "dropped"}),
    (SETS, {"vars": secret(secret({"A": "x"}))}),
    ("envvars:vers:EnvVar", {"key": "A", "value": secret("x")}),
    ("envvars:vers:Vm", {"vcpuCount": 2.0, "labels": {"team": "a"}, "envRevision": secret(3.0)}),
    ("envvars:phala:CvmEnv", {"cvmId": "c1", "vars": {"B": "2", "A": "1"}}),  # envKeys filled in by Check
]


@pytest.mark.parametrize(("token", "news"), CHECKED, ids=lambda v: repr(v)[:50])
def test_check_copies_from_the_wire_what_it_would_build(token: str, news: dict[str, Any]) -> None:
    provider = _provider()
    request = provider_pb2.CheckRequest(urn=f"urn:pulumi:s::p::{token}::r", type=token, news=to_struct(news))
    response = provider.Check(request, None)
    resource, props = provider._handler(token)
    given = props.decode(request.news)
    inputs, _ = resource.check(given.values)
    built = props.encode(inputs, given.secrets)  # every value built from Python, none copied
    assert response.inputs == built
    assert props.read_back(inputs) == props.decode(built).values  # what Diff takes instead of decoding


DIFFED: list[dict[str, Any]] = [
    {"vars": {**MANY, "KEY_0999": "changed"}},
    {"vars": {**MANY, "NEW": "1"}},
    {"vars": {key: value for key, value in MANY.items() if key != "KEY_0000"}},
    {"vars": {**MANY, "KEY_0001": UNKNOWN}},
    {"vars": MANY, "exclusive": False},
    {"vars": {"A": secret("x")}},
]


@pytest.mark.parametrize("news", DIFFED, ids=lambda v: repr(v)[:50])
def test_diff_of_checked_inputs_answers_as_when_it_decodes_them(news: dict[str, Any]) -> None:
    urn = f"urn:pulumi:s::p::{SETS}::r"
    olds = to_struct({"vars": secret(MANY), "exclusive": False, "revision": 1.0})
    after_check = _provider()
    checked = after_check.Check(provider_pb2.CheckRequest(urn=urn, type=SETS, news=to_struct(news)), None)
    request = provider_pb2.DiffRequest(id="account", urn=urn, type=SETS, olds=olds, news=checked.inputs)
    assert urn in after_check._checked
    assert after_check.Diff(request, None) == _provider().Diff(request, None)


def test_diff_decodes_new_inputs_other_than_those_checked() -> None:
    urn = f"urn:pulumi:s::p::{SETS}::r"
    olds = to_struct({"vars": secret(MANY), "exclusive": False, "revision": 1.0})
    after_check = _provider()
    after_check.Check(provider_pb2.CheckRequest(urn=urn, type=SETS, news=to_struct({"vars": MANY})), None)
    news = to_struct({"vars": secret({**MANY, "KEY_0005": "other"}), "exclusive": False})
    request = provider_pb2.DiffRequest(id="account", urn=urn, type=SETS, olds=olds, news=news)
    answer = after_check.Diff(request, None)
    assert answer == _provider().Diff(request, None)
    assert list(answer.detailedDiff) == ['vars["KEY_0005"]']
