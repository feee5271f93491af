"""Bad input everywhere: a clear 4xx in the platform's envelope, nothing stored, the server still up.

Look-alike and invisible characters in keys, NUL bytes, bodies over the server's size limit (declared
or chunked), deeply nested JSON, invalid JSON and UTF-8, wrong content types, and wrong methods,
on every operation of the OpenAPI document that could take them, and every way each platform offers
to write a variable. One user holds a variable on every platform (the account's set, a container's
map: `tests/platforms.py`); requests are aimed at those real objects, and after each test every
platform still holds exactly that variable and no new workload. On the cluster (`tests/stores.py`) those workloads
run on the first replica and each test's requests go to another replica or the balancer, which refuse the bad
input or forward it.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from envvars.rules import KeyRules, key_violation
from envvars_server.limits import DEFAULT_MAX_BODY_BYTES
from tests import openapi_doc, platforms
from tests.conftest import Api
from tests.figures import figure
from tests.stores import Server, next_url

OPERATIONS = openapi_doc.operations()
WITH_BODY = [(m, p) for m, p in OPERATIONS if openapi_doc.body_schema(m, p) is not None]
TEN_MB = 10 * 1024 * 1024
_tally = {"requests": 0, "stored_after": 0}

LOOKALIKE_KEYS = {
    "cyrillic A": "\u0410PP_ENV",
    "greek omicron": "C\u039fNFIG",
    "fullwidth K": "\uff2bEY",
    "kelvin sign": "\u212aEY",
    "long s": "\u017fECRET",
    "dotted I": "\u0130D",
    "zero-width space": "KEY\u200b",
    "zero-width joiner": "K\u200dEY",
    "combining acute": "A\u0301PP",
    "arabic-indic digit": "KEY_\u0661",
    "superscript two": "KEY\u00b2",
    "trailing newline": "KEY\n",
    "NUL inside": "A\x00B",
    "NUL only": "\x00",
    "non-breaking space": "MY\u00a0KEY",
}
BAD_VALUES = {"NUL": "before\x00after", "newline": "line\nbreak", "carriage return": "a\rb", "too long": None}


def too_long(platform: str) -> str:
    """A value one character over the platform's limit."""
    return "x" * (importlib.import_module(f"envvars.rules.{platform}").RULES.max_value_len + 1)


@pytest.fixture(scope="module")
def tally(store_kind: str) -> Iterator[None]:
    """The module's figure on a store, once all its requests there ran."""
    _tally.update(dict.fromkeys(_tally, 0))
    yield
    figure(f"bad input on {store_kind}", requests=_tally["requests"], operations=len(OPERATIONS),
           stored_after_rejection=_tally["stored_after"])


class Holder:
    """One user holding `KEPT=kept` on every platform, and no workload but those the sets live in."""

    def __init__(self, server: Server):
        self.server = server
        self.api = Api(server.url, server.token("bad-input"))
        # A CVM's update in progress is known to its node only (README): the harness reads and writes Phala's set on
        # the server's `url` (on the cluster, the CVM's replica); the bad input sent to it goes through `user`.
        self.home = Api(server.url, str(self.api.headers["Authorization"]).split()[1])
        self.sets = {name: platforms.kit(name).env_set(self.home if name == "phala" else self.api)
                     for name in platforms.NAMES}
        for env_set in self.sets.values():
            assert env_set.acknowledged(env_set.merge({"KEPT": "kept"}))
        user_id = server.store().user_for_token(str(self.api.headers["Authorization"]).split()[1])
        assert user_id is not None
        self.user_id = user_id
        self.workloads = self.live_workloads()

    def live_workloads(self) -> dict[str, list[str]]:
        return {name: platforms.live_workloads(self.server.store(), name, self.user_id) for name in platforms.NAMES}

    def url(self, path: str, key: str = "KEPT") -> str:
        """`path` aimed at the holder's objects of the owning platform (a workload of the first platform
        holding one on the neutral surface); ids it has none of name nothing."""
        platform = platforms.platform_of(path)
        env_set = self.sets[platform] if platform else next(s for s in self.sets.values() if s.workload)
        targets = env_set.targets | env_set.key_params(key) | {"workload_id": env_set.workload or platforms.NO_SUCH_ID}
        return re.sub(r"\{(\w+)\}", lambda m: targets.get(m[1], platforms.NO_SUCH_ID), path)


@pytest.fixture(scope="module")
def holder(server: Server, tally: None) -> Iterator[Holder]:
    holder = Holder(server)
    yield holder
    holder.api.close()
    holder.home.close()


