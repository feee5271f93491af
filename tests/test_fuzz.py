"""Fuzzing every operation of the served OpenAPI document with schemathesis, with a valid token and with none.

Each operation gets a seeded run of positive and negative cases (the same cases for the same
command and code; ENVVARS_SOAK scales the count). Every response must be a documented status with
a body matching its documented schema, never a 5xx; schema-invalid requests must be refused and
schema-valid ones accepted (save a 400 naming what the VM's filesystem holds, which no document
can express); every error must be in the owning platform's envelope; with the token, no case may
answer 401.

`max_examples` is a ceiling, not a count: hypothesis ends a run early, and silently, when its
strategies run dry or it rejects too many examples. So each run counts the requests it really sent
and the distinct ones among them (the test-case id header schemathesis adds to every request is
left out, or every request would be distinct), and both must reach a floor near the setting (for
distinct requests, among the cases not aimed at real objects: an operation whose only input is the
object it names has one aimed request per object).

Operations that name a platform's object (a VM or commit id, a container id, a workload id on the
neutral surface) also get cases aimed at real objects of the fuzz user, made by the platform's kit
in `tests/platforms.py` (a VM and a commit for each run; one container for the module, as nothing
deletes a container), so the routes are exercised past their 404; those cases keep `count` at 1 and
commands under a 5 s timeout, so a case cannot boot 100 VMs or run forever. They carry a valid token and
name objects that exist, so a 401, 403 or 404 means the server lost or refused what it should have
found, and fails the run; the exceptions, operation by operation:
- GET and PUT /vm/{vm_id}/files: 404 from the guest agent for a path the VM does not hold (a file
  to read; a parent directory to write into, without `create_dirs`); the VM itself lost would be
  "VM '<id>' not found", which still fails, and so does a 404 for /etc/environment, which every VM
  holds (its boot wrote it; aimed reads of it are generated too, so the read route gets its 200s).
- DELETE /vm/{vm_id}: none; once a case has deleted the run's VM, the run boots another, so the
  next aimed case names a live VM again.
- branch (aimed: `count` 1) and from_commit: none; their 403 is the VM quota (20 live VMs), and the
  fuzz user holds at most the run's VM and the one a case just made (deleted at once).
- metadata, state, commit, exec, every Hoody route, the workloads surface's: none.
- every Sevalla route, aimed at the run's application and a variable of it (made by `POST`; a case that
  deletes the variable makes the run make another): none.
- every Vertra route, aimed at the run's app (its workspace in `workspace_id` where a case has it) and a variable
  of it: a 404 `ENVIRONMENTS_NOT_FOUND` (the app holds none of the keys a delete names), which the kit tells
  from the app being lost.
`POST /_envvars/v1/workloads` makes a workload for each schema-valid case: a VM is deleted at once;
a container cannot be, so a run makes at most MAX_UNDELETABLE of each such platform (the cases past
it are not sent), well within the 20 per user and platform the quota allows. Every VM the fuzz user
created is deleted."""

from __future__ import annotations

import hashlib
import importlib
import itertools
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
from schemathesis.core import SCHEMATHESIS_TEST_CASE_HEADER
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

from envvars_server.launch import ServerProcess
from tests import openapi_doc, platforms
from tests.conftest import TOKEN_HEADERS, Api, credential
from tests.figures import figure, scaled

SEED = 20261123
CASES = scaled(100, 2000)


def cases_for(path: str) -> int:
    """The cases a run of an operation gets: CASES, or on a platform's own routes its kit's share of 200 [2,000]."""
    platform = platforms.platform_of(path)
    return CASES if platform is None else platforms.trials(platform, 200, 2000, fuzz=True)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, positive_data_acceptance]
MAX_UNDELETABLE = 3  # workloads a run of POST /_envvars/v1/workloads may make of a platform that cannot delete them
# The only 400s a schema-valid request may get: the document cannot say what a VM's filesystem holds, which deploy
# phases a workload has (its platform's: Sevalla's `build` and `runtime`, none elsewhere), how many variables a set
# already holds (against a limit on the set after the write), nor that the keys of one request's items differ.
STATE_DEPENDENT = re.compile(r"is (not )?a directory|is not a regular file|outside the VM's root filesystem|"
                             r"have no phase .*: they have |the set would hold \d+ after this change|"
                             r"appears more than once in one request", re.DOTALL)
