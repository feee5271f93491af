"""Group commit: write transactions that arrive together share one SQLite commit, so one fsync.

Writers take turns on one connection. Each writer's block runs in a savepoint of a transaction that
stays open while other writers wait for their turn; the last writer in line commits for everyone
(or the writer that fills the group). Every writer returns only after that commit, so an
acknowledged write is as durable as one with a commit of its own. A block that raises undoes its
own savepoint and nothing else. A block must not wait for anything another writer could hold.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from envvars_server.store.sql import Execute


class CommitFailed(RuntimeError):
    """The group's commit failed: none of its writes was stored."""


class _Group:
    """The writers of one transaction, and how their commit ended."""

    def __init__(self) -> None:
        self.size = 0
        self.committed = threading.Event()
        self.error: BaseException | None = None


class GroupCommit:
    """Write transactions on `db` (a connection shared by every writer), committed in groups of at most `max_size`."""

    def __init__(self, db: sqlite3.Connection, max_size: int = 64):
        self._db = db
        self._max_size = max_size
        self._turn = threading.Lock()  # whose block runs on the connection
        self._queue = threading.Lock()  # guards `_waiting`
        self._waiting = 0  # writers that want a turn: while there are any, the group stays open for them
        self._group: _Group | None = None

    @contextmanager
    def transaction(self) -> Iterator[Execute]:
        """One writer's block; returns once its group has committed, raises if that commit failed."""
        with self._queue:
            self._waiting += 1
        with self._turn:
            with self._queue:
                self._waiting -= 1
            if self._group is None:
                self._db.execute("BEGIN IMMEDIATE")
                self._group = _Group()
            group = self._group
            stored = False
            try:
                self._db.execute("SAVEPOINT writer")
                try:
                    yield self._db.execute
                    stored = True
                finally:
                    if self._db.in_transaction:  # an error of the database may have ended the whole transaction
                        if not stored:
                            self._db.execute("ROLLBACK TO writer")
                        self._db.execute("RELEASE writer")
            finally:
                group.size += 1
                if not self._db.in_transaction:
                    self._end(group, RuntimeError("the database rolled the transaction back"))
                elif self._waiting == 0 or group.size >= self._max_size:
                    self._commit(group)
        group.committed.wait()
        if group.error is not None:
            raise CommitFailed("the write was not stored: its transaction failed to commit") from group.error

    @contextmanager
    def closing(self) -> Iterator[None]:
        """Hold every later writer off, the open group committed, while the connection is closed."""
        with self._turn:
            if self._group is not None:
                self._commit(self._group)
            yield

    def _commit(self, group: _Group) -> None:
        """Commit the open transaction for its group (or roll it back if the commit fails), then release them."""
        error: BaseException | None = None
        try:
            self._db.execute("COMMIT")
        except BaseException as exc:
            error = exc
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._end(group, error)

    def _end(self, group: _Group, error: BaseException | None) -> None:
        """Release the group's writers: their writes are stored unless `error` says why not."""
        group.error = error
        self._group = None
        group.committed.set()
