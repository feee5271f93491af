"""`/etc/environment` encoding: exact round-trips through our parser, and what real pam_env reads."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest

from envvars.envfile import PAM_LINE_MAX, UNREPRESENTABLE, login_alteration, parse, render
from envvars_server.sandbox import pam

TRICKY_VALUES = [
    "", " ", "  ", "plain", "with space", " leading", "trailing ", "\ttab\t",
    '"', "'", '""', "''", '"quoted"', "'single'", '"mixed\'', "a\"b'c", 'ends with "', "'starts",
    "$HOME", "${HOME}", "$(id)", "`id`", "@{PAM_USER}", "\\", "a\\", "\\\\", "C:\\path\\n",
    "#", "# not a comment", "a#b", "x=y", "=", "==", "export", "export X=1", "KEY=value",
    "é", "日本語", "emoji 🚀", "\u200b", "\x7f", "\x01\x1f", "a\u2028b", "\ufeffbom",
    "x" * 8192, "é" * 8192,
]
KEYS = ["A", "_", "_x", "PATH", "lower", "K9", "A" * 256, "export"]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_parse_render_round_trips_value(value: str) -> None:
    assert parse(render({"K": value})) == {"K": value}


@pytest.mark.parametrize("key", KEYS)
def test_parse_render_round_trips_key(key: str) -> None:
    assert parse(render({key: "v"})) == {key: "v"}


def test_parse_render_round_trips_everything_at_once() -> None:
    variables = {f"V{i}": value for i, value in enumerate(TRICKY_VALUES)} | {key: key for key in KEYS}
    assert parse(render(variables)) == variables


def test_parse_render_round_trips_random_values() -> None:
    rng = random.Random(20240601)
    alphabet = [chr(c) for c in range(0x20, 0x7F)] + list("\t\\\"'#$=é日🚀\u00a0\u2028\x7f\x01")
    for _ in range(2000):
        variables = {
            f"K{i}": "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
            for i in range(rng.randrange(0, 6))
        }
        assert parse(render(variables)) == variables


def test_render_is_sorted_quoted_and_newline_terminated() -> None:
    assert render({"B": "2", "A": "x y", "_C": ""}) == 'A="x y"\nB="2"\n_C=""\n'
    assert render({}) == ""


def test_render_puts_lines_too_long_for_pam_last() -> None:
    long = "x" * PAM_LINE_MAX
    assert render({"A": long, "B": "1", "C": long, "D": "2"}).splitlines() == [
        'B="1"', 'D="2"', f'A="{long}"', f'C="{long}"',
    ]


@pytest.mark.parametrize("char", UNREPRESENTABLE)
def test_render_rejects_unrepresentable_value_without_echoing_it(char: str) -> None:
    with pytest.raises(ValueError, match="the value of SECRET_KEY") as error:
        render({"SECRET_KEY": f"hunter2{char}"})
    assert "hunter2" not in str(error.value)


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "É", "A\n"])
def test_render_rejects_invalid_key(key: str) -> None:
    with pytest.raises(ValueError, match="not a valid variable name"):
        render({key: "v"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("\n\n  \n", {}),
        ("# comment\n  # indented comment\nA=1\n", {"A": "1"}),
        ("A=1\nA=2\n", {"A": "2"}),
        ("  export A=1\n", {"A": "1"}),
        ("export\tA=1\n", {}),
        ("A B=1\nA-B=1\n=1\n1A=x\n", {"1A": "x"}),
        ("UNSET\nA=1", {"A": "1"}),
        ("A=plain\n", {"A": "plain"}),
        ("A='single'\n", {"A": "single"}),
        ('A="unterminated\n', {"A": "unterminated"}),
        ('A="x"y"\n', {"A": 'x"y'}),
        ("A=ends'\n", {"A": "ends'"}),
        ('A="\n', {"A": ""}),
        ("A=  spaced  \n", {"A": "  spaced  "}),
        ('A="a" # c\n', {"A": 'a" # c'}),
    ],
)
def test_parse_follows_pam_env_rules(text: str, expected: dict[str, str]) -> None:
    assert parse(text) == expected


# -- the same files read by the host's real pam_env.so ---------------------------------------------

def pam_env_read(text: str) -> dict[str, str]:
    """What Linux-PAM's pam_env.so (readenv) sets from an env file with `text`."""
    with tempfile.TemporaryDirectory() as confdir:
        envfile = Path(confdir, "environment")
        envfile.write_text(text, encoding="utf-8")
        Path(confdir, pam.SERVICE).write_text(pam.service(str(envfile)))
        return pam.login_variables(confdir)


def test_pam_env_reads_every_value_without_hash_identically() -> None:
    fits = [value for value in TRICKY_VALUES if "#" not in value and len(value) < 8000]
    variables = {f"V{i}": value for i, value in enumerate(fits)}
    variables |= {key: key for key in KEYS}
    assert pam_env_read(render(variables)) == variables


def test_pam_env_reads_random_values_identically() -> None:
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(0x20, 0x7F) if chr(c) != "#"] + list("\té日🚀\u00a0\x7f")
    variables = {f"K{i}": "".join(rng.choices(alphabet, k=rng.randrange(0, 60))) for i in range(500)}
    assert pam_env_read(render(variables)) == variables


def test_pam_env_truncates_at_hash_and_keeps_other_lines() -> None:
    assert pam_env_read(render({"A": "x#y", "B": "ok"})) == {"A": "x", "B": "ok"}


def test_pam_env_still_reads_short_lines_when_one_is_too_long() -> None:
    assert pam_env_read(render({"A": "x" * 8192, "B": "ok"})) == {"B": "ok"}


@pytest.mark.parametrize("value", TRICKY_VALUES + ["x" * (PAM_LINE_MAX - 3), "x" * (PAM_LINE_MAX - 2)])
def test_the_provider_warns_exactly_when_a_login_sees_a_value_otherwise(value: str) -> None:
    # The warning's rule against the real module: silent exactly when pam_env reads the value back intact.
    assert (login_alteration("K", value) is None) == (pam_env_read(render({"K": value})) == {"K": value})
