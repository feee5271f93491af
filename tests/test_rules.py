"""The Vers rules, table-driven: every rule, its limit and its message."""

from __future__ import annotations

import pytest

from envvars.rules import RuleViolation, check_vars
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
