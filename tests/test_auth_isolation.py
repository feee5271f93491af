"""Every route of every platform, from the OpenAPI document: no token, malformed tokens, another user's token.

Without a valid token every route answers 401 in the platform's envelope with its challenge
(`WWW-Authenticate: Bearer`, or the header its token goes in: `Envelope.challenge`), the missing and
the invalid token told apart where the platform has codes. The malformed tokens are sent where the
platform takes its token (`Authorization: Bearer`, or the bare token in its own header), and a valid
token sent only where other platforms take theirs is a missing one. With another
user's token a route answers as documented and never with the victim's data: the victim holds a
secret and objects on every platform (`tests/platforms.py`: Vers VMs and a commit, Hoody containers,
and their workloads on the neutral surface); each of them named is that user's 404 in the owning
envelope, and the victim's variables are invisible and untouched.
Tokens are stored as SHA-256 digests only, and looked up by digest (so the comparison's timing
depends on the digest, never on how much of a guessed token is right), then compared with
`hmac.compare_digest`.
On the cluster (`tests/stores.py`) the victim's workloads run on the first replica, and every other session goes to
another replica or the balancer: a replica that does not run a workload must refuse it to another user as well
(never forward the request as its owner's).
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from envvars_server.auth import unauthorized
from envvars_server.store import hash_token
from tests import conftest, openapi_doc, platforms
from tests.conftest import TOKEN_HEADERS, Api
from tests.figures import figure
from tests.stores import Server, next_url, sql, stored_bytes

OPERATIONS = openapi_doc.operations()
_tally = {"requests": 0, "credential_cases": 0, "victim_data_seen": 0}


class Victim:
    """A user holding, on every platform, a secret and objects (VMs, a commit, containers) nobody else names."""

    def __init__(self, server: Server):
        self.token = server.token(f"victim-{uuid.uuid4()}")
        self.api = Api(server.url, self.token)
        self.secret = f"victim-secret-{uuid.uuid4()}"
        self.parts: dict[str, platforms.Victim] = {}
        for name in platforms.NAMES:
            self.parts[name] = platforms.kit(name).victim(self.api, server.store(), f"{self.secret}-{name}")
        user_id = server.store().user_for_token(self.token)
        assert user_id is not None
        self.user_id = user_id

    def data(self) -> list[str]:
        """What no other user may ever see."""
        return [item for part in self.parts.values() for item in part.data] + [self.user_id, self.token]

    def targets(self, path: str, aim: str) -> dict[str, str]:
        """The path parameters (and body ids) naming the victim's objects for an operation on `path`."""
        platform = platforms.platform_of(path)
        if platform is None:  # the neutral surface: aimed at the victim's workload of the platform `aim`
            return {"workload_id": self.parts[aim if aim in self.parts else platforms.NAMES[0]].workload}
        part = self.parts[platform]
        return part.alternates.get(aim, part.targets)

    def unchanged(self) -> None:
        for part in self.parts.values():
            part.unchanged()


@pytest.fixture(scope="module")
def tally(store_kind: str) -> Iterator[None]:
    """The module's figure on a store, once all its requests there ran."""
    _tally.update(dict.fromkeys(_tally, 0))
    yield
    figure(f"auth and isolation on {store_kind}", requests=_tally["requests"], operations=len(OPERATIONS),
           platforms=len(platforms.NAMES), credential_cases=_tally["credential_cases"],
           victim_data_seen=_tally["victim_data_seen"])


@pytest.fixture(scope="module")
def victim(server: Server, tally: None) -> Iterator[Victim]:
    victim = Victim(server)
    yield victim
    for part in victim.parts.values():
        part.close()
    victim.api.close()


