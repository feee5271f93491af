"""Phala's CVM env API against a real server: sealed sets opened by the KMS (from the shared module and from the spec),
bad blobs refused with nothing changed, whole-set replacement, allowed keys, the two-phase on-chain flow with the
local ledger and a moved clock, isolation, and no plaintext anywhere on disk or in the log."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from envvars import sealed_env
from envvars_server.at_rest import KEY_FILE, cipher_for
from envvars_server.kms import Kms
from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE
from tests.conftest import Api
from tests.test_sealed_env import spec_seal
from tests.test_sevalla_at_rest import plaintext_hits

WORKLOADS = "/_envvars/v1/workloads"
PLAIN = f"plain-{uuid.uuid4().hex}"  # every value this module writes starts with it: grepped for at the end
WEEK = 7 * 86400


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of this module's own, with `--faults` (its clock can be moved) and a debug log with access lines."""
    data_dir = tmp_path_factory.mktemp("phala-server")
    with (data_dir.parent / "phala-server.log").open("w") as log, \
            ServerProcess(data_dir, log=log, access_log=True, args=["--faults", "--log-level", "debug"]) as process:
        yield process


@pytest.fixture(scope="module")
def owner(server: ServerProcess) -> Iterator[Api]:
    with Api(server.url, server.token(f"phala-{uuid.uuid4()}")) as session:
        yield session


def new_cvm(api: Api, kms: str | None = None) -> str:
    body = {"platform": "phala", "name": "cvm"} | ({"kms": kms} if kms else {})
    response = api.post(WORKLOADS, json=body)
    assert response.status_code == 201, response.text
    assert (response.json()["kind"], response.json()["state"]) == ("cvm", "running")
    return str(response.json()["id"])


@pytest.fixture(scope="module")
def cvm(owner: Api) -> str:
    return new_cvm(owner)


