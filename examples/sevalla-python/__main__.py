"""The env vars of one Sevalla application: settings its build and its app both see, and a secret only the running
app sees (the build never needs it).

The application is the stack's `applicationId` config. Where the API lives comes from
`envvars:sevallaUrl` / `envvars:sevallaApiKey` (or SEVALLA_URL / SEVALLA_API_KEY). Changes reach the
application at its next deployment.
"""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
app_id = config.require("applicationId")

shared = envvars.sevalla.EnvVars(
    "app-env",
    application_id=app_id,
    vars={
        "APP_ENV": config.get("appEnv") or "demo",
        "GREETING": config.get("greeting") or "hello, world",
    },
)

database_url = envvars.sevalla.EnvVar(
    "database-url",
    application_id=app_id,
    key="DATABASE_URL",
    value=config.get_secret("databaseUrl") or "postgres://app@db.internal/app",
    is_buildtime=False,
)

pulumi.export("envVarIds", shared.env_var_ids)
pulumi.export("databaseUrlId", database_url.env_var_id)
