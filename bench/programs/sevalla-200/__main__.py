"""Benchmark program of requests_per_change: one `sevalla.EnvVars` of `count` keys (default 200) on the
application `applicationId`; config `changed: N` gives its first N keys the value `changed-N`, `removed: true` drops
its last."""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
count = config.get_int("count") or 200
variables = {f"BENCH_KEY_{n:03d}": f"value-{n}" for n in range(count)}
for n in range(config.get_int("changed") or 0):
    variables[f"BENCH_KEY_{n:03d}"] = f"changed-{config.get_int('changed')}"
if config.get_bool("removed"):
    del variables[f"BENCH_KEY_{count - 1:03d}"]
envvars.sevalla.EnvVars("env", application_id=config.require("applicationId"), vars=variables)
