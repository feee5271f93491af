"""Client of the Vers orchestrator API: the account's env-var set and root VMs."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

import requests

from envvars_provider.clients.http import TIMEOUT, ApiSession, answer_lost
from envvars_provider.errors import PlatformError, ProviderError, UnreachableError

CREATE_LABEL = "envvars-create-id"  # unique per create request: finds the VM of a request whose answer was lost
ADOPT_WAIT_S = TIMEOUT[1] + 30.0  # how long a lost create may take to show its VM
POLL_S = 0.5


def _reason(response: requests.Response) -> str:
    """The `error` of Vers' envelope, or the body's start when it has none."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return response.text[:200]


class VersClient:
    """`/api/v1/env_vars` and `/api/v1/vm` of one account."""

    def __init__(self, base_url: str, api_key: str | None, auth_hint: str):
        self.api = ApiSession(base_url, api_key, _reason, auth_hint)

    def get_vars(self) -> dict[str, str]:
        """The account's whole set."""
        return dict(self.api.call("GET", "/api/v1/env_vars").json()["vars"])

    def put_vars(self, variables: dict[str, str], replace: bool) -> dict[str, str]:
        """Upsert (or replace-all) in one request; returns the whole set after the write."""
        response = self.api.call("PUT", "/api/v1/env_vars", json={"vars": variables, "replace": replace})
        return dict(response.json()["vars"])

    def delete_var(self, key: str) -> bool:
        """Delete one variable; False when it was already gone."""
        response = self.api.call("DELETE", f"/api/v1/env_vars/{quote(key, safe='')}", expect=(204, 404))
        return response.status_code == 204

    def new_root(self, vm_config: dict[str, Any]) -> str:
        """Create a root VM and wait for it to boot; returns its id.

        A POST is never sent twice. When its answer is lost (a timeout, a dropped connection), the
        VM it may still make is found by the request's own label and adopted, so no VM is orphaned.
        """
        create_id = uuid.uuid4().hex
        labels = {**(vm_config.get("labels") or {}), CREATE_LABEL: create_id}
        try:
            response = self.api.call("POST", "/api/v1/vm/new_root", expect=(200, 201),
                                     params={"wait_boot": "true"}, json={"vm_config": {**vm_config, "labels": labels}})
        except (UnreachableError, PlatformError) as lost:
            if not answer_lost(lost):
                raise  # the API itself refused it: nothing was made
            vm_id = self._adopt(create_id)
            if vm_id is None:
                raise UnreachableError(f"{lost}; and no VM labelled {CREATE_LABEL}={create_id} appeared within "
                                       f"{ADOPT_WAIT_S:.0f} s") from None
            return vm_id
        return str(response.json()["vm_id"])

    def _adopt(self, create_id: str) -> str | None:
        """The VM made by the create request labelled `create_id`, in whatever state, once it shows up;
        None if it never does (the API unreachable meanwhile counts as not yet)."""
        deadline = time.monotonic() + ADOPT_WAIT_S
        while time.monotonic() < deadline:
            try:
                listed = self.api.call("GET", "/api/v1/vm").json()
            except ProviderError:
                listed = []
            for vm in listed:
                if (vm.get("labels") or {}).get(CREATE_LABEL) == create_id:
                    return str(vm["vm_id"])
            time.sleep(POLL_S)
        return None

    def vm_metadata(self, vm_id: str) -> dict[str, Any] | None:
        """A VM's metadata, or None when it no longer exists."""
        response = self.api.call("GET", f"/api/v1/vm/{quote(vm_id, safe='')}/metadata", expect=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    def delete_vm(self, vm_id: str) -> None:
        """Delete a VM; one already gone is fine."""
        self.api.call("DELETE", f"/api/v1/vm/{quote(vm_id, safe='')}", expect=(200, 404))