def info(api: Api, cvm_id: str) -> dict[str, Any]:
    response = api.get(f"/api/v1/cvms/{cvm_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def pubkey(api: Api, cvm_id: str) -> str:
    return str(info(api, cvm_id)["kms_info"]["encrypted_env_pubkey"])


def values(**env: str) -> dict[str, str]:
    """Distinctive values (the module's plaintext marker, the key, and the given text)."""
    return {key: f"{PLAIN}-{key}-{text}" for key, text in env.items()}


def patch(api: Api, cvm_id: str, blob: str, **fields: Any) -> requests.Response:
    return api.patch(f"/api/v1/cvms/{cvm_id}/envs", json={"encrypted_env": blob, **fields})


def settled(api: Api, cvm_id: str) -> dict[str, Any]:
    """The CVM once its update is applied and it runs again."""
    deadline = time.monotonic() + 30
    while (found := info(api, cvm_id))["status"] != "running" or found["in_progress"]:
        assert time.monotonic() < deadline, found
        time.sleep(0.02)
    return found


def update(api: Api, cvm_id: str, env: dict[str, str], keys: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    """Seal `env` with the shared module and apply it (with `keys` as env_keys); the 202 body."""
    body = {"env_keys": keys} if keys is not None else {}
    response = patch(api, cvm_id, sealed_env.seal(pubkey(api, cvm_id), env), **body, **fields)
    assert response.status_code == 202, response.text
    settled(api, cvm_id)
    return dict(response.json())


def inside(api: Api, cvm_id: str) -> dict[str, str]:
    """The variables a login in the CVM sees that this module wrote."""
    response = api.get(f"{WORKLOADS}/{cvm_id}/environment")
    assert response.status_code == 200, response.text
    return {key: value for key, value in response.json()["vars"].items() if value.startswith(PLAIN)}


def allowed(api: Api, cvm_id: str) -> list[str]:
    response = api.get(f"/api/v1/cvms/{cvm_id}/compose_file")
    assert response.status_code == 200, response.text
    return list(response.json()["allowed_envs"])


def stored(server: ServerProcess, api: Api, cvm_id: str) -> dict[str, str]:
    """The CVM's stored state, read from the server's store."""
    user = server.store().user_for_token(str(api.headers["X-API-Key"]))
    assert user is not None
    return server.store().get_vars("phala", user, cvm_id)


def test_a_sealed_set_replaces_the_whole_set_and_only_allowed_keys_reach_the_cvm(owner: Api, cvm: str) -> None:
    first = values(A="one", B="two", HIDDEN="never")
    accepted = update(owner, cvm, first, ["A", "B"])
    assert set(accepted) == {"status", "message", "correlation_id", "allowed_envs_changed"}
    assert (accepted["status"], accepted["allowed_envs_changed"]) == ("in_progress", True)
    uuid.UUID(accepted["correlation_id"])
    assert inside(owner, cvm) == {"A": first["A"], "B": first["B"]}
    assert allowed(owner, cvm) == ["A", "B"]
    second = values(B="new", C="three")
    assert update(owner, cvm, second)["allowed_envs_changed"] is False  # env_keys absent: allowed_envs kept
    assert inside(owner, cvm) == {"B": second["B"]}  # A is gone (no merge), C is not allowed
    assert update(owner, cvm, second, ["B", "C"])["allowed_envs_changed"] is True
    assert inside(owner, cvm) == second


def test_blobs_made_from_the_spec_are_opened(server: ServerProcess, owner: Api, cvm: str) -> None:
    """Sealed with `cryptography` directly: to the `0x`-prefixed key, spaced JSON, sent as `0x` upper-case hex."""
    env = values(SPEC="spaced")
    plaintext = json.dumps({"env": [{"key": "SPEC", "value": env["SPEC"]}]}, indent=2).encode()
    blob = spec_seal("0x" + pubkey(owner, cvm), plaintext)
    response = patch(owner, cvm, "0x" + blob.upper(), env_keys=["SPEC"])
    assert response.status_code == 202, response.text
    settled(owner, cvm)
    assert inside(owner, cvm) == env
    assert stored(server, owner, cvm)["encrypted_env"] == blob  # the ciphertext as received


def bad_blobs(public: str) -> dict[str, str]:
    good = sealed_env.seal(public, values(X="x"))
    return {"bad hex": "zz" + good[2:], "odd hex": good[:-1], "short": good[:118],
            "flipped tag": good[:-2] + f"{int(good[-2:], 16) ^ 1:02x}",
            "bad json": spec_seal(public, b'{"env": [1, 2]'), "bad shape": spec_seal(public, b'{"env": {"X": "x"}}'),
            "bad key": sealed_env.seal(public, {"1X": "v"}), "nul value": sealed_env.seal(public, {"X": "a\x00b"}),
            "other key": sealed_env.seal(sealed_env.public_key_hex(X25519PrivateKey.generate()), values(X="x"))}


def test_bad_blobs_and_bodies_are_422_in_fastapis_shape_and_change_nothing(server: ServerProcess, owner: Api,
                                                                            cvm: str) -> None:
    before = (stored(server, owner, cvm), allowed(owner, cvm), inside(owner, cvm))
    requests_sent = [{"encrypted_env": blob} for blob in bad_blobs(pubkey(owner, cvm)).values()]
    good = sealed_env.seal(pubkey(owner, cvm), values(X="x"))
    requests_sent += [{}, {"encrypted_env": 7}, {"encrypted_env": good, "env_keys": ["OK", "BAD KEY"]},
                      {"encrypted_env": good, "env_keys": "X"}]
    for body in requests_sent:
        response = owner.patch(f"/api/v1/cvms/{cvm}/envs", json=body)
        assert response.status_code == 422, (body, response.text)
        detail = response.json()["detail"]
        assert list(response.json()) == ["detail"] and detail, response.text
        assert all(set(item) == {"loc", "msg", "type"} and item["loc"][0] == "body" for item in detail), response.text
        assert PLAIN not in response.text
    assert info(owner, cvm)["in_progress"] is False
    assert (stored(server, owner, cvm), allowed(owner, cvm), inside(owner, cvm)) == before


def test_an_update_while_another_is_applied_is_409(owner: Api) -> None:
    cvm_id = new_cvm(owner)
    public = pubkey(owner, cvm_id)
    sets = [values(**{f"K{n}": str(n)}) for n in range(8)]
    blobs = [sealed_env.seal(public, env) for env in sets]
    answers: list[requests.Response | None] = [None] * len(sets)

    def send(number: int) -> None:
        answers[number] = patch(owner, cvm_id, blobs[number], env_keys=list(sets[number]))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(sets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [answer.status_code for answer in answers if answer is not None]
    assert sorted(set(statuses)) == [202, 409] and statuses.count(202) == 1, statuses
    conflict = next(answer for answer in answers if answer is not None and answer.status_code == 409)
    assert list(conflict.json()) == ["detail"]
    settled(owner, cvm_id)
    assert inside(owner, cvm_id) == sets[statuses.index(202)]


def test_without_a_key_401_another_users_cvm_403_none_404(server: ServerProcess, owner: Api, cvm: str) -> None:
    blob = sealed_env.seal(pubkey(owner, cvm), values(Z="z"))
    with Api(server.url, server.token(f"other-{uuid.uuid4()}")) as other, Api(server.url, None) as anonymous:
        for method, suffix, body in (("GET", "", None), ("GET", "/compose_file", None),
                                     ("PATCH", "/envs", {"encrypted_env": blob})):
            missing = anonymous.request(method, f"/api/v1/cvms/{cvm}{suffix}", json=body)
            assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "x-api-key", missing.text
            assert missing.json() == {"detail": "missing API token: send the token in the 'x-api-key' header"}
            foreign = other.request(method, f"/api/v1/cvms/{cvm}{suffix}", json=body)
            assert (foreign.status_code, foreign.json()) == (403, {"detail": "CVM not in workspace"}), foreign.text
            none = owner.request(method, f"/api/v1/cvms/{uuid.uuid4()}{suffix}", json=body)
            assert (none.status_code, none.json()) == (404, {"detail": "CVM not found"}), none.text
        registered = other.post("/_envvars/v1/chain/compose-hashes",
                                json={"app_id": info(owner, cvm)["app_id"], "compose_hash": "ab" * 32})
        assert registered.status_code == 404, registered.text  # only the app's owner registers its hashes
    assert "Z" not in inside(owner, cvm)


def phase_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    """The fields of one of the two-phase flow's structured errors."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error_code", "message", "details", "suggestions", "links"} and body["error_code"] == code
    return {item["field"]: item["value"] for item in body["details"]}


def register(api: Api, app_id: str, compose_hash: str) -> str:
    response = api.post("/_envvars/v1/chain/compose-hashes", json={"app_id": app_id, "compose_hash": compose_hash})
    assert response.status_code == 201, response.text
    return str(response.json()["transaction_hash"])


def test_onchain_kms_two_phase_flow_and_every_bad_proof(server: ServerProcess, owner: Api) -> None:
    cvm_id = new_cvm(owner, "onchain")
    shown = info(owner, cvm_id)
    assert shown["kms_info"]["chain_id"] == 8453
    app_id, public = shown["app_id"], shown["kms_info"]["encrypted_env_pubkey"]
    env = values(A="a", B="b")
    blob = sealed_env.seal(public, env)

    def unchanged() -> None:
        assert (allowed(owner, cvm_id), inside(owner, cvm_id), stored(server, owner, cvm_id).get("encrypted_env")) \
            == ([], {}, None)
        assert info(owner, cvm_id)["in_progress"] is False

    details = phase_error(patch(owner, cvm_id, blob, env_keys=["A"]), 465, "ERR-01-005")
    assert details["app_id"] == app_id and details["kms_info"]["chain_id"] == 8453
    hash_a = details["compose_hash"]
    unchanged()
    hash_ab = phase_error(patch(owner, cvm_id, blob, env_keys=["A", "B"]), 465, "ERR-01-005")["compose_hash"]
    tx_a, tx_ab = register(owner, app_id, hash_a), register(owner, app_id, "0x" + hash_ab)
    phase_error(patch(owner, cvm_id, blob, env_keys=["A"], compose_hash="cd" * 32, transaction_hash=tx_a), 466,
                "ERR-01-006")
    needed = phase_error(patch(owner, cvm_id, blob, env_keys=["A"], compose_hash=hash_ab, transaction_hash=tx_ab),
                         468, "ERR-01-008")
    assert needed == {"compose_hash": hash_a}
    for transaction in ("0x" + "00" * 32, tx_ab, None):  # unknown; it registered another hash; none given
        phase_error(patch(owner, cvm_id, blob, env_keys=["A"], compose_hash=hash_a, transaction_hash=transaction),
                    467, "ERR-01-007")
    other_app = info(owner, new_cvm(owner, "onchain"))["app_id"]
    phase_error(patch(owner, cvm_id, blob, env_keys=["A"], compose_hash=hash_a,
                      transaction_hash=register(owner, other_app, hash_a)), 467, "ERR-01-007")
    unchanged()
    moved = requests.post(server.url + f"{WORKLOADS[:-10]}/clock", json={"seconds": WEEK + 1},
                          headers=owner.headers, timeout=10)
    assert moved.status_code == 200, moved.text
    phase_error(patch(owner, cvm_id, blob, env_keys=["A"], compose_hash=hash_a, transaction_hash=tx_a), 466,
                "ERR-01-006")  # issued more than 7 days ago
    unchanged()
    hash_a = phase_error(patch(owner, cvm_id, blob, env_keys=["A"]), 465, "ERR-01-005")["compose_hash"]
    accepted = update(owner, cvm_id, env, ["A"], compose_hash=hash_a, transaction_hash=register(owner, app_id, hash_a))
    assert accepted["allowed_envs_changed"] is True
    assert (allowed(owner, cvm_id), inside(owner, cvm_id)) == (["A"], {"A": env["A"]})
    update(owner, cvm_id, values(A="again"))  # the same keys: no proof needed
    assert inside(owner, cvm_id) == values(A="again")


def test_no_plaintext_on_disk_or_in_the_log_and_the_keys_stay_private(server: ServerProcess, owner: Api,
                                                                       cvm: str) -> None:
    """Runs last: every value this module wrote, searched in every file under the data dir and in the server log."""
    assert inside(owner, cvm)  # a CVM holds plaintext values in its memory right now
    log = server.data_dir.parent / "phala-server.log"
    assert "/api/v1/cvms/" in log.read_text()
    app_key = Kms(server.store(), cipher_for(server.data_dir / KEY_FILE)).private_key(info(owner, cvm)["app_id"])
    private = app_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    assert not (server.data_dir / "kms").exists()  # keys live in the store, sealed
    assert plaintext_hits(server.data_dir, log, [PLAIN, private.hex(), base64.b64encode(private).decode()]) == {}
    assert private not in b"".join(path.read_bytes() for path in server.data_dir.glob(DB_FILE + "*"))
    answers = [owner.get(f"/api/v1/cvms/{cvm}").text, owner.get(f"/api/v1/cvms/{cvm}/compose_file").text,
               owner.get("/openapi.json").text]
    assert not any(private.hex() in text or private.hex().upper() in text for text in answers)
