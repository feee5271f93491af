"""Benchmark program of requests_per_change: one `vertra.AppEnvironments` of `count` keys (default 25, Vertra's
limit) on the app `appId`; config `changed: true` gives its first key a new value, `removed: true` drops its last."""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
count = config.get_int("count") or 25
variables = {f"BENCH_KEY_{n:03d}": f"value-{n}" for n in range(count)}
if config.get_bool("changed"):
    variables["BENCH_KEY_000"] = "changed"
if config.get_bool("removed"):
    del variables[f"BENCH_KEY_{count - 1:03d}"]
envvars.vertra.AppEnvironments("env", app_id=config.require("appId"), vars=variables)
