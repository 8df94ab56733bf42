"""adaptbench's harness: pytest-benchmark suites, bandwidth probe, training experiment, report.

Command line (from the repository root)::

    python -m bench run [--quick|--all-dtypes] [--threads LIST] [-- PYTEST-ARGS...]
                                                        # time the sweep at each thread setting, then report
    python -m bench report [--json PATH] [--out DIR]    # tables and plots from a results JSON
    python -m bench train ...                           # the training experiment (bench/training/train.py)

Nothing heavy is imported here; torch and jax load only where a command needs them.
"""
