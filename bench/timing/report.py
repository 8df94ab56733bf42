"""``python -m bench report [--json PATH] [--out DIR]``: tables and plots from a results JSON.

Every table comes from one pandas frame per kind of benchmark (``reporting/frame.py``).
Reads a pytest-benchmark JSON written by ``pytest bench --benchmark-only --benchmark-json``
(``python -m bench run`` does that, one run per thread setting merged into one JSON) and
writes the report into a folder:

- a whole sweep goes to ``results/<machine>/`` (the name comes from the JSON's machine
  info: ``gpu-<gpu-name>`` or ``cpu-<model>-<cores>c``), the quick sweep (``make bench``)
  to ``results/<machine>/quick/``, a run with ``--rules-module`` to ``results/<machine>/rules/``;
- a slice (a ``-k`` selection, a subset of the benchmark files: the JSON's
  ``adaptbench.selection``) goes to ``results/<machine>/slices/<run time>/``, never over a
  whole sweep: ``--out`` naming a folder that holds one is refused.

In the folder:

- ``benchmark.json``: the run the tables show (a copy of ``--json`` without the per-round
  samples, which pytest-benchmark writes by the thousand; summary statistics are kept);
- ``previous.json``: the run before it, when it is of the same sweep (default or full,
  same thread settings); the report shows each benchmark's median before -> after. After
  a run of another sweep there is none (git keeps the committed runs). Ingesting the
  same JSON again changes nothing;
- ``README.md``: how the run was made, whether the implementations changed since its
  commit, the recommendation, the headline, labels, cache residency, per-rule tables
  (median us, speedups, % of the bandwidth probe, CPU use against the thread budget,
  temporary memory per step, the call overhead of the fused steps), the call overhead's own
  table (step, kernel and overhead us; bench/timing/overhead.py), the probe, training
  throughput, changes since the previous run, probe errors;
- ``recommendation.md`` (the fastest implementation per framework, size, device, dtype
  and thread setting), ``headline.md`` (ours against the fastest peer) and ``targets.md``
  (issue #15's performance targets, met or missed, with this run's numbers);
- ``results.csv`` (one row per step benchmark), ``probe.csv`` and, when the run includes
  bench/training/bench_training.py, ``training.csv`` (whole training steps per second on Iris);
- ``time-<device>-<dtype>-<threads>.png`` and ``roofline-<device>-<dtype>-<threads>.png``.

Without ``--json`` the report is regenerated from ``results/<this machine>/benchmark.json``.
Every file is written to a temporary file in the same folder and moved into place
(``os.replace``). A missing, unreadable or foreign JSON exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from bench.writer import atomic_write_bytes, atomic_write_text

from .reporting.fmt import csv_text
from .reporting.frame import STEP_KEYS, TRAINING_KEYS, ReportError, compare, frames, load
from .reporting.markdown import headline, markdown, recommendation
from .reporting.store import CURRENT, default_json, ingest, output_folder
from .reporting.targets import targets

STEP_COLUMNS = (
    "device", "dtype", "rule", "size", "n", "n_tensors", "impl", "family", "framework",
    "median_us", "iqr_us", "rounds", "iterations", "best_torch_optim", "speedup_vs_torch_optim",
    "speedup_vs_optax", "bytes_per_step", "gbps", "roofline_gbps", "roofline_source",
    "roofline_fraction", "probe_error", "working_set_bytes", "cache_resident",
    "thread_setting", "threads", "cpu_budget", "cpu_util", "over_budget", "temp_bytes", "temp_source",
    "overhead_step_us", "kernel_us", "kernel_calls", "overhead_us", "overhead_source", "overhead_error",
    "previous_median_us", "change",
)
PROBE_COLUMNS = ("device", "dtype", "size", "n", "working_set_arrays", "probe_elements", "framework",
                 "median_us", "iqr_us", "rounds", "bytes_per_call", "gbps", "working_set_bytes", "cache_resident",
                 "thread_setting", "threads", "cpu_budget", "cpu_util", "over_budget", "previous_median_us", "change")
TRAINING_COLUMNS = ("group", "rule", "impl", "framework", "dataset", "model", "batch_size", "steps_per_call",
                    "median_us", "iqr_us", "rounds", "steps_per_s", "thread_setting", "threads", "cpu_budget",
                    "cpu_util", "over_budget", "previous_median_us", "change")


def generate(json_path, out=None) -> Path:
    """Ingest ``json_path`` and write the report; return the output folder."""
    from . import plots
    from .reporting import sharded as report_sharded

    src = Path(json_path)
    data = load(src)
    out = output_folder(data, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create ({exc.strerror or exc})") from None
    previous = ingest(src, data, out)
    steps, probes, training, ignored = frames(data)
    if previous is not None:
        old_steps, old_probes, old_training, _ = frames(previous)
        steps = compare(steps, pd.concat([old_steps, old_probes]), STEP_KEYS)
        probes = compare(probes, pd.concat([old_steps, old_probes]), STEP_KEYS)
        training = compare(training, old_training, TRAINING_KEYS)
    else:
        steps, probes, training = (compare(f, None, []) for f in (steps, probes, training))
    written = plots.write_all(steps, out, atomic_write_bytes)
    for stale in [*out.glob("time-*.png"), *out.glob("roofline-*.png")]:  # plots of an earlier sweep's settings
        if stale.name not in written:
            stale.unlink()
    atomic_write_text(out / "results.csv", csv_text(steps, STEP_COLUMNS))
    atomic_write_text(out / "probe.csv", csv_text(probes, PROBE_COLUMNS))
    atomic_write_text(out / "headline.md", headline(steps))
    atomic_write_text(out / "recommendation.md", recommendation(steps))
    atomic_write_text(out / "targets.md", targets(steps, training))
    if not training.empty:
        atomic_write_text(out / "training.csv", csv_text(training, TRAINING_COLUMNS))
    sharded = report_sharded.write(data, out, atomic_write_bytes)
    name = f"{out.parent.name} (quick sweep)" if (data.get("adaptbench") or {}).get("sweep") == "quick" else out.name
    text = markdown(data, steps, probes, previous, written, name, ignored, CURRENT, training)
    atomic_write_text(out / "README.md", text + ("\n" + sharded if sharded else ""))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="pytest-benchmark JSON (default: results/<this machine>/benchmark.json)")
    parser.add_argument("--out", help="output folder (default: results/<machine from the JSON>, or its "
                                      "slices/<time>/ for a slice; a slice never replaces a whole sweep)")
    args = parser.parse_args(argv)
    try:
        out = generate(args.json or default_json(args.out), args.out)
    except ReportError as exc:
        print(f"bench report: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"bench report: wrote {out}")
    return 0
