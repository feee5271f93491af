"""Vers resources: an env-var set (`EnvVars`), one variable (`EnvVar`) and a root VM (`Vm`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from envvars.diff import diff_keys
from envvars.rules import describe
from envvars.rules.vers import RULES
from envvars_provider.claims import Claim, Others
from envvars_provider.clients.vers import VersClient
from envvars_provider.config import Config, Setting, auth_hint
from envvars_provider.errors import PartialApply, ProviderError
from envvars_provider.platform import Platform
from envvars_provider.resources.base import BOOLEAN, INTEGER, STRING, STRING_MAP, Diff, Prop, Resource, map_path
from envvars_provider.resources.checks import login_warnings, rule_failures, variable_failures
from envvars_provider.values import UNKNOWN

ACCOUNT_ID = "account"  # an EnvVars set has no id of its own on Vers: it is the account's set
SCOPE = "vers"  # the claims of one provider instance: one Vers account
URL = Setting("vers_url", "Base URL of the Vers orchestrator API. Falls back to VERS_URL.", "VERS_URL",
              default="https://api.vers.sh", is_url=True)
API_KEY = Setting("vers_api_key", "API key for the Vers orchestrator (a secret). Falls back to VERS_API_KEY.",
                  "VERS_API_KEY", secret=True, label="Vers API key", placeholder="KEY")


class VersResource(Resource):
    """A resource of the Vers orchestrator; shares one client per provider."""

    settings: ClassVar[tuple[Setting, ...]] = (URL, API_KEY)

    def __init__(self, config: Config):
        super().__init__(config)
        self.client = VersClient(str(config.vers_url), config.vers_api_key, auth_hint(API_KEY))


class EnvVars(VersResource):
    """A set of variables of the account."""

    token: ClassVar[str] = "envvars:vers:EnvVars"
    description: ClassVar[str] = (
        "A set of environment variables of a Vers account, written to `/etc/environment` of every VM "
        "booted after the change (running VMs are never re-synced: use `revision` as a `Vm`'s "
        "`envRevision` to replace VMs when the set changes).\n\n"
        "With `exclusive: false` (the default) only the listed keys are managed: other variables of the "
        "account are never touched, and deleting the resource deletes only its keys. With "
        "`exclusive: true` the resource owns the whole set: unlisted variables are removed on every "
        "update, and deleting the resource empties the set.\n\n"
        "Import with the id `account` to adopt the account's whole set as an exclusive resource "
        "(`pulumi import envvars:vers:EnvVars NAME account`), or with a comma-separated key list to "
        "adopt just those keys (`pulumi import envvars:vers:EnvVars NAME KEY1,KEY2`)."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("vars", STRING_MAP, f"The variables, by key. {describe(RULES)} Always stored as Pulumi secrets.",
             required=True, secret=True),
        Prop("exclusive", BOOLEAN, "Whether this resource owns the account's whole set (removing unlisted "
             "variables). Default: false, which manages only the listed keys.", default=False),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("revision", INTEGER, "Changes exactly when this resource changes the stored set (or a refresh "
             "finds it changed); never derived from the values. Feed it to `Vm.envRevision`.",
             required=True),
    )

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return rule_failures(RULES, "vars", inputs.get("vars"))

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        return login_warnings(inputs.get("vars"))

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        variables = inputs.get("vars")
        if not isinstance(variables, dict):
            return None
        return Claim(SCOPE, frozenset(variables), exclusive=inputs.get("exclusive") is True)

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """The per-key diff, plus every variable of the account an exclusive write will remove."""
        result = super().diff(olds, news)
        new_vars = news.get("vars")
        if not result.changes or news.get("exclusive") is not True or not isinstance(new_vars, dict):
            return result
        removed = self.client.get_vars().keys() - new_vars.keys() - (olds.get("vars") or {}).keys()
        if removed:
            result.detailed |= {map_path("vars", key): "delete" for key in sorted(removed)}
            if "vars" not in result.changes:
                result.changes.append("vars")
        return result

    def preview(self, olds: Mapping[str, Any] | None, news: Mapping[str, Any]) -> dict[str, Any]:
        return {**news, "revision": 1 if olds is None else self._revision(olds, news)}

    def _revision(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Any:
        """The revision once `news` is applied: one more exactly when the stored set changes; unknown
        while that depends on values not known yet."""
        revision = int(olds.get("revision") or 0)
        old_vars, new_vars = olds.get("vars") or {}, news.get("vars")
        if not isinstance(new_vars, dict):
            return UNKNOWN
        keys = diff_keys(old_vars, new_vars)
        if keys.added or keys.deleted or any(new_vars[key] != UNKNOWN for key in keys.updated):
            return revision + 1
        if keys.updated:  # only values not known yet, which may turn out the same
            return UNKNOWN
        if news.get("exclusive") and self.client.get_vars() != new_vars:
            return revision + 1
        return revision

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.client.put_vars(inputs["vars"], replace=bool(inputs["exclusive"]))
        return ACCOUNT_ID, {**inputs, "revision": 1}

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        old_vars, new_vars = olds.get("vars") or {}, news["vars"]
        revision = self._revision(olds, news)
        if news["exclusive"]:
            self.client.put_vars(new_vars, replace=True)
            return {**news, "revision": revision}
        changes = diff_keys(old_vars, new_vars)
        if changes.upserts:
            self.client.put_vars({key: new_vars[key] for key in changes.upserts}, replace=False)
        with others(SCOPE) as kept:
            for done, key in enumerate(changes.deleted):
                if kept.covers(key):
                    continue  # handed to another resource of this program
                try:
                    self.client.delete_var(key)
                except Exception as exc:
                    reached = {**new_vars, **{k: old_vars[k] for k in changes.deleted[done:]}}
                    raise PartialApply(f"removing key {key!r} failed: {exc}", resource_id,
                                       {**news, "vars": reached, "revision": revision}) from None
        return {**news, "revision": revision}

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        stored = self.client.get_vars()
        if not state:  # import: `account` adopts the whole set, `KEY1,KEY2` just those keys
            state = self._imported(resource_id, stored)
        exclusive = bool(state.get("exclusive"))
        managed = state.get("vars") or {}
        current = stored if exclusive else {key: stored[key] for key in managed if key in stored}
        revision = int(state.get("revision") or 0)
        if current != managed:
            revision += 1
        return {"vars": current, "exclusive": exclusive, "revision": max(revision, 1)}

    @staticmethod
    def _imported(resource_id: str, stored: dict[str, str]) -> dict[str, Any]:
        """The state an import id stands for; every listed key must exist."""
        if resource_id == ACCOUNT_ID:
            return {"exclusive": True, "vars": {}}
        keys = [key.strip() for key in resource_id.split(",")]
        if "" in keys:
            raise ProviderError(f"import id {resource_id!r} has an empty key: give `account` or KEY1,KEY2")
        missing = [key for key in keys if key not in stored]
        if missing:
            raise ProviderError(f"cannot import {', '.join(map(repr, missing))}: the account's env set has no such "
                                "variable; import only keys that exist")
        return {"exclusive": False, "vars": dict.fromkeys(keys)}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        with others(SCOPE) as kept:
            if state.get("exclusive"):
                if kept.exclusive:
                    return  # another exclusive resource of this program now owns the set
                if not kept.keys:
                    self.client.put_vars({}, replace=True)
                    return
                managed = self.client.get_vars().keys()
            else:
                managed = (state.get("vars") or {}).keys()
            for key in sorted(managed):
                if not kept.covers(key):
                    self.client.delete_var(key)


class EnvVar(VersResource):
    """One variable of the account."""

    token: ClassVar[str] = "envvars:vers:EnvVar"
    description: ClassVar[str] = (
        "One environment variable of a Vers account. Other variables are never touched. Changing "
        "`key` replaces the resource; changing `value` updates it in place.\n\n"
        "Import with the key as id: `pulumi import envvars:vers:EnvVar NAME KEY`."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("key", STRING, f"The variable's name. {describe(RULES)} Changing it replaces the resource.",
             required=True, replace_on_change=True),
        Prop("value", STRING, "The value (rules as for `key`). Always stored as a Pulumi secret.", required=True,
             secret=True),
    )

    def validate(self, inputs: dict[str, Any]) -> list[tuple[str, str]]:
        return variable_failures(RULES, inputs.get("key"), inputs.get("value"))

    def warnings(self, inputs: dict[str, Any]) -> list[str]:
        key = inputs.get("key")
        return login_warnings({key: inputs.get("value")}) if isinstance(key, str) and key != UNKNOWN else []

    def claim(self, inputs: dict[str, Any]) -> Claim | None:
        key = inputs.get("key")
        return Claim(SCOPE, frozenset([key])) if isinstance(key, str) and key != UNKNOWN else None

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        self.client.put_vars({inputs["key"]: inputs["value"]}, replace=False)
        return inputs["key"], dict(inputs)

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        self.client.put_vars({news["key"]: news["value"]}, replace=False)
        return dict(news)

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        stored = self.client.get_vars()
        if resource_id not in stored:
            return None
        return {"key": resource_id, "value": stored[resource_id]}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        with others(SCOPE) as kept:
            if not kept.covers(resource_id):  # else renamed, or its key handed to another resource
                self.client.delete_var(resource_id)


class Vm(VersResource):
    """A root VM that receives the account's env set once, at boot."""

    token: ClassVar[str] = "envvars:vers:Vm"
    description: ClassVar[str] = (
        "A root VM on Vers. At boot the orchestrator writes the account's env set to the VM's "
        "`/etc/environment`, once; running VMs never see later changes. Every input change replaces "
        "the VM — set `envRevision` to an `EnvVars` resource's `revision` so a changed set boots new "
        "VMs.\n\nImport with the VM id: `pulumi import envvars:vers:Vm NAME VM_ID`."
    )
    inputs: ClassVar[tuple[Prop, ...]] = (
        Prop("vcpu_count", INTEGER, "vCPUs (default 1).", replace_on_change=True, server_default=1),
        Prop("mem_size_mib", INTEGER, "RAM in MiB (default 512).", replace_on_change=True, server_default=512),
        Prop("fs_size_mib", INTEGER, "Disk size in MiB (default 1024).", replace_on_change=True,
             server_default=1024),
        Prop("image_name", STRING, "Base image; currently must be 'default' (the default).", replace_on_change=True,
             server_default="default"),
        Prop("kernel_name", STRING, "Kernel; currently must be 'default.bin' (the default).",
             replace_on_change=True, server_default="default.bin"),
        Prop("labels", STRING_MAP, "Labels of the VM (default none).", replace_on_change=True, server_default={}),
        Prop("env_revision", INTEGER, "Any value; a change replaces the VM, because env vars reach a VM only "
             "at boot. Set it to `EnvVars.revision`.", replace_on_change=True),
    )
    outputs: ClassVar[tuple[Prop, ...]] = (
        Prop("vm_id", STRING, "The VM's id.", required=True),
        Prop("state", STRING, "The VM's state: booting, running, paused, sleeping or dead.", required=True),
        Prop("ip", STRING, "The VM's IP address.", required=True),
    )
    CONFIG_FIELDS = ("vcpu_count", "mem_size_mib", "fs_size_mib", "image_name", "kernel_name", "labels")

    def create(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        config = {name: inputs[name] for name in self.CONFIG_FIELDS if inputs.get(name) is not None}
        vm_id = self.client.new_root(config)
        try:
            metadata = self.client.vm_metadata(vm_id) or {}
        except Exception as exc:
            raise PartialApply(f"VM {vm_id} was created but could not be read: {exc}", vm_id,
                               {**inputs, **self._outputs(vm_id, {})}) from None
        return vm_id, {**inputs, **self._outputs(vm_id, metadata)}

    def update(self, resource_id: str, olds: dict[str, Any], news: dict[str, Any], others: Others) -> dict[str, Any]:
        """Every input replaces the VM, so an update only finishes an interrupted create: read it again."""
        metadata = self.client.vm_metadata(resource_id) or {}
        return {**news, **self._outputs(resource_id, metadata)}

    def diff(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> Diff:
        """Input changes replace; so does a VM found dead, which never comes back (its replacement
        boots a new one and deletes the dead one, which would otherwise hold a disk and a quota slot)."""
        result = super().diff(olds, news)
        if olds.get("state") == "dead":
            result.changes.append("state")
            result.replaces.append("state")
            result.detailed["state"] = "update_replace"
        return result

    def read(self, resource_id: str, state: dict[str, Any]) -> dict[str, Any] | None:
        metadata = self.client.vm_metadata(resource_id)
        if metadata is None:
            return None
        inputs = {name: state.get(name) for name in self.CONFIG_FIELDS + ("env_revision",)}
        if not state:  # import: rebuild the inputs from the VM
            inputs |= {name: metadata.get(name) for name in ("vcpu_count", "mem_size_mib")}
        return {**{k: v for k, v in inputs.items() if v is not None}, **self._outputs(resource_id, metadata)}

    def delete(self, resource_id: str, state: dict[str, Any], others: Others) -> None:
        self.client.delete_vm(resource_id)

    @staticmethod
    def _outputs(vm_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        return {"vm_id": vm_id, "state": metadata.get("state", "running"), "ip": metadata.get("ip", "")}


PLATFORM = Platform("vers", "Vers", settings=VersResource.settings, resources=(EnvVars, EnvVar, Vm))