@pytest.fixture
def user(holder: Holder) -> Iterator[Api]:
    """The holder's session (on the cluster, through its next other replica or the balancer); after each test every
    platform's set is unchanged, no workload was made, and the server (the one holding the workloads too) is still
    up."""
    holder.api.base_url = next_url(holder.server)
    yield holder.api
    stored = {name: env_set.get() for name, env_set in holder.sets.items()}
    if any(after != {"KEPT": "kept"} for after in stored.values()):
        _tally["stored_after"] += 1
    assert stored == dict.fromkeys(holder.sets, {"KEPT": "kept"})
    assert holder.live_workloads() == holder.workloads
    for url in {holder.api.base_url, holder.server.url}:
        assert requests.get(url + "/openapi.json", timeout=30).status_code == 200


def assert_rejected(response: requests.Response, path: str, status: int | tuple[int, ...] = 400) -> str:
    """A 4xx of the expected status in the envelope of the platform owning `path`; returns the message."""
    _tally["requests"] += 1
    expected = status if isinstance(status, tuple) else (status,)
    refusal = platforms.envelope_of(path).validation_status  # a refused set where the platform answers 422
    expected = tuple(refusal if code == 400 else code for code in expected)
    assert response.status_code in expected, (response.status_code, response.text[:300])
    message = platforms.envelope_message(path, response.status_code, response.json())
    assert message is not None, response.text[:300]
    return message


def rules_of(platform: str) -> KeyRules:
    rules: KeyRules = importlib.import_module(f"envvars.rules.{platform}").RULES
    return rules


@pytest.mark.parametrize("platform", platforms.NAMES)
@pytest.mark.parametrize("key", list(LOOKALIKE_KEYS.values()), ids=list(LOOKALIKE_KEYS))
def test_look_alike_and_invisible_keys_are_refused_naming_the_key(user: Api, holder: Holder, key: str,
                                                                  platform: str) -> None:
    """Refused with a 400 naming the key and its pattern where the platform's rules refuse it, every way it could
    be set; where they accept it (a platform whose keys are any name a process environment holds), stored as
    sent and deleted again, every way (the fixture checks the set is back as it was)."""
    env_set = holder.sets[platform]
    if key_violation(rules_of(platform), key) is None:
        for request in env_set.set_requests(key, "v"):
            response = user.request(**request)
            assert env_set.acknowledged(response), response.text
            assert env_set.get().get(key) == "v"
            assert env_set.delete_answer(env_set.delete(key)) in ("removed", "idempotent")
            if "KEPT" not in env_set.get():  # the request renamed KEPT to the key: make it again
                assert env_set.acknowledged(env_set.merge({"KEPT": "kept"}))
            _tally["requests"] += 1
        return
    for request in env_set.set_requests(key, "v"):
        message = assert_rejected(user.request(**request), request["url"])
        assert repr(key) in message and "must match" in message, message
    assert_refused_delete(env_set, key)


def refused_values() -> list[tuple[str, str]]:
    """(platform, name of a BAD_VALUES entry) for each value the platform's rules refuse."""
    return [(platform, name) for platform in platforms.NAMES for name, value in BAD_VALUES.items()
            if value is None or any(char in value for char in importlib.import_module(
                f"envvars.rules.{platform}").RULES.forbidden_value_chars)]


@pytest.mark.parametrize(("platform", "value"), refused_values(), ids=[f"{p}-{v}" for p, v in refused_values()])
def test_values_that_cannot_be_stored_are_refused_without_echoing_them(user: Api, holder: Holder, value: str,
                                                                      platform: str) -> None:
    bad = BAD_VALUES[value] or too_long(platform)
    for request in holder.sets[platform].set_requests("BAD", bad):
        message = assert_rejected(user.request(**request), request["url"])
        assert ("'BAD'" in message or request["json"] == {"value": bad}) and bad not in message, message


@pytest.mark.parametrize("platform", platforms.NAMES)
def test_nul_bytes_in_keys_of_paths(user: Api, holder: Holder, platform: str) -> None:
    """A NUL byte in a key wherever it escapes the body's schema: in the path of each route naming a variable
    (never a truncated key), and where no route does, inside a sealed set (refused naming the key's rule); and in
    every write's body. Nothing changes (the fixture checks)."""
    env_set = holder.sets[platform]
    urls, sealed = env_set.key_urls("KEPT"), env_set.sealed_requests("A\x00B", "v")
    assert urls or sealed, f"{platform}: no route names a variable and no write is sealed: where else does a key go?"
    for url in (url + "%00B" for url in urls):
        assert_refused_delete_url(user.delete(url), url)
    for request in sealed:
        message = assert_rejected(user.request(**request), request["url"])
        assert repr("A\x00B") in message and "must match" in message, message
    for request in env_set.set_requests("A\x00B", "v"):
        assert_rejected(user.request(**request), request["url"])


