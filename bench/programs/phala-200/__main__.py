"""Benchmark program of requests_per_change: one `phala.CvmEnv` of `count` keys (default 200) on the CVM `cvmId`;
config `changed: true` gives its first key a new value, `removed: true` drops its last."""

import pulumi
import pulumi_envvars as envvars

config = pulumi.Config()
count = config.get_int("count") or 200
variables = {f"BENCH_KEY_{n:03d}": f"value-{n}" for n in range(count)}
if config.get_bool("changed"):
    variables["BENCH_KEY_000"] = "changed"
if config.get_bool("removed"):
    del variables[f"BENCH_KEY_{count - 1:03d}"]
envvars.phala.CvmEnv("env", cvm_id=config.require("cvmId"), vars=variables)
