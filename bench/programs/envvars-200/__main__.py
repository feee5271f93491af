"""Benchmark program of requests_per_change: one `vers.EnvVars` of `count` keys (default 200);
config `changed: true` gives its first key a new value."""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
count = config.get_int("count") or 200
variables = {f"BENCH_KEY_{n:03d}": f"value-{n}" for n in range(count)}
if config.get_bool("changed"):
    variables["BENCH_KEY_000"] = "changed"
envvars.vers.EnvVars("set", vars=variables)
