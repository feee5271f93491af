//go:build tools

// Package tools pins the Pulumi Go language host (pulumi-language-go).
// scripts/build-pulumi.sh builds the command imported below.
package tools

import (
	_ "github.com/pulumi/pulumi/sdk/v3/go/pulumi-language-go"
)
