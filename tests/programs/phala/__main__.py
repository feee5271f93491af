"""Phala `CvmEnv` resources shaped by stack config, so one program covers many CLI tests.

Config `envs` (optional JSON object): NAME → {"cvm": ID, "vars": {KEY: VALUE}, "envKeys": [KEY], "composeHash": H,
"transactionHash": T} → `CvmEnv` NAME. A VALUE is a plain string, {"secret": CONFIG_KEY} (that secret config value)
or {"env": NAME} (a plain string from the program's environment, so it is in no config).
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
    name: envvars.phala.CvmEnv(
        name, cvm_id=spec["cvm"], vars={key: value(item) for key, item in spec["vars"].items()},
        env_keys=spec.get("envKeys"), compose_hash=spec.get("composeHash"),
        transaction_hash=spec.get("transactionHash"))
    for name, spec in (config.get_object("envs") or {}).items()
}

pulumi.export("running", {name: env.running for name, env in envs.items()})
