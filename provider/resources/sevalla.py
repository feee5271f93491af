"""Sevalla resources: one variable of an application (`EnvVar`) and many of them (`EnvVars`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from envvars.diff import diff_keys
from envvars.rules import describe
from envvars.rules.sevalla import RULES
from envvars_provider.claims import Claim, Others
from envvars_provider.clients.sevalla import (
    ID_PATTERN,
    PARALLEL,
    ApplicationNotFound,
    KeyExists,
    SevallaClient,
    Variable,
    VariableNotFound,
)
from envvars_provider.config import Config, Setting, auth_hint
from envvars_provider.errors import PartialApply, ProviderError
from envvars_provider.parallel import Outcome, each
from envvars_provider.platform import Platform
from envvars_provider.resources.base import BOOLEAN, STRING, STRING_MAP, Prop, Resource
from envvars_provider.resources.checks import imported, keys_claim, rule_failures, variable_failures
from envvars_provider.values import UNKNOWN

URL = Setting("sevalla_url", "Base URL of the Sevalla API (the provider adds `/v3/...`; a URL ending in `/v3` means "
              "the same). Falls back to SEVALLA_URL.", "SEVALLA_URL", default="https://api.sevalla.com", is_url=True)
API_KEY = Setting("sevalla_api_key", "API key for the Sevalla API (a secret). Falls back to SEVALLA_API_KEY.",
                  "SEVALLA_API_KEY", secret=True, label="Sevalla API key", placeholder="KEY")
FLAGS = ("is_runtime", "is_buildtime")
APPLICATION_ID = Prop("application_id", STRING, "The application's id, a uuid such as "
                      "`fb5e5168-4281-4bec-94c5-0d1584e9e657`. Changing it replaces the resource: the variables are "
                      "created in the new application and removed from the old one.",
                      required=True, replace_on_change=True)
IS_RUNTIME = "Whether the variable reaches the running application (from its next deployment). Default: true."
IS_BUILDTIME = "Whether the variable reaches the build step (from its next deployment). Default: true."


def scope(app_id: str) -> str:
    """The claims of one application: resources on other applications may manage the same keys."""
    return f"sevalla:{app_id}"


def reach_warnings(inputs: dict[str, Any], what: str) -> list[str]:
    """A warning when both flags are off: the variables are stored but reach neither the build nor the app."""
    if inputs.get("is_runtime") is False and inputs.get("is_buildtime") is False:
        return [f"{what} isRuntime and isBuildtime both false: stored, but seen by neither the build nor the "
                "running app; set one of them to true"]
    return []


def app_id_failures(app_id: Any) -> list[tuple[str, str]]:
    """A Check failure when `app_id` (known) is not an id Sevalla takes."""
    if not isinstance(app_id, str) or app_id == UNKNOWN or ID_PATTERN.fullmatch(app_id):
        return []
    return [("application_id", f"applicationId must be a Sevalla application id, a uuid such as "
                               f"fb5e5168-4281-4bec-94c5-0d1584e9e657, got {app_id[:64]!r}")]


class SevallaResource(Resource):
    """A resource of the Sevalla API; one client per resource type."""

    settings: ClassVar[tuple[Setting, ...]] = (URL, API_KEY)

    def __init__(self, config: Config):
        super().__init__(config)
        self.client = SevallaClient(str(config.sevalla_url), config.sevalla_api_key, auth_hint(API_KEY))


class EnvVar(SevallaResource):
    """One variable of an application."""

    token: ClassVar[str] = "envvars:sevalla:EnvVar"
    description: ClassVar[str] = (
        "One environment variable of a Sevalla application, a variable object of its own. Other variables of "
        "the application are never touched. Changing `applicationId` or `key` replaces the resource; changing "
        "`value`, `isRuntime` or `isBuildtime` updates it in place with one request. Changes reach the "
        "application at its next deployment: the build sees the variables with `isBuildtime`, the running app "
        "those with `isRuntime`.\n\n"
        "Creating a variable whose key the application already has takes that variable over (as an upsert "
        "would). Import with the application's and the variable's ids: "
        "`pulumi import envvars:sevalla:EnvVar NAME APPLICATION_ID/ENV_VAR_ID`."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        APPLICATION_ID,
        Prop("key", STRING, f"The variable's name. {describe(RULES)} Changing it replaces the resource.",
             required=True, replace_on_change=True),
        Prop("value", STRING, "The value (rules as for `key`). Sevalla stores it encrypted; always stored as a "
             "Pulumi secret.", required=True, secret=True),
        Prop("is_runtime", BOOLEAN, IS_RUNTIME, default=True),
        Prop("is_buildtime", BOOLEAN, IS_BUILDTIME, default=True),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("env_var_id", STRING, "The variable's id on Sevalla.", required=True),
        Prop("created_at", STRING, "When Sevalla created the variable (RFC 3339).", required=True),
        Prop("updated_at", STRING, "When Sevalla last changed the variable (RFC 3339).", required=True),
    )

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return app_id_failures(inputs.get("application_id")) + \
            variable_failures(RULES, inputs.get("key"), inputs.get("value"))

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        key = inputs.get("key")
        return reach_warnings(inputs, f"env var {key!r} has" if isinstance(key, str) and key != UNKNOWN else
                              "the variable has")

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        app_id, key = inputs.get("application_id"), inputs.get("key")
        if not isinstance(app_id, str) or app_id == UNKNOWN or not isinstance(key, str) or key == UNKNOWN:
            return None
        return Claim(scope(app_id), frozenset([key]))

    def preview(self, olds: Mapping[str, Any] | None, news: Mapping[str, Any]) -> dict[str, Any]:
        """An update in place keeps the variable's id and creation time."""
        if olds is None:
            return super().preview(olds, news)
        return {**news, "env_var_id": olds.get("env_var_id"), "created_at": olds.get("created_at"),
                "updated_at": UNKNOWN}

    @staticmethod
    def _state(app_id: str, variable: Variable) -> dict[str, Any]:
        return {"application_id": app_id, "key": variable.key, "value": variable.value,
                "is_runtime": variable.is_runtime, "is_buildtime": variable.is_buildtime,
                "env_var_id": variable.id, "created_at": variable.created_at, "updated_at": variable.updated_at}

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        app_id = inputs["application_id"]
        variable = self.client.put(app_id, inputs["key"], inputs["value"], inputs["is_runtime"],
                                   inputs["is_buildtime"])
        return f"{app_id}/{variable.id}", self._state(app_id, variable)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        """One PUT of the fields that changed."""
        app_id, var_id = news["application_id"], olds.get("env_var_id") or resource_id.partition("/")[2]
        fields = {name: news[name] for name in ("value", *FLAGS) if news[name] != olds.get(name)}
        if not fields:
            return {**olds, **news}
        try:
            variable = self.client.update(app_id, var_id, **fields)
        except VariableNotFound:
            raise ProviderError(f"variable {news['key']!r} ({var_id}) of application {app_id!r} was deleted outside "
                                "Pulumi: run `pulumi up --refresh` to create it again") from None
        return self._state(app_id, variable)

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        app_id, slash, var_id = resource_id.partition("/")
        if not state and (not slash or not ID_PATTERN.fullmatch(app_id) or not ID_PATTERN.fullmatch(var_id)):
            raise ProviderError(f"import id {resource_id!r} is not APPLICATION_ID/ENV_VAR_ID (two uuids)")
        app_id, var_id = state.get("application_id") or app_id, state.get("env_var_id") or var_id
        listed = self.client.list(app_id)
        found = next((variable for variable in listed or [] if variable.id == var_id), None)
        return None if found is None else self._state(app_id, found)

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        app_id = state["application_id"]
        with others(scope(app_id)) as kept:
            if not kept.covers(state["key"]):  # else renamed or replaced in place, or the key handed on
                self.client.delete(app_id, state.get("env_var_id") or resource_id.partition("/")[2])


