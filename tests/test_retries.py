"""The provider's retries, proven against the reference server with `--faults` (see `server/faults.py`).

`VersClient` and its `ApiSession` (`provider/clients/http.py`) must:
- wait out a 429's Retry-After before trying again, on every method (POST included: it was not applied);
- retry 500/502/503/504 and reset connections on GET, PUT and DELETE;
- never retry a POST on a 5xx or a reset (the server may have applied it): one attempt, the error reported;
- end the retry budget with an error naming the method, the path and the status, or "no answer after retries".

The server counts the attempts: `GET /_faults` reports how many requests were faulted, and each plan
here faults either every matching request or a known number of them, the next one passing. The
policy is the provider's own (`retry_policy`) with a short backoff and budget, so the file runs in
seconds; one test keeps the policy exactly as the provider builds it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from envvars_provider.clients import vers as vers_client
from envvars_provider.clients.http import ApiSession, retry_policy
from envvars_provider.clients.vers import VersClient
from envvars_provider.errors import PlatformError, UnreachableError
from envvars_server.launch import ServerProcess
from tests.conftest import arm, injected
from tests.figures import figure

BUDGET = 3  # retries after the first attempt, in the short policy
HINT = "test: check the token"
VARS = "/api/v1/env_vars"
NEW_ROOT = "/api/v1/vm/new_root"
# Refused by the server's validation at once (no VM boots): a POST that gets past the faults is answered
# 4xx, never the injected status.
BAD_VM_CONFIG = {"vcpu_count": 0}
# Each method's call, and the path it reaches (what its errors must name).
CALLS: dict[str, tuple[str, Callable[[VersClient], Any]]] = {
    "GET": (VARS, lambda client: client.get_vars()),
    "PUT": (VARS, lambda client: client.put_vars({"K": "v"}, replace=False)),
    "DELETE": (VARS + "/K", lambda client: client.delete_var("K")),
    "POST": (NEW_ROOT, lambda client: client.new_root(BAD_VM_CONFIG)),
}
RETRIED = ("GET", "PUT", "DELETE")
FAULTS: dict[str, dict[str, Any]] = {
    "500": {"kind": "status", "status": 500},
    "502": {"kind": "status", "status": 502},
    "503": {"kind": "status", "status": 503},
    "504": {"kind": "status", "status": 504},
    "reset": {"kind": "reset"},
}
UNLIMITED = 10_000
_users = itertools.count()


@pytest.fixture(autouse=True)
def short_adoption(monkeypatch: pytest.MonkeyPatch) -> None:
    """A create whose answer is lost waits for its VM to show up (150 s by default); none is made here."""
    monkeypatch.setattr(vers_client, "ADOPT_WAIT_S", 1.0)


def make_client(server: ServerProcess, short: bool = True) -> VersClient:
    """A `VersClient` of a fresh user, built as the provider builds it; `short`: backoff and budget shortened."""
    token = server.token(f"retries-{next(_users)}")
    client = VersClient(server.url, token, HINT)
    if short:
        client.api.session.close()
        client.api = ApiSession(server.url, token, client.api.error_reason, client.api.auth_hint,
                                retry=retry_policy(total=BUDGET, backoff=0.01))
    return client


@pytest.fixture
def clients(faulty_server: ServerProcess) -> Iterator[Callable[..., VersClient]]:
    made: list[VersClient] = []

    def make(short: bool = True) -> VersClient:
        made.append(make_client(faulty_server, short))
        return made[-1]

    yield make
    for client in made:
        client.api.session.close()


def arm_call(server: ServerProcess, method: str, fault: dict[str, Any], count: int) -> int:
    """Arm `fault` on `method`'s call, `count` times; returns the server's injected total so far."""
    arm(server, {**fault, "count": count, "methods": [method], "path_prefix": CALLS[method][0]})
    return injected(server)


def call(client: VersClient, method: str) -> Any:
    return CALLS[method][1](client)


def waited(server: ServerProcess, client: VersClient, method: str, retry_after: int) -> tuple[float, int]:
    """Seconds one call took with a 429 (Retry-After: `retry_after`) on its first attempt, and the faults."""
    before = arm_call(server, method, {"kind": "status", "status": 429, "retry_after": retry_after}, 1)
    start = time.perf_counter()
    if method == "POST":  # it gets past the 429 to the server's validation
        with pytest.raises(PlatformError) as refused:
            call(client, method)
        assert refused.value.status in (400, 422), refused.value
    else:
        call(client, method)
    return time.perf_counter() - start, injected(server) - before


@pytest.mark.parametrize("method", list(CALLS))
def test_429_waits_out_retry_after(
    faulty_server: ServerProcess, clients: Callable[..., VersClient], method: str,
) -> None:
    elapsed, faults = waited(faulty_server, clients(), method, retry_after=1)
    figure(f"retries: 429 Retry-After 1 s on {method}", waited_ms=round(elapsed * 1000), attempts=faults + 1)
    assert faults == 1  # the 429 reached the client, and the retry got through
    assert elapsed >= 1.0, f"retried {elapsed * 1000:.0f} ms after a 429 with Retry-After: 1"


def test_the_providers_own_policy_waits_and_retries(faulty_server: ServerProcess,
                                                    clients: Callable[..., VersClient]) -> None:
    """The client as the provider builds it (no shortened policy): a 429 waited out, then a 503 retried."""
    client = clients(short=False)
    plan = [{"kind": "status", "status": 429, "retry_after": 1, "count": 1, "path_prefix": VARS},
            {"kind": "status", "status": 503, "count": 1, "path_prefix": VARS}]  # on the retry
    before = injected(faulty_server)
    assert requests.post(faulty_server.url + "/_faults", json={"faults": plan}, timeout=10).status_code == 200
    start = time.perf_counter()
    assert client.get_vars() == {}
    elapsed = time.perf_counter() - start
    faults = injected(faulty_server) - before
    figure("retries: provider's own policy, GET through 429 + 503", waited_ms=round(elapsed * 1000),
           attempts=faults + 1)
    assert faults == 2
    assert elapsed >= 1.0


@pytest.mark.parametrize("method", RETRIED)
def test_5xx_and_resets_are_retried(
    faulty_server: ServerProcess, clients: Callable[..., VersClient], method: str,
) -> None:
    """Each fault twice, then the request passes: the call succeeds after three attempts."""
    client = clients()
    attempts = {}
    for name, fault in FAULTS.items():
        client.put_vars({"K": "v"}, replace=False)  # so that DELETE has something to delete
        before = arm_call(faulty_server, method, fault, count=2)
        result = call(client, method)
        attempts[name] = injected(faulty_server) - before + 1
        if method == "GET":
            assert result == {"K": "v"}
        elif method == "DELETE":
            assert result is True and client.get_vars() == {}
    figure(f"retries: {method} through 2 faults each", **attempts)
    assert attempts == dict.fromkeys(FAULTS, 3)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_post_is_not_retried_on_5xx_or_reset(faulty_server: ServerProcess, clients: Callable[..., VersClient],
                                             fault: str) -> None:
    """A POST the server may have applied is sent once; the error names the request."""
    client = clients()
    before = arm_call(faulty_server, "POST", FAULTS[fault], count=UNLIMITED)
    with pytest.raises((PlatformError, UnreachableError)) as failed:
        client.new_root(BAD_VM_CONFIG)
    attempts = injected(faulty_server) - before
    figure(f"retries: POST under {fault}", attempts=attempts)
    assert attempts == 1
    if fault == "reset":
        assert isinstance(failed.value, UnreachableError)
        assert f"POST {faulty_server.url}{NEW_ROOT}: no answer" in str(failed.value)
    else:
        assert str(failed.value).startswith(f"POST {NEW_ROOT} failed with HTTP {fault}: injected fault")


@pytest.mark.parametrize("method", list(CALLS))
def test_the_budget_ends_with_a_clear_error(faulty_server: ServerProcess, clients: Callable[..., VersClient],
                                            method: str) -> None:
    """Every attempt faulted: the first and BUDGET retries reach the server, then one clear error."""
    attempts = {}
    faults = FAULTS if method in RETRIED else {"429": {"kind": "status", "status": 429}}
    for name, fault in faults.items():
        before = arm_call(faulty_server, method, fault, count=UNLIMITED)
        with pytest.raises((PlatformError, UnreachableError)) as failed:
            call(clients(), method)
        attempts[name] = injected(faulty_server) - before
        message = str(failed.value)
        if name == "reset":
            assert isinstance(failed.value, UnreachableError), message
            expected = f"{method} {faulty_server.url}{CALLS[method][0]}: no answer after retries"
            assert message.startswith(expected), message
        else:
            assert isinstance(failed.value, PlatformError) and failed.value.status == int(name), message
            assert message.startswith(f"{method} {CALLS[method][0]} failed with HTTP {name}: "), message
        assert "Traceback" not in message
    figure(f"retries: {method} budget spent ({BUDGET + 1} attempts allowed)", **attempts)
    assert attempts == dict.fromkeys(faults, BUDGET + 1)
