"""Every route of every platform, from the OpenAPI document: no token, malformed tokens, another user's token.

Without a valid token every route answers 401 in the platform's envelope with `WWW-Authenticate:
Bearer`. With another user's token a route answers as documented and never with the victim's data:
the victim's VM and commit are that user's 404, the victim's variables are invisible and untouched.
Tokens are stored as SHA-256 digests only, and looked up by digest (so the comparison's timing
depends on the digest, never on how much of a guessed token is right), then compared with
`hmac.compare_digest`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from envvars_server.auth import unauthorized
from envvars_server.errors import owner
from envvars_server.launch import ServerProcess
from envvars_server.platforms import PLATFORMS
from envvars_server.store import DB_FILE, SqliteStore, hash_token
from tests import openapi_doc
from tests.conftest import Api
from tests.figures import figure

OPERATIONS = openapi_doc.operations()
ENVELOPES = [platform.envelope for platform in PLATFORMS]
_tally = {"requests": 0, "victim_data_seen": 0}


class Victim:
    """A user with a secret variable, a running VM, a commit and a second VM nobody else names."""

    def __init__(self, server: ServerProcess):
        self.token = server.token(f"victim-{uuid.uuid4()}")
        self.api = Api(server.url, self.token)
        self.secret = f"victim-secret-{uuid.uuid4()}"
        self.vars = {"VICTIM_SECRET": self.secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        assert self.api.put("/api/v1/env_vars", json={"vars": self.vars}).status_code == 200
        self.vm = self._boot()
        self.hidden_vm = self._boot()
        self.commit = self.api.post(f"/api/v1/vm/{self.vm}/commit").json()["commit_id"]
        self.user_id = self.api.get(f"/api/v1/vm/{self.vm}/metadata").json()["owner_id"]

    def _boot(self) -> str:
        response = self.api.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}})
        assert response.status_code == 201, response.text
        return str(response.json()["vm_id"])

    def data(self) -> list[str]:
        """What no other user may ever see."""
        return [*self.vars.values(), self.user_id, self.hidden_vm, self.token]

    def unchanged(self) -> None:
        assert self.api.get("/api/v1/env_vars").json()["vars"] == self.vars
        states = {vm["vm_id"]: vm["state"] for vm in self.api.get("/api/v1/vm").json()}
        assert states == {self.vm: "running", self.hidden_vm: "running"}


@pytest.fixture(scope="module", autouse=True)
def tally() -> Iterator[None]:
    """The module's figure, once all its requests ran."""
    yield
    figure("auth and isolation", requests=_tally["requests"], operations=len(OPERATIONS),
           malformed_credentials=len(MALFORMED), victim_data_seen=_tally["victim_data_seen"])


@pytest.fixture(scope="module")
def victim(server: ServerProcess) -> Iterator[Victim]:
    victim = Victim(server)
    yield victim
    for vm in (victim.vm, victim.hidden_vm):
        victim.api.delete(f"/api/v1/vm/{vm}")
    victim.api.close()


def request_for(method: str, path: str, victim: Victim, vm_or_commit: str = "vm") -> dict[str, Any]:
    """A well-formed request for an operation, aimed at the victim's VM (or commit) and variable."""
    targets = {"vm_id": victim.vm, "vm_or_commit_id": victim.commit if vm_or_commit == "commit" else victim.vm,
               "key": "VICTIM_SECRET", "commit_id": victim.commit}
    url = re.sub(r"\{(\w+)\}", lambda m: targets.get(m[1], "x"), path)
    operation = openapi_doc.operation(method, path)
    query = {p["name"]: "/etc/environment" if p["name"] == "path" else openapi_doc.sample(p["schema"], {})
             for p in operation.get("parameters", []) if p["in"] == "query" and p.get("required")}
    body_schema = openapi_doc.body_schema(method, path)
    request: dict[str, Any] = {"method": method, "url": url, "params": query}
    if body_schema is not None:
        request["json"] = openapi_doc.sample(body_schema, {"commit_id": victim.commit, "path": "/etc/environment",
                                                          "command": ["cat", "/etc/environment"]})
    return request


