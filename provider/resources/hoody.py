"""Hoody resources: the env-var map of a container (`ContainerEnv`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any, ClassVar

from envvars.diff import diff_keys
from envvars.rules import describe
from envvars.rules.hoody import RULES
from envvars_provider.claims import Claim, Others
from envvars_provider.clients.hoody import MAX_PER_REQUEST, ContainerNotFound, HoodyClient, PartialWrite
from envvars_provider.config import Setting, auth_hint
from envvars_provider.errors import ConfigError, PartialApply, ProviderError
from envvars_provider.platform import Platform
from envvars_provider.resources.base import BOOLEAN, STRING, STRING_MAP, Diff, Prop, Resource
from envvars_provider.resources.checks import imported, keys_claim, rule_failures

URL = Setting("hoody_url", "Base URL of the Hoody API (there is no default). Falls back to HOODY_URL.", "HOODY_URL",
              is_url=True, label="Hoody API URL", placeholder="URL")
TOKEN = Setting("hoody_token", "Bearer token for the Hoody API (a secret). Falls back to HOODY_TOKEN.",
                "HOODY_TOKEN", secret=True, label="Hoody token", placeholder="TOKEN")


def scope(container_id: str) -> str:
    """The claims of one container: resources on other containers may manage the same keys."""
    return f"hoody:{container_id}"


class ContainerEnv(Resource):
    """Some variables of one container."""

    token: ClassVar[str] = "envvars:hoody:ContainerEnv"
    description: ClassVar[str] = (
        "Environment variables of a Hoody container. Only the listed keys are managed: other variables "
        "of the container are never touched, and deleting the resource deletes only its keys. Keys "
        "starting with `HOODY_` are Hoody's own and are refused at preview.\n\n"
        "A change is stored at once but reaches the container's processes only when it restarts. "
        "`synced` tells whether the running container has the stored map; with `restartOnChange: true` "
        "the provider restarts the container after every apply that changes its map, so the change "
        "takes effect straight away.\n\n"
        "Import with the container's id to adopt all its variables except the `HOODY_` ones "
        "(`pulumi import envvars:hoody:ContainerEnv NAME CONTAINER_ID`), or with the id and a "
        "comma-separated key list to adopt just those keys "
        "(`pulumi import envvars:hoody:ContainerEnv NAME CONTAINER_ID/KEY1,KEY2`)."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("container_id", STRING, "The container's id, such as `cnt_abc123def456`. Changing it replaces the "
             "resource: its keys are written to the new container and removed from the old one.",
             required=True, replace_on_change=True),
        Prop("vars", STRING_MAP, f"The variables, by key. {describe(RULES)} The provider splits larger changes "
             f"into requests of at most {MAX_PER_REQUEST}. Always stored as Pulumi secrets.",
             required=True, secret=True),
        Prop("restart_on_change", BOOLEAN, "Whether to restart the container after an apply that changes its "
             "variables (destroy included), and at the next apply while `synced` is false, so changes take "
             "effect at once. Default: false, which leaves them for the container's next restart.",
             default=False),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("synced", BOOLEAN, "Whether the running container has the variables as stored, as Hoody answered "
             "this resource's last write or restart: false while a change waits for a restart.", required=True),
    )
    settings: ClassVar[tuple[Setting, ...]] = (URL, TOKEN)

    @cached_property
    def client(self) -> HoodyClient:
        """The client of the configured API; the URL must be set (Check says so before anything else)."""
        if not self.config.hoody_url:
            raise ConfigError(URL.unset_reason())
        return HoodyClient(self.config.hoody_url, self.config.hoody_token, auth_hint(TOKEN, "token"))

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        failures = rule_failures(RULES, "vars", inputs.get("vars"), one_request=False)
        if inputs.get("container_id") == "":
            failures.insert(0, ("container_id", "containerId must be a container's id, such as cnt_abc123def456"))
        return failures

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        return keys_claim(scope, inputs.get("container_id"), inputs.get("vars"))

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """The per-key diff, plus a pending restart: one that failed, or that `restartOnChange` now asks for."""
        result = super().diff(olds, news)
        if news.get("restart_on_change") is True and olds.get("synced") is False:
            result.owe("synced")
        return result

    # -- CRUD -------------------------------------------------------------------------------

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        container_id = inputs["container_id"]
        return container_id, self._apply(container_id, {}, inputs, synced=True, others=None)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        return self._apply(resource_id, olds.get("vars") or {}, news, olds.get("synced") is not False, others)

    def _apply(self, resource_id: str, old_vars: dict[str, str], news: dict[str, Any], synced: bool,
               others: Others | None) -> dict[str, Any]:
        """Upsert in one request per 200 keys, delete the keys given up that no resource claims, then
        restart if asked; a failure part-way reports the state reached."""
        container_id, new_vars = news["container_id"], news["vars"]
        changes = diff_keys(old_vars, new_vars)
        wrote = False
        if changes.upserts:
            try:
                _, synced = self.client.merge(container_id, {key: new_vars[key] for key in changes.upserts})
            except PartialWrite as exc:
                reached = {**old_vars, **{key: new_vars[key] for key in exc.written}}
                raise PartialApply(f"writing the variables failed part-way: {exc}", resource_id,
                                   {**news, "vars": reached, "synced": False}) from None
            wrote = True
        if changes.deleted and others is not None:
            with others(scope(container_id)) as kept:
                for done, key in enumerate(changes.deleted):
                    if kept.covers(key):
                        continue  # handed to another resource of this program
                    try:
                        synced = self.client.delete_var(container_id, key)
                    except ProviderError as exc:
                        reached = {**new_vars, **{k: old_vars[k] for k in changes.deleted[done:]}}
                        raise PartialApply(f"removing key {key!r} failed: {exc}", resource_id,
                                           {**news, "vars": reached, "synced": False}) from None
                    wrote = True
        if news["restart_on_change"] and (wrote or not synced):
            try:
                synced = self.client.restart(container_id)
            except ProviderError as exc:
                raise PartialApply(f"the variables are stored but restarting container {container_id!r} failed: "
                                   f"{exc}", resource_id, {**news, "synced": False}) from None
        return {**news, "synced": synced}

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        container_id = state.get("container_id") or resource_id.split("/", 1)[0]
        stored = self.client.get_vars(container_id)
        if stored is None:
            return None  # the container is gone
        if not state:  # import: `CONTAINER_ID` adopts its variables, `CONTAINER_ID/KEY1,KEY2` just those
            state = {"vars": imported(RULES, resource_id, stored, f"container {container_id!r}",
                                      "CONTAINER_ID or CONTAINER_ID/KEY1,KEY2")}
        managed = state.get("vars") or {}
        return {"container_id": container_id, "vars": {key: stored[key] for key in managed if key in stored},
                "restart_on_change": bool(state.get("restart_on_change")), "synced": state.get("synced") is not False}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        container_id = state["container_id"]
        wrote = False
        with others(scope(container_id)) as kept:
            for key in sorted(state.get("vars") or {}):
                if kept.covers(key):
                    continue  # the resource was replaced, or its key handed to another resource
                try:
                    self.client.delete_var(container_id, key)
                except ContainerNotFound:
                    return  # the container is gone, and its variables with it
                wrote = True
        if wrote and state.get("restart_on_change"):
            self.client.restart(container_id)


PLATFORM = Platform("hoody", "Hoody", settings=ContainerEnv.settings, resources=(ContainerEnv,))
