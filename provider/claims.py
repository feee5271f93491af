"""Which variables each resource of this deployment manages.

The engine checks every resource of the program before it deletes those the program dropped, but
it may update or replace one resource before it has checked the next. A resource that gives up
keys therefore deletes them while holding the registry, and only those no resource of the program
claims: a key moved to another resource is never deleted by the one that let it go, in whichever
order the engine runs the steps (a claim made later is registered after the delete, and the
claimant's own write follows its check). A resource's own claim counts too: when it is replaced
under the same URN, the old copy's delete leaves what the new copy manages.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass


@dataclass(frozen=True)
class Claim:
    """The variables a resource manages in one scope (a platform's account, container, app...)."""

    scope: str
    keys: frozenset[str] = frozenset()
    exclusive: bool = False
    conflict: str = ("is exclusive (owns the account's whole set) but '{peer}' manages variables of the same "
                     "account: make one exclusive resource hold them all, or set exclusive to false")
    """What an exclusive claim's owner is told beside another resource in its scope (`{peer}`: that one)."""

    def covers(self, key: str) -> bool:
        """Whether `key` is managed under this claim."""
        return self.exclusive or key in self.keys


# A resource's view of the registry during a step: every claim of the program in a scope, merged,
# with no new claim registered until the block ends.
Others = Callable[[str], AbstractContextManager[Claim]]


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


class Claims:
    """The claims learnt in Check, by URN: one provider process serves one deployment of one account."""

    def __init__(self) -> None:
        self._by_urn: dict[str, Claim] = {}
        self._lock = threading.Lock()

    def register(self, urn: str, claim: Claim) -> list[str]:
        """Record `claim` for `urn`; the reasons it conflicts with another resource's (then nothing is kept)."""
        with self._lock:
            for other_urn, other in self._by_urn.items():
                if other_urn == urn or other.scope != claim.scope:
                    continue
                if claim.exclusive or other.exclusive:
                    sole, owner, peer = ((claim, "this resource", other_urn) if claim.exclusive
                                         else (other, f"'{_name(other_urn)}'", urn))
                    return [f"{owner} {sole.conflict.format(peer=_name(peer))}"]
                shared = sorted(claim.keys & other.keys)
                if shared:
                    return [f"key {shared[0]!r} is also managed by '{_name(other_urn)}': manage each key in "
                            "exactly one resource"]
            self._by_urn[urn] = claim
        return []

    @contextlib.contextmanager
    def held(self, scope: str) -> Iterator[Claim]:
        """Every claim in `scope`, merged; no claim is registered until the block ends.

        A resource giving keys up may include itself: an update gives up only keys outside its new
        claim, and a resource deleted because the program dropped it has no claim (it was never checked).
        """
        with self._lock:
            claims = [claim for claim in self._by_urn.values() if claim.scope == scope]
            yield Claim(scope, frozenset().union(*(claim.keys for claim in claims)),
                        any(claim.exclusive for claim in claims))
