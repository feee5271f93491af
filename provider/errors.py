"""The provider's errors. Messages name the resource, the key (never a value) and the fix."""

from __future__ import annotations

from typing import Any


class ProviderError(Exception):
    """Anything the provider reports to the engine as a failed operation."""


class ConfigError(ProviderError):
    """The provider's configuration is missing or malformed."""


class PlatformError(ProviderError):
    """A platform's API refused a request; carries its status and its reason."""

    def __init__(self, method: str, path: str, status: int, reason: str):
        super().__init__(f"{method} {path} failed with HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


class UnreachableError(ProviderError):
    """A platform's API did not answer after every retry."""


class PartialApply(ProviderError):
    """An operation changed the platform part-way: the engine records `outputs` under `id` and retries."""

    def __init__(self, message: str, resource_id: str, outputs: dict[str, Any]):
        super().__init__(message)
        self.resource_id = resource_id
        self.outputs = outputs