def test_nul_bytes_in_vm_paths_and_queries(user: Api) -> None:
    vm = user.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}}).json()["vm_id"]
    try:
        assert_rejected(user.get(f"/api/v1/vm/{vm}/files", params={"path": "/etc/\x00environment"}), "/api/v1/vm")
        assert_rejected(user.put(f"/api/v1/vm/{vm}/files", json={"path": "/tmp/a\x00b", "content_b64": ""}),
                        "/api/v1/vm")
        assert_rejected(user.post(f"/api/v1/vm/{vm}/exec", json={"command": ["echo", "a\x00b"]}), "/api/v1/vm")
        assert_rejected(user.post(f"/api/v1/vm/{vm}/exec", json={"command": ["env"], "env": {"A\x00": "b"}}),
                        "/api/v1/vm")
    finally:
        assert user.delete(f"/api/v1/vm/{vm}").status_code == 200


# Operations whose documented key has a pattern (an idempotent delete may document any key but a reserved one).
KEYED = [(m, p) for m, p in OPERATIONS if "{key}" in p and "pattern" in next(
    param for param in openapi_doc.operation(m, p)["parameters"] if param["name"] == "key")["schema"]]


def template_of(method: str, url: str) -> tuple[str, str]:
    """The documented operation a concrete URL is."""
    return next((m, template) for m, template in OPERATIONS
                if m == method and re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), url))


def assert_refused_delete(env_set: platforms.EnvSet, key: str) -> None:
    """The platform's delete of a key the rules refuse. Where the DELETE names the key, see
    `assert_refused_delete_url`; where it names a variable's id (Sevalla), no variable has the key, so the
    answer says so ("absent"), in the platform's envelope."""
    response = env_set.delete(key)
    url = response.request.path_url
    if env_set.whole_set:  # a delete is the whole set without the key: one it never held, so it writes the same set
        assert env_set.delete_answer(response) == "idempotent", response.text
        return
    if "{key}" in template_of("DELETE", url)[1]:
        assert_refused_delete_url(response, url)
        return
    assert env_set.delete_answer(response) == "absent", response.text
    assert_rejected(response, url, response.status_code)


def assert_refused_delete_url(response: requests.Response, url: str) -> None:
    """A DELETE naming a key the rules refuse: a 400 where the route documents the key's pattern; where it takes
    any key but a reserved one (an idempotent delete, as Hoody documents), the 200 that deletes nothing (the
    fixture checks the set)."""
    if template_of("DELETE", url) not in KEYED and response.status_code == 200:
        return
    assert_rejected(response, url)


@pytest.mark.parametrize(("method", "path"), KEYED, ids=[f"{m} {p}" for m, p in KEYED])
def test_a_key_outside_the_documented_pattern_is_refused(user: Api, holder: Holder, method: str, path: str) -> None:
    parameter = next(p for p in openapi_doc.operation(method, path)["parameters"] if p["name"] == "key")
    assert not re.fullmatch(parameter["schema"]["pattern"], "1BAD")
    body = openapi_doc.body_schema(method, path)
    request = {"json": openapi_doc.sample(body, {"value": "v"})} if body else {}
    url = holder.url(path, key="1BAD")
    assert_rejected(user.request(method, url, **request), url)


def bad_bodies() -> dict[str, tuple[bytes, str | None]]:
    """Bodies no operation may accept: (bytes, content type)."""
    nested = b"[" * 200_000 + b"]" * 200_000
    return {
        "invalid JSON": (b'{"vars": {"A": "1",}', "application/json"),
        "truncated JSON": (b'{"vars": {"A": ', "application/json"),
        "invalid UTF-8": (b'{"vars": {"A": "\xff\xfe"}}', "application/json"),
        "deeply nested array": (nested, "application/json"),
        "deeply nested object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json"),
        "nested inside a field": (b'{"vars": ' + nested + b"}", "application/json"),
        "top-level array": (b"[]", "application/json"),
        "top-level string": (b'"vars"', "application/json"),
        "null": (b"null", "application/json"),
        "JSON as text/plain": (b'{"vars": {"A": "1"}}', "text/plain"),
        "form-encoded": (b"vars=A&replace=true", "application/x-www-form-urlencoded"),
        "multipart": (b'--b\r\nContent-Disposition: form-data; name="vars"\r\n\r\nA\r\n--b--\r\n',
                      "multipart/form-data; boundary=b"),
        "XML": (b"<vars><A>1</A></vars>", "application/xml"),
        "no content type": (b'{"vars": {"A": "1"}}', None),
        "empty body": (b"", "application/json"),
    }


