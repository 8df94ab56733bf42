"""pytest hooks for the benchmark suite (bench/**/bench_*.py).

- ``--rules-module`` (the root conftest.py imports the modules) is passed on to the
  processes a benchmark starts, in ``ADAPTBENCH_RULES_MODULES`` (``cases.RULES_MODULES``).
- Before anything is collected, when benchmarks will run: the thread setting
  ``ADAPTBENCH_THREADS`` (``default``, or N threads pinned to N CPUs:
  ``bench.threads.configure_threads``) and, for the full sweep (``ADAPTBENCH_SWEEP=full``),
  jax's x64 mode so that fp64 exists in jax.
- With ``ADAPTBENCH_PROGRESS`` set (``python -m bench run`` sets it to the setting's label):
  a tqdm bar over the collected benchmarks, naming the one running, with the time left at
  the rate so far, in place of pytest's dots.
- A selection (``-k``) keeps the probe benchmarks its steps' rooflines need, and each
  size's probes run right before that size's steps.
- Every pytest-benchmark JSON gets ``machine_info["adaptbench"]`` (CPU, cores, caches,
  GPUs, versions, git commit and dirty flag, thread setting, OPENBLAS_*/XLA_FLAGS/...)
  and a top-level ``"adaptbench"`` block (command, sweep, thread setting, pytest-benchmark
  options, and ``selection``: whether this is the whole sweep or a slice of it). Every
  benchmark gets its thread setting in ``extra_info`` and its tag (``t<CPU budget>``) in its
  name and group, so runs at different settings merge into one JSON without clashes.
"""

from __future__ import annotations

import os
import shlex
import sys
import warnings
from pathlib import Path

import pytest

from bench import machine, threads
from bench.timing import cases

SCHEMA = 1
BENCH_DIR = Path(__file__).resolve().parent
_selection = {"deselected": [], "benchmark_files": set()}
_progress: dict = {}


def _benchmarks_run(config) -> bool:
    try:
        return bool(config.getoption("benchmark_only")) or not config.getoption("benchmark_skip")
    except ValueError:  # pytest-benchmark not installed
        return False


def pytest_configure(config):
    modules = config.getoption("rules_module", default=[])
    if modules:  # the processes a benchmark starts import them too (cases.rule_names)
        os.environ[cases.RULES_MODULES] = ",".join(modules)
    if not _benchmarks_run(config):
        return
    setup = threads.configure_threads()
    if not setup["xla_flags_applied"]:
        warnings.warn("jax's backend started before bench/conftest.py set XLA_FLAGS; XLA thread flags not applied")
    if cases.full_sweep():
        import jax

        jax.config.update("jax_enable_x64", True)


def pytest_deselected(items):
    _selection["deselected"].extend(items)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """After ``-k``/``-m`` deselection: bring back the probes that the selected steps'
    rooflines need, then run each size's probes right before its steps (not all probes
    first), so that the roofline and the steps it judges are measured minutes, not the
    whole sweep, apart."""
    _selection["benchmark_files"] = {str(Path(item.path).resolve()) for item in items
                                     if "benchmark" in getattr(item, "fixturenames", ())}
    _restore_needed_probes(items)
    slots = [i for i, item in enumerate(items) if isinstance(_spec(item), (cases.ProbeSpec, cases.StepSpec))]
    if not slots:
        return
    def rank(value, known) -> int:
        return known.index(value) if value in known else len(known)

    def key(i):
        spec = _spec(items[i])
        return (rank(spec.device, cases.DEVICES), rank(spec.dtype, tuple(cases.ITEMSIZE)),
                rank(spec.size, cases.SIZES), 0 if isinstance(spec, cases.ProbeSpec) else 1, i)

    ordered = [items[i] for i in sorted(slots, key=key)]
    for slot, item in zip(slots, ordered):
        items[slot] = item


