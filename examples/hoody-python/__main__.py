"""The env vars of one container, which restarts when they change so its processes see them at once.

The container is the stack's `containerId` config. Where the API lives comes from
`envvars:hoodyUrl` / `envvars:hoodyToken` (or HOODY_URL / HOODY_TOKEN).
"""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()

env = envvars.hoody.ContainerEnv(
    "app-env",
    container_id=config.require("containerId"),
    vars={
        "APP_ENV": config.get("appEnv") or "demo",
        "GREETING": config.get("greeting") or "hello, world",
        "DATABASE_URL": config.get_secret("databaseUrl") or "postgres://app@db.internal/app",
    },
    restart_on_change=True,
)

pulumi.export("synced", env.synced)
