"""Resources shaped by stack config, so one program covers many CLI tests.

Config (all optional, JSON objects):
- `sets`: NAME → {"vars": {KEY: VALUE}, "exclusive": bool}  → `EnvVars` NAME
- `vars`: NAME → {"key": KEY, "value": VALUE, "dbr": bool}      → `EnvVar` NAME (`dbr`: delete before replace)
- `vms`:  NAME → SET (its `envRevision` is that set's revision, or none when null), or
          {"set": SET, ARG: VALUE, ...} with more `Vm` arguments (`vcpu_count`...)  → `Vm` NAME

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
for name, spec in (config.get_object("vms") or {}).items():
    args = dict(spec) if isinstance(spec, dict) else {"set": spec}
    set_name = args.pop("set", None)
    vms[name] = envvars.vers.Vm(name, env_revision=sets[set_name].revision if set_name else None, **args)
singles = {
    name: envvars.vers.EnvVar(name, key=spec["key"], value=value(spec["value"]),
                              opts=pulumi.ResourceOptions(delete_before_replace=spec.get("dbr", False)))
    for name, spec in (config.get_object("vars") or {}).items()
}

pulumi.export("revisions", {name: env.revision for name, env in sets.items()})
pulumi.export("vmIds", {name: vm.vm_id for name, vm in vms.items()})
