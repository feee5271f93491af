"""Vertra `AppEnvironments` resources shaped by stack config, so one program covers many CLI tests.

Config `envs` (optional JSON object): NAME → {"app": ID, "vars": {KEY: VALUE}, "notes": {KEY: NOTE},
"restartOnChange": bool} → `AppEnvironments` NAME. A VALUE is a plain string, {"secret": CONFIG_KEY} (that secret
config value) or {"env": NAME} (a plain string from the program's environment, so it is in no config).
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
    name: envvars.vertra.AppEnvironments(
        name, app_id=spec["app"], vars={key: value(item) for key, item in spec["vars"].items()},
        notes=spec.get("notes"), restart_on_change=spec.get("restartOnChange"))
    for name, spec in (config.get_object("envs") or {}).items()
}

pulumi.export("restartPending", {name: env.restart_pending for name, env in envs.items()})