# The guest agent's 404 (`not_found`) for a path the VM does not hold: "<path> does not exist", or "directory <dir>
# does not exist (set create_dirs ...)" for a write; a lost VM reads "VM '<id>' not found" instead.
MISSING_IN_VM = re.compile(r"(directory )?/.* does not exist", re.DOTALL)


def placeholder(platform: str, target: str) -> str:
    """Aimed cases are generated with placeholders; each is replaced by the run's live id when the case is sent."""
    return f"the-runs-real-{platform}-{target}"


REAL_VM = placeholder("vers", "vm")
# A file every VM holds (its boot wrote it): aimed reads of it must succeed, so the read route is exercised past 404.
VM_FILE = "/etc/environment"
# Floors, as fractions of the cases wanted (CASES, or a platform's share of them), against what was measured at
# both settings (200 and 2000 cases; Sevalla's routes: 50 and 2000). Cases really sent: every run sends all of them.
# Distinct requests, for an operation that takes input: 0.46 at the fewest (metadata with the token, whose aimed
# cases are all one request); for one without input, where only the token varies: 0.12 and 0.097 without a token,
# and with a valid one a single request exists. Aimed cases: 0.21 and 0.27 at the fewest.
CASES_FLOOR, DISTINCT_FLOOR, DISTINCT_FLOOR_NO_INPUT, AIMED_FLOOR = 0.9, 0.35, 0.08, 0.15
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
    kept.clear()
    yield token
    headers = credential(platforms.envelope_of("/api/v1/vm").token_header, token)
    for vm in requests.get(server.url + "/api/v1/vm", headers=headers, timeout=60).json():
        requests.delete(f"{server.url}/api/v1/vm/{vm['vm_id']}", headers=headers, timeout=60)
    assert requests.get(server.url + "/api/v1/vm", headers=headers, timeout=60).json() == []


def envelope_violation(path: str, status: int, response: requests.Response) -> str | None:
    """Why an error response is not in the envelope of the platform owning `path` (None when it is)."""
    try:
        body = response.json()
    except ValueError:
        return f"{status} body is not JSON: {response.text[:200]!r}"
    if platforms.envelope_message(path, status, body) is None:
        return f"{status} body is not the platform's envelope: {response.text[:200]!r}"
    return None


def state_dependent(failure: Exception, path: str, response: requests.Response) -> bool:
    """A schema-valid request refused for what the VM holds (a path that is a directory, or is not), or for what
    the platform's kit says only the object aimed at makes valid (`Kit.fuzz_refused_for_state`)."""
    platform = platforms.platform_of(path)
    kit_says = platform is not None and platforms.kit(platform).fuzz_refused_for_state(response)
    return type(failure).__name__ == "RejectedPositiveData" and (bool(STATE_DEPENDENT.search(response.text))
                                                                  or kit_says)


def created_workloads(path: str, response: requests.Response) -> list[tuple[str, str]]:
    """(platform, id) of each workload a 201 names: Vers' VMs, or one made on the neutral surface."""
    if response.status_code != 201:
        return []
    body = response.json()
    if "platform" in body and "id" in body:
        return [(body["platform"], body["id"])]
    vms = [body["vm_id"]] if "vm_id" in body else [vm["vm_id"] for vm in body.get("vms", [])]
    return [(platforms.platform_of(path) or "vers", vm) for vm in vms]


def body_properties(operation: Any) -> set[str]:
    """The property names of an operation's JSON request body."""
    body = operation.definition.raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    body_schema = body.get("schema", {})
    if "$ref" in body_schema:
        body_schema = operation.schema.raw_schema["components"]["schemas"][body_schema["$ref"].rsplit("/", 1)[-1]]
    return set(body_schema.get("properties", {}))


def aimed_params(path: str) -> dict[str, list[str]]:
    """The placeholders each path parameter of an operation is aimed at: its platform's objects, or on the
    neutral surface every platform's workload."""
    platform = platforms.platform_of(path)
    if platform is None:
        return {"workload_id": [placeholder(name, platforms.kit(name).workload_target) for name in platforms.NAMES]}
    aims = platforms.kit(platform).fuzz_aims
    return {name: [placeholder(platform, target) for target in aims[name]] for name in aims}


def aimed_body(path: str, method: str) -> dict[str, str]:
    """The placeholders body properties of an operation are aimed at."""
    platform = platforms.platform_of(path)
    properties = openapi_doc.body_schema(method, path) or {}
    aims = platforms.kit(platform).fuzz_body_aims if platform else {}
    return {name: placeholder(platform or "", target) for name, target in aims.items()
            if name in properties.get("properties", {})}


