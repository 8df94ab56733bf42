"""``python -m bench {run,report,train} ...`` (see bench/__init__.py)."""

from __future__ import annotations

import sys

USAGE = """usage: python -m bench COMMAND [ARGS...]

commands:
  run [--quick|--all-dtypes] [--threads LIST] [--rules-module M] [-- PYTEST-ARGS]
                                    time the benchmark sweep (pytest --benchmark-only bench/) at the
                                    machine's default thread count and at one pinned thread, then report;
                                    --quick (make bench): a subset of sizes and peers, into results/<machine>/quick/;
                                    --rules-module M: sweep the rules module M registers too,
                                    into results/<machine>/rules/ (git-ignored)
  report [--json PATH] [--out DIR]  tables, CSV and plots under results/<machine>/ from a results JSON
                                    (a slice goes to results/<machine>/slices/<time>/)
  readme [--check]                  copy the report's generated files into README.md's marked blocks
  train ...                         the training experiment (bench/training/train.py)
  gpu [--out DIR]                   CUDA tests, then the CUDA sweep into results/gpu-<name>/ (make bench-gpu)
"""


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "run":
        from bench.timing import run

        return run.main(rest)
    if command == "report":
        from bench.timing import report

        return report.main(rest)
    if command == "readme":
        from bench.timing.reporting import readme

        return readme.main(rest)
    if command == "gpu":
        from bench.timing import gpu

        return gpu.main(rest)
    if command == "train":
        from bench.training import train

        return train.main(rest)
    print(f"python -m bench: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
