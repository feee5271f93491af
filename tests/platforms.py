"""What the reliability suites need of each platform, keyed by its name in `server/platforms/__init__.py`.

The suites take their platform list from the server's `PLATFORMS` and look each one up in `KITS`;
`test_every_platform_has_a_kit` fails for a platform registered without one. A kit knows how to
make a place that holds variables (an account's set, a container's map...), read, merge and delete
there, make a workload boot with what is stored, and seed a victim for the isolation suite. Adding a
platform to these suites is one `Kit` subclass here and one line in `KITS`.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import requests

from envvars import sealed_env
from envvars.envfile import PAM_LINE_MAX, login_alteration
from envvars.rules.vertra import MAX_VARIABLES
from envvars_server import workloads
from envvars_server.errors import Envelope, owner
from envvars_server.platforms import PLATFORMS
from envvars_server.sandbox.agent import LOGIN_DEFAULTS
from envvars_server.store import Store
from tests.conftest import Api
from tests.figures import scaled
from tests.stores import SHARE

ENVELOPES: list[Envelope] = [platform.envelope for platform in PLATFORMS] + [workloads.ENVELOPE]
NAMES: list[str] = [platform.name for platform in PLATFORMS]
NO_SUCH_ID = "00000000-0000-0000-0000-000000000000"
WORKLOADS = workloads.PREFIX + "/workloads"


def envelope_of(path: str) -> Envelope:
    """The envelope of the platform (or of the neutral surface) that owns `path`."""
    found = owner(ENVELOPES, path)
    assert found is not None, f"no platform owns {path}"
    return found


def platform_of(path: str) -> str | None:
    """The name of the platform owning `path`; None on the neutral surface."""
    found = owner([platform.envelope for platform in PLATFORMS], path)
    neutral = owner(ENVELOPES, path) is workloads.ENVELOPE
    return None if found is None or neutral else next(p.name for p in PLATFORMS if p.envelope is found)


def envelope_message(path: str, status: int, body: Any) -> str | None:
    """The message of `body` when it is exactly the owning envelope's error body for `status` (else None)."""
    found = envelope_of(path)
    if not isinstance(body, dict):
        return None
    if found.validation_errors and status == found.validation_status:  # FastAPI's HTTPValidationError
        detail = body.get("detail")
        ok = list(body) == ["detail"] and isinstance(detail, list) and detail and all(
            isinstance(item, dict) and set(item) == {"loc", "msg", "type"} for item in detail)
        return str(detail[0]["msg"]) if ok else None
    strings = list(_strings(body))  # codes and messages may sit in nested objects (Sevalla's `data`)
    for message in strings:
        if any(found.body(status, message, code) == body for code in [None, *strings]):
            return message
    return None


def _strings(body: dict[str, Any]) -> Iterator[str]:
    """Every string value of a JSON object, at any depth of nested objects."""
    for value in body.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            yield from _strings(value)


def make_workload(api: Api, platform: str, name: str = "reliability") -> str:
    """A new running workload of the user on the neutral surface; its id."""
    response = api.post(WORKLOADS, json={"platform": platform, "name": name})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def live_workloads(store: Store, platform: str, user_id: str) -> list[str]:
    """The ids of a user's live workloads of a platform, read from the server's store."""
    return [record["id"] for record in store.list_machines(platform, user_id)]


