"""The fused kernel fits the thread count it runs at, whoever compiled it first.

Inductor's C++ backend decides at code-generation time whether a loop gets an OpenMP
``parallel`` region (from the thread count and the first input's size), and its on-disk
FX graph cache hands that code to later processes. Each case compiles in one process and
runs in a second one that shares a fresh ``TORCHINDUCTOR_CACHE_DIR``; the second process
reports the generated code it loaded for its step, and every kernel in it must hold a
``#pragma omp parallel`` region. The assertion is on the generated C++, never on time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from impl_torch import fused

pytestmark = pytest.mark.skipif(
    fused.unavailable_reason() is not None, reason=f"torch.compile unavailable: {fused.unavailable_reason()}"
)

ROOT = Path(__file__).resolve().parents[1]

# Steps one contiguous fp32 tensor of `numel` elements with impl="fused" at `threads`
# threads and prints, as JSON, for each Inductor output-code module loaded during the
# step (compiled or taken from the cache): whether its source holds an OpenMP parallel
# region, and whether it holds a C++ kernel at all.
_CHILD = textwrap.dedent(
    """
    import json, sys
    import torch
    from torch._inductor.codecache import PyCodeCache
    import impl_torch
    from adaptbench import rules

    threads, numel, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(threads)
    rule = rules.preset(name, "torch")
    p, g = torch.ones(numel), torch.full((numel,), 0.5)
    state = impl_torch.init_state(rule, p)
    before = len(PyCodeCache.modules)
    impl_torch.step(rule, [p], [g], [state], impl="fused")
    loaded = []
    for module in PyCodeCache.modules[before:]:
        source = open(module.__file__).read()
        loaded.append({"kernel": "extern \\"C\\"" in source, "parallel": "#pragma omp parallel" in source})
    print(json.dumps(loaded))
    """
)


def _run(cache_dir: Path, threads: int, numel: int, name: str) -> list[dict]:
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    env.pop("OMP_NUM_THREADS", None)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threads), str(numel), name],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "first_threads, first_numel",
    [(1, 1 << 16), (2, 100)],
    ids=["first-compiled-at-1-thread", "first-compiled-for-100-elements"],
)
def test_kernel_run_at_two_threads_has_a_parallel_region(tmp_path, first_threads, first_numel):
    _run(tmp_path, first_threads, first_numel, "adagrad")
    loaded = _run(tmp_path, 2, 1 << 16, "adagrad")
    kernels = [m for m in loaded if m["kernel"]]
    assert kernels, f"no generated C++ kernel was loaded for the step: {loaded}"
    assert all(m["parallel"] for m in kernels), loaded
