// An env-var set and two VMs booted with it; a changed set boots new VMs.
//
// Where the API lives comes from `envvars:versUrl` / `envvars:versApiKey` (or VERS_URL / VERS_API_KEY).
import * as pulumi from "@pulumi/pulumi";
import * as envvars from "@envvars/pulumi";

const config = new pulumi.Config();

const env = new envvars.vers.EnvVars("app-env", {
    vars: {
        APP_ENV: config.get("appEnv") ?? "demo",
        GREETING: config.get("greeting") ?? "hello, world",
        DATABASE_URL: config.getSecret("databaseUrl") ?? "postgres://app@db.internal/app",
    },
});

const workers = [0, 1].map((n) => new envvars.vers.Vm(`worker-${n}`, { envRevision: env.revision }));

export const revision = env.revision;
export const vm_ids = workers.map((vm) => vm.vmId);
