"""Fixtures: a real reference server on loopback with a temp data dir, and API sessions per user."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from envvars_server.launch import ServerProcess
from envvars_server.platforms import PLATFORMS
from envvars_server.sandbox import IsolationUnavailable, Sandbox, check_isolation
from tests.cluster import ClusterServer, running_cluster
from tests.figures import (  # noqa: F401  (the reliability figures: collected from every worker, printed at the end)
    pytest_runtest_logreport,
    pytest_runtest_protocol,
    pytest_terminal_summary,
)
from tests.plugin import Plugin, configured
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures of the PostgreSQL store's tests)
from tests.stores import (  # noqa: F401  (the both-stores suites: their parametrization and fixtures)
    CLUSTER,
    Server,
    check_store,
    database_url,
    new_database,
    next_url,
    pytest_collection_modifyitems,
    pytest_generate_tests,
    store_kind_fixture,
)

_users = itertools.count()
# Where platforms take their token (`Envelope.token_header`): `Authorization`, and headers of their own
# (Phala's `X-API-Key`).
TOKEN_HEADERS = sorted({p.envelope.token_header for p in PLATFORMS} | {"authorization"})


def credential(token_header: str, token: str) -> dict[str, str]:
    """`token` presented where a platform whose envelope's `token_header` is `token_header` reads it:
    `Authorization: Bearer <token>`, or the bare token in the platform's own header."""
    return {"Authorization": f"Bearer {token}"} if token_header == "authorization" else {token_header: token}


def credentials(token: str) -> dict[str, str]:
    """`token` presented every platform's way."""
    return {name: value for header in TOKEN_HEADERS for name, value in credential(header, token).items()}


CANARY = "ENVVARS_TEST_HOST_CANARY"  # set in the host's environment while a `sandbox` runs


class Api(requests.Session):
    """A requests session bound to the server's base URL, with one user's token, sent every platform's way."""

    def __init__(self, base_url: str, token: str | None):
        super().__init__()
        self.base_url = base_url
        # A GET sent on a kept-alive connection just as the server closed it (its idle timeout) is sent once more;
        # nothing else is retried: a test sees every other failure as it happened.
        self.mount("http://", HTTPAdapter(max_retries=Retry(total=None, connect=0, read=1, status=0, other=0,
                                                            redirect=0, allowed_methods={"GET"})))
        if token is not None:
            self.use_token(token)

    def use_token(self, token: str) -> None:
        """Send `token` (a bearer token, and in each platform's own header) from now on."""
        self.headers.update(credentials(token))

    def request(self, method: str | bytes, url: str | bytes, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", 60)
        return super().request(method, self.base_url + str(url), *args, **kwargs)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           store_kind: str) -> Iterator[ServerProcess | ClusterServer]:
    """One reference server for the session (one per store in the both-stores suites, the cluster among them in
    some: `tests/stores.py`); tests stay apart by using fresh users."""
    if store_kind == CLUSTER:
        request.getfixturevalue("isolation")
        with running_cluster(request.getfixturevalue("postgres_server"), tmp_path_factory) as cluster:
            clustered = ClusterServer(cluster)
            yield clustered
            check_store(clustered)
        return
    data_dir = tmp_path_factory.mktemp("server-data")
    with (data_dir.parent / f"{data_dir.name}.log").open("w") as log, \
            ServerProcess(data_dir, log=log, database=new_database(request, store_kind)) as process:
        yield process
        check_store(process)


@pytest.fixture
def new_api(server: Server) -> Iterator[Callable[[], Api]]:
    """A factory of sessions, each for a brand-new user (on the cluster, each on its next other replica or the
    balancer: `tests/stores.py`'s `next_url`)."""
    sessions: list[Api] = []

    def make() -> Api:
        session = Api(next_url(server), server.token(f"user-{next(_users)}"))
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def api(new_api: Callable[[], Api]) -> Api:
    """A session for a fresh user."""
    return new_api()


@pytest.fixture
def plugin(tmp_path: Path, server: ServerProcess, api: Api) -> Iterator[Plugin]:
    """The provider plugin, configured against the session's server as `api`'s user."""
    with configured(tmp_path / "plugin.stderr", server.url, str(api.headers["Authorization"]).split()[1]) as process:
        yield process


@pytest.fixture
def anonymous(server: ServerProcess) -> Iterator[Api]:
    """A session without a token."""
    with Api(server.url, None) as session:
        yield session


def start_server(data_dir: Path, database: str | None = None) -> ServerProcess:
    """A server of a test's own, for restart and crash tests (on the PostgreSQL `database`, given its URL)."""
    return ServerProcess(data_dir, database=database).start()


@pytest.fixture(scope="session")
def isolation() -> None:
    """Skip sandbox tests only where this host cannot isolate VMs, saying why."""
    try:
        check_isolation()
    except IsolationUnavailable as exc:
        pytest.skip(f"VM isolation unavailable: {exc}")


@pytest.fixture
def sandbox(isolation: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    """A booted VM with a canary in the server's environment."""
    monkeypatch.setenv(CANARY, "host-secret")
    vm = Sandbox(tmp_path / "vm")
    vm.create_root()
    vm.boot()
    yield vm
    vm.destroy()


# -- a server with fault injection (`--faults`), shared by the suites that arm plans ---------------

@pytest.fixture(scope="session")
def _faults_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("faulty-server")
    with (data_dir.parent / "faulty-server.log").open("w") as log, \
            ServerProcess(data_dir, log=log, args=["--faults"]) as process:
        yield process


@pytest.fixture
def faulty_server(_faults_process: ServerProcess) -> Iterator[ServerProcess]:
    """The reference server with `--faults`; whatever plan a test arms is disarmed after it."""
    yield _faults_process
    requests.delete(_faults_process.url + "/_faults", timeout=10)


def arm(server: ServerProcess, *faults: dict[str, Any]) -> None:
    """Replace the server's fault plan with `faults` (none: disarm); see `server/faults.py`."""
    response = requests.post(server.url + "/_faults", json={"faults": list(faults)}, timeout=10)
    assert response.status_code == 200, response.text


def injected(server: ServerProcess) -> int:
    """How many faults the server has injected so far, of every kind."""
    return sum(requests.get(server.url + "/_faults", timeout=10).json()["injected"].values())
