// The env vars of one Sevalla application: settings its build and its app both see, and a secret only the
// running app sees (the build never needs it).
//
// The application is the stack's `applicationId` config. Where the API lives comes from
// `envvars:sevallaUrl` / `envvars:sevallaApiKey` (or SEVALLA_URL / SEVALLA_API_KEY). Changes reach the
// application at its next deployment.
import * as pulumi from "@pulumi/pulumi";
import * as envvars from "@envvars/pulumi";

const config = new pulumi.Config();
const applicationId = config.require("applicationId");

const shared = new envvars.sevalla.EnvVars("app-env", {
    applicationId,
    vars: {
        APP_ENV: config.get("appEnv") ?? "demo",
        GREETING: config.get("greeting") ?? "hello, world",
    },
});

const databaseUrl = new envvars.sevalla.EnvVar("database-url", {
    applicationId,
    key: "DATABASE_URL",
    value: config.getSecret("databaseUrl") ?? "postgres://app@db.internal/app",
    isBuildtime: false,
});

export const envVarIds = shared.envVarIds;
export const databaseUrlId = databaseUrl.envVarId;