def aimed_query(path: str) -> dict[str, str]:
    """The placeholders query parameters of an operation are aimed at (where an aimed case has them)."""
    platform = platforms.platform_of(path)
    aims = platforms.kit(platform).fuzz_query_aims if platform else {}
    return {name: placeholder(platform or "", target) for name, target in aims.items()}


def aimed_platforms(method: str, path: str) -> list[str]:
    """The platforms whose objects an operation's aimed cases name."""
    params = set(platforms.path_params(path)) & set(aimed_params(path))
    if not params and not aimed_body(path, method):
        return []
    platform = platforms.platform_of(path)
    return [platform] if platform else list(platforms.NAMES)


def strategy(operation: Any, aims: bool) -> Any:
    """Positive and negative cases of `operation`, plus (if `aims`) positive ones aimed at the run's real objects."""
    parts = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    targets = aimed_params(operation.path) if aims else {}
    names = sorted(set(platforms.path_params(operation.path)) & set(targets))
    # Every aimed parameter at once (an application and a variable of it), each combination of their targets.
    for combination in itertools.product(*(targets[name] for name in names)) if names else []:
        query = {"count": 1} if "vm_or_commit_id" in names else None
        parts.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=dict(zip(names, combination,
                                                                                             strict=True)),
                                           query=query))
    for name, target in (aimed_body(operation.path, operation.method.upper()) if aims else {}).items():
        # A property that is a list of names (keys to delete) names the target alone; with the path's own targets.
        listed = (openapi_doc.body_schema(operation.method.upper(), operation.path) or {})["properties"][name].get(
            "type") == "array"
        params = {name: targets[name][0] for name in names}
        parts.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=params or None,
                                           body={name: [target] if listed else target}))
    if aims and operation.method.upper() == "GET" and operation.path.endswith("/files"):
        parts.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"vm_id": REAL_VM},
                                           query={"path": VM_FILE}))
    return st.one_of(parts)


def named_target(value: Any, live: dict[str, str]) -> str | None:
    """The placeholder a body property holds (as a string, or a list of just it), if any."""
    single = value[0] if isinstance(value, list) and len(value) == 1 else value
    return single if isinstance(single, str) and single in live else None


def aim(case: Any, live: dict[str, str]) -> bool:
    """Put the run's live ids in place of the placeholders (and in the query parameters an aimed case has that name
    its objects); whether the case names any."""
    params = case.path_parameters or {}
    aimed = {name: live[value] for name, value in params.items() if isinstance(value, str) and value in live}
    if aimed:
        case.path_parameters = {**params, **aimed}
        query = {name: live[target] for name, target in aimed_query(case.path).items()
                 if name in (case.query or {}) and target in live}
        case.query = {**(case.query or {}), **query} if query else case.query
    if isinstance(case.body, dict):
        body = {name: live[found] if isinstance(value, str) else [live[found]] for name, value in case.body.items()
                if (found := named_target(value, live))}
        if body:
            case.body = {**case.body, **body}
            return True
    return bool(aimed)


def legitimate_miss(case: Any, response: requests.Response) -> bool:
    """An aimed case's 404 that is not the server losing the VM: the path named is not in the VM (files only)."""
    if response.status_code != 404 or not case.path.endswith("/files") or (case.query or {}).get("path") == VM_FILE:
        return False
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, str) and MISSING_IN_VM.match(error) is not None


def bounded(case: Any) -> None:
    """Keep a command aimed at a real VM from running for long (`timeout_secs` 0 means no timeout)."""
    body = case.body
    if case.path.endswith("/exec") and isinstance(body, dict) and isinstance(body.get("command"), list):
        timeout = body.get("timeout_secs")
        body["timeout_secs"] = min(timeout, 5) if isinstance(timeout, int) and timeout > 0 else 5


kept: dict[str, dict[str, str]] = {}  # the fuzz user's objects of platforms that cannot delete them, for the module


def real_targets(server: ServerProcess, token: str, names: list[str]) -> dict[str, str]:
    """Live objects of the fuzz user on each platform of `names`, by placeholder."""
    live: dict[str, str] = {}
    with Api(server.url, token) as api:
        for name in names:
            kit = platforms.kit(name)
            made = kept.get(name) or kit.fuzz_targets(api)
            if not kit.deletes_workloads:
                kept[name] = made
            live |= {placeholder(name, target): value for target, value in made.items()}
    return live


