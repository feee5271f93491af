"""Fuzzing every operation of the served OpenAPI document with schemathesis, with a valid token and with none.

Each operation gets a seeded run of positive and negative cases (the same cases for the same
command and code; ENVVARS_SOAK scales the count). Every response must be a documented status with
a body matching its documented schema, never a 5xx; schema-invalid requests must be refused and
schema-valid ones accepted (save a 400 naming what the VM's filesystem holds, which no document
can express); every error must be in the owning platform's envelope. Operations that take a VM or
commit id also get cases aimed at a real VM and commit of the fuzz user, so the VM routes are
exercised past their 404; those cases keep `count` at 1 and commands under a 5 s timeout, so a case
cannot boot 100 VMs or run forever. Every VM the fuzz user created is deleted."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from envvars_server.app import PLATFORMS
from envvars_server.launch import ServerProcess
from tests import openapi_doc
from tests.figures import figure, scaled

SEED = 20261123
CASES = scaled(200, 2000)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, positive_data_acceptance]
ENVELOPES = [platform.ENVELOPE for platform in PLATFORMS]
VM_ID_PARAMS = ("vm_id", "vm_or_commit_id")
# The only 400s a schema-valid request may get: the document cannot say what a VM's filesystem holds.
STATE_DEPENDENT = re.compile(r"is (not )?a directory|is not a regular file|outside the VM's root filesystem")
OPERATIONS = openapi_doc.operations()


@pytest.fixture(scope="module")
def schema(server: ServerProcess) -> Any:
    """The OpenAPI document the running server serves, loaded by schemathesis."""
    served = requests.get(server.url + "/openapi.json", timeout=30).json()
    assert sorted((m.upper(), p) for p, ops in served["paths"].items() for m in ops) == sorted(OPERATIONS)
    return schemathesis.openapi.from_dict(served)


@pytest.fixture(scope="module")
def fuzz_token(server: ServerProcess) -> Iterator[str]:
    """The fuzz user's token; every VM the user still has is deleted afterwards, and none may be left."""
    token = server.token("fuzz")
    yield token
    headers = {"Authorization": f"Bearer {token}"}
    for vm in requests.get(server.url + "/api/v1/vm", headers=headers, timeout=60).json():
        requests.delete(f"{server.url}/api/v1/vm/{vm['vm_id']}", headers=headers, timeout=60)
    assert requests.get(server.url + "/api/v1/vm", headers=headers, timeout=60).json() == []


def envelope_violation(path: str, status: int, response: requests.Response) -> str | None:
    """Why an error response is not in the envelope of the platform owning `path` (None when it is)."""
    owner = next((e for e in ENVELOPES if path.startswith(e.prefix)), None)
    if owner is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{status} body is not JSON: {response.text[:200]!r}"
    messages = [value for value in body.values() if isinstance(value, str)] if isinstance(body, dict) else []
    if not any(owner.render(status, message) == body for message in messages):
        return f"{status} body is not the platform's envelope: {response.text[:200]!r}"
    return None


def state_dependent(failure: Exception, response: requests.Response) -> bool:
    """A schema-valid request refused for what the VM holds (a path that is a directory, or is not)."""
    return type(failure).__name__ == "RejectedPositiveData" and bool(STATE_DEPENDENT.search(response.text))


def created_vm_ids(response: requests.Response) -> list[str]:
    """The VM ids a 201 of a VM-creating operation names."""
    if response.status_code != 201:
        return []
    body = response.json()
    return [body["vm_id"]] if "vm_id" in body else [vm["vm_id"] for vm in body.get("vms", [])]


def body_properties(operation: Any) -> set[str]:
    """The property names of an operation's JSON request body."""
    body = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    body_schema = body.get("schema", {})
    if "$ref" in body_schema:
        body_schema = operation.schema.raw_schema["components"]["schemas"][body_schema["$ref"].rsplit("/", 1)[-1]]
    return set(body_schema.get("properties", {}))


