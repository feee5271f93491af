"""The store: in-place upgrades of data written by earlier releases, variable ids and times, the cipher hook."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE, SCHEMA_VERSION, SqliteStore, StoreTooNew
from tests.conftest import Api

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# The fixture's user and token (a throwaway credential of a test database, valid nowhere else).
FIXTURE_USER = "1b0e6a43-0000-4000-8000-000000000001"
FIXTURE_TOKEN = "evt_fixture-0.1.0-not-a-secret"
FIXTURE_VM = "7f1c2d3e-0000-4000-8000-0000000000aa"
FIXTURE_VARS = {"APP_ENV": "production", "GREETING": "hello # world"}


def data_dir_of(release: str, tmp_path: Path) -> Path:
    """A copy of the data dir written by `release` (its SQLite file; no workload disks)."""
    copy = tmp_path / f"data-{release}"
    shutil.copytree(FIXTURES / f"datadir-{release}", copy)
    return copy


def schema_version(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / DB_FILE) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


@pytest.mark.parametrize("release", ["0.1.0"])
def test_data_of_an_earlier_release_is_upgraded_in_place_and_kept(tmp_path: Path, release: str) -> None:
    data_dir = data_dir_of(release, tmp_path)
    assert schema_version(data_dir) == 0
    store = SqliteStore(data_dir)
    assert schema_version(data_dir) == SCHEMA_VERSION
    assert store.user_for_token(FIXTURE_TOKEN) == FIXTURE_USER
    assert store.get_vars("vers", FIXTURE_USER) == FIXTURE_VARS
    variables = store.variables("vers", FIXTURE_USER)
    for variable in variables.values():
        assert uuid.UUID(variable.id).version == 4 and variable.attributes == {}
        assert variable.created_at == variable.updated_at and variable.created_at.endswith("Z")
    assert len({variable.id for variable in variables.values()}) == len(variables)
    [vm] = store.list_machines("vers", FIXTURE_USER)
    assert (vm["id"], vm["vm_id"], vm["labels"]) == (FIXTURE_VM, FIXTURE_VM, {"role": "web"})
    assert store.get_commit(FIXTURE_USER, "c0ffee00-0000-4000-8000-000000000001") is not None
    again = SqliteStore(data_dir)  # opening an upgraded database changes nothing
    assert again.variables("vers", FIXTURE_USER) == variables


@pytest.mark.parametrize("release", ["0.1.0"])
def test_a_server_started_on_an_earlier_releases_data_serves_it(tmp_path: Path, release: str) -> None:
    with ServerProcess(data_dir_of(release, tmp_path)) as server:
        api = Api(server.url, FIXTURE_TOKEN)
        assert api.get("/api/v1/env_vars").json() == {"vars": FIXTURE_VARS}
        # Its disk is not part of the fixture: the VM cannot come back, and says so.
        assert api.get(f"/api/v1/vm/{FIXTURE_VM}/metadata").json()["state"] == "dead"
        api.put("/api/v1/env_vars", json={"vars": {"NEW": "1"}}).raise_for_status()
        assert api.get("/api/v1/env_vars").json() == {"vars": {**FIXTURE_VARS, "NEW": "1"}}


def test_a_database_of_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    SqliteStore(tmp_path)
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreTooNew, match=f"schema version {SCHEMA_VERSION + 1}, newer than this release's "
                                          f"{SCHEMA_VERSION}"):
        SqliteStore(tmp_path)
    assert schema_version(tmp_path) == SCHEMA_VERSION + 1


def test_a_variable_keeps_its_id_and_creation_time_across_updates(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    with store.edit("p", "owner", "scope") as edit:
        first = edit.upsert("K", "v1", {"is_runtime": True, "is_buildtime": True})
    with store.edit("p", "owner", "scope") as edit:
        second = edit.upsert("K", "v2", {"is_buildtime": False})
    assert second.id == first.id and second.created_at == first.created_at and second.updated_at >= first.updated_at
    assert store.variables("p", "owner", "scope")["K"] == second
    assert second.attributes == {"is_runtime": True, "is_buildtime": False}
    store.put_vars("p", "owner", {"K": "v3"}, replace=False, scope="scope")
    assert store.variables("p", "owner", "scope")["K"].id == first.id


def test_an_edit_that_fails_stores_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.put_vars("p", "owner", {"A": "1"}, replace=False)
    with pytest.raises(RuntimeError), store.edit("p", "owner") as edit:
        edit.upsert("B", "2")
        edit.delete("A")
        raise RuntimeError("refused half-way")
    assert store.get_vars("p", "owner") == {"A": "1"}


class AesGcm:
    """A real AEAD cipher, the shape a platform that promises encryption at rest gives the store."""

    def __init__(self) -> None:
        self.aead = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, value: str, bound: str) -> str:
        nonce = uuid.uuid4().bytes[:12]
        return (nonce + self.aead.encrypt(nonce, value.encode(), bound.encode())).hex()

    def open(self, sealed: str, bound: str) -> str:
        raw = bytes.fromhex(sealed)
        return self.aead.decrypt(raw[:12], raw[12:], bound.encode()).decode()


def test_with_a_cipher_no_value_reaches_the_database_files_and_rows_cannot_swap(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.use_cipher("sealed", AesGcm())
    values = {f"K{n}": f"plaintext-{uuid.uuid4()}" for n in range(50)}
    store.put_vars("sealed", "owner", values, replace=False, scope="app")
    store.put_vars("sealed", "owner", {"K0": "plaintext-updated-value"}, replace=False, scope="app")
    assert store.get_vars("sealed", "owner", "app") == {**values, "K0": "plaintext-updated-value"}
    written = b"".join(path.read_bytes() for path in tmp_path.glob(DB_FILE + "*"))
    assert b"plaintext-" not in written
    with sqlite3.connect(tmp_path / DB_FILE) as db:  # move K2's sealed value into K1's row
        db.execute("UPDATE env_vars SET value = (SELECT value FROM env_vars WHERE key = 'K2') WHERE key = 'K1'")
    with pytest.raises(InvalidTag):
        store.get_vars("sealed", "owner", "app")
