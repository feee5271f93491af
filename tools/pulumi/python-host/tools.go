//go:build tools

// Package tools pins the Pulumi Python language host (pulumi-language-python).
// scripts/build-pulumi.sh builds the command imported below.
package tools

import (
	_ "github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python"
)
