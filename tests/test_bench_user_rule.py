"""A rule registered from a user's own module is swept by ``python -m bench run``.

``--rules-module tests.user_rule`` goes on to pytest, which registers sign descent (a rule
with no peers) before collection; the quick sweep, narrowed to its smallest size, writes
its rows with our implementations only.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# The sweep times both frameworks (make bench installs both); without JAX (make
# test-torch-latest) its JAX rows cannot run.
pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parent.parent


def test_quick_sweep_times_a_rule_from_the_users_module(tmp_path):
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "bench", "run", "--quick", "--threads", "1", "--rules-module", "tests.user_rule",
           "--out", str(out), "--", "-k", "signdescent and iris15 and not fused",
           "--benchmark-max-time=0.01", "--benchmark-min-rounds=1"]
    # an xdist worker's PYTEST_* variables would make the sweep's pytest disable benchmarks
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads((out / "benchmark.json").read_text())
    timed = {b["extra_info"]["impl"] for b in data["benchmarks"] if b["extra_info"].get("rule") == "signdescent"}
    assert timed == {"ours-torch-auto", "ours-jax-step", "ours-jax-optax"}  # no peer has a setting for it
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["impl"] for r in rows if r["rule"] == "signdescent"} == timed
    assert "--rules-module tests.user_rule" in data["adaptbench"]["command"]