def strategy(operation: Any, targets: dict[str, str]) -> Any:
    """Positive and negative cases of `operation`, plus positive ones aimed at the fuzz user's real VM/commit."""
    parts = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    for name in set(re.findall(r"\{(\w+)\}", operation.path)) & set(targets and VM_ID_PARAMS):
        for target in ([targets["vm"], targets["commit"]] if name == "vm_or_commit_id" else [targets["vm"]]):
            query = {"count": 1} if name == "vm_or_commit_id" else None
            parts.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={name: target}, query=query))
    if targets and "commit_id" in body_properties(operation):
        parts.append(operation.as_strategy(GenerationMode.POSITIVE, body={"commit_id": targets["commit"]}))
    return st.one_of(parts)


def bounded(case: Any) -> None:
    """Keep a command aimed at a real VM from running for long (`timeout_secs` 0 means no timeout)."""
    body = case.body
    if case.path.endswith("/exec") and isinstance(body, dict) and isinstance(body.get("command"), list):
        timeout = body.get("timeout_secs")
        body["timeout_secs"] = min(timeout, 5) if isinstance(timeout, int) and timeout > 0 else 5


def real_targets(server: ServerProcess, token: str) -> dict[str, str]:
    """A running VM of the fuzz user and a commit of it."""
    headers = {"Authorization": f"Bearer {token}"}
    vm = requests.post(server.url + "/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}},
                       headers=headers, timeout=60).json()["vm_id"]
    commit = requests.post(f"{server.url}/api/v1/vm/{vm}/commit", headers=headers, timeout=60).json()["commit_id"]
    return {"vm": vm, "commit": commit}


@pytest.mark.parametrize("auth", ["token", "none"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(server: ServerProcess, schema: Any, fuzz_token: str, method: str, path: str,
                        auth: str) -> None:
    operation = schema[path][method]
    headers = {"Authorization": f"Bearer {fuzz_token}"} if auth == "token" else {}
    aims_at_vms = any(n in path for n in VM_ID_PARAMS) or path.endswith("/from_commit")
    targets = real_targets(server, fuzz_token) if auth == "token" and aims_at_vms else {}
    cases: list[int] = []
    distinct: set[str] = set()
    statuses: dict[int, int] = {}
    failures: list[str] = []
    session = requests.Session()

    @hypothesis.settings(max_examples=CASES, database=None, deadline=None, derandomize=False,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.seed(SEED)
    @hypothesis.given(case=strategy(operation, targets))
    def run(case: Any) -> None:
        # With a token, every case carries it; cases about a missing or malformed token run without one.
        hypothesis.assume(auth == "none" or not schema.is_security_param_negated(case))
        bounded(case)
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"} | headers
        response = case.call(base_url=server.url, session=session, timeout=60)
        cases.append(response.status_code)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        request = response.request
        sent = f"{request.method} {request.url} {sorted(request.headers.items())} {request.body!r}"
        distinct.add(hashlib.sha256(sent.encode()).hexdigest())
        try:
            for vm_id in created_vm_ids(response):
                requests.delete(f"{server.url}/api/v1/vm/{vm_id}", headers=headers, timeout=60)
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            if not all(state_dependent(failure, response) for failure in exc.exceptions):
                failures.append(str(exc).replace(fuzz_token, "<token>"))
        if response.status_code >= 400:
            problem = envelope_violation(case.path, response.status_code, response)
            if problem:
                failures.append(f"{case.method} {case.path}: {problem}")
        if auth == "none" and response.status_code != 401:
            failures.append(f"{case.method} {case.path} without a token: {response.status_code}")

    try:
        run()
    finally:
        session.close()
        for vm_id in [targets.get("vm")] if targets else []:
            requests.delete(f"{server.url}/api/v1/vm/{vm_id}", headers={"Authorization": f"Bearer {fuzz_token}"},
                            timeout=60)
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    figure(f"fuzz {method} {path} ({auth})", cases=len(cases), distinct=len(distinct),
           statuses=json.dumps(dict(sorted(statuses.items()))), server_errors=server_errors,
           failures=len(failures))
    assert failures == [], "\n\n".join(failures[:5])
    assert server_errors == 0
