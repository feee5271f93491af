"""The envvars Pulumi resource provider: a gRPC plugin (`pulumi-resource-envvars`)."""

VERSION = "0.1.0"
