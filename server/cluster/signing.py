"""The signature a node puts on a request it forwards, so that the node answering it can trust who the user is.

A forwarded request carries no user token: it carries `X-Envvars-Forward`, naming the sending node, the user
the entry node authenticated, the time and the body's SHA-256, with an HMAC-SHA256 under the cluster's shared
secret over those and the method, path and query. The receiving node acts as that user only when the HMAC is
right and the time is within `MAX_SKEW_S` of its own; anything else is refused (`forwarding.PeerAuth`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

HEADER = "x-envvars-forward"
MAX_SKEW_S = 30
_FIELDS = re.compile(r"v1 node=(?P<node>[A-Za-z0-9_.-]{1,64}) user=(?P<user>[A-Za-z0-9-]{1,64}) "
                     r"ts=(?P<ts>[0-9]{1,12}) body=(?P<body>[0-9a-f]{64}) sig=(?P<sig>[0-9a-f]{64})")


class Refused(Exception):
    """A forwarding header that does not prove it came from a node of this cluster."""


@dataclass(frozen=True)
class Forward:
    """What a verified forwarding header says: the sending node, the user, and the SHA-256 of the body."""

    node: str
    user: str
    body_sha256: str


def _mac(secret: bytes, method: str, target: str, node: str, user: str, ts: str, body_sha256: str) -> str:
    message = "\n".join((method.upper(), target, node, user, ts, body_sha256)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, method: str, target: str, node: str, user: str, body: bytes, at: float | None = None) -> str:
    """The header value for a request of `user` forwarded by `node` (now, or `at`); `target` is the path with its
    query."""
    ts = str(int(time.time() if at is None else at))
    digest = hashlib.sha256(body).hexdigest()
    mac = _mac(secret, method, target, node, user, ts, digest)
    return f"v1 node={node} user={user} ts={ts} body={digest} sig={mac}"


def verify(secret: bytes, method: str, target: str, header: str) -> Forward:
    """What a forwarding header proves; `Refused` unless it is well formed, fresh, and signed with `secret`."""
    found = _FIELDS.fullmatch(header.strip())
    if found is None:
        raise Refused("malformed forwarding header")
    node, user, ts, digest = found["node"], found["user"], found["ts"], found["body"]
    if not hmac.compare_digest(found["sig"], _mac(secret, method, target, node, user, ts, digest)):
        raise Refused("bad forwarding signature")
    if abs(time.time() - int(ts)) > MAX_SKEW_S:
        raise Refused("stale forwarding signature")
    return Forward(node=node, user=user, body_sha256=digest)
