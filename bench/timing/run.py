"""``python -m bench run [--quick | --all-dtypes] [--threads LIST] [--rules-module M] [--out DIR] [-- PYTEST-ARGS...]``: time the sweep, then report.

Runs ``pytest bench --benchmark-only`` once per thread setting, each in its own process
(``ADAPTBENCH_THREADS``; see ``bench/threads.py``): ``default`` (the machine's default, the
headline) and ``1`` (one thread, the process pinned to one CPU). Each writes a
pytest-benchmark JSON to a temporary folder; the runs are merged into one JSON (every
benchmark carries its setting) and handed to ``bench.timing.report.generate``, which writes
``results/<machine>/`` for the whole sweep and ``results/<machine>/slices/<time>/`` for a
slice (arguments after ``--`` that select, e.g. ``-k``).

Round settings live in pyproject.toml's pytest ``addopts`` (at least 5 rounds, at most
~1 s of rounds per benchmark, rounds of at least 0.5 ms, GC off), so plain
``pytest --benchmark-only`` times the same way. The sweep (``ADAPTBENCH_SWEEP``,
``bench/timing/cases.py``): ``--quick`` (``make bench``) times a documented subset of
sizes and peers with ``QUICK_ROUNDS`` into ``results/<machine>/quick/``, never over the
whole sweep's folder; no flag is the whole fp32 sweep (the committed results); ``--all-dtypes``
adds bf16 and fp64 and takes more rounds (``make bench-full`` is the whole fp32 sweep,
``run`` without ``--quick``).
The Keras peers run after each setting's sweep in one process per backend, into that
setting's JSON (``bench/timing/keras_run.py``); the quick sweep has none.
Each setting's pytest shows a progress bar (bench/conftest.py): benchmarks done, the one
running, and the time left at the rate so far.
Arguments after ``--`` go to pytest, e.g. ``python -m bench run -- -k "adagrad and 1e6"``;
``--rules-module M`` (repeatable) goes to every pytest it runs, which imports M before
collection, so that the rules M registers are swept too (docs/adding-a-rule.md); such a run
reports into ``results/<machine>/rules/`` (git-ignored), never the committed folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine, threads

from . import cases, keras_run

REPO_ROOT = machine.REPO_ROOT
# The full sweep's rounds on top of the addopts ones (pyproject.toml) that every run uses.
FULL_ROUNDS = ("--benchmark-min-rounds=10", "--benchmark-max-time=2.0")
# The quick sweep's rounds: as many as fit a quarter second (still at least 5).
QUICK_ROUNDS = ("--benchmark-max-time=0.25",)
# What each sweep collects: the quick one has no sharded or training benchmarks.
PATHS = {"quick": ("bench/timing/bench_step.py",), "default": ("bench",), "full": ("bench",)}
THREAD_SETTINGS = ("default", "1")


def pytest_command(json_path: Path, sweep: str, extra: list[str]) -> list[str]:
    if sweep not in PATHS:
        raise ValueError(f"sweep must be one of {tuple(PATHS)}, got {sweep!r}")
    rounds = {"full": FULL_ROUNDS, "quick": QUICK_ROUNDS}.get(sweep, ())
    return [sys.executable, "-m", "pytest", *PATHS[sweep], "--benchmark-only", f"--benchmark-json={json_path}",
            *rounds, "-q", *extra]


def thread_settings(requested: str | None) -> list[str]:
    """The settings to run, in order, without duplicates: ``default`` and ``1`` are one
    setting on a machine with one usable CPU."""
    names = [s.strip() for s in (requested or ",".join(THREAD_SETTINGS)).split(",") if s.strip()]
    out, tags = [], set()
    for name in names:
        setting = threads.requested_setting(name)
        tag = threads.thread_tag(setting)
        if tag not in tags:
            tags.add(tag)
            out.append(setting)
    return out


def merge(parts: list[dict]) -> dict:
    """One JSON from the per-setting runs: the first run's machine info and metadata, every
    run's benchmarks (named apart by their thread tag), each run's setting and selection."""
    merged = dict(parts[0])
    merged["benchmarks"] = [b for part in parts for b in part.get("benchmarks", [])]
    blocks = [part.get("adaptbench") or {} for part in parts]
    meta = dict(blocks[0])
    meta["threads"] = [b.get("threads") for b in blocks]
    sel = [b.get("selection") or {} for b in blocks]
    meta["selection"] = {
        "partial": any(s.get("partial", True) for s in sel),
        "deselected": sum(s.get("deselected", 0) for s in sel),
        "files_not_collected": sorted({f for s in sel for f in s.get("files_not_collected", [])}),
        "args": sel[0].get("args", []),
    }
    merged["adaptbench"] = meta
    merged["machine_info"] = dict(parts[0].get("machine_info") or {})
    ab = dict(merged["machine_info"].get("adaptbench") or {})
    ab["thread_settings"] = [((p.get("machine_info") or {}).get("adaptbench") or {}).get("threads") for p in parts]
    merged["machine_info"]["adaptbench"] = ab
    return merged


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench run", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true",
                       help="a subset of sizes and peers in minutes, into results/<machine>/quick/ (make bench)")
    which.add_argument("--all-dtypes", action="store_true",
                       help="the whole sweep in bf16 and fp64 too, more rounds (make bench-full is fp32)")
    parser.add_argument("--threads", help="comma-separated thread settings (default: 'default,1')")
    parser.add_argument("--rules-module", action="append", default=[], metavar="MODULE",
                        help="import MODULE's rules in every pytest run, so that they are swept (repeatable); "
                             "the report goes to results/<machine>/rules/ (git-ignored)")
    parser.add_argument("--out", help="report folder (default: results/<machine>, its quick/ or rules/ folder for "
                                      "--quick or --rules-module, and slices/<time>/ beneath for a slice)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")
    args = parser.parse_args(argv)
    user = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    modules = [a for m in args.rules_module for a in ("--rules-module", m)]
    extra = [*modules, *user]
    try:
        sweep = "quick" if args.quick else "full" if args.all_dtypes else cases.sweep()
        settings = thread_settings(args.threads)
    except ValueError as exc:
        parser.error(str(exc))

    from . import report

    tmpdir = Path(tempfile.mkdtemp(prefix="adaptbench-run-"))
    command = "python -m bench run" + "".join(
        " " + a for a in ([f"--{sweep}"] if sweep != "default" else []) + ([f"--threads {args.threads}"] if args.threads else [])
        + ([shlex.join(modules)] if modules else []) + (["--", shlex.join(user)] if user else []))
    start = time.monotonic()
    rc = 0
    try:
        parts = []
        for i, setting in enumerate(settings, 1):
            json_path = tmpdir / f"benchmark-{setting}.json"
            env = dict(os.environ, ADAPTBENCH_SWEEP=sweep, ADAPTBENCH_THREADS=setting, ADAPTBENCH_COMMAND=command,
                       ADAPTBENCH_PROGRESS=f"threads {setting} ({i}/{len(settings)})")
            env.pop("ADAPTBENCH_FULL", None)
            env.pop("KERAS_BACKEND", None)  # the main sweep skips Keras: keras_run gives each backend a process
            cmd = pytest_command(json_path, sweep, extra)
            print(f"bench run [threads {setting}]:", shlex.join(cmd), flush=True)
            rc = subprocess.call(cmd, cwd=REPO_ROOT, env=env) or rc
            if sweep != "quick":
                keras = keras_run.run(lambda path, args: pytest_command(path, sweep, args), extra, json_path, env,
                                      REPO_ROOT)
                print(f"bench run: threads {setting}: keras peers: {keras}", flush=True)
            print(f"bench run: threads {setting}: pytest exited with {rc} at {(time.monotonic() - start) / 60:.1f} min",
                  flush=True)
            if json_path.exists():
                parts.append(json.loads(json_path.read_text()))
        if not parts:
            print("bench run: error: pytest wrote no benchmark JSON", file=sys.stderr)
            return rc or 2
        merged = merge(parts)
        if len(parts) < len(settings):  # a setting's pytest wrote nothing: not the whole sweep
            merged["adaptbench"]["selection"]["partial"] = True
        merged_path = tmpdir / "benchmark.json"
        merged_path.write_text(json.dumps(merged))
        try:
            out = report.generate(merged_path, args.out)
        except report.ReportError as exc:
            print(f"bench run: error: {exc}", file=sys.stderr)
            return 2
        print(f"bench run: wrote {out}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return rc
