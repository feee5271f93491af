"""Provider configuration: `envvars:<key>` settings, each with an environment-variable fallback.

The settings themselves are declared by each platform (`Platform.settings`); this module checks,
warns about and resolves them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

from envvars_provider import engine_log
from envvars_provider.errors import ConfigError
from envvars_provider.names import camel


def redact(url: str) -> str:
    """`url` with everything between `//` and its last `@` hidden, so a password is never echoed."""
    if "@" not in url:
        return url
    head, sep, _ = url.partition("//")
    return f"{head + sep if sep else ''}***@{url.rsplit('@', 1)[1]}"


def _url_problem(key: str, value: str, example: str) -> str | None:
    """The rule `value` breaks as a base URL, or None; the message shows the URL redacted."""
    shown = redact(value)
    try:
        url = urlsplit(value)
    except ValueError:  # an unbalanced bracket, or brackets around something other than an IPv6 address
        return f"{key} has a malformed host: brackets must hold a whole IPv6 address, as in http://[::1]:8080, " \
               f"got {shown!r}"
    if url.scheme not in ("http", "https") or not url.hostname:
        return f"{key} must be an http(s) URL such as {example}, got {shown!r}"
    if "@" in url.netloc:
        return f"{key} must not contain credentials (user:password@): give the API key in its own setting, " \
               f"got {shown!r}"
    if any(char.isspace() or not char.isprintable() for char in value):
        return f"{key} must not contain spaces or control characters, got {shown!r}"
    if not _port_ok(url):
        return f"{key} has an invalid port: it must be a number from 1 to 65535, got {shown!r}"
    return None


def _port_ok(url: SplitResult) -> bool:
    try:
        return url.port != 0
    except ValueError:  # not a number, or out of range
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Setting:
    """One configuration key of the provider."""

    name: str
    description: str
    env: str
    default: str | None = None
    secret: bool = False
    is_url: bool = False
    label: str | None = None
    """What users call the setting ("Vers API key"), for one every resource of its platform needs:
    their Check fails while it is unset."""
    placeholder: str = "VALUE"
    """What stands for the value in the `pulumi config set` command a failure suggests."""
    addon: bool = False
    """Whether it addresses an optional service beside the platform's API (a registrar), not the API itself."""

    @property
    def wire(self) -> str:
        """The setting's name in the provider's inputs: `versUrl`."""
        return camel(self.name)

    @property
    def key(self) -> str:
        """The setting as a program configures it: `envvars:versUrl`."""
        return "envvars:" + self.wire

    def check(self, value: Any) -> str | None:
        """The reason `value` is not acceptable, or None."""
        if value is None:
            return None
        if not isinstance(value, str):
            return f"{self.key} must be a string"
        return _url_problem(self.key, value, self.default or "https://api.example.com") if self.is_url else None

    def unset_reason(self) -> str:
        """The Check failure of a resource that needs this setting while it is unset: where to set it."""
        flag = " --secret" if self.secret else ""
        return (f"no {self.label} is configured: set {self.key} (`pulumi config set{flag} {self.key} "
                f"{self.placeholder}`) or the {self.env} environment variable")

    def warning(self, value: Any) -> str | None:
        """A risk worth telling the user about in an acceptable `value`, or None."""
        if not self.is_url or not isinstance(value, str) or self.check(value):
            return None
        url = urlsplit(value)
        if url.scheme != "http" or _is_loopback(url.hostname or ""):
            return None
        return (f"{self.key} is plain http:// to {url.hostname!r}, which is not this machine: the API key and "
                "secret values would cross the network unencrypted; use https://")


def settings() -> tuple[Setting, ...]:
    """Every setting of every platform (each platform declares its own)."""
    from envvars_provider.registry import PLATFORMS

    return tuple(setting for platform in PLATFORMS for setting in platform.settings)


def auth_hint(setting: Setting, noun: str = "API key") -> str:
    """What a refused request (HTTP 401/403) should tell the user to check: where the credential comes from."""
    return f"the {noun} is {setting.key} or, when that is unset, the {setting.env} environment variable"


@dataclass(frozen=True)
class Config:
    """Resolved provider settings, by snake_case name."""

    values: Mapping[str, str | None]

    def __getattr__(self, name: str) -> str | None:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def _given(given: Mapping[str, Any], setting: Setting) -> tuple[Any, str]:
    """A setting's value from the program, else its environment fallback, and where it came from."""
    value = given.get(setting.name)
    if value is None and os.environ.get(setting.env):
        return os.environ[setting.env], setting.env
    return value, setting.key


def check(given: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, reason) for every malformed setting, including its environment fallback."""
    failures = []
    for setting in settings():
        value, source = _given(given, setting)
        reason = setting.check(value)
        if reason:
            failures.append((setting.name, reason.replace(setting.key, source, 1)))
    return failures


def warnings(given: Mapping[str, Any]) -> list[str]:
    """Risks in acceptable settings (plain http to another machine), including environment fallbacks."""
    found = []
    for setting in settings():
        value, source = _given(given, setting)
        warning = setting.warning(value)
        if warning:
            found.append(warning.replace(setting.key, source, 1))
    return found


def resolve(given: Mapping[str, Any]) -> Config:
    """Settings from the program's config, else the environment, else the default; logs any warning."""
    failures = check(given)
    if failures:
        raise ConfigError("; ".join(reason for _, reason in failures))
    for warning in warnings(given):
        engine_log.warn(warning)
    values = {}
    for setting in settings():
        value = given.get(setting.name)
        values[setting.name] = value if value is not None else os.environ.get(setting.env) or setting.default
    return Config(values)
