"""`make demo` and `make demo-cluster` themselves: the example from first `up` to a changed value, as a user runs
it, against one server and through HAProxy before three replicas."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

DEMO = Path(__file__).resolve().parent.parent / "examples" / "demo.py"


@pytest.mark.parametrize("options", [[], ["--cluster"]], ids=["server", "cluster"])
def test_the_demo_tells_the_diff_and_replace_story(options: list[str]) -> None:
    result = subprocess.run([sys.executable, str(DEMO), *options], capture_output=True, text=True, timeout=300,
                            check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # The preview: one key of the set updated in place, masked; both VMs replaced.
    assert re.search(r"~ vars: \{\n\s+~ GREETING: \[secret\] => \[secret\]\n\s+\}", output), output
    assert output.count("+-envvars:vers:Vm: (replace)") == 2
    assert "-> old VMs still running: 0 of 2" in output
    assert len(re.findall(r"changed keys \['GREETING'\]; GREETING holds the new value: True", output)) == 2
    assert "OK: a changed value reached exactly the VMs booted after the change" in output
    # Values are masked everywhere: the example's values never appear.
    values = ("hello, world", "hello again, world", "postgres://app@db.internal/app")
    assert [value for value in values if re.search(rf"\b{re.escape(value)}\b", output)] == []
