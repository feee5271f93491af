"""The store, on SQLite and on PostgreSQL: in-place upgrades of data written by earlier releases, refusal of
newer ones, variable ids and times, all-or-nothing edits, the cipher hook, serialized edits of one set."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from fastapi import FastAPI

from envvars import sealed_env
from envvars_server import at_rest
from envvars_server.app import create_app
from envvars_server.at_rest import SealedValueInvalid
from envvars_server.chain import Ledger
from envvars_server.cli import parser
from envvars_server.kms import Kms
from envvars_server.launch import ServerProcess
from envvars_server.store import DB_FILE, SCHEMA_VERSION, PostgresStore, SqliteStore, Store, StoreTooNew
from envvars_server.store import postgres as pg
from envvars_server.store.group_commit import CommitFailed
from tests.conftest import Api
from tests.figures import figure
from tests.postgres import dump
from tests.sevalla import new_application
from tests.sevalla import stored as sevalla_stored

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


SCHEMA_2 = FIXTURES / "datadir-schema-2"  # written by the release before the PostgreSQL store (see its README)
SCHEMA_2_USER = "1b0e6a43-0000-4000-8000-000000000002"
SCHEMA_2_TOKEN = "evt_fixture-schema-2-not-a-secret"  # a throwaway credential of the fixture, valid nowhere else
SCHEMA_2_APP, SCHEMA_2_CVM_APP = "app-fixture-0001", "ab" * 20


def test_a_data_dir_of_the_release_before_is_upgraded_and_its_chain_and_keys_moved_into_the_store(
        tmp_path: Path) -> None:
    """A server started on it upgrades the schema in place and moves the chain's registrations and apps' keys from
    their files into the store; every set, sealed value and record is kept."""
    data_dir = tmp_path / "data"
    shutil.copytree(SCHEMA_2, data_dir)
    assert schema_version(data_dir) == 2
    with ServerProcess(data_dir) as server, Api(server.url, SCHEMA_2_TOKEN) as api:
        assert api.get("/api/v1/env_vars").json() == {"vars": FIXTURE_VARS}
        assert api.get("/api/v1/vm/7f1c2d3e-0000-4000-8000-0000000000bb/metadata").json()["state"] == "dead"
    assert schema_version(data_dir) == SCHEMA_VERSION
    assert not (data_dir / "chain" / "ledger.jsonl").exists() and not list((data_dir / "kms").glob("*.key"))
    with sqlite3.connect(data_dir / DB_FILE) as db:
        assert db.execute("SELECT app_id, compose_hash FROM chain_registrations").fetchall() == [
            (SCHEMA_2_CVM_APP, "11" * 32)]
        assert len(db.execute("SELECT name FROM sealed WHERE name LIKE ?", (f"%{SCHEMA_2_CVM_APP}%",)).fetchall()) == 1
    store = SqliteStore(data_dir)
    store.use_cipher("sevalla", at_rest.checked_cipher(data_dir / at_rest.KEY_FILE, store))
    assert store.get_vars("sevalla", SCHEMA_2_USER, SCHEMA_2_APP) == {"DATABASE_URL": "postgres://fixture-value"}
    store.close()


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


Open = Callable[[], Store]
T = TypeVar("T")


class Database:
    """One empty database of a kind: `open()` a store on it (again), `sql()` on it behind the store's back."""

    def __init__(self, kind: str, where: str):
        self.kind = kind
        self.where = where
        self.opened: list[Store] = []

    def open(self) -> Store:
        store: Store = SqliteStore(Path(self.where)) if self.kind == "sqlite" else PostgresStore(self.where)
        self.opened.append(store)
        return store

    def sql(self, statement: str) -> list[Any]:
        if self.kind == "sqlite":
            with sqlite3.connect(Path(self.where) / DB_FILE) as db:
                return db.execute(statement).fetchall()
        with psycopg.connect(self.where) as db:
            cursor = db.execute(statement)
            return cursor.fetchall() if cursor.description else []

    def schema_version(self) -> int:
        if self.kind == "sqlite":
            return int(self.sql("PRAGMA user_version")[0][0])
        return int(self.sql("SELECT version FROM schema_version")[0][0])

    def set_schema_version(self, version: int) -> None:
        self.sql(f"PRAGMA user_version = {version}" if self.kind == "sqlite"
                 else f"UPDATE schema_version SET version = {version}")

    def dump(self) -> bytes:
        """Every byte the database holds: its files (SQLite), or `pg_dump`'s output."""
        if self.kind == "sqlite":
            return b"".join(path.read_bytes() for path in sorted(Path(self.where).glob(DB_FILE + "*")))
        return dump(self.where)

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    where = str(tmp_path) if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(request.param, where)
    try:
        yield db
    finally:
        db.close()


