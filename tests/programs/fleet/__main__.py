"""`count` single Vers variables `PREFIX_<n>`, and optionally one VM; shaped by stack config.

Config: `count` (default 0), `prefix` (default FLEET), `secretValue` (secret: each value becomes
`<secretValue>-<n>`), `vms` (default 0: how many VMs boot with the set). The environment variable
FLEET_PLAIN_VALUE, when set, adds an `EnvVars` set holding it as a plain program string.
Otherwise variable n holds `v<n>`.
"""

import os

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
count = config.get_int("count") or 0
prefix = config.get("prefix") or "FLEET"
secret = config.get_secret("secretValue")
plain = os.environ.get("FLEET_PLAIN_VALUE")

variables = []
for n in range(count):
    value = secret.apply(lambda base, n=n: f"{base}-{n}") if secret is not None else f"v{n}"
    variables.append(envvars.vers.EnvVar(f"var-{n}", key=f"{prefix}_{n}", value=value))
if plain:
    envvars.vers.EnvVars("plain-set", vars={f"{prefix}_PLAIN": plain})
for n in range(config.get_int("vms") or 0):
    envvars.vers.Vm(f"vm-{n}", opts=pulumi.ResourceOptions(depends_on=variables))
