"""Vertra resources: the environment variables of an app (`AppEnvironments`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

from envvars.diff import diff_keys
from envvars.rules import describe, show_key
from envvars.rules.vertra import MAX_NOTE_LEN, RULES
from envvars_provider.claims import Claim, Others
from envvars_provider.clients.vertra import AppNotFound, LimitExceeded, VertraClient
from envvars_provider.config import Setting, auth_hint
from envvars_provider.errors import PartialApply, ProviderError
from envvars_provider.platform import Platform
from envvars_provider.resources.base import BOOLEAN, STRING, STRING_MAP, Diff, Prop, Resource
from envvars_provider.resources.checks import imported, keys_claim, rule_failures

URL = Setting("vertra_url", "Base URL of the Vertra API (the provider adds `/v1/...`; a URL ending in `/v1` means "
              "the same). Falls back to VERTRA_URL.", "VERTRA_URL", default="https://api.vertracloud.app", is_url=True)
TOKEN = Setting("vertra_token", "Bearer token for the Vertra API (a secret). Falls back to VERTRA_TOKEN.",
                "VERTRA_TOKEN", secret=True, label="Vertra token", placeholder="TOKEN")
LIMIT = RULES.max_resulting


def scope(app_id: str) -> str:
    """The claims of one app, however it is named (`APP_ID` or `APP_ID-ORG_ID`): resources on other apps may
    manage the same keys."""
    return f"vertra:{app_id.partition('-')[0]}"


def note_failures(notes: Any, variables: Any) -> list[tuple[str, str]]:
    """Check failures of the notes: each describes a key of `vars` and fits Vertra's length."""
    if not isinstance(notes, dict):
        return []
    failures = []
    for key in sorted(notes):
        note = notes[key]
        if isinstance(variables, dict) and key not in variables:
            failures.append(("notes", f"notes has a note for {show_key(key)}, which is not in vars: a note describes "
                                      "one of the resource's variables"))
        elif isinstance(note, str) and len(note) > MAX_NOTE_LEN:
            failures.append(("notes", f"note of env var {show_key(key)} is too long: {len(note)} chars, the limit "
                                      f"is {MAX_NOTE_LEN}"))
    return failures