def latest(kind: str) -> int:
    return SCHEMA_VERSION if kind == "sqlite" else pg.SCHEMA_VERSION


def test_an_empty_database_is_migrated_to_the_latest_schema_once(database: Database) -> None:
    store = database.open()
    assert database.schema_version() == latest(database.kind)
    store.put_vars("p", "owner", {"A": "1"}, replace=False)
    again = database.open()  # opening a migrated database changes nothing
    assert database.schema_version() == latest(database.kind)
    assert again.variables("p", "owner") == store.variables("p", "owner")


def test_a_database_of_a_newer_release_is_refused_untouched(database: Database) -> None:
    database.open()
    newer = latest(database.kind) + 1
    database.set_schema_version(newer)
    with pytest.raises(StoreTooNew, match=f"schema version {newer}, newer than this release's {newer - 1}"):
        database.open()
    assert database.schema_version() == newer


def test_serve_and_token_create_refuse_a_newer_database_clearly(database: Database, tmp_path: Path) -> None:
    database.open()
    database.set_schema_version(latest(database.kind) + 1)
    where = ["--data-dir", str(tmp_path)] + (["--database", database.where] if database.kind == "postgres" else [])
    for command in (["serve", "--port", "0"], ["token", "create", "--user", "u"]):
        refused = subprocess.run([sys.executable, "-m", "envvars_server.cli", *command, *where],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().endswith(f"newer than this release's {latest(database.kind)}: run the release "
                                               "that wrote it, or a newer one")
        assert "Traceback" not in refused.stderr
    assert database.schema_version() == latest(database.kind) + 1


def test_a_server_with_another_at_rest_key_than_the_stores_is_refused(database: Database, tmp_path: Path) -> None:
    """Its sealed values and app keys would not open: it must not start (replicas need one key file)."""
    url = ["--database", database.where] if database.kind == "postgres" else []
    create_app(tmp_path, database=url[1] if url else None).state.store.close()  # the first server's key is kept
    another = tmp_path / "another.key"
    refused = subprocess.run([sys.executable, "-m", "envvars_server.cli", "serve", "--data-dir", str(tmp_path), *url,
                              "--at-rest-key", str(another)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1] == f"envvars-server: {another} is not the at-rest key this store's sealed " \
        "data was written with: start every server on this store with the same key file (--at-rest-key)"
    with ServerProcess(tmp_path, database=url[1] if url else None,
                       args=["--at-rest-key", str(tmp_path / at_rest.KEY_FILE)]) as server:
        assert requests.get(server.url + "/openapi.json", timeout=30).status_code == 200


def test_round_trips_of_tokens_sets_and_records(database: Database) -> None:
    store = database.open()
    token, again = store.create_token("alice"), store.create_token("alice")
    user = store.user_for_token(token)
    assert user is not None and store.user_for_token(again) == user and store.user_for_token("evt_nope") is None
    assert store.user_for_token(store.create_token("bob")) != user
    assert store.put_vars("p", user, {"B": "2", "A": "1 # not a comment"}, replace=False, scope="s") == \
        {"A": "1 # not a comment", "B": "2"}
    assert store.put_vars("p", user, {"C": "3", "A": "x"}, replace=True, scope="s") == {"A": "x", "C": "3"}
    assert store.get_vars("p", user, "s") == {"A": "x", "C": "3"}
    assert store.get_vars("p", user) == {} and store.get_vars("p", "someone-else", "s") == {}
    assert store.delete_var("p", user, "A", "s") and not store.delete_var("p", user, "A", "s")
    with store.edit("p", user, "s") as edit:
        edit.upsert("D", "4")
        renamed = edit.rename("C", "E")
        assert list(edit.variables()) == ["E", "D"]  # a renamed variable keeps its place in creation order
    assert list(store.variables("p", user, "s")) == ["E", "D"] and store.variables("p", user, "s")["E"] == renamed
    for n, machine in enumerate(["m2", "m1", "m3"]):
        store.save_machine("w", {"id": machine, "owner_id": user, "state": "running",
                                 "created_at": f"2026-01-0{n + 1}T00:00:00Z"})
    store.save_machine("w", {"id": "m1", "owner_id": user, "state": "dead", "created_at": "2026-01-02T00:00:00Z",
                             "deleted_at": "2026-01-04T00:00:00Z"})
    assert [m["id"] for m in store.list_machines("w", user)] == ["m2", "m3"]
    assert store.get_machine("w", user, "m1") is None and store.get_machine("w", "bob", "m2") is None
    assert store.get_machine("w", user, "m3") == {"id": "m3", "owner_id": user, "state": "running",
                                                  "created_at": "2026-01-03T00:00:00Z"}
    store.save_commit({"commit_id": "c1", "owner_id": user, "created_at": "2026-01-01T00:00:00Z", "vm": "m2"})
    assert store.get_commit(user, "c1") == {"commit_id": "c1", "owner_id": user,
                                            "created_at": "2026-01-01T00:00:00Z", "vm": "m2"}
    assert store.get_commit("bob", "c1") is None


def test_a_variable_keeps_its_id_and_creation_time_across_updates(database: Database) -> None:
    store = database.open()
    with store.edit("p", "owner", "scope") as edit:
        first = edit.upsert("K", "v1", {"is_runtime": True, "is_buildtime": True})
    with store.edit("p", "owner", "scope") as edit:
        second = edit.upsert("K", "v2", {"is_buildtime": False})
    assert uuid.UUID(first.id).version == 4 and first.created_at == first.updated_at
    assert second.id == first.id and second.created_at == first.created_at and second.updated_at >= first.updated_at
    assert store.variables("p", "owner", "scope")["K"] == second
    assert second.attributes == {"is_runtime": True, "is_buildtime": False}
    store.put_vars("p", "owner", {"K": "v3"}, replace=False, scope="scope")  # no attributes: they stay
    with store.edit("p", "owner", "scope") as edit:
        third = edit.upsert("K", "v4")  # the set unread: written by the statement alone
    assert store.variables("p", "owner", "scope")["K"] == third
    assert (third.id, third.created_at, third.attributes) == (first.id, first.created_at, second.attributes)


def test_an_edit_that_fails_stores_nothing(database: Database) -> None:
    store = database.open()
    store.put_vars("p", "owner", {"A": "1"}, replace=False)
    with pytest.raises(RuntimeError), store.edit("p", "owner") as edit:
        edit.upsert("B", "2")
        edit.delete("A")
        raise RuntimeError("refused half-way")
    assert store.get_vars("p", "owner") == {"A": "1"}


def test_with_a_cipher_no_value_is_stored_in_clear_and_rows_cannot_swap(database: Database) -> None:
    store = database.open()
    store.use_cipher("sealed", AesGcm())
    values = {f"K{n}": f"plaintext-{uuid.uuid4()}" for n in range(20)}
    store.put_vars("sealed", "owner", values, replace=False, scope="app")
    assert store.get_vars("sealed", "owner", "app") == values
    assert not database.sql("SELECT value FROM env_vars WHERE value LIKE '%plaintext-%'")
    database.sql("UPDATE env_vars SET value = (SELECT value FROM env_vars WHERE key = 'K2') WHERE key = 'K1'")
    with pytest.raises(InvalidTag):
        store.get_vars("sealed", "owner", "app")


def test_concurrent_edits_of_one_set_on_postgresql_are_serialized(postgres_url: str) -> None:
    """Read-modify-writes from many threads, on two stores (as two servers on one database), lose no update."""
    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    threads, rounds = 16, 10
    failures: list[BaseException] = []

    def increment(store: PostgresStore) -> None:
        try:
            for _ in range(rounds):
                with store.edit("p", "owner", "counter") as edit:
                    now = edit.variables().get("N")
                    edit.upsert("N", str(int(now.value) + 1 if now else 1))
                with store.edit("p", "owner", "other") as edit:  # and a set of its own beside it
                    edit.upsert(f"T{threading.get_ident()}", "x")
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    workers = [threading.Thread(target=increment, args=(stores[n % 2],)) for n in range(threads)]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert not failures
        counted = int(stores[0].get_vars("p", "owner", "counter")["N"])
        figure("per-set lock on postgres (two stores, 16 threads)", increments=threads * rounds, counted=counted,
               lost=threads * rounds - counted)
        assert counted == threads * rounds
    finally:
        for store in stores:
            store.close()


def test_serve_keeps_the_store_in_sqlite_unless_given_a_database(tmp_path: Path, postgres_url: str) -> None:
    assert parser().parse_args(["serve", "--data-dir", str(tmp_path)]).database is None
    assert parser().parse_args(["serve", "--data-dir", str(tmp_path), "--database", postgres_url]).database == \
        postgres_url
    assert isinstance(create_app(tmp_path / "default").state.store, SqliteStore)
    store = create_app(tmp_path / "pg", database=postgres_url).state.store
    try:
        assert isinstance(store, PostgresStore) and store.get_vars("p", "owner") == {}
    finally:
        store.close()


def connections_to(url: str) -> int:
    """How many sessions other than this query's are open on the database of `url`."""
    with psycopg.connect(url) as db:
        return int(db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                              "AND pid <> pg_backend_pid()").fetchall()[0][0])


def served(app: FastAPI, meanwhile: Callable[[], T]) -> T:
    """What `meanwhile` returns, called while `app` runs (its lifespan: platforms started, stopped after)."""

    async def serve() -> T:
        async with app.router.lifespan_context(app):
            return meanwhile()

    return asyncio.run(serve())


def test_the_server_closes_its_database_connections_when_it_stops(tmp_path: Path, postgres_url: str) -> None:
    assert served(create_app(tmp_path, database=postgres_url), lambda: connections_to(postgres_url)) >= 1
    deadline = time.monotonic() + 10  # a backend leaves pg_stat_activity just after its client hangs up
    while connections_to(postgres_url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections_to(postgres_url) == 0


def test_token_create_and_server_process_reach_the_database(tmp_path: Path, postgres_url: str) -> None:
    """`token create --database` writes the token where `serve --database` reads it, not in the data dir."""
    created = subprocess.run([sys.executable, "-m", "envvars_server.cli", "token", "create", "--user", "cli",
                              "--data-dir", str(tmp_path), "--database", postgres_url],
                             capture_output=True, text=True, check=True)
    token = created.stdout.strip()
    assert token.startswith("evt_") and token not in created.stderr
    assert not (tmp_path / DB_FILE).exists()
    with ServerProcess(tmp_path, database=postgres_url) as server, Api(server.url, token) as api:
        assert api.put("/api/v1/env_vars", json={"vars": {"K": "v"}}).status_code == 200
        [(user_id,)] = Database("postgres", postgres_url).sql("SELECT user_id FROM users WHERE name = 'cli'")
        assert server.store().get_vars("vers", user_id) == {"K": "v"}
        assert server.store().user_for_token(server.token("second")) is not None
    assert not (tmp_path / DB_FILE).exists()


def raw(key: X25519PrivateKey) -> bytes:
    return key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def test_servers_on_one_database_hand_out_one_key_per_app_never_in_clear(database: Database, tmp_path: Path) -> None:
    cipher = at_rest.cipher_for(tmp_path / "shared.key")
    app, other = "ab" * 20, "cd" * 20
    first, second = Kms(database.open(), cipher), Kms(database.open(), cipher)
    public = first.create(app)
    assert second.public_key(app) == public
    assert second.create(app) == public  # made at once on two servers: the first one stored is everyone's
    private = raw(first.private_key(app))
    dumped = database.dump()
    assert b"app-key:" + app.encode() in dumped
    for form in (private, private.hex().encode(), base64.b64encode(private)):
        assert form not in dumped
    first.create(other)
    database.sql(f"UPDATE sealed SET value = (SELECT value FROM sealed WHERE name = 'app-key:{app}') "
                 f"WHERE name = 'app-key:{other}'")  # a sealed key moved to another app's row
    with pytest.raises(SealedValueInvalid):
        Kms(database.open(), cipher).private_key(other)
    with pytest.raises(SealedValueInvalid):  # a server started with another key file opens none
        Kms(database.open(), at_rest.cipher_for(tmp_path / "another.key")).private_key(app)


def test_an_earlier_releases_ledger_and_key_files_move_into_the_store_once(database: Database, tmp_path: Path) -> None:
    """Releases before the store kept the chain in `chain/ledger.jsonl` and app keys in `kms/<app id>.key`."""
    app_id, key = "ef" * 20, X25519PrivateKey.generate()
    registration = {"transaction_hash": "0x" + "1" * 64, "app_id": app_id, "compose_hash": "2" * 64, "at": 1.5}
    (tmp_path / "chain").mkdir(mode=0o700)
    (tmp_path / "chain" / "ledger.jsonl").write_text(json.dumps(registration) + "\n")
    (tmp_path / "kms").mkdir(mode=0o700)
    (tmp_path / "kms" / f"{app_id}.key").write_bytes(raw(key))
    url = database.where if database.kind == "postgres" else None
    for _ in range(2):  # the second start finds nothing left to import, and keeps what was
        app = create_app(tmp_path, database=url)
        kms = Kms(app.state.store, at_rest.cipher_for(tmp_path / at_rest.KEY_FILE))
        public = served(app, partial(kms.public_key, app_id))  # imported at start
        assert public == sealed_env.public_key_hex(key)
        assert not (tmp_path / "chain").exists() and not (tmp_path / "kms").exists()
        found = Ledger(database.open()).transaction("0x" + "1" * 64)
        assert found is not None and found.app_id == app_id and found.at == 1.5


def test_two_servers_on_one_database_with_one_key_file_share_sealed_values_and_app_keys(
    tmp_path: Path, postgres_url: str,
) -> None:
    """Replicas: each its data dir (its workloads' disks), one database and one `--at-rest-key` file."""
    shared = ["--at-rest-key", str(tmp_path / "shared.key")]
    with ServerProcess(tmp_path / "a", database=postgres_url, args=shared) as a, \
            ServerProcess(tmp_path / "b", database=postgres_url, args=shared) as b:
        token = a.token("replicated")
        with Api(a.url, token) as on_a, Api(b.url, token) as on_b:
            app = new_application(on_a)
            made = on_a.post(f"/v3/applications/{app}/env-vars", json={"key": "SEALED", "value": "at-rest-value"})
            assert made.status_code == 201, made.text
            assert sevalla_stored(on_b, app) == {"SEALED": "at-rest-value"}
            cvm = on_a.post("/_envvars/v1/workloads", json={"platform": "phala", "name": "cvm"}).json()["id"]
            keys = [api.get(f"/api/v1/cvms/{cvm}").json()["kms_info"]["encrypted_env_pubkey"] for api in (on_a, on_b)]
            assert keys[0] == keys[1] and len(keys[0]) == 64
    assert not list(tmp_path.glob("*/" + DB_FILE)) and not (tmp_path / "a" / at_rest.KEY_FILE).exists()


def test_sqlite_writers_sharing_one_commit_keep_each_others_writes_and_only_a_failed_one_is_undone(
        tmp_path: Path) -> None:
    """Writers that queue up on SQLite share one commit; one that fails inside it loses its own writes only,
    and each writer returns only once what it wrote is committed (visible to a fresh connection)."""
    store = SqliteStore(tmp_path)
    writers = 16
    first_in = threading.Event()
    grouped: list[int] = []
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with store.edit("p", "owner", f"set{n}") as edit:
                edit.upsert("K", f"v{n}")
                if n == 0:  # hold the group open until every other writer is queued behind this one
                    first_in.set()
                    while store._writes._waiting < writers - 1:
                        threading.Event().wait(0.01)
                if n % 2:
                    raise ValueError(f"writer {n} refused")
            with sqlite3.connect(tmp_path / DB_FILE) as db:
                grouped.append(len(db.execute("SELECT 1 FROM env_vars WHERE scope = ?", (f"set{n}",)).fetchall()))
        except ValueError:
            pass
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    threads[0].start()
    first_in.wait(10)
    for thread in threads[1:]:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures
    assert grouped == [1] * (writers // 2), "a writer returned before its write was committed"
    assert {n: store.get_vars("p", "owner", f"set{n}") for n in range(writers)} == {
        n: ({} if n % 2 else {"K": f"v{n}"}) for n in range(writers)}


def test_sqlite_writers_whose_shared_transaction_the_database_rolls_back_are_told_nothing_was_stored(
        tmp_path: Path) -> None:
    """A statement that makes SQLite roll back the whole transaction (here a trigger's RAISE(ROLLBACK), as a full
    disk would) fails its writer, and every writer already in that group is told its write was not stored: none
    is acknowledged for a write that is gone. The next writes are stored as usual."""
    store = SqliteStore(tmp_path)
    with sqlite3.connect(tmp_path / DB_FILE) as db:
        db.execute("CREATE TRIGGER boom BEFORE INSERT ON env_vars WHEN NEW.key = 'BOOM' "
                   "BEGIN SELECT RAISE(ROLLBACK, 'refused by the database'); END")
    first_in = threading.Event()
    outcomes: dict[str, BaseException | None] = {}

    def write(key: str) -> None:
        try:
            with store.edit("p", "owner", key) as edit:
                edit.upsert(key, "v")
                if key == "FIRST":  # hold the group open until the other writer is queued behind this one
                    first_in.set()
                    while store._writes._waiting < 1:
                        threading.Event().wait(0.01)
            outcomes[key] = None
        except BaseException as exc:  # the outcome of each writer, checked below
            outcomes[key] = exc

    first = threading.Thread(target=write, args=("FIRST",))
    first.start()
    first_in.wait(10)
    boom = threading.Thread(target=write, args=("BOOM",))
    boom.start()
    for thread in (first, boom):
        thread.join(30)
    assert isinstance(outcomes["FIRST"], CommitFailed), outcomes
    assert isinstance(outcomes["BOOM"], sqlite3.IntegrityError), outcomes
    assert store.get_vars("p", "owner", "FIRST") == {}
    store.put_vars("p", "owner", {"AFTER": "v"}, replace=False)
    assert store.get_vars("p", "owner") == {"AFTER": "v"}
