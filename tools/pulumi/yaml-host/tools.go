//go:build tools

// Package tools pins the Pulumi YAML language host (pulumi-language-yaml).
// scripts/build-pulumi.sh builds the command imported below.
package tools

import (
	_ "github.com/pulumi/pulumi-yaml/cmd/pulumi-language-yaml"
)
