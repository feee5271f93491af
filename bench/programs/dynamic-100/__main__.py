"""Benchmark baseline of up_100_vars_vs_dynamic: the same `count` env vars as `envvar-100`, each a
resource of a Pulumi dynamic provider that calls the same Vers API with requests.

Like the native provider, it reads where the API lives from VERS_URL / VERS_API_KEY (in the
provider host's environment, so the token never lands in the state), keeps one HTTP session per
process, writes a variable with one PUT, and marks values secret.
"""

import os
from typing import Any

import pulumi
import requests
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult


class VersEnvVarProvider(ResourceProvider):
    """One variable of the account: PUT to set it, DELETE to remove it."""

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        session = getattr(self, "session", None)
        if session is None:
            session = self.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {os.environ['VERS_API_KEY']}"
        response = session.request(method, os.environ["VERS_URL"] + path, timeout=60, **kwargs)
        if response.status_code not in (200, 204, 404):
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def create(self, props: dict[str, Any]) -> CreateResult:
        self._call("PUT", "/api/v1/env_vars", json={"vars": {props["key"]: props["value"]}, "replace": False})
        return CreateResult(id_=props["key"], outs=dict(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [name for name in ("key", "value") if olds.get(name) != news.get(name)]
        return DiffResult(changes=bool(changed), replaces=["key"] if "key" in changed else [],
                          delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self._call("PUT", "/api/v1/env_vars", json={"vars": {news["key"]: news["value"]}, "replace": False})
        return UpdateResult(outs=dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        stored = self._call("GET", "/api/v1/env_vars").json()["vars"]
        return ReadResult(id_=id_, outs={"key": id_, "value": stored[id_]} if id_ in stored else {})

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        self._call("DELETE", f"/api/v1/env_vars/{id_}")


class EnvVar(Resource):
    """A Vers env var through the dynamic provider."""

    def __init__(self, name: str, key: str, value: str):
        super().__init__(VersEnvVarProvider(), name, {"key": key, "value": pulumi.Output.secret(value)})


count = pulumi.Config().get_int("count") or 100
for n in range(count):
    EnvVar(f"var-{n}", key=f"BENCH_VAR_{n}", value=f"value-{n}")