def request_for(method: str, path: str, victim: Victim, aim: str = "default") -> dict[str, Any]:
    """A well-formed request for an operation, aimed at the victim's objects and variable."""
    targets = victim.targets(path, aim)
    url = re.sub(r"\{(\w+)\}", lambda m: targets.get(m[1], "x"), path)
    operation = openapi_doc.operation(method, path)
    query = {p["name"]: "/etc/environment" if p["name"] == "path" else openapi_doc.sample(p["schema"], {})
             for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
    body_schema = openapi_doc.body_schema(method, path)
    request: dict[str, Any] = {"method": method, "url": url, "params": query}
    if body_schema is not None:
        overrides = {"path": "/etc/environment", "command": ["cat", "/etc/environment"], "value": "x"}
        overrides |= {name: value for name, value in targets.items() if name.endswith("_id")}
        request["json"] = openapi_doc.sample(body_schema, overrides)
    return request


# Credentials that are not a valid token, by where the platform takes its token (`Envelope.token_header`):
# the header's value (None: no header) and whether a token is sent in it (the invalid token told apart from
# the missing one where the platform has codes). `{token}` is the victim's token, `{token_truncated}` it
# without its last character, `{digest}` its stored SHA-256.
BEARER: dict[str, tuple[str | None, bool]] = {  # `Authorization: Bearer <token>`
    "no header": (None, False),
    "empty": ("", False),
    "scheme only": ("Bearer", False),
    "scheme and space": ("Bearer ", False),
    "basic": ("Basic dXNlcjpwYXNz", False),
    "token without scheme": ("{token}", False),
    "other scheme": ("Token {token}", False),
    "truncated": ("Bearer {token_truncated}", True),
    "extended": ("Bearer {token}x", True),
    "stored digest as token": ("Bearer {digest}", True),
    "unknown well-formed": ("Bearer evt_" + "A" * 43, True),
    "latin-1 junk": ("Bearer \xe9\xff", True),
}
# The bare token in a header of the platform's own: the same invalid tokens, with no scheme, and the token with one.
OWN_HEADER: dict[str, tuple[str | None, bool]] = {
    "no header": (None, False), "empty": ("", False), "token with a scheme": ("Bearer {token}", True),
    **{name: (value.removeprefix("Bearer "), True) for name, (value, sent) in BEARER.items() if sent and value},
}
ELSEWHERE = "valid token in another platform's header"  # every way the platforms take one but the route's own


def malformed(path: str) -> list[str]:
    """The credentials tried on an operation: its platform's way's, and its valid token sent every other way."""
    own = platforms.envelope_of(path).token_header
    elsewhere = [ELSEWHERE] if set(TOKEN_HEADERS) - {own} else []
    return [*(BEARER if own == "authorization" else OWN_HEADER), *elsewhere]


def presented(path: str, credential: str, token: str) -> tuple[dict[str, bytes], bool]:
    """The headers sending `credential` to an operation on `path`, and whether they send it a token."""
    own = platforms.envelope_of(path).token_header
    if credential == ELSEWHERE:
        return {name: value.encode("latin-1") for header in TOKEN_HEADERS if header != own
                for name, value in conftest.credential(header, token).items()}, False
    template, sent = (BEARER if own == "authorization" else OWN_HEADER)[credential]
    if template is None:
        return {}, sent
    value = template.format(token=token, token_truncated=token[:-1], digest=hash_token(token))
    return {"Authorization" if own == "authorization" else own: value.encode("latin-1")}, sent


CREDENTIALED = [(m, p, credential) for m, p in OPERATIONS for credential in malformed(p)]


@pytest.mark.sweep
@pytest.mark.parametrize(("method", "path", "credential"), CREDENTIALED,
                         ids=[f"{m} {p}-{credential}" for m, p, credential in CREDENTIALED])
def test_without_a_valid_token_every_route_is_401(server: Server, victim: Victim, method: str, path: str,
                                                  credential: str) -> None:
    headers, sent = presented(path, credential, victim.token)
    request = request_for(method, path, victim)
    response = requests.request(**request | {"url": next_url(server) + request["url"]}, headers=headers, timeout=60)
    _tally["requests"] += 1
    _tally["credential_cases"] += 1
    assert response.status_code == 401, response.text
    found = platforms.envelope_of(path)
    code = found.invalid_token_code if sent else None
    assert response.json() == found.body(401, unauthorized(found, sent), code)
    assert response.headers["WWW-Authenticate"] == found.challenge
    assert 401 in openapi_doc.documented_statuses(method, path)


def aims(path: str) -> list[str]:
    """Where an operation is aimed: its platform's victim objects, and each alternate that changes its path
    (a VM's commit for `{vm_or_commit_id}`); on the neutral surface, each platform's victim workload."""
    platform = platforms.platform_of(path)
    if platform is None:
        return platforms.NAMES if "{workload_id}" in path else ["default"]
    alternates = platforms.kit(platform).alternates
    return ["default", *(aim for aim, params in alternates.items() if any(f"{{{p}}}" in path for p in params))]


AIMED = [(m, p, aim) for m, p in OPERATIONS for aim in aims(p)]


@pytest.mark.parametrize(("method", "path", "aim"), AIMED, ids=[f"{m} {p} at {a}" for m, p, a in AIMED])
def test_another_users_token_never_reaches_the_victims_data(api: Api, victim: Victim, method: str, path: str,
                                                            aim: str) -> None:
    request = request_for(method, path, victim, aim)
    response = api.request(**request)
    _tally["requests"] += 1
    seen = [item for item in victim.data() if item in response.text]
    _tally["victim_data_seen"] += len(seen)
    body = response.json() if response.status_code == 201 else {}
    for vm_id in [body["vm_id"]] if "vm_id" in body else []:
        api.delete(f"/api/v1/vm/{vm_id}")  # the other user's own new VM
    if "platform" in body and "id" in body:  # a workload of the other user's own, on the neutral surface
        platforms.kit(body["platform"]).remove_workload(api, body["id"])
    assert seen == []
    assert response.status_code in openapi_doc.documented_statuses(method, path), response.text
    targets = victim.targets(path, aim)
    names_victim = any(name in targets for name in platforms.path_params(path))
    names_victim = names_victim or any(f'"{value}"' in str(request.get("json")).replace("'", '"')
                                       for name, value in targets.items() if name.endswith("_id"))
    if names_victim:
        platform = platforms.platform_of(path)
        status = platforms.kit(platform).foreign_status if platform else 404
        assert response.status_code == status, response.text
        assert platforms.envelope_message(path, status, response.json()) is not None, response.text
    victim.unchanged()


def test_tokens_are_stored_as_digests_only(server: Server, victim: Victim) -> None:
    other = server.token("digest-check")
    raw = stored_bytes(server)
    assert victim.token.encode() not in raw and other.encode() not in raw
    stored = [row[0] for row in sql(server, "SELECT token_hash FROM tokens")]
    assert stored and all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in stored)
    assert hash_token(victim.token) in stored
    store = server.store()
    assert store.user_for_token(victim.token) == victim.user_id
    assert store.user_for_token(hash_token(victim.token)) is None  # the digest is not a credential


@pytest.mark.parametrize(("path", "status"), [("/api/v1/env_vars", b"401"), ("/nowhere", b"404")])
def test_a_refused_request_with_an_unread_body_closes_its_connection(
    server: Server, path: str, status: bytes,
) -> None:
    """Refused before its body is read (no token, no route): the rest must never be parsed as a next request."""
    host, port = server.url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n".encode()
                     + b"Content-Length: 40\r\n\r\n" + b'{"vars": ')  # the body's start only
        time.sleep(0.3)  # the refusal is sent meanwhile
        with contextlib.suppress(OSError):  # the server may already have closed its end
            conn.sendall(b'{"A": "1"}, "x": 1} ' + b"GET /api/v1/system/version HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := conn.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 " + status) and b"connection: close" in answer.lower(), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 1 and b"Invalid HTTP request" not in answer, answer


def test_every_platform_has_a_kit() -> None:
    """The reliability suites run for every platform of the server's list: each needs its kit in tests/platforms.py."""
    assert sorted(platforms.KITS) == sorted(platforms.NAMES)
