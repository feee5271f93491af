"""What a login in a workload sees, for every platform: each value a platform accepts, as stored, unless the
platform itself documents otherwise.

Vers documents its injection: `/etc/environment` read by pam_env, which ends a value at `#` and skips
lines over 8190 bytes (`envvars.envfile.login_alteration`); the server must show exactly that. Hoody
documents none: a container gets its map as stored, up to 65,536 chars a value. Each platform's kit
(`tests/platforms.py`) says what a login sees.
"""

from __future__ import annotations

import importlib

import pytest

from tests import platforms
from tests.conftest import Api

VALUES = {
    "HASH": "a#b", "ONLY_HASH": "#", "QUOTES": "\"q\" 's'", "BACKSLASH": "a\\b", "DOLLAR": "${HOME} @{HOME}",
    "EQUALS": "a=b", "TAB": "a\tb", "SPACES": " lead and trail ", "UNICODE": "\u00e9\u2713", "EMPTY": "",
}
LONG = 9000  # over pam_env's line limit: a value this long (or the platform's longest, if shorter)
# Where the server does not do what its platform documents: a server bug, reported; strict, so a fix shows.
BUGS: dict[str, str] = {}


@pytest.mark.parametrize("platform", [pytest.param(name, marks=pytest.mark.xfail(reason=BUGS[name], strict=True))
                                      if name in BUGS else name for name in platforms.NAMES])
def test_a_login_in_the_workload_sees_each_value_as_the_platform_says(api: Api, platform: str) -> None:
    env_set = platforms.kit(platform).env_set(api)
    longest = importlib.import_module(f"envvars.rules.{platform}").RULES.max_value_len
    values = VALUES | {"LONG_LINE": "x" * min(LONG, longest)}
    try:
        response = env_set.merge(values)
        assert env_set.acknowledged(response), response.text
        workload = env_set.apply()
        response = api.get(f"{platforms.WORKLOADS}/{workload}/environment")
        assert response.status_code == 200, response.text
        seen = response.json()["vars"]
        kit = platforms.kit(platform)
        expected = {key: kit.login_value(key, value) for key, value in values.items()}
        assert {key: seen.get(key) for key in values} == expected
    finally:
        env_set.close()
