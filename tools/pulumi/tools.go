//go:build tools

// Package tools pins the Pulumi CLI that the envvars tests drive. It is never
// built as part of envvars; scripts/build-pulumi.sh builds the commands
// imported below from the versions pinned in go.mod.
package tools

import (
	_ "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
)
