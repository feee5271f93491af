// An env-var set and two VMs booted with it; a changed set boots new VMs.
//
// Where the API lives comes from `envvars:versUrl` / `envvars:versApiKey` (or VERS_URL / VERS_API_KEY).
package main

import (
	"fmt"

	"github.com/envvars/pulumi-envvars/sdk/go/envvars/vers"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"
)

func main() {
	pulumi.Run(func(ctx *pulumi.Context) error {
		cfg := config.New(ctx, "")
		or := func(value, fallback string) string {
			if value == "" {
				return fallback
			}
			return value
		}
		databaseURL := cfg.GetSecret("databaseUrl").ApplyT(func(url string) string {
			return or(url, "postgres://app@db.internal/app")
		}).(pulumi.StringOutput)

		env, err := vers.NewEnvVars(ctx, "app-env", &vers.EnvVarsArgs{
			Vars: pulumi.StringMap{
				"APP_ENV":      pulumi.String(or(cfg.Get("appEnv"), "demo")),
				"GREETING":     pulumi.String(or(cfg.Get("greeting"), "hello, world")),
				"DATABASE_URL": databaseURL,
			},
		})
		if err != nil {
			return err
		}

		var vmIDs pulumi.StringArray
		for n := 0; n < 2; n++ {
			vm, err := vers.NewVm(ctx, fmt.Sprintf("worker-%d", n), &vers.VmArgs{EnvRevision: env.Revision})
			if err != nil {
				return err
			}
			vmIDs = append(vmIDs, vm.VmId)
		}

		ctx.Export("revision", env.Revision)
		ctx.Export("vm_ids", vmIDs)
		return nil
	})
}
