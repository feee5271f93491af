"""Phala CVMs for tests: made through the server's neutral workloads surface (with Phala's KMS or an on-chain one),
read through Phala's API, their running environment read from inside them."""

from __future__ import annotations

from typing import Any

from envvars import sealed_env
from tests.conftest import Api
from tests.test_phala_cvms import allowed, info, new_cvm, register, settled
from tests.vertra import running_env

LEDGER = "/_envvars/v1/chain/compose-hashes"

__all__ = ["LEDGER", "allowed", "info", "new_cvm", "oob_update", "register", "running_env", "settled"]


def oob_update(api: Api, cvm_id: str, env: dict[str, str], keys: list[str] | None = None) -> dict[str, Any]:
    """Replace the CVM's set from another client (and its allowed keys, when given); the 202 answer, not waited."""
    blob = sealed_env.seal(info(api, cvm_id)["kms_info"]["encrypted_env_pubkey"], env)
    response = api.patch(f"/api/v1/cvms/{cvm_id}/envs",
                         json={"encrypted_env": blob, **({"env_keys": keys} if keys is not None else {})})
    assert response.status_code == 202, response.text
    return dict(response.json())
