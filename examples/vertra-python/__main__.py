"""The env vars of one Vertra app, each with a note saying what it is for; the app restarts when they change so
it runs with them at once.

The app is the stack's `appId` config (`APP_ID-ORG_ID` for an organization's app). Where the API lives comes
from `envvars:vertraUrl` / `envvars:vertraToken` (or VERTRA_URL / VERTRA_TOKEN).
"""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()

env = envvars.vertra.AppEnvironments(
    "app-env",
    app_id=config.require("appId"),
    vars={
        "APP_ENV": config.get("appEnv") or "demo",
        "GREETING": config.get("greeting") or "hello, world",
        "DATABASE_URL": config.get_secret("databaseUrl") or "postgres://app@db.internal/app",
    },
    notes={
        "GREETING": "what the home page says",
        "DATABASE_URL": "the primary database; rotate with the password",
    },
    restart_on_change=True,
)

pulumi.export("restartPending", env.restart_pending)
