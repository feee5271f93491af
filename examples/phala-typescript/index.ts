// The env vars of one Phala CVM: the whole set, sealed on this machine to the CVM's app key, so only the CVM
// reads the values; each change restarts the CVM, and `pulumi up` ends once it runs with them.
//
// The CVM is the stack's `cvmId` config. Where the API lives comes from `envvars:phalaUrl` /
// `envvars:phalaApiKey` (or PHALA_CLOUD_API_ENDPOINT / PHALA_CLOUD_API_KEY). For a CVM whose KMS is on chain,
// a change of its keys needs a compose hash registered on the app's contract: set `envvars:phalaRegistrarUrl`
// (and `phalaRegistrarToken`) to have the provider do it, or follow the steps a failed `up` prints.
import * as pulumi from "@pulumi/pulumi";
import * as envvars from "@envvars/pulumi";

const config = new pulumi.Config();

const env = new envvars.phala.CvmEnv("cvm-env", {
    cvmId: config.require("cvmId"),
    vars: {
        APP_ENV: config.get("appEnv") ?? "demo",
        GREETING: config.get("greeting") ?? "hello, world",
        DATABASE_URL: config.getSecret("databaseUrl") ?? "postgres://app@db.internal/app",
    },
}, { customTimeouts: { create: "15m", update: "15m", delete: "15m" } });

export const appId = env.appId;
export const running = env.running;
