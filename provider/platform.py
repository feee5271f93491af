"""What a platform brings to the provider: its settings and its resources (one declaration each)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from envvars_provider.config import Setting

if TYPE_CHECKING:
    from envvars_provider.resources.base import Resource


@dataclass(frozen=True)
class Platform:
    """One platform of the provider: its name (a schema module), settings and resource types."""

    name: str
    title: str
    settings: tuple[Setting, ...]
    resources: tuple[type[Resource], ...]