def envelope(path: str, status: int, message: str) -> dict[str, Any]:
    found = owner(ENVELOPES, path)
    assert found is not None, path
    return found.body(status, message)


MALFORMED = {
    "no header": None,
    "empty": "",
    "scheme only": "Bearer",
    "scheme and space": "Bearer ",
    "basic": "Basic dXNlcjpwYXNz",
    "token without scheme": "{token}",
    "other scheme": "Token {token}",
    "truncated": "Bearer {token_truncated}",
    "extended": "Bearer {token}x",
    "stored digest as token": "Bearer {digest}",
    "unknown well-formed": "Bearer evt_" + "A" * 43,
    "latin-1 junk": "Bearer \xe9\xff",
}


@pytest.mark.parametrize("credential", list(MALFORMED), ids=list(MALFORMED))
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_without_a_valid_token_every_route_is_401(server: ServerProcess, victim: Victim, method: str, path: str,
                                                  credential: str) -> None:
    template = MALFORMED[credential]
    headers = {}
    if template is not None:
        headers["Authorization"] = template.format(token=victim.token, token_truncated=victim.token[:-1],
                                                   digest=hash_token(victim.token)).encode("latin-1")
    request = request_for(method, path, victim)
    response = requests.request(**request | {"url": server.url + request["url"]}, headers=headers, timeout=60)
    _tally["requests"] += 1
    assert response.status_code == 401, response.text
    found = owner(ENVELOPES, path)
    assert found is not None
    sent = bool(template and template.format(token="x", token_truncated="x", digest="x").partition(" ")[2].strip()
                and template.lower().startswith("bearer"))
    assert response.json() == envelope(path, 401, unauthorized(found, sent))
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert 401 in openapi_doc.documented_statuses(method, path)


# Each operation aimed at the victim's VM, and those that take a VM or a commit also at its commit.
AIMED = [(m, p, "vm") for m, p in OPERATIONS] + [(m, p, "commit") for m, p in OPERATIONS if "{vm_or_commit_id}" in p]


@pytest.mark.parametrize(("method", "path", "target"), AIMED, ids=[f"{m} {p} at {t}" for m, p, t in AIMED])
def test_another_users_token_never_reaches_the_victims_data(api: Api, victim: Victim, method: str, path: str,
                                                            target: str) -> None:
    request = request_for(method, path, victim, target)
    response = api.request(**request)
    _tally["requests"] += 1
    seen = [item for item in victim.data() if item in response.text]
    _tally["victim_data_seen"] += len(seen)
    for vm_id in [response.json().get("vm_id")] if response.status_code == 201 else []:
        api.delete(f"/api/v1/vm/{vm_id}")  # the other user's own new VM
    assert seen == []
    assert response.status_code in openapi_doc.documented_statuses(method, path), response.text
    names_victim = any(name in path for name in ("{vm_id}", "{vm_or_commit_id}", "{key}"))
    names_victim = names_victim or "commit_id" in str(request.get("json"))
    if names_victim:
        assert response.status_code == 404, response.text
        assert response.json()["success"] is False
    victim.unchanged()


def test_tokens_are_stored_as_digests_only(server: ServerProcess, victim: Victim) -> None:
    other = server.token("digest-check")
    raw = b"".join(path.read_bytes() for path in server.data_dir.glob(DB_FILE + "*"))
    assert victim.token.encode() not in raw and other.encode() not in raw
    with sqlite3.connect(server.data_dir / DB_FILE) as db:
        stored = [row[0] for row in db.execute("SELECT token_hash FROM tokens")]
    assert stored and all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in stored)
    assert hash_token(victim.token) in stored
    store = SqliteStore(server.data_dir)
    assert store.user_for_token(victim.token) == victim.user_id
    assert store.user_for_token(hash_token(victim.token)) is None  # the digest is not a credential


@pytest.mark.parametrize(("path", "status"), [("/api/v1/env_vars", b"401"), ("/nowhere", b"404")])
def test_a_refused_request_with_an_unread_body_closes_its_connection(
    server: ServerProcess, path: str, status: bytes,
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
