// The env vars of one container, which restarts when they change so its processes see them at once.
//
// The container is the stack's `containerId` config. Where the API lives comes from
// `envvars:hoodyUrl` / `envvars:hoodyToken` (or HOODY_URL / HOODY_TOKEN).
import * as pulumi from "@pulumi/pulumi";
import * as envvars from "@envvars/pulumi";

const config = new pulumi.Config();

const env = new envvars.hoody.ContainerEnv("app-env", {
    containerId: config.require("containerId"),
    vars: {
        APP_ENV: config.get("appEnv") ?? "demo",
        GREETING: config.get("greeting") ?? "hello, world",
        DATABASE_URL: config.getSecret("databaseUrl") ?? "postgres://app@db.internal/app",
    },
    restartOnChange: true,
});

export const synced = env.synced;