@dataclass
class EnvSet:
    """One place that holds variables for one user (an account's set, a container's map), as its API shows it."""

    platform = ""  # the name of the platform (a class attribute of each subclass)
    # Whether the API writes one variable per request (Sevalla): a merge of several keys is then several requests,
    # never one atomic write, and the suites write one key at a time there.
    per_variable = False
    # The most variables the set may hold, where the platform limits it (Vertra: 25): the suites keep within it.
    max_vars: ClassVar[int | None] = None
    # Whether every write sends the whole set, as the client last read it (Phala: a sealed set, no merge on the
    # server): two clients writing at once would each drop the other's keys, so the suites' writers take turns
    # (readers still read meanwhile, and every read must be one write's set, whole).
    whole_set = False

    api: Api
    targets: dict[str, str]  # path parameters naming it (and a key in it)
    read_url: str
    write_url: str
    key_url: Callable[[str], str]
    workload: str | None = None  # a workload booted with this set (made by `apply` where there is none)
    made: list[str] = field(default_factory=list)  # workloads to remove afterwards
    races: list[str] = field(default_factory=list)  # keys whose write was retried after losing a race (per variable)

    def get(self) -> dict[str, str]:
        """The stored set."""
        response = self.api.get(self.read_url)
        assert response.status_code == 200, response.text
        return self.decode(response)

    def decode(self, response: requests.Response) -> dict[str, str]:  # pragma: no cover (per platform)
        raise NotImplementedError

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:  # pragma: no cover
        """The request that merges `variables` into the set (for `requests.Session.request`)."""
        raise NotImplementedError

    def merge(self, variables: dict[str, str]) -> requests.Response:
        return self.api.request(**self.merge_request(variables))

    def acknowledged(self, response: requests.Response) -> bool:
        """Whether the platform acknowledged a write (a merge, a replace, one of `set_requests`)."""
        return response.status_code == 200

    def merged(self, response: requests.Response) -> dict[str, str] | None:
        """The set a write answered with, if acknowledged (None otherwise); where the API writes one variable per
        request, just that variable."""
        return self.decode(response) if self.acknowledged(response) else None

    def delete(self, key: str) -> requests.Response:
        return self.api.delete(self.key_url(key))

    def delete_answer(self, response: requests.Response) -> str:  # pragma: no cover
        """What a DELETE's answer says: "removed" (the key existed), "absent" (it did not: nothing written),
        "idempotent" (done, whether or not it existed), or "error"."""
        raise NotImplementedError

    def key_params(self, key: str) -> dict[str, str]:
        """The path parameters naming the variable `key` (the key itself, or the variable's id)."""
        return {"key": key}

    def key_urls(self, key: str) -> list[str]:
        """The URLs of the routes that name a variable in their path (its key, or its id: `key_url`), aimed at
        `key`'s; none where no route does (Phala: a set is written whole, so a key travels only in a body)."""
        return [self.key_url(key)]

    def sealed_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        """Writes that carry `key` only inside a sealed (encrypted) set, where the platform takes one: a key no
        schema sees until the server opens it (Phala: a set naming just its other keys in `env_keys`)."""
        return []

    def replace_request(self, variables: dict[str, str]) -> dict[str, Any] | None:
        """The request that replaces the whole set, where the platform has one."""
        return None

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        """Every way the platform offers to set one variable (bulk and single-key), as requests."""
        return [self.merge_request({"GOOD": "1", key: value})]

    def apply(self) -> str:
        """A running workload whose boot received the stored set; its id."""
        raise NotImplementedError  # pragma: no cover

    def synced(self) -> bool | None:
        """Whether the set's workload runs with the stored set, where the platform says (a write that
        changes nothing answers it); None where it does not."""
        return None

    def close(self) -> None:
        """Delete the workloads `apply` made, where the platform can (the quota bounds the others)."""
        for workload in self.made:
            kit(self.platform).remove_workload(self.api, workload)


@dataclass
class Victim:
    """What one platform holds for the isolation suite's victim, and how to tell it is untouched."""

    targets: dict[str, str]  # path parameters naming the victim's objects
    alternates: dict[str, dict[str, str]]  # other targets worth aiming at, by name
    workload: str  # a workload of the victim on the neutral surface
    data: list[str]  # what no other user may ever see
    unchanged: Callable[[], None]
    close: Callable[[], None]


class Kit:
    """A platform's fixtures for the reliability suites."""

    name: str
    deletes_workloads: bool  # whether its API deletes a workload (else only the quota bounds how many a test makes)
    alternates: dict[str, tuple[str, ...]] = {}  # other victim targets, by name: the path parameters they change
    # Fuzzing: the objects a run aims at by name (made by `fuzz_targets`), which path parameters and body
    # properties take which of them, and which one is the workload itself (what the neutral surface takes).
    fuzz_aims: dict[str, tuple[str, ...]] = {}
    fuzz_body_aims: dict[str, str] = {}
    fuzz_query_aims: dict[str, str] = {}  # query parameters an aimed case names the run's object in, where it has them
    workload_target: str = "workload"
    # The share of the slow suites' trials (crash trials, concurrent writes, fuzz cases of its own routes) this
    # platform runs in `make test` (the soak setting runs them all): `make test` must stay well under 20 minutes.
    share = 1.0
    # Its share of the fuzz cases on its own routes, where those cost less than its other trials (None: `share`).
    fuzz_share: float | None = None
    # Whether a workload running when the server stopped boots again with the stored set (its set lived in memory
    # only, gone with it) rather than with the set of its last boot (kept on its disk).
    recovers_with_stored_set = False
    # What another user's object named in a path answers (404 unless the platform documents otherwise).
    foreign_status = 404
    # Where every write is slow (each restarts the workload: Phala), the acknowledged writes a crash trial waits for
    # before its kill, so that each kill still lands after that many; None: the kill lands at a random moment after
    # the first, and the writer must have averaged 8 a crash (`tests/test_durability.py`).
    writes_per_crash: int | None = None

    def fuzz_targets(self, api: Api) -> dict[str, str]:  # pragma: no cover
        """Live objects of the user for a fuzz run to aim at, by target name (`workload_target` among them)."""
        raise NotImplementedError

    def missing(self, response: requests.Response) -> bool:
        """Whether an aimed request's 404 says its object holds nothing the request named (keys to delete), rather
        than that the object itself is gone."""
        return False

    def fuzz_refused_for_state(self, response: requests.Response) -> bool:
        """Whether a schema-valid fuzz case's refusal is for what only the object aimed at makes valid (what no
        schema can say: Phala's blob sealed to the CVM's own key), not a schema the server fails to keep."""
        return False

    def new_workload(self, api: Api) -> str:
        """A new running workload of the user (after a case deleted the one aimed at)."""
        return make_workload(api, self.name)

    def renew_fuzz_target(self, api: Api, target: str, live: dict[str, str]) -> str:
        """A new live object for `target` after a fuzz case deleted the one aimed at (`live`: the run's objects of
        this platform, by target name)."""
        assert target == self.workload_target, f"{self.name} cannot make another {target}"
        return self.new_workload(api)

    def env_set(self, api: Api) -> EnvSet:  # pragma: no cover
        """A new place holding variables for this user."""
        raise NotImplementedError

    def victim(self, api: Api, store: Store, secret: str) -> Victim:  # pragma: no cover
        """Seed the victim's objects, `secret` among their values."""
        raise NotImplementedError

    def remove_workload(self, api: Api, workload: str) -> bool:
        """Delete a workload made on the neutral surface; whether the platform could."""
        return False

    def login_value(self, key: str, value: str) -> str | None:
        """What a login in the platform's workload sees of a stored value (None: nothing), as the platform
        documents it: the value itself unless the platform says otherwise."""
        return value