def remove(server: ServerProcess, token: str, workloads: list[tuple[str, str]]) -> None:
    """Delete workloads of the fuzz user, where their platform can."""
    with Api(server.url, token) as api:
        for platform, workload in workloads:
            platforms.kit(platform).remove_workload(api, workload)


def undeletable(case: Any) -> str | None:
    """The platform of a workload this case would make, if that platform cannot delete it."""
    body = case.body
    if case.method.upper() != "POST" or case.path != platforms.WORKLOADS or not isinstance(body, dict):
        return None
    name = body.get("platform")
    return name if name in platforms.KITS and not platforms.kit(name).deletes_workloads else None


def distinct_floor(method: str, path: str, auth: str) -> int:
    """The fewest distinct requests a run of this operation and mode must send."""
    definition = openapi_doc.operation(method, path)
    if definition.get("parameters") or definition.get("requestBody"):
        return int(DISTINCT_FLOOR * cases_for(path))
    return 1 if auth == "token" else int(DISTINCT_FLOOR_NO_INPUT * cases_for(path))


def fingerprint(request: requests.PreparedRequest) -> str:
    """What makes a request distinct: all of it but the test-case id schemathesis adds to every request."""
    headers = sorted((k, v) for k, v in request.headers.items() if k.lower() != SCHEMATHESIS_TEST_CASE_HEADER.lower())
    body = request.body.encode() if isinstance(request.body, str) else request.body or b""
    return hashlib.sha256(f"{request.method} {request.url} {headers} ".encode() + body).hexdigest()


