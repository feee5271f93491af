// The env vars of one Vertra app, each with a note saying what it is for; the app restarts when they change
// so it runs with them at once.
//
// The app is the stack's `appId` config (`APP_ID-ORG_ID` for an organization's app). Where the API lives
// comes from `envvars:vertraUrl` / `envvars:vertraToken` (or VERTRA_URL / VERTRA_TOKEN).
import * as pulumi from "@pulumi/pulumi";
import * as envvars from "@envvars/pulumi";

const config = new pulumi.Config();

const env = new envvars.vertra.AppEnvironments("app-env", {
    appId: config.require("appId"),
    vars: {
        APP_ENV: config.get("appEnv") ?? "demo",
        GREETING: config.get("greeting") ?? "hello, world",
        DATABASE_URL: config.getSecret("databaseUrl") ?? "postgres://app@db.internal/app",
    },
    notes: {
        GREETING: "what the home page says",
        DATABASE_URL: "the primary database; rotate with the password",
    },
    restartOnChange: true,
});

export const restartPending = env.restartPending;
