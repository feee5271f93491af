"""Resources shaped by stack config, so one program covers many CLI tests.

Config (all optional, JSON objects):
- `sets`: NAME → {"vars": {KEY: VALUE}, "exclusive": bool}  → `EnvVars` NAME
- `vars`: NAME → {"key": KEY, "value": VALUE}                  → `EnvVar` NAME
- `vms`:  NAME → SET (its `envRevision` is that set's revision, or none when null) → `Vm` NAME

A VALUE is a plain string, {"secret": CONFIG_KEY} (that secret config value), {"env": NAME} (a plain
string from the program's environment, so it is in no config) or {"vmIp": VM} (the ip of a Vm of this
program, unknown at a first preview; for `vars` only, as VMs are declared after the sets).
"""

import os

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
vms: dict[str, envvars.vers.Vm] = {}


def value(spec):
    """A configured VALUE as a resource input."""
    if isinstance(spec, dict) and "secret" in spec:
        return config.require_secret(spec["secret"])
    if isinstance(spec, dict) and "env" in spec:
        return os.environ[spec["env"]]
    if isinstance(spec, dict) and "vmIp" in spec:
        return vms[spec["vmIp"]].ip
    return spec


sets = {
    name: envvars.vers.EnvVars(
        name, vars={key: value(item) for key, item in spec["vars"].items()}, exclusive=spec.get("exclusive"))
    for name, spec in (config.get_object("sets") or {}).items()
}
for name, set_name in (config.get_object("vms") or {}).items():
    vms[name] = envvars.vers.Vm(name, env_revision=sets[set_name].revision if set_name else None)
singles = {
    name: envvars.vers.EnvVar(name, key=spec["key"], value=value(spec["value"]))
    for name, spec in (config.get_object("vars") or {}).items()
}

pulumi.export("revisions", {name: env.revision for name, env in sets.items()})
pulumi.export("vmIds", {name: vm.vm_id for name, vm in vms.items()})
