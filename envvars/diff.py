"""Per-key diff of two variable maps: which keys a change adds, updates and deletes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

_ABSENT = object()


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
    get = old.get
    changed = [key for key, value in new.items() if get(key, _ABSENT) != value]  # added or updated
    added = [key for key in changed if key not in old]
    gone = len(old) > len(new) - len(added)  # else every old key is still there: no set difference to take
    return KeyDiff(
        added=sorted(added),
        updated=sorted(key for key in changed if key in old),
        deleted=sorted(old.keys() - new.keys()) if gone else [],
    )
