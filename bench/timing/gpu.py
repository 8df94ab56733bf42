"""``make bench-gpu`` / ``python -m bench gpu [--out DIR]``: the CUDA run as one command.

On a machine with a CUDA GPU, in this order:

1. the CUDA tests: ``pytest tests -k cuda`` (``tests/test_cuda.py``, every impl on the GPU
   against the CPU and torch.optim / the float64 oracle, plus the other tests named
   ``cuda``), stopping at the first failure: no timings of wrong kernels;
2. the CUDA sweep: ``python -m bench run --out results/gpu-<name> -- -k cuda``, every
   rule, size and implementation on the GPU (torch, Inductor's Triton kernels, JAX on
   XLA:GPU) with the probe rows its roofline figures need, rounds of at most
   ``SWEEP_MAX_TIME`` seconds per benchmark (GPU steps take microseconds, so that is still
   thousands of samples) to fit the whole command in about 8 minutes.

Without a GPU it fails at once (exit status 2) with the reason, before any test or
timing starts. JAX must see the GPU too (``jax[cuda12]``); where it does not, the run
also stops at once, naming what to install. ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` is
set (unless the caller set it): XLA otherwise reserves 75 % of the GPU's memory at start,
which the torch cases of the same process then lack.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEEP_MAX_TIME = 0.25
BUDGET_S = 8 * 60


def cuda_problem() -> str | None:
    """Why no CUDA run can happen here, or None when torch and jax both see a GPU."""
    try:
        import torch
    except ImportError as exc:
        return f"torch cannot be imported ({exc})"
    if not torch.cuda.is_available():
        built = torch.version.cuda
        return (
            f"torch {torch.__version__} sees no CUDA device "
            + (f"(built with CUDA {built}; no driver or GPU visible here" if built else "(a CPU-only build")
            + f", CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!s})"
        )
    try:
        import jax

        gpus = jax.devices("gpu")
    except Exception as exc:  # jax raises RuntimeError when the backend is absent
        return (f"jax sees no GPU ({type(exc).__name__}: {exc}); install jax with CUDA, "
                f"e.g. pip install -U 'jax[cuda12]'")
    if not gpus:
        return "jax sees no GPU; install jax with CUDA, e.g. pip install -U 'jax[cuda12]'"
    return None


def results_dir() -> Path:
    """``results/gpu-<name>`` for this machine's GPU (``bench.machine.slug``)."""
    import torch

    from bench import machine

    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return REPO_ROOT / "results" / machine.slug({"gpus": names})


def _run(cmd: list[str], env: dict) -> int:
    print("bench gpu:", " ".join(cmd), flush=True)
    return subprocess.call(cmd, cwd=REPO_ROOT, env=env)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="report folder (default: results/gpu-<name>)")
    args = parser.parse_args(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    problem = cuda_problem()
    if problem is not None:
        print(f"bench gpu: error: no CUDA run possible here: {problem}. "
              "Run `make bench-gpu` on a machine with an NVIDIA GPU.", file=sys.stderr)
        return 2
    env = dict(os.environ)
    start = time.monotonic()
    rc = _run([sys.executable, "-m", "pytest", "tests", "-k", "cuda", "-x", "-q", "--benchmark-skip"], env)
    tests_s = time.monotonic() - start
    if rc != 0:
        print(f"bench gpu: error: the CUDA tests failed (pytest exit {rc}); no timing run", file=sys.stderr)
        return rc
    out = Path(args.out) if args.out else results_dir()
    rc = _run([sys.executable, "-m", "bench", "run", "--out", str(out), "--",
               "-k", "cuda", f"--benchmark-max-time={SWEEP_MAX_TIME}"], env)
    total = time.monotonic() - start
    print(f"bench gpu: tests {tests_s / 60:.1f} min, sweep {(total - tests_s) / 60:.1f} min, "
          f"total {total / 60:.1f} min (budget {BUDGET_S / 60:.0f}); results in {out}", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
