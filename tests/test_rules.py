"""The Vers rules, table-driven: every rule, its limit and its message."""

from __future__ import annotations

import pytest

from envvars.rules import KeyRules, Kind, RuleViolation, Violation, check_vars, describe, violations
from envvars.rules.vers import RULES

VALID = [
    {"A": "x"},
    {"_": ""},
    {"a1_B2": "v"},
    {"K" * 256: "v"},
    {"V": "x" * 8192},
    {"V": " spaces 'quotes' \"dq\" $HOME # not a comment \\ = ünïcødé ✓ "},
]

INVALID = [
    ({"": "v"}, "env var key '' is empty: keys need at least 1 char"),
    ({"1A": "v"}, "env var key '1A' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"A-B": "v"}, "env var key 'A-B' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"A B": "v"}, "env var key 'A B' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"A\n": "v"}, "env var key 'A\\n' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"É": "v"}, "env var key 'É' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$"),
    ({"K" * 257: "v"}, f"env var key '{'K' * 64}…' is too long: 257 chars, the limit is 256"),
    ({"V": "x" * 8193}, "value of env var 'V' is too long: 8193 chars, the limit is 8192"),
    ({"V": "a\nb"}, "value of env var 'V' contains a newline, which /etc/environment cannot represent "
                    "(one variable per line)"),
    ({"V": "a\rb"}, "value of env var 'V' contains a carriage return, which /etc/environment cannot "
                    "represent (one variable per line)"),
    ({"V": "a\x00b"}, "value of env var 'V' contains a NUL byte, which /etc/environment cannot represent"),
    ({"V": 5}, "value of env var 'V' must be a string, got int"),
]


@pytest.mark.parametrize("variables", VALID, ids=lambda v: repr(v)[:40])
def test_check_accepts_documented_values(variables: dict[str, str]) -> None:
    check_vars(RULES, variables)


@pytest.mark.parametrize(("variables", "message"), INVALID, ids=lambda v: repr(v)[:40])
def test_check_rejects_with_specific_message(variables: dict[str, object], message: str) -> None:
    with pytest.raises(RuleViolation) as caught:
        check_vars(RULES, variables)
    assert caught.value.message == message


def test_check_never_shows_a_value() -> None:
    secret = "s3cr3t-" + "x" * 9000
    with pytest.raises(RuleViolation) as caught:
        check_vars(RULES, {"TOKEN": secret})
    assert "s3cr3t" not in str(caught.value)


def test_check_reports_first_bad_key_in_sorted_order() -> None:
    with pytest.raises(RuleViolation) as caught:
        check_vars(RULES, {"OK": "v", "9B": "v", "8A": "v"})
    assert caught.value.key == "8A"


def test_vers_forbids_every_char_etc_environment_cannot_hold() -> None:
    from envvars.envfile import UNREPRESENTABLE

    assert set(UNREPRESENTABLE) <= set(RULES.forbidden_value_chars)


# -- the kit: every violation with its kind, counts, unknowns, one description -------------------

def test_violations_lists_every_broken_rule_in_key_order_with_its_kind() -> None:
    found = violations(RULES, {"OK": "v", "1A": "v", "B": "a\nb", "K" * 257: "v", "C": 5})
    assert [(v.key, v.kind) for v in found] == [
        ("1A", Kind.KEY_INVALID), ("B", Kind.VALUE_FORBIDDEN_CHAR), ("C", Kind.VALUE_TYPE),
        ("K" * 257, Kind.KEY_TOO_LONG)]
    with pytest.raises(RuleViolation) as caught:
        check_vars(RULES, {"1A": "v", "B": "a\nb"})
    assert [v.kind for v in caught.value.violations] == [Kind.KEY_INVALID, Kind.VALUE_FORBIDDEN_CHAR]


def test_a_placeholder_value_is_checked_once_known() -> None:
    placeholder = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
    assert violations(RULES, {"A": placeholder, "1B": placeholder}, unknown=placeholder) == [
        Violation(Kind.KEY_INVALID, "env var key '1B' is invalid: keys must match ^[A-Za-z_][A-Za-z0-9_]*$", "1B")]


EXAMPLE = KeyRules(platform="Example", key_pattern=r"^[A-Z]+$", max_key_len=8, max_value_len=4,
                   reserved_prefixes=("EX_",), forbidden_keys=frozenset({"PORT"}), per_request=(1, 2), max_resulting=3)


@pytest.mark.parametrize(("variables", "resulting", "kinds"), [
    ({}, None, [Kind.TOO_FEW]),
    ({"A": "1", "B": "2", "C": "3"}, None, [Kind.TOO_MANY]),
    ({"A": "1"}, {"A": "1", "B": "2", "C": "3", "D": "4"}, [Kind.SET_TOO_LARGE]),
    ({"A": "1", "B": "2"}, {"A": "1", "B": "2", "C": "3"}, []),
    ({"PORT": "1", "EX_A": "2"}, None, [Kind.KEY_INVALID, Kind.KEY_FORBIDDEN]),
])
def test_counts_per_request_and_on_the_resulting_set(
    variables: dict[str, str], resulting: dict[str, str] | None, kinds: list[Kind],
) -> None:
    assert [v.kind for v in violations(EXAMPLE, variables, resulting)] == kinds


def test_describe_states_the_rules_once_for_schema_and_openapi() -> None:
    assert describe(RULES) == ("Keys match `^[A-Za-z_][A-Za-z0-9_]*$` (1–256 chars); values are at most 8192 chars "
                               "with no newline, carriage return or NUL byte.")
    assert describe(EXAMPLE) == ("Keys match `^[A-Z]+$` (1–8 chars) and do not start with `EX_`; these keys are "
                                 "reserved: `PORT`; values are at most 4 chars. One request holds 1 to 2 variables. "
                                 "A set holds at most 3 variables.")


def test_hoody_maps_each_violation_to_its_documented_code() -> None:
    from envvars.rules.hoody import RULES as HOODY

    found = violations(HOODY, {"HOODY_TOKEN": "v", "1A": "v", "OK": "a\x00b", "LONG": "x" * 65_537})
    assert [(v.key, HOODY.code(v)) for v in found] == [
        ("1A", "INVALID_ENV_KEY"), ("HOODY_TOKEN", "RESERVED_ENV_PREFIX"), ("LONG", "VALIDATION_ERROR"),
        ("OK", "VALIDATION_ERROR")]
    assert [HOODY.code(v) for v in violations(HOODY, {})] == ["VALIDATION_ERROR"]
    assert violations(HOODY, {}, one_request=False) == []
    too_many = {f"K{i}": "v" for i in range(201)}
    assert [v.message for v in violations(HOODY, too_many)] == ["201 env vars in one request: Hoody takes 1 to 200"]
    assert violations(HOODY, {"K" * 256: "x" * 65_536, "PEM": "-----BEGIN-----\nabc\r\n"}) == []