class EnvVars(SevallaResource):
    """Many variables of one application."""

    token: ClassVar[str] = "envvars:sevalla:EnvVars"
    description: ClassVar[str] = (
        "Environment variables of a Sevalla application, by key, with shared `isRuntime` and `isBuildtime` "
        "flags. Only the listed keys are managed: other variables of the application are never touched, and "
        "deleting the resource deletes only its keys. Sevalla takes one variable per request, so the "
        f"provider sends one request per changed variable, {PARALLEL} at a time. Changes reach the application "
        "at its next deployment.\n\n"
        "Import with the application's id to adopt all its variables "
        "(`pulumi import envvars:sevalla:EnvVars NAME APPLICATION_ID`), or with the id and a comma-separated "
        "key list to adopt just those (`pulumi import envvars:sevalla:EnvVars NAME APPLICATION_ID/KEY1,KEY2`); "
        "the adopted variables must agree on each flag."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        APPLICATION_ID,
        Prop("vars", STRING_MAP, f"The variables, by key. {describe(RULES)} Always stored as Pulumi secrets.",
             required=True, secret=True),
        Prop("is_runtime", BOOLEAN, IS_RUNTIME.replace("the variable reaches", "the variables reach"), default=True),
        Prop("is_buildtime", BOOLEAN, IS_BUILDTIME.replace("the variable reaches", "the variables reach"),
             default=True),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("env_var_ids", STRING_MAP, "The id on Sevalla of each variable, by key.", required=True),
    )

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return app_id_failures(inputs.get("application_id")) + \
            rule_failures(RULES, "vars", inputs.get("vars"), one_request=False)

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        return reach_warnings(inputs, "its variables have")

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        return keys_claim(scope, inputs.get("application_id"), inputs.get("vars"))

    def preview(self, olds: Mapping[str, Any] | None, news: Mapping[str, Any]) -> dict[str, Any]:
        """An update keeps the ids of the keys it keeps; they are unknown only when keys are added."""
        ids, variables = (olds or {}).get("env_var_ids") or {}, news.get("vars")
        if olds is None or not isinstance(variables, dict) or variables.keys() - ids.keys():
            return super().preview(olds, news)
        return {**news, "env_var_ids": {key: ids[key] for key in variables}}

    # -- CRUD -------------------------------------------------------------------------------

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        app_id = inputs["application_id"]
        return app_id, self._apply(app_id, {}, inputs, None)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        return self._apply(resource_id, olds, news, others)

    def _apply(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any],
               others: Others | None) -> dict[str, Any]:
        """One request per variable to write (all of them when a flag changes), then one per key given up that
        no resource claims, `PARALLEL` at a time; a failure reports exactly the state reached."""
        app_id, new_vars = news["application_id"], news["vars"]
        old_vars, old_ids = olds.get("vars") or {}, dict(olds.get("env_var_ids") or {})
        flags = {name: bool(news[name]) for name in FLAGS}
        changed_flags = {name: value for name, value in flags.items() if olds and olds.get(name) != value}
        changes = diff_keys(old_vars, new_vars)
        writes = [key for key in sorted(new_vars)
                  if key not in old_ids or key in changes.updated or changed_flags]

        def write(key: str) -> Variable:
            var_id = old_ids.get(key)
            if var_id is not None:
                fields = {**({"value": new_vars[key]} if key in changes.updated else {}), **changed_flags}
                try:
                    return self.client.update(app_id, var_id, **fields)
                except VariableNotFound:
                    pass  # deleted out of band since the last refresh: create it again
            return self.client.create(app_id, key, new_vars[key], flags["is_runtime"], flags["is_buildtime"])

        written = each(writes, write, PARALLEL)
        self._take_over(app_id, written, new_vars, flags)
        reached = dict(old_vars)
        ids = dict(old_ids)
        for key, variable in written.done.items():
            reached[key], ids[key] = new_vars[key], variable.id
        deleted: Outcome[str, None] = Outcome()
        if changes.deleted and others is not None:
            with others(scope(app_id)) as kept:
                handed = [key for key in changes.deleted if kept.covers(key)]  # to another resource of this program
                gone = [key for key in changes.deleted if key not in handed and key not in ids]
                deleted = each([key for key in changes.deleted if key in ids and not kept.covers(key)],
                               lambda key: self.client.delete(app_id, ids[key]), PARALLEL)
            for key in [*handed, *gone, *deleted.done]:
                reached.pop(key, None)
                ids.pop(key, None)
        state = {**news, "vars": reached, "env_var_ids": {key: ids[key] for key in reached if key in ids}}
        failure = written.first_failure() or deleted.first_failure()
        if failure is None:
            return state
        key, error = failure
        failures = len(written.failed) + len(deleted.failed)
        message = f"{'writing' if key in written.failed else 'removing'} key {key!r} failed: {error}" + \
            (f" (and {failures - 1} more of {len(writes) + len(changes.deleted)} requests)" if failures > 1 else "")
        if not written.done and not deleted.done:
            raise ProviderError(message)  # nothing changed
        if changed_flags and written.failed:  # some variables keep their old flags: the next up writes them all
            state |= {name: olds[name] for name in changed_flags}
        raise PartialApply(message, resource_id, state)

    def _take_over(self, app_id: str, written: Outcome[str, Variable], new_vars: dict[str, str],
                   flags: dict[str, bool]) -> None:
        """Adopt the variables whose keys the application already had (an upsert, as on the other platforms):
        one list, then one PUT each that differs."""
        taken = sorted(key for key, error in written.failed.items() if isinstance(error, KeyExists))
        if not taken:
            return
        try:
            existing = {variable.key: variable for variable in self.client.list(app_id) or []}
        except ProviderError:
            return  # they stay failures

        def adopt(key: str) -> Variable:
            found = existing.get(key)
            if found is None:  # deleted in between
                return self.client.create(app_id, key, new_vars[key], flags["is_runtime"], flags["is_buildtime"])
            fields = found.differs(new_vars[key], flags["is_runtime"], flags["is_buildtime"])
            return self.client.update(app_id, found.id, **fields) if fields else found

        adopted = each(taken, adopt, PARALLEL)
        for key in taken:
            del written.failed[key]
        written.done |= adopted.done
        written.failed |= adopted.failed

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        app_id = state.get("application_id") or resource_id.split("/", 1)[0]
        listed = self.client.list(app_id)
        if listed is None:
            return None  # the application is gone
        by_key = {variable.key: variable for variable in listed}
        if not state:  # import: `APPLICATION_ID` adopts its variables, `APPLICATION_ID/KEY1,KEY2` just those
            chosen = imported(RULES, resource_id, by_key, f"application {app_id!r}",
                              "APPLICATION_ID or APPLICATION_ID/KEY1,KEY2")
            state = {"vars": {key: variable.value for key, variable in chosen.items()},
                     **{name: self._imported_flag(name, chosen) for name in FLAGS}}
        current = {key: by_key[key] for key in state.get("vars") or {} if key in by_key}
        flags = {}
        for name in FLAGS:
            was = state.get(name) is not False
            # Out of band, some variables took the other value: report that, so the next up writes the flag to all.
            flags[name] = was if all(getattr(v, name) == was for v in current.values()) else not was
        return {"application_id": app_id, "vars": {key: variable.value for key, variable in current.items()},
                **flags, "env_var_ids": {key: variable.id for key, variable in current.items()}}

    @staticmethod
    def _imported_flag(name: str, chosen: dict[str, Variable]) -> bool:
        """The flag the imported variables share (true, the default, when there are none)."""
        values = {getattr(variable, name) for variable in chosen.values()}
        if len(values) > 1:
            on = sorted(key for key, variable in chosen.items() if getattr(variable, name))
            raise ProviderError(f"cannot import these variables as one resource: {', '.join(map(repr, on))} have "
                                f"{name} true and the others false; import each group with APPLICATION_ID/KEY1,KEY2")
        return values.pop() if values else True

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        app_id, ids = state["application_id"], dict(state.get("env_var_ids") or {})
        with others(scope(app_id)) as kept:
            keys = [key for key in sorted(state.get("vars") or {}) if not kept.covers(key)]
            if any(key not in ids for key in keys):
                try:
                    listed = self.client.list(app_id)
                except ApplicationNotFound:
                    listed = None
                ids |= {variable.key: variable.id for variable in listed or [] if variable.key not in ids}
            deleted = each([key for key in keys if key in ids], lambda key: self.client.delete(app_id, ids[key]),
                           PARALLEL)
        failure = deleted.first_failure()
        if failure is not None:
            raise ProviderError(f"removing key {failure[0]!r} failed: {failure[1]}")


PLATFORM = Platform("sevalla", "Sevalla", settings=SevallaResource.settings, resources=(EnvVar, EnvVars))
