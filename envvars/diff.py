"""Per-key diff of two variable maps: which keys a change adds, updates and deletes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class KeyDiff:
    """The keys that differ between an old and a new map, each list sorted."""

    added: list[str]
    updated: list[str]
    deleted: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.updated or self.deleted)

    @property
    def upserts(self) -> list[str]:
        """Keys whose new value must be written."""
        return sorted(self.added + self.updated)


def diff_keys(old: Mapping[str, object], new: Mapping[str, object]) -> KeyDiff:
    """Compare two maps key by key; values are compared, never shown."""
    return KeyDiff(
        added=sorted(new.keys() - old.keys()),
        updated=sorted(key for key in new.keys() & old.keys() if new[key] != old[key]),
        deleted=sorted(old.keys() - new.keys()),
    )
