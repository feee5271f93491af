// Package sdkbuild pins what the Go SDK (sdk/go) is built against: scripts/build-sdks.sh builds
// every package of the SDK inside this module, with the versions in its go.mod and go.sum.
// The imports keep `go mod tidy` from dropping them: the resource packages import nothing more.
package sdkbuild

import (
	_ "github.com/envvars/pulumi-envvars/sdk/go/envvars"
	_ "github.com/envvars/pulumi-envvars/sdk/go/envvars/config"
)