def _restore_needed_probes(items) -> None:
    needed = {(s.size.id, s.dtype, s.device, s.arrays) for s in map(_spec, items) if isinstance(s, cases.StepSpec)}
    present = {id(item) for item in items}
    back = [item for item in _selection["deselected"] if id(item) not in present
            and isinstance(_spec(item), cases.ProbeSpec)
            and (_spec(item).size.id, _spec(item).dtype, _spec(item).device, _spec(item).arrays) in needed]
    if back:
        gone = {id(item) for item in back}
        _selection["deselected"] = [item for item in _selection["deselected"] if id(item) not in gone]
        items.extend(back)


def pytest_collection_finish(session):
    label = os.environ.get("ADAPTBENCH_PROGRESS")
    if not (label and session.items and _benchmarks_run(session.config)):
        return
    import torch
    from tqdm import tqdm

    # CUDA cases skip at once without a GPU: counting them would double the estimate
    devices = {"cpu", "cuda"} if torch.cuda.is_available() else {"cpu"}
    _progress["counted"] = {item.nodeid for item in session.items
                            if getattr(_spec(item), "device", "cpu") in devices}
    _progress["bar"] = tqdm(total=len(_progress["counted"]), desc=label, unit="benchmark", file=sys.stderr,
                            dynamic_ncols=True, bar_format="{desc}: {n}/{total} [{elapsed}<{remaining}]{postfix}")


def pytest_runtest_logstart(nodeid, location):
    if nodeid in _progress.get("counted", ()):
        _progress["bar"].set_postfix_str(nodeid.rsplit("[", 1)[-1].rstrip("]"), refresh=True)


def pytest_runtest_logfinish(nodeid, location):
    if nodeid in _progress.get("counted", ()):
        _progress["bar"].update(1)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report, config):
    """Under the progress bar a benchmark that passed or skipped prints nothing (no dot)."""
    if "bar" in _progress and not report.failed:
        return (report.outcome if report.when == "call" or report.skipped else ""), "", ""
    return None


def pytest_sessionfinish(session):
    if "bar" in _progress:
        _progress.pop("bar").close()
        _progress.clear()


def selection(config) -> dict:
    """Whether this session ran the whole sweep: nothing deselected and every benchmark
    file of the sweep collected (every ``bench/**/bench_*.py``; the quick sweep's is
    ``bench/timing/bench_step.py`` alone). A report treats anything else as a slice."""
    every = ({str(BENCH_DIR / "timing" / "bench_step.py")} if cases.quick_sweep()
             else {str(p.resolve()) for p in BENCH_DIR.rglob("bench_*.py")})
    missing = sorted(os.path.relpath(p, BENCH_DIR.parent) for p in every - _selection["benchmark_files"])
    deselected = len(_selection["deselected"])
    return {
        "partial": bool(deselected or missing),
        "deselected": deselected,
        "files_not_collected": missing,
        "args": [str(a) for a in config.invocation_params.args],
    }


def _spec(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("spec") if callspec is not None else None


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["adaptbench"] = machine.collect(machine_info.get("cpu"))


def pytest_benchmark_update_json(config, benchmarks, output_json):
    options = {}
    for name in ("min_rounds", "max_time", "min_time", "timer", "disable_gc", "warmup", "calibration_precision"):
        try:
            value = config.getoption(f"benchmark_{name}")
        except ValueError:
            continue
        options[name] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
    record = threads.thread_record()
    tag = record["thread_tag"]
    for b in output_json["benchmarks"]:
        b.setdefault("extra_info", {}).update(record)
        for key in ("name", "fullname"):
            if isinstance(b.get(key), str) and tag:
                b[key] = b[key][:-1] + f"-{tag}]" if b[key].endswith("]") else b[key] + f"[{tag}]"
        if b.get("group") and tag:
            b["group"] = f"{b['group']}-{tag}"
    output_json["adaptbench"] = {
        "schema": SCHEMA,
        "full": cases.full_sweep(),
        "sweep": cases.sweep(),
        "threads": record,
        "selection": selection(config),
        "rules_modules": config.getoption("rules_module", default=[]),
        "command": os.environ.get("ADAPTBENCH_COMMAND")
        or "python -m pytest " + shlex.join(map(str, config.invocation_params.args)),
        "benchmark_options": options,
    }
