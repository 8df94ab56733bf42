"""``python -m bench run [--full] [--out DIR] [-- PYTEST-ARGS...]``: time the sweep, then report.

Runs ``pytest bench --benchmark-only`` in a subprocess with the sweep's round settings and
``--benchmark-json`` to a temporary file, then ``bench.report.generate`` on it (which copies
it to ``results/<machine>/benchmark.json``, keeping the run before as ``previous.json``).

Default sweep (``make bench``): fp32, CPU (+ CUDA when present), every rule, size and
implementation; at least 5 rounds, at most ~1 s of rounds per benchmark, rounds of at
least 0.5 ms (pytest-benchmark batches fast steps), GC off while timing. ``--full``
(``make bench-full``) sets ``ADAPTBENCH_FULL=1`` (adds bf16 and fp64) and takes more rounds.
Arguments after ``--`` go to pytest, e.g. ``python -m bench run -- -k "adagrad and 1e6"``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import machine

from . import cases

REPO_ROOT = machine.REPO_ROOT
SWEEP = {
    "default": {"min_rounds": 5, "max_time": 1.0, "min_time": 0.0005},
    "full": {"min_rounds": 10, "max_time": 2.0, "min_time": 0.0005},
}


def pytest_command(json_path: Path, full: bool, extra: list[str]) -> list[str]:
    s = SWEEP["full" if full else "default"]
    return [
        sys.executable, "-m", "pytest", "bench", "--benchmark-only",
        f"--benchmark-json={json_path}",
        f"--benchmark-min-rounds={s['min_rounds']}",
        f"--benchmark-max-time={s['max_time']}",
        f"--benchmark-min-time={s['min_time']}",
        "--benchmark-disable-gc",
        "--benchmark-columns=median,iqr,rounds,iterations",
        "-q",
        *extra,
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="bf16 and fp64 too, more rounds (ADAPTBENCH_FULL=1)")
    parser.add_argument("--out", help="report folder (default: results/<machine>)")
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")
    args = parser.parse_args(argv)
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    full = args.full or cases.full_sweep()

    from . import report

    tmpdir = Path(tempfile.mkdtemp(prefix="adaptbench-run-"))
    json_path = tmpdir / "benchmark.json"
    env = dict(os.environ)
    env["ADAPTBENCH_FULL"] = "1" if full else "0"
    env["ADAPTBENCH_COMMAND"] = "python -m bench run" + "".join(
        " " + a for a in (["--full"] if full else []) + (["--", shlex.join(extra)] if extra else []))
    cmd = pytest_command(json_path, full, extra)
    print("bench run:", shlex.join(cmd), flush=True)
    start = time.monotonic()
    try:
        rc = subprocess.call(cmd, cwd=REPO_ROOT, env=env)
        elapsed = time.monotonic() - start
        print(f"bench run: pytest exited {rc} after {elapsed / 60:.1f} min", flush=True)
        if not json_path.exists():
            print("bench run: error: pytest wrote no benchmark JSON", file=sys.stderr)
            return rc or 2
        try:
            out = report.generate(json_path, args.out)
        except report.ReportError as exc:
            print(f"bench run: error: {exc}", file=sys.stderr)
            return 2
        print(f"bench run: wrote {out}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return rc