class AppEnvironments(Resource):
    """Some variables of one app."""

    token: ClassVar[str] = "envvars:vertra:AppEnvironments"
    description: ClassVar[str] = (
        "Environment variables of a Vertra app, with an optional note each. Only the listed keys are managed: "
        "other variables of the app are never touched, and deleting the resource deletes only its keys. An apply "
        "sends one request for every key to create or edit and one for every key to remove.\n\n"
        f"Vertra holds at most {LIMIT} variables per app: a resource listing more fails at preview, and an apply "
        "that would take the app past the limit (with variables other resources or other clients set) fails "
        "naming it, having written none of its variables.\n\n"
        "A change is stored at once but reaches the running app when it restarts; with `restartOnChange: true` "
        "the provider restarts the app after every apply that changes its variables.\n\n"
        "Import with the app's id to adopt all its variables (`pulumi import envvars:vertra:AppEnvironments NAME "
        "APP_ID`), or with the id and a comma-separated key list to adopt just those "
        "(`pulumi import envvars:vertra:AppEnvironments NAME APP_ID/KEY1,KEY2`)."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("app_id", STRING, "The app's id; for an app of an organization, `APP_ID-ORG_ID`. Changing it replaces "
             "the resource: its keys are written to the new app and removed from the old one.",
             required=True, replace_on_change=True),
        Prop("vars", STRING_MAP, f"The variables, by key. {describe(RULES)} Always stored as Pulumi secrets.",
             required=True, secret=True),
        Prop("notes", STRING_MAP, "A note for some of the variables, by key (each key must be in `vars`; at most "
             f"{MAX_NOTE_LEN} chars), shown beside them in Vertra. Notes are not secret. A variable without a note "
             "here has none on Vertra.",
             server_default={}),
        Prop("restart_on_change", BOOLEAN, "Whether to restart the app after an apply that changes its variables "
             "(destroy included), and at the next apply while `restartPending` is true, so changes take effect at "
             "once. Default: false, which leaves them for the app's next restart.", default=False),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("restart_pending", BOOLEAN, "Whether variables this resource wrote wait for a restart of the app: true "
             "after an apply that changed them without restarting it (`restartOnChange` false, or the restart "
             "failed), false once the provider restarted it. A restart made outside Pulumi is not seen.",
             required=True),
    )
    settings: ClassVar[tuple[Setting, ...]] = (URL, TOKEN)

    @cached_property
    def client(self) -> VertraClient:
        """The client of the configured API."""
        return VertraClient(str(self.config.vertra_url), self.config.vertra_token, auth_hint(TOKEN, "token"))

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        variables, notes = inputs.get("vars"), inputs.get("notes")
        failures = rule_failures(RULES, "vars", variables, one_request=False)  # an empty map writes nothing
        if inputs.get("app_id") == "":
            failures.insert(0, ("app_id", "appId must be a Vertra app's id"))
        return failures + note_failures(notes, variables)

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        return keys_claim(scope, inputs.get("app_id"), inputs.get("vars"))

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """The per-key diff, plus a pending restart that `restartOnChange` now asks for."""
        result = super().diff(olds, news)
        if news.get("restart_on_change") is True and olds.get("restart_pending") is True:
            result.owe("restartPending")
        return result

    # -- CRUD -------------------------------------------------------------------------------

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        app_id = inputs["app_id"]
        return app_id, self._apply(app_id, {}, inputs, None)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        return self._apply(resource_id, olds, news, others)

    def _apply(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any],
               others: Others | None) -> dict[str, Any]:
        """Remove the keys given up that no resource claims (one request), then create or edit the keys whose
        value or note changed (one request), then restart if asked. Removing first makes room under the limit;
        a failure after the removal reports the state reached."""
        app_id, new_vars, new_notes = news["app_id"], news["vars"], news.get("notes") or {}
        old_vars, old_notes = olds.get("vars") or {}, olds.get("notes") or {}
        changes = diff_keys(old_vars, new_vars)
        removed: list[str] = []
        if changes.deleted and others is not None:
            with others(scope(app_id)) as kept:
                removed = [key for key in changes.deleted if not kept.covers(key)]  # others handed on
                if removed:
                    self.client.remove(app_id, removed)
        pending = bool(removed) or olds.get("restart_pending") is True
        kept_vars = {key: value for key, value in old_vars.items() if key in new_vars}
        upserts = [key for key in sorted(new_vars)
                   if key in changes.upserts or old_notes.get(key) != new_notes.get(key)]
        if upserts:
            entries = [{"key": key, "value": new_vars[key], "note": new_notes.get(key)} for key in upserts]
            try:
                self.client.upsert(app_id, entries)
            except ProviderError as exc:
                message = self._upsert_failure(app_id, len(upserts), new_vars, exc)
                if not removed:
                    raise ProviderError(message) from None
                reached = {**news, "vars": kept_vars, "restart_pending": True,
                           "notes": {key: note for key, note in old_notes.items() if key in kept_vars} or None}
                raise PartialApply(message, resource_id, reached) from None
            pending = True
        if news["restart_on_change"] and pending:
            try:
                self.client.restart(app_id)
            except ProviderError as exc:
                raise PartialApply(f"the variables are stored but restarting app {app_id!r} failed: {exc}",
                                   resource_id, {**news, "restart_pending": True}) from None
            pending = False
        return {**news, "restart_pending": pending}

    def _upsert_failure(self, app_id: str, count: int, variables: dict[str, str], error: ProviderError) -> str:
        """What a failed write tells the user; past the limit, how many variables of the app are not this resource's."""
        message = f"writing {count} variable(s) to app {app_id!r} failed, none of them written: {error}"
        if not isinstance(error, LimitExceeded):
            return message
        try:
            listed = self.client.variables(app_id) or {}
        except ProviderError:
            return message
        foreign = len(listed.keys() - variables.keys())
        return (f"{message}. The app holds {foreign} variable(s) this resource does not manage (set by another "
                f"resource or outside Pulumi) and this resource manages {len(variables)}: together more than "
                f"Vertra's {LIMIT} per app. Remove variables from the app or from this resource")

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        app_id = state.get("app_id") or resource_id.split("/", 1)[0]
        listed = self.client.variables(app_id)
        if listed is None:
            return None  # the app is gone
        if not state:  # import: `APP_ID` adopts its variables, `APP_ID/KEY1,KEY2` just those
            state = {"vars": imported(RULES, resource_id, listed, f"app {app_id!r}", "APP_ID or APP_ID/KEY1,KEY2")}
        found = [listed[key] for key in sorted(state.get("vars") or {}) if key in listed]
        notes = {variable.key: variable.note for variable in found if variable.note is not None}
        return {"app_id": app_id, "vars": {variable.key: variable.value for variable in found},
                "notes": notes or None, "restart_on_change": state.get("restart_on_change") is True,
                "restart_pending": state.get("restart_pending") is True}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        app_id = state["app_id"]
        with others(scope(app_id)) as kept:
            keys = [key for key in sorted(state.get("vars") or {}) if not kept.covers(key)]  # others handed on
            if not keys:
                return
            try:
                self.client.remove(app_id, keys)
            except AppNotFound:
                return  # the app is gone, and its variables with it
        if state.get("restart_on_change"):
            self.client.restart(app_id)


PLATFORM = Platform("vertra", "Vertra", settings=AppEnvironments.settings, resources=(AppEnvironments,))
