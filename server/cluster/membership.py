"""Who is in the cluster: this node's identity, its heart-beats in the store, and which nodes are alive."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from envvars_server.store import Store

log = logging.getLogger("envvars.cluster")

NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_NODE_TIMEOUT_S = 10.0
MIN_SECRET_BYTES = 32


class Elsewhere(Exception):
    """The workload lives on another live node: the request is to be answered there (see `forwarding`)."""

    def __init__(self, node: str, url: str):
        super().__init__(f"on node {node}")
        self.node = node
        self.url = url


@dataclass(frozen=True)
class NodeConfig:
    """This replica in a cluster: its id, the URL the other replicas reach it at, the shared secret that signs
    forwarded requests, and how long a node may stay silent before its workloads are shown dead."""

    node_id: str
    advertise_url: str
    secret: bytes
    timeout_s: float = DEFAULT_NODE_TIMEOUT_S

    def __post_init__(self) -> None:
        if not NODE_ID.fullmatch(self.node_id):
            raise ValueError(f"node id {self.node_id!r}: letters, digits, '_', '.', '-', at most 64")
        if not self.advertise_url.startswith(("http://", "https://")):
            raise ValueError("the advertised URL must be http:// or https://")
        if len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")

    def __repr__(self) -> str:  # never the secret
        return f"NodeConfig(node_id={self.node_id!r}, advertise_url={self.advertise_url!r})"


def read_secret(path: Path) -> bytes:
    """The cluster secret in `path` (surrounding whitespace dropped); refused when others may read the file."""
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path} is readable by others: chmod 600 it")
    return path.read_bytes().strip()


class Membership:
    """This node's place in the cluster, or a single server's (`node` None: every workload is local, none dead).

    A node beats every fifth of its timeout and reads the others' beats at the same time; ages come from the
    database's clock, so the nodes' own clocks never matter.
    """

    def __init__(self, store: Store, node: NodeConfig | None = None):
        self.store = store
        self.node = node
        self._live: dict[str, str] = {}  # node id -> URL, as of the last beat
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def node_id(self) -> str | None:
        """This node's id; None for a single server."""
        return self.node.node_id if self.node else None

    def start(self) -> None:
        """Beat once (so this node is known before it serves), then keep beating in the background; refuse to
        when another replica beats under this node's id."""
        if self.node is None:
            return
        for node, url, age in self.store.nodes():
            if node == self.node.node_id and url != self.node.advertise_url and age < self.node.timeout_s:
                raise RuntimeError(f"node id {node} is taken: the replica at {url} beat {age:.1f} s ago; give this "
                                   f"one another --node-id (or, if that was this replica's old address, wait "
                                   f"{self.node.timeout_s:g} s)")
        self.beat()
        self._thread = threading.Thread(target=self._beating, name="envvars-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the others will see this node dead after its timeout)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def beat(self) -> None:
        """Record this node alive and refresh which nodes are."""
        assert self.node is not None
        self.store.beat(self.node.node_id, self.node.advertise_url)
        self.refresh()

    def refresh(self) -> None:
        """Read which nodes are alive now, from their beats in the database (a single server has no others)."""
        if self.node is not None:
            self._live = {node: url for node, url, age in self.store.nodes() if age < self.node.timeout_s}

    def _beating(self) -> None:
        assert self.node is not None
        while not self._stopping.wait(self.node.timeout_s / 5):
            try:
                self.beat()
            except Exception:  # the database may be away for a while: keep trying, as the others judge us by it
                log.exception("heart-beat of node %s failed", self.node.node_id)

    def is_local(self, node: str | None) -> bool:
        """Whether a workload recorded on `node` runs here."""
        return node == self.node_id

    def url_of(self, node: str | None) -> str | None:
        """The URL of `node` while it is alive; None for a silent or unknown node."""
        return self._live.get(node) if node is not None else None
