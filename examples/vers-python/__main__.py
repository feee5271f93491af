"""An env-var set and two VMs booted with it; a changed set boots new VMs.

Where the API lives comes from `envvars:versUrl` / `envvars:versApiKey` (or VERS_URL / VERS_API_KEY).
"""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()

env = envvars.vers.EnvVars(
    "app-env",
    vars={
        "APP_ENV": config.get("appEnv") or "demo",
        "GREETING": config.get("greeting") or "hello, world",
        "DATABASE_URL": config.get_secret("databaseUrl") or "postgres://app@db.internal/app",
    },
)

workers = [envvars.vers.Vm(f"worker-{n}", env_revision=env.revision) for n in range(2)]

pulumi.export("revision", env.revision)
pulumi.export("vm_ids", [vm.vm_id for vm in workers])
