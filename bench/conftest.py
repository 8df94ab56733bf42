"""pytest hooks for the benchmark suite (bench/bench_*.py).

- Before anything is collected, when benchmarks will run: one intra-op thread for torch and
  XLA (``bench.machine.configure_threads``; ``ADAPTBENCH_THREADS`` overrides) and, for the
  full sweep (``ADAPTBENCH_FULL=1``), jax's x64 mode so that fp64 exists in jax.
- Each size's probe benchmarks run right before that size's step benchmarks.
- Every pytest-benchmark JSON gets ``machine_info["adaptbench"]`` (CPU, cores, caches,
  GPUs, versions, git commit and dirty flag, thread counts, OPENBLAS_*/XLA_FLAGS/...)
  and a top-level ``"adaptbench"`` block (command, sweep, pytest-benchmark options).
"""

from __future__ import annotations

import os
import shlex
import warnings

from bench import machine
from bench.timing import cases

SCHEMA = 1


def _benchmarks_run(config) -> bool:
    try:
        return bool(config.getoption("benchmark_only")) or not config.getoption("benchmark_skip")
    except ValueError:  # pytest-benchmark not installed
        return False


def pytest_configure(config):
    if not _benchmarks_run(config):
        return
    setup = machine.configure_threads()
    if not setup["xla_flags_applied"]:
        warnings.warn("jax's backend started before bench/conftest.py set XLA_FLAGS; XLA thread flags not applied")
    if cases.full_sweep():
        import jax

        jax.config.update("jax_enable_x64", True)


def pytest_collection_modifyitems(session, config, items):
    """Run each size's probes right before its steps (not all probes first), so that the
    roofline and the steps it judges are measured minutes, not the whole sweep, apart."""
    slots = [i for i, item in enumerate(items) if isinstance(_spec(item), (cases.ProbeSpec, cases.StepSpec))]
    if not slots:
        return
    dtype_order = ("fp32", "bf16", "fp64")
    size_order = [s.id for s in cases.SIZES]

    def key(i):
        spec = _spec(items[i])
        return (
            cases.DEVICES.index(spec.device) if spec.device in cases.DEVICES else len(cases.DEVICES),
            dtype_order.index(spec.dtype) if spec.dtype in dtype_order else len(dtype_order),
            size_order.index(spec.size.id) if spec.size.id in size_order else len(size_order),
            0 if isinstance(spec, cases.ProbeSpec) else 1,
            i,
        )

    ordered = [items[i] for i in sorted(slots, key=key)]
    for slot, item in zip(slots, ordered):
        items[slot] = item


def _spec(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("spec") if callspec is not None else None


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["adaptbench"] = machine.collect()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    options = {}
    for name in ("min_rounds", "max_time", "min_time", "timer", "disable_gc", "warmup", "calibration_precision"):
        try:
            value = config.getoption(f"benchmark_{name}")
        except ValueError:
            continue
        options[name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    output_json["adaptbench"] = {
        "schema": SCHEMA,
        "full": cases.full_sweep(),
        "command": os.environ.get("ADAPTBENCH_COMMAND")
        or "python -m pytest " + shlex.join(map(str, config.invocation_params.args)),
        "benchmark_options": options,
    }
