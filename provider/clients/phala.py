"""Client of Phala Cloud's CVM API (`/api/v1/cvms/{id}`, its `compose_file` and `envs`), and of a compose-hash
registrar for CVMs whose KMS is on chain."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from envvars_provider.clients.http import ApiSession, json_object
from envvars_provider.errors import PlatformError, ProviderError

BUSY, REGISTRATION_REQUIRED = 409, 465
BUSY_ATTEMPTS = 8  # a 409 (another update is being applied) is retried this many times in all
BUSY_BACKOFF = (0.5, 30.0)  # the first wait after a 409, and the longest; doubled each time
POLL = (0.5, 5.0)  # the wait before the first read of a restarting CVM, and the longest between reads


def _reason(response: requests.Response) -> str:
    """FastAPI's `detail` (a message, or the fields of a 422), Phala's structured `error_code: message`, or a
    registrar's `error`."""
    body = json_object(response)
    detail, message, code = body.get("detail"), body.get("message"), body.get("error_code")
    if isinstance(detail, str) or isinstance(body.get("error"), str):
        return str(detail if isinstance(detail, str) else body["error"])
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, item.get('loc') or []))}: {item.get('msg')}"
                         for item in detail if isinstance(item, dict))
    if isinstance(message, str):
        return f"{code}: {message}" if isinstance(code, str) else message
    return response.text[:200] or response.reason


def _details(response: requests.Response) -> dict[str, Any]:
    """The `details` of a structured error, by field."""
    items = json_object(response).get("details")
    return {item["field"]: item.get("value") for item in items if isinstance(item, dict) and "field" in item} \
        if isinstance(items, list) else {}


@dataclass(frozen=True)
class Cvm:
    """What the provider needs of a CVM: its app, whether it runs, and the key its env set is sealed to."""

    app_id: str
    status: str
    in_progress: bool
    pubkey: str
    chain_id: int | None

    @property
    def running(self) -> bool:
        """Whether it runs with its last update applied."""
        return self.status == "running" and not self.in_progress


class RegistrationRequired(PlatformError):
    """The change alters the allowed keys of a CVM whose KMS is on chain: `compose_hash` must be registered for
    `app_id` first (phase 1 of Phala's two-phase update; nothing was changed)."""

    def __init__(self, method: str, path: str, reason: str, details: dict[str, Any]):
        super().__init__(method, path, REGISTRATION_REQUIRED, reason)
        kms = details.get("kms_info") if isinstance(details.get("kms_info"), dict) else {}
        self.compose_hash = str(details.get("compose_hash") or "")
        self.app_id = str(details.get("app_id") or "")
        self.chain_id = kms.get("chain_id") if isinstance(kms, dict) else None


class Busy(PlatformError):
    """Another update of the CVM is being applied, after every retry."""


class PhalaClient:
    """The CVMs of one workspace (its API key)."""

    def __init__(self, base_url: str, api_key: str | None, auth_hint: str):
        # The routes carry their version; a base URL given with it (as PHALA_CLOUD_API_ENDPOINT is) means the same.
        self.api = ApiSession(base_url.rstrip("/").removesuffix("/api/v1"), api_key, _reason, auth_hint,
                              token_header="X-API-Key")

    @staticmethod
    def _path(cvm_id: str, route: str = "") -> str:
        return f"/api/v1/cvms/{quote(cvm_id, safe='')}{route}"

    def cvm(self, cvm_id: str) -> Cvm | None:
        """The CVM, or None when it does not exist."""
        response = self.api.call("GET", self._path(cvm_id), expect=(200, 404))
        if response.status_code == 404:
            return None
        body = json_object(response)
        kms = body.get("kms_info") or {}
        return Cvm(app_id=str(body.get("app_id") or ""), status=str(body.get("status") or ""),
                   in_progress=body.get("in_progress") is True, pubkey=str(kms.get("encrypted_env_pubkey") or ""),
                   chain_id=kms.get("chain_id"))

    def allowed_envs(self, cvm_id: str) -> list[str] | None:
        """The keys the CVM's compose allows (`allowed_envs`), or None when the CVM does not exist."""
        response = self.api.call("GET", self._path(cvm_id, "/compose_file"), expect=(200, 404))
        if response.status_code == 404:
            return None
        return [str(key) for key in json_object(response).get("allowed_envs") or []]

    def update_envs(self, cvm_id: str, body: dict[str, Any], ends: float) -> dict[str, Any]:
        """Replace the CVM's sealed set (`body`: `encrypted_env`, and `env_keys` and the proof when given); the 202
        answer. A 409 is retried with backoff until `BUSY_ATTEMPTS` or the monotonic time `ends`, then `Busy`;
        a 465 raises `RegistrationRequired`."""
        path = self._path(cvm_id, "/envs")
        wait = BUSY_BACKOFF[0]
        for attempt in range(1, BUSY_ATTEMPTS + 1):
            response = self.api.call("PATCH", path, expect=(202, BUSY, REGISTRATION_REQUIRED), json=body)
            if response.status_code == 202:
                return json_object(response)
            if response.status_code == REGISTRATION_REQUIRED:
                raise RegistrationRequired("PATCH", path, _reason(response), _details(response))
            pause = min(wait, BUSY_BACKOFF[1])
            if attempt == BUSY_ATTEMPTS or time.monotonic() + pause > ends:
                raise Busy("PATCH", path, BUSY, f"{_reason(response)} (still busy after {attempt} attempt(s))")
            time.sleep(pause)
            wait *= 2
        raise AssertionError("unreachable")

    def wait_running(self, cvm_id: str, ends: float) -> Cvm | None:
        """Read the CVM (first after a pause: an update was just accepted) until it runs with no update in progress,
        or the monotonic time `ends`, or it stopped with nothing in progress (it will not come back by itself); the
        last read, None when the CVM is gone."""
        wait = POLL[0]
        while True:
            time.sleep(max(0.0, min(wait, ends - time.monotonic())))
            found = self.cvm(cvm_id)
            if found is None or found.running or (found.status == "stopped" and not found.in_progress) \
                    or time.monotonic() >= ends:
                return found
            wait = min(wait * 1.5, POLL[1])


class RegistrarClient:
    """A service that registers a compose hash on an app's on-chain KMS contract and answers the transaction's hash
    (the reference server's ledger is one): `POST <url>` `{app_id, compose_hash}` → `{transaction_hash}`."""

    def __init__(self, url: str, token: str | None, auth_hint: str):
        parts = urlsplit(url)
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.api = ApiSession(f"{parts.scheme}://{parts.netloc}", token, _reason, auth_hint)

    def register(self, app_id: str, compose_hash: str) -> str:
        """The hash of the transaction that registered `compose_hash` for `app_id`."""
        response = self.api.call("POST", self.path, expect=(200, 201),
                                 json={"app_id": app_id, "compose_hash": compose_hash})
        transaction = json_object(response).get("transaction_hash")
        if not isinstance(transaction, str) or not transaction:
            raise ProviderError("the registrar answered without a transaction_hash")
        return transaction
