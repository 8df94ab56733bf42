"""impl_jax under JAX SPMD: params sharded over a Mesh of 8 host devices.

The devices exist only if ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` is set
before jax is imported, so the checks run in a subprocess (``tests/jax_sharded_worker.py``)
and report facts that are asserted here, per mesh mode (automatic and explicit axes) and
rule, on a (4, 2) mesh with leaves sharded on rows, columns, both, and replicated:

- ``init`` gives every moment its parameter's sharding, eagerly and under ``jit``, and
  the int32 step counter is replicated over the mesh;
- ``make_step`` returns params and state with those shardings, donates its inputs, and
  compiles once over three calls (a counter created on one device came back replicated
  and cost a second compile);
- params and state after three steps equal the single-device run bitwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

from tests import jax_sharded_worker as worker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results() -> dict:
    env = dict(os.environ)
    # first: XLA stops reading XLA_FLAGS at a token it does not parse as a flag
    env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=8 " + env.get("XLA_FLAGS", "")).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.jax_sharded_worker"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


CASES = [f"{mode}/{name}" for mode in worker.MODES for name in worker.RULES]


@pytest.mark.parametrize("case", CASES)
def test_init_takes_each_parameters_sharding(results, case):
    r = results[case]
    assert r["init_sharded"], "a moment from init is not sharded like its parameter"
    assert r["jit_init_sharded"], "a moment from jit(init) is not sharded like its parameter"
    assert r["init_step_replicated"], "the step counter is not replicated over the mesh"


@pytest.mark.parametrize("case", CASES)
def test_make_step_keeps_sharding_donates_and_compiles_once(results, case):
    r = results[case]
    assert r["params_sharded"] and r["state_sharded"]
    assert r["donated"], "params/state passed to the step were not donated"
    assert r["compiles"] == 1
    assert r["steps"] == worker.STEPS


@pytest.mark.parametrize("case", CASES)
def test_sharded_step_equals_single_device_bitwise(results, case):
    r = results[case]
    assert r["moved"], "the parameters never moved"
    assert r["bitwise"]
