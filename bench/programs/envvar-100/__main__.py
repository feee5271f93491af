"""Benchmark subject of up_100_vars_vs_dynamic: `count` (default 100) `vers.EnvVar`s, native provider."""

import pulumi
import pulumi_envvars as envvars

count = pulumi.Config().get_int("count") or 100
for n in range(count):
    envvars.vers.EnvVar(f"var-{n}", key=f"BENCH_VAR_{n}", value=f"value-{n}")