@pytest.mark.parametrize("auth", ["token", "none"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzz_operation(server: ServerProcess, schema: Any, fuzz_token: str, method: str, path: str,
                        auth: str) -> None:
    operation = schema[path][method]
    # The token goes where the operation's platform reads it (its envelope's `token_header`).
    headers = credential(platforms.envelope_of(path).token_header, fuzz_token) if auth == "token" else {}
    aimed_at = aimed_platforms(method, path) if auth == "token" else []
    targets = real_targets(server, fuzz_token, aimed_at)
    made: dict[str, int] = {}  # workloads the run made of platforms that cannot delete them
    cases: list[int] = []
    distinct: set[str] = set()
    statuses: dict[int, int] = {}
    aimed_statuses: dict[int, int] = {}
    failures: list[str] = []
    session = requests.Session()

    wanted = cases_for(path)

    @hypothesis.settings(max_examples=wanted, database=None, deadline=None, derandomize=False,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @hypothesis.seed(SEED)
    @hypothesis.given(case=strategy(operation, bool(targets)))
    def run(case: Any) -> None:
        # With a token, every case carries it; cases about a missing or malformed token run without one.
        hypothesis.assume(auth == "none" or not schema.is_security_param_negated(case))
        maker = undeletable(case) if auth == "token" else None
        if maker is not None:
            hypothesis.assume(made.get(maker, 0) < MAX_UNDELETABLE)
            made[maker] = made.get(maker, 0) + 1
        bounded(case)
        via_body = isinstance(case.body, dict) and any(named_target(value, targets) for value in case.body.values())
        aimed = aim(case, targets)
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in TOKEN_HEADERS} | headers
        response = case.call(base_url=server.url, session=session, timeout=60)
        status = response.status_code
        cases.append(status)
        statuses[status] = statuses.get(status, 0) + 1
        if not aimed:
            distinct.add(fingerprint(response.request))
        if aimed:
            aimed_statuses[status] = aimed_statuses.get(status, 0) + 1
            platform = platforms.platform_of(case.path)
            missing = platform is not None and platforms.kit(platform).missing(response)
            if status in (401, 403, 404) and not legitimate_miss(case, response) and not missing:
                failures.append(f"{case.method} {case.formatted_path} with a valid token, aimed at the fuzz user's "
                                f"real objects: {status} {response.text[:200]!r}")
            last = platforms.path_params(case.path)[-1:]
            ends_with = bool(last) and case.path.endswith("{" + last[0] + "}")  # not /{id}/envs: its variables
            if case.method == "DELETE" and 200 <= status < 300 and platform:
                kit = platforms.kit(platform)
                gone = kit.fuzz_aims.get(last[0], ()) if ends_with else ()
                named = [target for name in case.body if (target := kit.fuzz_body_aims.get(name))] if via_body else []
                gone = tuple(named) or gone
                if len(gone) == 1:  # the case deleted the run's object (a workload, a variable)
                    with Api(server.url, fuzz_token) as api:  # the next aimed case names a live one again
                        live = {target: targets[placeholder(platform, target)] for aims in kit.fuzz_aims.values()
                                for target in aims}
                        renewed = kit.renew_fuzz_target(api, gone[0], live)
                    targets[placeholder(platform, gone[0])] = renewed
                    if platform in kept:
                        kept[platform] = {**kept[platform], gone[0]: renewed}
        elif auth == "token" and status == 401:
            failures.append(f"{case.method} {case.formatted_path} with a valid token: 401 {response.text[:200]!r}")
        try:
            remove(server, fuzz_token, created_workloads(case.path, response))
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as exc:
            if not all(state_dependent(failure, case.path, response) for failure in exc.exceptions):
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
        remove(server, fuzz_token, [(name, targets[placeholder(name, platforms.kit(name).workload_target)])
                                    for name in aimed_at if platforms.kit(name).deletes_workloads])
    server_errors = sum(count for status, count in statuses.items() if status >= 500)
    aimed = sum(aimed_statuses.values())
    figure(f"fuzz {method} {path} ({auth})", cases=len(cases), distinct_not_aimed=len(distinct),
           statuses=json.dumps(dict(sorted(statuses.items()))), aimed=aimed,
           aimed_statuses=json.dumps(dict(sorted(aimed_statuses.items()))), server_errors=server_errors,
           failures=len(failures))
    assert failures == [], "\n\n".join(failures[:5]).replace(fuzz_token, "<token>")
    assert server_errors == 0
    assert len(cases) >= CASES_FLOOR * wanted, f"only {len(cases)} of {wanted} cases ran"
    free = len(cases) - aimed
    assert len(distinct) >= distinct_floor(method, path, auth) * free / len(cases), (
        f"only {len(distinct)} distinct of {free} cases not aimed")
    if targets:
        assert aimed >= AIMED_FLOOR * wanted, f"only {aimed} of {len(cases)} cases aimed at real objects"
        assert any(200 <= status < 300 for status in aimed_statuses), "no aimed case succeeded"


def test_the_workloads_surface_documents_the_platform_list() -> None:
    """`NewWorkload.platform` is an enum of the platform list: any other name is refused, so the document says so."""
    schema = openapi_doc.resolve(openapi_doc.body_schema("POST", platforms.WORKLOADS) or {})
    assert schema["properties"]["platform"]["enum"] == platforms.NAMES


def key_schemas(platform: str) -> list[tuple[str, dict[str, Any]]]:
    """Every schema the document gives a platform's variable keys: keyed path parameters and map property names."""
    found = []
    for method, path in OPERATIONS:
        if platforms.platform_of(path) != platform:
            continue
        for parameter in openapi_doc.operation(method, path).get("parameters", []):
            if parameter["name"] == "key":
                found.append((f"{method} {path} key", parameter["schema"]))
        body = openapi_doc.body_schema(method, path) or {}
        for where in (body, *(openapi_doc.resolve(s) for s in body.get("properties", {}).values())):
            if "propertyNames" in where:
                found.append((f"{method} {path} body keys", where["propertyNames"]))
    return found


# Where the document calls a request valid that the server refuses: a server bug, reported; strict, so a fix shows.
RESERVED_UNDOCUMENTED: dict[str, str] = {}


@pytest.mark.parametrize("platform", [
    pytest.param(name, marks=pytest.mark.xfail(reason=RESERVED_UNDOCUMENTED[name], strict=True))
    if name in RESERVED_UNDOCUMENTED else name for name in platforms.NAMES])
def test_reserved_key_prefixes_are_in_the_documented_key_schemas(platform: str) -> None:
    """Each reserved prefix of a platform's rules is excluded (`not`) by every key schema of its operations."""
    prefixes = importlib.import_module(f"envvars.rules.{platform}").RULES.reserved_prefixes
    schemas = key_schemas(platform)
    assert schemas or not prefixes, f"{platform} reserves {prefixes} but documents no key schema"
    missing = [where for where, schema in schemas for prefix in prefixes if prefix not in json.dumps(schema.get("not"))]
    assert missing == []