BAD_BODIES = bad_bodies()


@pytest.mark.sweep
@pytest.mark.parametrize("body", list(BAD_BODIES), ids=list(BAD_BODIES))
@pytest.mark.parametrize(("method", "path"), WITH_BODY, ids=[f"{m} {p}" for m, p in WITH_BODY])
def test_malformed_bodies_are_a_clear_400(user: Api, holder: Holder, method: str, path: str, body: str) -> None:
    data, content_type = BAD_BODIES[body]
    url = holder.url(path)
    headers = {"Content-Type": content_type} if content_type else {}
    response = user.request(method, url, data=data, headers=headers)
    # A well-formed request to a missing VM would be 404: a malformed body must be found out first.
    # Where the body is optional, sending none (empty, or JSON null) is well-formed.
    optional = not openapi_doc.operation(method, path)["requestBody"].get("required", False)
    message = assert_rejected(response, path, (400, 404) if optional and body in ("null", "empty body") else 400)
    assert "Internal" not in message


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_bodies_over_the_limit_are_413(user: Api, holder: Holder, method: str, path: str) -> None:
    url = holder.url(path)
    payload = b'{"vars": {"BIG": "' + b"x" * TEN_MB + b'"}}'
    message = assert_rejected(user.request(method, url, data=payload, headers={"Content-Type": "application/json"}),
                              path, 413)
    assert str(DEFAULT_MAX_BODY_BYTES) in message


@pytest.mark.parametrize(("method", "path"), WITH_BODY, ids=[f"{m} {p}" for m, p in WITH_BODY])
def test_chunked_bodies_over_the_limit_are_413_once_read_past_it(user: Api, holder: Holder, method: str,
                                                                 path: str) -> None:
    # Without a Content-Length the size is known only while reading: routes that read a body stop at
    # the limit; the others never read it (and never parse it) whatever its size.
    url = holder.url(path)
    payload = b'{"vars": {"BIG": "' + b"x" * TEN_MB + b'"}}'
    chunks = (payload[i:i + 65536] for i in range(0, len(payload), 65536))
    response = user.request(method, url, data=chunks, headers={"Content-Type": "application/json"})
    assert_rejected(response, path, 413)


def test_a_body_just_under_the_limit_is_accepted(user: Api) -> None:
    keys = (DEFAULT_MAX_BODY_BYTES - 1024) // 8200
    variables = {f"K{n}": "x" * 8192 for n in range(keys)}
    assert len(json.dumps({"vars": variables}).encode()) < DEFAULT_MAX_BODY_BYTES
    response = user.put("/api/v1/env_vars", json={"vars": variables})
    assert response.status_code == 200
    for key in variables:
        assert user.delete(f"/api/v1/env_vars/{key}").status_code == 204


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_undocumented_methods_are_405_with_allow(user: Api, holder: Holder, method: str, path: str) -> None:
    url = holder.url(path)
    # Every template the concrete path matches (`/vm/new_root` is also `/vm/{vm_id}`) allows its methods.
    documented = {m for m, template in OPERATIONS
                  if re.fullmatch(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(template)), url)}
    for wrong in sorted({"GET", "PUT", "POST", "PATCH", "DELETE", "TRACE"} - documented):
        response = user.request(wrong, url)
        assert_rejected(response, path, 405)
        assert set(response.headers["Allow"].split(", ")) - {"HEAD"} == documented


@pytest.mark.parametrize(("query", "status"), [
    ("wait_boot=maybe", 400), ("wait_boot=", 400),
])
def test_bad_query_values_are_400(user: Api, query: str, status: int) -> None:
    assert_rejected(user.post(f"/api/v1/vm/new_root?{query}", json={"vm_config": {}}), "/api/v1/vm", status)


@pytest.mark.parametrize("count", ["0", "101", "-1", "1.5", "abc", "1e2", ""])
def test_bad_branch_counts_are_400(user: Api, count: str) -> None:
    response = user.post(f"/api/v1/vm/00000000-0000-0000-0000-000000000000/branch?count={count}")
    assert_rejected(response, "/api/v1/vm", 400)


def test_wrong_types_in_a_valid_shape(user: Api) -> None:
    bodies: list[Any] = [{"vars": {"A": 1}}, {"vars": {"A": None}}, {"vars": {"A": ["x"]}}, {"vars": {"A": {"b": "c"}}},
                         {"vars": ["A"]}, {"vars": "A=1"}, {"vars": {"A": "1"}, "replace": "yes"},
                         {"vars": {"A": "1"}, "replace": 1}, {}]
    for body in bodies:
        assert_rejected(user.put("/api/v1/env_vars", json=body), "/api/v1/env_vars")
