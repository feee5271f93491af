"""Provider configuration: `envvars:<key>` settings, each with an environment-variable fallback."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from envvars_provider.errors import ConfigError
from envvars_provider.names import camel


@dataclass(frozen=True)
class Setting:
    """One configuration key of the provider."""

    name: str
    description: str
    env: str
    default: str | None = None
    secret: bool = False
    is_url: bool = False

    @property
    def key(self) -> str:
        """The setting as a program configures it: `envvars:versUrl`."""
        return "envvars:" + camel(self.name)

    def check(self, value: Any) -> str | None:
        """The reason `value` is not acceptable, or None."""
        if value is None:
            return None
        if not isinstance(value, str):
            return f"{self.key} must be a string"
        if self.is_url:
            url = urlparse(value)
            if url.scheme not in ("http", "https") or not url.netloc:
                return (f"{self.key} must be an http(s) URL such as https://api.vers.sh, "
                        f"got {value!r}")
        return None


SETTINGS = (
    Setting("vers_url", "Base URL of the Vers orchestrator API. Falls back to VERS_URL.", "VERS_URL",
            default="https://api.vers.sh", is_url=True),
    Setting("vers_api_key", "API key for the Vers orchestrator (a secret). Falls back to VERS_API_KEY.",
            "VERS_API_KEY", secret=True),
)


@dataclass(frozen=True)
class Config:
    """Resolved provider settings, by snake_case name."""

    values: Mapping[str, str | None]

    def __getattr__(self, name: str) -> str | None:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def check(given: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, reason) for every malformed setting, including its environment fallback."""
    failures = []
    for setting in SETTINGS:
        value = given.get(setting.name)
        source = setting.key
        if value is None and os.environ.get(setting.env):
            value, source = os.environ[setting.env], setting.env
        reason = setting.check(value)
        if reason:
            failures.append((setting.name, reason.replace(setting.key, source, 1)))
    return failures


def resolve(given: Mapping[str, Any]) -> Config:
    """Settings from the program's config, else the environment, else the default."""
    failures = check(given)
    if failures:
        raise ConfigError("; ".join(reason for _, reason in failures))
    values = {}
    for setting in SETTINGS:
        value = given.get(setting.name)
        values[setting.name] = value if value is not None else os.environ.get(setting.env) or setting.default
    return Config(values)
