"""Sevalla `EnvVars` and `EnvVar` resources shaped by stack config, so one program covers many CLI tests.

Config `envs` (optional JSON object): NAME → {"app": ID, "vars": {KEY: VALUE}, "isRuntime": bool,
"isBuildtime": bool} → `EnvVars` NAME. Config `vars`: NAME → {"app": ID, "key": KEY, "value": VALUE,
"isRuntime": bool, "isBuildtime": bool} → `EnvVar` NAME. A VALUE is a plain string, {"secret": CONFIG_KEY}
(that secret config value) or {"env": NAME} (a plain string from the program's environment, so it is in no config).
"""

import os

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()


def value(spec):
    """A configured VALUE as a resource input."""
    if isinstance(spec, dict) and "secret" in spec:
        return config.require_secret(spec["secret"])
    if isinstance(spec, dict) and "env" in spec:
        return os.environ[spec["env"]]
    return spec


envs = {
    name: envvars.sevalla.EnvVars(
        name, application_id=spec["app"], vars={key: value(item) for key, item in spec["vars"].items()},
        is_runtime=spec.get("isRuntime"), is_buildtime=spec.get("isBuildtime"))
    for name, spec in (config.get_object("envs") or {}).items()
}
singles = {
    name: envvars.sevalla.EnvVar(
        name, application_id=spec["app"], key=spec["key"], value=value(spec["value"]),
        is_runtime=spec.get("isRuntime"), is_buildtime=spec.get("isBuildtime"))
    for name, spec in (config.get_object("vars") or {}).items()
}

pulumi.export("envVarIds", {name: env.env_var_ids for name, env in envs.items()})
pulumi.export("envVarId", {name: single.env_var_id for name, single in singles.items()})