# -- Vers: one set per account; VMs get it at creation -------------------------------------------

class VersSet(EnvSet):
    platform = "vers"

    def decode(self, response: requests.Response) -> dict[str, str]:
        return dict(response.json()["vars"])

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:
        return {"method": "PUT", "url": self.write_url, "json": {"vars": variables, "replace": False}}

    def replace_request(self, variables: dict[str, str]) -> dict[str, Any]:
        return {"method": "PUT", "url": self.write_url, "json": {"vars": variables, "replace": True}}

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        return [self.merge_request({"GOOD": "1", key: value}), self.replace_request({key: value})]

    def delete_answer(self, response: requests.Response) -> str:
        return {204: "removed", 404: "absent"}.get(response.status_code, "error")

    def apply(self) -> str:
        workload = make_workload(self.api, "vers")
        self.made.append(workload)
        return workload


class VersKit(Kit):
    name = "vers"
    deletes_workloads = True
    alternates = {"commit": ("vm_or_commit_id",)}
    fuzz_aims = {"vm_id": ("vm",), "vm_or_commit_id": ("vm", "commit")}
    fuzz_body_aims = {"commit_id": "commit"}
    workload_target = "vm"

    def fuzz_targets(self, api: Api) -> dict[str, str]:
        """A running VM and a commit of it."""
        vm = self.new_workload(api)
        response = api.post(f"/api/v1/vm/{vm}/commit")
        assert response.status_code == 201, response.text
        return {"vm": vm, "commit": response.json()["commit_id"]}

    def env_set(self, api: Api) -> EnvSet:
        return VersSet(api, {"key": "KEPT", "vm_id": NO_SUCH_ID, "vm_or_commit_id": NO_SUCH_ID},
                       "/api/v1/env_vars", "/api/v1/env_vars", lambda key: f"/api/v1/env_vars/{quote(key)}")

    def remove_workload(self, api: Api, workload: str) -> bool:
        return api.delete(f"/api/v1/vm/{workload}").status_code == 200

    def login_value(self, key: str, value: str) -> str | None:
        """pam_env reading `/etc/environment`, as Vers documents: a value ends at `#`, an over-long line is skipped."""
        if login_alteration(key, value) is None:
            return value
        return value.partition("#")[0] if len(f'{key}="{value}"'.encode()) <= PAM_LINE_MAX else None

    def victim(self, api: Api, store: Store, secret: str) -> Victim:
        """A secret in the account's set, a running VM, a commit, and a second VM nobody else names."""
        variables = {"VICTIM_SECRET": secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        assert api.put("/api/v1/env_vars", json={"vars": variables}).status_code == 200

        def boot() -> str:
            response = api.post("/api/v1/vm/new_root?wait_boot=true", json={"vm_config": {}})
            assert response.status_code == 201, response.text
            return str(response.json()["vm_id"])

        vm, hidden = boot(), boot()
        commit = api.post(f"/api/v1/vm/{vm}/commit").json()["commit_id"]
        user_id = api.get(f"/api/v1/vm/{vm}/metadata").json()["owner_id"]

        def unchanged() -> None:
            assert api.get("/api/v1/env_vars").json()["vars"] == variables
            states = {item["vm_id"]: item["state"] for item in api.get("/api/v1/vm").json()}
            assert states == {vm: "running", hidden: "running"}

        def close() -> None:
            for item in (vm, hidden):
                api.delete(f"/api/v1/vm/{item}")

        targets = {"vm_id": vm, "vm_or_commit_id": vm, "key": "VICTIM_SECRET", "commit_id": commit}
        return Victim(targets, {"commit": targets | {"vm_or_commit_id": commit}}, vm,
                      [*variables.values(), user_id, hidden], unchanged, close)


# -- Hoody: one map per container; a restart boots the container with it ---------------------------

class HoodySet(EnvSet):
    platform = "hoody"

    def decode(self, response: requests.Response) -> dict[str, str]:
        return dict(response.json()["data"]["environment_vars"])

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:
        return {"method": "PATCH", "url": self.write_url, "json": variables}

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        quoted = self.key_url(key)
        return [self.merge_request({"GOOD": "1", key: value}), {"method": "PUT", "url": self.write_url,
                                                                 "json": {"GOOD": "1", key: value}},
                {"method": "PATCH", "url": quoted, "json": {"value": value}},
                {"method": "PUT", "url": quoted, "json": {"value": value}}]

    def delete_answer(self, response: requests.Response) -> str:
        return "idempotent" if response.status_code == 200 else "error"

    def apply(self) -> str:
        assert self.workload is not None
        response = self.api.post(f"/api/v1/containers/{self.workload}/restart")
        assert response.status_code == 200 and response.json()["data"]["synced"] is True, response.text
        return self.workload


    def synced(self) -> bool | None:
        stored = self.get()
        key = next(iter(stored), None)
        assert key is not None, "an empty map cannot be rewritten unchanged"
        response = self.merge({key: stored[key]})
        assert response.status_code == 200, response.text
        return bool(response.json()["data"]["synced"])


class HoodyKit(Kit):
    name = "hoody"
    deletes_workloads = False  # neither Hoody's env API nor the neutral surface deletes a container
    fuzz_aims = {"id": ("container",)}
    workload_target = "container"

    def fuzz_targets(self, api: Api) -> dict[str, str]:
        """A running container."""
        return {"container": self.new_workload(api)}

    def env_set(self, api: Api) -> EnvSet:
        container = make_workload(api, "hoody")
        base = f"/api/v1/containers/{container}/env"
        return HoodySet(api, {"id": container, "key": "KEPT"}, base, base, lambda key: f"{base}/{quote(key)}",
                        workload=container)

    def victim(self, api: Api, store: Store, secret: str) -> Victim:
        """A container holding a secret (booted with it), and a second container nobody else names."""
        variables = {"VICTIM_SECRET": secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        container, hidden = make_workload(api, "hoody", "victim"), make_workload(api, "hoody", "hidden")
        for item in (container, hidden):
            assert api.patch(f"/api/v1/containers/{item}/env", json=variables).status_code == 200
            assert api.post(f"/api/v1/containers/{item}/restart").status_code == 200
        user_id = store.user_for_token(str(api.headers["Authorization"]).split()[1])
        assert user_id is not None

        def unchanged() -> None:
            for item in (container, hidden):
                response = api.get(f"/api/v1/containers/{item}/env")
                assert response.json()["data"]["environment_vars"] == variables, response.text
            records = store.list_machines("hoody", user_id)
            assert {record["id"]: record["state"] for record in records} == {container: "running", hidden: "running"}

        return Victim({"id": container, "key": "VICTIM_SECRET"}, {}, container,
                      [*variables.values(), hidden], unchanged, lambda: None)


# -- Sevalla: one set per application, one object per variable; a deploy boots the app with it -------------

SEVALLA_PAGE = 100  # the most a list page holds: a set the suites read must fit in one page
RACES = 20  # how often a per-variable write retries after losing a race (its key made or removed meanwhile)


def sevalla_code(response: requests.Response) -> str | None:
    """The `data.code` of a Sevalla error answer."""
    try:
        return str(response.json()["data"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class SevallaSet(EnvSet):
    """An application's variables. The API writes one variable per request and names it by its id, so a merge
    looks up each key's id and then creates (POST) or updates (PUT) it, and a delete looks it up and deletes it
    by id (a key with no variable: a DELETE of the nil id, which names none, so the answer says "absent").
    A write that loses a race to another client (POST: the key was made meanwhile, 409; PUT or DELETE: the
    variable was removed meanwhile, 404) looks up again and retries; `races` lists the keys it happened to."""

    platform = "sevalla"
    per_variable = True

    def __post_init__(self) -> None:
        self.key_url = self._key_url  # by the variable's id, looked up when asked

    def decode(self, response: requests.Response) -> dict[str, str]:
        """The set a list page shows (which must be all of it), or the one variable a write answered."""
        body = response.json()
        if "data" not in body:
            return {body["key"]: body["value"]}
        assert body["offset"] == 0 and body["total"] == len(body["data"]), (
            f"a page of {len(body['data'])} of {body['total']} variables: the suites' sets must fit in one")
        return {item["key"]: item["value"] for item in body["data"]}

    def ids(self) -> dict[str, str]:
        """The variables' ids, by key."""
        response = self.api.get(self.read_url)
        assert response.status_code == 200, response.text
        self.decode(response)  # the whole set
        return {item["key"]: item["id"] for item in response.json()["data"]}

    def _var_url(self, var_id: str) -> str:
        return f"{self.write_url}/{var_id}"

    def _key_url(self, key: str) -> str:
        return self._var_url(self.ids().get(key, NO_SUCH_ID))

    def key_params(self, key: str) -> dict[str, str]:
        return {"env_var_id": self.ids().get(key, NO_SUCH_ID)}

    def acknowledged(self, response: requests.Response) -> bool:
        return response.status_code == (201 if response.request.method == "POST" else 200)

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:
        """The one request that sets one variable now: a POST if the key has no variable, else a PUT of its value."""
        assert len(variables) == 1, "Sevalla writes one variable per request"
        [(key, value)] = variables.items()
        var_id = self.ids().get(key)
        if var_id is None:
            return {"method": "POST", "url": self.write_url, "json": {"key": key, "value": value}}
        return {"method": "PUT", "url": self._var_url(var_id), "json": {"value": value}}

    def merge(self, variables: dict[str, str]) -> requests.Response:
        """Each variable in turn (stopping at the first not acknowledged); the last answer."""
        assert variables, "an empty merge writes nothing"
        for key, value in variables.items():
            response = self._set_one(key, value)
            if not self.acknowledged(response):
                break
        return response

    def _set_one(self, key: str, value: str) -> requests.Response:
        for _ in range(RACES):
            request = self.merge_request({key: value})
            response = self.api.request(**request)
            race = (409, "env-var-key-exists") if request["method"] == "POST" else (404, "env-var-not-found")
            if (response.status_code, sevalla_code(response)) != race:
                return response
            self.races.append(key)
        return response

    def delete(self, key: str) -> requests.Response:
        for _ in range(RACES):
            var_id = self.ids().get(key)
            response = self.api.delete(self._var_url(var_id or NO_SUCH_ID))
            if var_id is None or self.delete_answer(response) != "absent":
                return response
            self.races.append(key)  # removed meanwhile: look again
        return response

    def delete_answer(self, response: requests.Response) -> str:
        if response.status_code == 204:
            return "removed"
        return "absent" if (response.status_code, sevalla_code(response)) == (404, "env-var-not-found") else "error"

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        """Create the variable (POST), and update one to it (PUT): its own variable's value where the key has one,
        else a rename of the set's first variable to the key, with the value."""
        ids = self.ids()
        made = {"method": "POST", "url": self.write_url, "json": {"key": key, "value": value}}
        if key in ids:
            return [made, {"method": "PUT", "url": self._var_url(ids[key]), "json": {"value": value}}]
        first = next(iter(ids.values()), None)
        if first is None:
            return [made]
        return [made, {"method": "PUT", "url": self._var_url(first), "json": {"key": key, "value": value}}]

    def apply(self) -> str:
        """Deploy the application: its build and then the app boot with the stored set."""
        assert self.workload is not None
        response = self.api.post(f"{WORKLOADS}/{self.workload}/restart")
        assert response.status_code == 200 and response.json()["state"] == "running", response.text
        return self.workload


class SevallaKit(Kit):
    name = "sevalla"
    deletes_workloads = False  # neither Sevalla's env-var API nor the neutral surface deletes an application
    recovers_with_stored_set = True  # the app's env lives in its memory only (README: "Memory only")
    share = 0.25  # added last, within what is left of the 20 minutes; each recovery also deploys the app again
    fuzz_aims = {"id": ("application",), "env_var_id": ("variable",)}
    workload_target = "application"

    def fuzz_targets(self, api: Api) -> dict[str, str]:
        """A running application and a variable of it."""
        application = self.new_workload(api)
        return {"application": application, "variable": self._variable(api, application)}

    def renew_fuzz_target(self, api: Api, target: str, live: dict[str, str]) -> str:
        if target == "variable":
            return self._variable(api, live["application"])
        return super().renew_fuzz_target(api, target, live)

    @staticmethod
    def _variable(api: Api, application: str) -> str:
        response = api.post(f"/v3/applications/{application}/env-vars",
                            json={"key": f"FUZZ_{uuid.uuid4().hex}", "value": "v"})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def env_set(self, api: Api) -> EnvSet:
        application = make_workload(api, "sevalla")
        base = f"/v3/applications/{application}/env-vars"
        return SevallaSet(api, {"id": application, "env_var_id": NO_SUCH_ID}, f"{base}?limit={SEVALLA_PAGE}", base,
                          lambda key: "", workload=application)  # `key_url`: by id, set in `__post_init__`

    def victim(self, api: Api, store: Store, secret: str) -> Victim:
        """An application holding a secret (deployed with it), and a second one nobody else names."""
        variables = {"VICTIM_SECRET": secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        app, hidden = make_workload(api, "sevalla", "victim"), make_workload(api, "sevalla", "hidden")
        ids: dict[str, dict[str, str]] = {}
        for item in (app, hidden):
            for key, value in variables.items():
                response = api.post(f"/v3/applications/{item}/env-vars", json={"key": key, "value": value})
                assert response.status_code == 201, response.text
                ids.setdefault(item, {})[key] = response.json()["id"]
            assert api.post(f"{WORKLOADS}/{item}/restart").status_code == 200
        user_id = store.user_for_token(str(api.headers["Authorization"]).split()[1])
        assert user_id is not None

        def unchanged() -> None:
            for item in (app, hidden):
                response = api.get(f"/v3/applications/{item}/env-vars")
                assert response.status_code == 200, response.text
                listed = {var["key"]: (var["value"], var["id"]) for var in response.json()["data"]}
                assert listed == {key: (value, ids[item][key]) for key, value in variables.items()}
            records = store.list_machines("sevalla", user_id)
            assert {record["id"]: record["state"] for record in records} == {app: "running", hidden: "running"}

        return Victim({"id": app, "env_var_id": ids[app]["VICTIM_SECRET"]}, {}, app,
                      [*variables.values(), hidden, *ids[hidden].values()], unchanged, lambda: None)


# -- Vertra: one set per app, written by key in bulk; a restart starts the app with it --------------------------

@dataclass
class VertraSet(EnvSet):
    """An app's variables: merged with `PUT .../environments`, deleted with `DELETE .../envs` and the keys (a key
    the app does not have: 404 `ENVIRONMENTS_NOT_FOUND`, "absent"), or by the variable's id (`key_url`)."""

    platform = "vertra"
    max_vars = MAX_VARIABLES

    def __post_init__(self) -> None:
        self.key_url = lambda key: f"{self.read_url}/{self.key_params(key)['envId']}"

    def decode(self, response: requests.Response) -> dict[str, str]:
        return {item["key"]: item["value"] for item in response.json()["response"]}

    def key_params(self, key: str) -> dict[str, str]:
        response = self.api.get(self.read_url)
        assert response.status_code == 200, response.text
        return {"envId": next((item["id"] for item in response.json()["response"] if item["key"] == key),
                              NO_SUCH_ID)}

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:
        return {"method": "PUT", "url": self.write_url, "json": {"environments": vertra_entries(variables)}}

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        """`PUT .../environments`, and `POST .../envs` with one object, a bare array, and the wrapper."""
        both = vertra_entries({"GOOD": "1", key: value})
        return [self.merge_request({"GOOD": "1", key: value}),
                *({"method": "POST", "url": self.read_url, "json": body}
                  for body in ({"key": key, "value": value}, both, {"environments": both}))]

    def delete(self, key: str) -> requests.Response:
        return self.api.request("DELETE", self.read_url, json={"keys": [key]})

    def delete_answer(self, response: requests.Response) -> str:
        if response.status_code == 200:
            return "removed"
        return "absent" if vertra_missing(response) else "error"

    def apply(self) -> str:
        assert self.workload is not None
        response = self.api.post(f"/v1/apps/{self.workload}/restart")
        assert response.status_code == 200, response.text
        return self.workload


def vertra_entries(variables: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in variables.items()]


def vertra_missing(response: requests.Response) -> bool:
    """Whether a Vertra answer says the app has no variable the request named (so the app itself was found)."""
    try:
        return (response.status_code, response.json().get("code")) == (404, "ENVIRONMENTS_NOT_FOUND")
    except (ValueError, AttributeError):
        return False


class VertraKit(Kit):
    name = "vertra"
    deletes_workloads = False  # neither Vertra's env API nor the neutral surface deletes an app
    share = 0.25  # added last, within what is left of the 20 minutes
    fuzz_aims = {"id": ("app",), "envId": ("variable",)}
    fuzz_body_aims = {"keys": "key"}  # a delete by key names the run's own variable of that key
    fuzz_query_aims = {"workspace_id": "workspace"}
    workload_target = "app"

    def fuzz_targets(self, api: Api) -> dict[str, str]:
        """A running app, a variable of it, and the workspace it belongs to (from its restart's answer)."""
        app = self.new_workload(api)
        restarted = api.post(f"/v1/apps/{app}/restart")
        assert restarted.status_code == 200, restarted.text
        return {"app": app, "variable": self._variable(api, app)["id"], "key": self._variable(api, app)["key"],
                "workspace": restarted.json()["response"]["workspace_id"]}

    def renew_fuzz_target(self, api: Api, target: str, live: dict[str, str]) -> str:
        if target in ("variable", "key"):
            return self._variable(api, live["app"])["id" if target == "variable" else "key"]
        return super().renew_fuzz_target(api, target, live)

    def missing(self, response: requests.Response) -> bool:
        return vertra_missing(response)

    @staticmethod
    def _variable(api: Api, app: str) -> dict[str, str]:
        """A new variable of the app (room made first: fuzz cases may have filled it); its id and key."""
        key = f"FUZZ_{uuid.uuid4().hex}"
        listed = api.get(f"/v1/apps/{app}/envs").json()["response"]
        if len(listed) >= MAX_VARIABLES:
            assert api.delete(f"/v1/apps/{app}/envs/{listed[0]['id']}").status_code == 200
        response = api.put(f"/v1/apps/{app}/environments", json={"environments": [{"key": key, "value": "v"}]})
        assert response.status_code == 200, response.text
        return {"id": next(item["id"] for item in response.json()["response"] if item["key"] == key), "key": key}

    def env_set(self, api: Api) -> EnvSet:
        app = make_workload(api, "vertra")
        base = f"/v1/apps/{app}"
        return VertraSet(api, {"id": app, "envId": NO_SUCH_ID}, f"{base}/envs", f"{base}/environments",
                         lambda key: "", workload=app)  # `key_url`: by id, set in `__post_init__`

    def victim(self, api: Api, store: Store, secret: str) -> Victim:
        """An app holding a secret (restarted with it), and a second one nobody else names."""
        variables = {"VICTIM_SECRET": secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        app, hidden = make_workload(api, "vertra", "victim"), make_workload(api, "vertra", "hidden")
        listed: dict[str, list[dict[str, Any]]] = {}
        for item in (app, hidden):
            response = api.put(f"/v1/apps/{item}/environments", json={"environments": vertra_entries(variables)})
            assert response.status_code == 200, response.text
            listed[item] = response.json()["response"]
            assert api.post(f"/v1/apps/{item}/restart").status_code == 200
        user_id = store.user_for_token(str(api.headers["Authorization"]).split()[1])
        assert user_id is not None

        def unchanged() -> None:
            for item in (app, hidden):
                response = api.get(f"/v1/apps/{item}/envs")
                assert response.status_code == 200 and response.json()["response"] == listed[item], response.text
            records = store.list_machines("vertra", user_id)
            assert {record["id"]: record["state"] for record in records} == {app: "running", hidden: "running"}

        return Victim({"id": app, "envId": listed[app][0]["id"]}, {}, app,
                      [*variables.values(), hidden, *(item["id"] for item in listed[hidden])], unchanged,
                      lambda: None)


# -- Phala: one sealed set per CVM, replaced whole by every update; the CVM restarts with it ----------------------

class PhalaSet(EnvSet):
    """A CVM's set. Phala never shows values, so the set is read where it is delivered: inside the CVM, once an
    update is applied (every write sends all its keys as `env_keys`, so the CVM gets the whole stored set). A write
    reads the set, changes it, seals all of it to the app's key and waits until the CVM runs with it."""

    platform = "phala"
    whole_set = True

    def decode(self, response: requests.Response) -> dict[str, str]:
        """The set a login in the CVM sees (its login defaults left out), or the one a write sent."""
        sent: dict[str, str] | None = getattr(response, "sealed_set", None)
        if sent is not None:
            return sent
        return {key: value for key, value in response.json()["vars"].items() if key not in LOGIN_DEFAULTS}

    def cvm(self) -> dict[str, Any]:
        response = self.api.get(self.write_url.removesuffix("/envs"))
        assert response.status_code == 200, response.text
        return dict(response.json())

    def settled(self) -> None:
        """Wait until no update is being applied."""
        deadline = time.monotonic() + 60
        while self.cvm()["in_progress"]:
            assert time.monotonic() < deadline, "an update of the CVM never finished"
            time.sleep(0.01)

    def write_request(self, variables: dict[str, str]) -> dict[str, Any]:
        """The request that makes `variables` the whole set."""
        blob = sealed_env.seal(self.cvm()["kms_info"]["encrypted_env_pubkey"], variables)
        body = {"encrypted_env": blob, "env_keys": sorted(variables)}
        return {"method": "PATCH", "url": self.write_url, "json": body}

    def write(self, variables: dict[str, str]) -> requests.Response:
        """Make `variables` the whole set (after any update in progress), and wait until the CVM runs with it."""
        self.settled()
        response = self.api.request(**self.write_request(variables))
        if response.status_code == 202:
            response.sealed_set = variables  # type: ignore[attr-defined]  (what `decode` answers for a write)
            self.settled()
        return response

    def merge_request(self, variables: dict[str, str]) -> dict[str, Any]:
        self.settled()
        return self.write_request(self.get() | variables)

    def merge(self, variables: dict[str, str]) -> requests.Response:
        self.settled()
        return self.write(self.get() | variables)

    def acknowledged(self, response: requests.Response) -> bool:
        return response.status_code == 202

    def delete(self, key: str) -> requests.Response:
        self.settled()
        return self.write({name: value for name, value in self.get().items() if name != key})

    def delete_answer(self, response: requests.Response) -> str:
        return "idempotent" if response.status_code == 202 else "error"

    def set_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        return [self.merge_request({"GOOD": "1", key: value})]

    def key_urls(self, key: str) -> list[str]:
        return []  # every route names the CVM, none a variable

    def sealed_requests(self, key: str, value: str) -> list[dict[str, Any]]:
        """The stored set and `key`, sealed, with the stored keys as `env_keys` (which alone a schema checks)."""
        self.settled()
        stored = self.get()
        request = self.write_request(stored | {key: value})
        request["json"]["env_keys"] = sorted(stored)
        return [request]

    def apply(self) -> str:
        """Every update restarts the CVM with the set: it runs with it once the update is applied."""
        assert self.workload is not None
        self.settled()
        return self.workload


def no_key_url(key: str) -> str:
    raise AssertionError(f"no route names the variable {key!r}: every write is the whole set (`key_urls`)")


class PhalaKit(Kit):
    name = "phala"
    deletes_workloads = False  # neither Phala's env API nor the neutral surface deletes a CVM
    recovers_with_stored_set = True  # a CVM's env lives in its memory only (a TEE's)
    share = 0.02  # added last, within what is left of the 20 minutes: every write restarts the CVM (~0.3 s)
    fuzz_share = 0.25  # most fuzz cases are refused before any restart (only a blob sealed to the CVM opens)
    fuzz_aims = {"cvm_id": ("cvm",)}
    fuzz_body_aims = {"encrypted_env": "blob"}  # a blob opens only with the CVM's key: no fuzzed one does
    workload_target = "cvm"
    foreign_status = 403  # "CVM not in workspace", as Phala documents
    writes_per_crash = 8  # each write waits for the CVM's restart

    def fuzz_targets(self, api: Api) -> dict[str, str]:
        """A running CVM, and a set sealed to its key."""
        cvm = self.new_workload(api)
        public = api.get(f"/api/v1/cvms/{cvm}").json()["kms_info"]["encrypted_env_pubkey"]
        return {"cvm": cvm, "blob": sealed_env.seal(public, {"FUZZ": "fuzz"})}

    def fuzz_refused_for_state(self, response: requests.Response) -> bool:
        """A 422 about the sealed blob only: a blob opens only with the CVM's own key, which no fuzzed one is
        sealed to."""
        detail = response.json().get("detail") if response.status_code == 422 else None
        return isinstance(detail, list) and bool(detail) and all(
            isinstance(item, dict) and item.get("loc") == ["body", "encrypted_env"] for item in detail)

    def env_set(self, api: Api) -> EnvSet:
        cvm = make_workload(api, "phala")
        return PhalaSet(api, {"cvm_id": cvm}, f"{WORKLOADS}/{cvm}/environment", f"/api/v1/cvms/{cvm}/envs",
                        no_key_url, workload=cvm)

    def victim(self, api: Api, store: Store, secret: str) -> Victim:
        """A CVM holding a secret (running with it), and a second one nobody else names."""
        variables = {"VICTIM_SECRET": secret, "VICTIM_OTHER": f"victim-other-{uuid.uuid4()}"}
        sets = [self.env_set(api) for _ in range(2)]
        for env_set in sets:
            assert env_set.acknowledged(env_set.merge(variables))
        cvm, hidden = (str(env_set.workload) for env_set in sets)
        app_id = sets[1].cvm()["app_id"]  # type: ignore[attr-defined]

        def unchanged() -> None:
            for env_set in sets:
                assert env_set.get() == variables

        return Victim({"cvm_id": cvm}, {}, cvm, [*variables.values(), hidden, app_id], unchanged, lambda: None)


def quote(key: str) -> str:
    return requests.utils.quote(key, safe="")


KITS: dict[str, Kit] = {kit.name: kit for kit in (VersKit(), HoodyKit(), SevallaKit(), VertraKit(), PhalaKit())}


def trials(name: str, normal: int, soak: int, *, fuzz: bool = False, store: str = "sqlite") -> int:
    """How many trials of a slow suite (`fuzz`: fuzz cases) the platform `name` runs on `store`: its kit's share of
    `normal`, and the store's (`stores.SHARE`), in `make test`; `soak` in `make soak`."""
    found = kit(name)
    share = found.fuzz_share if fuzz and found.fuzz_share is not None else found.share
    return scaled(max(1, round(normal * share * SHARE[store])), soak)


def kit(name: str) -> Kit:
    """The kit of a registered platform."""
    assert name in KITS, f"platform {name!r} has no kit in tests/platforms.py: add one to run the reliability suites"
    return KITS[name]


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)
