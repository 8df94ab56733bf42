"""The per-step benchmark: cases per framework, the bandwidth probe, the sweep, the report.

``python -m bench run`` times ``bench_step.py`` and ``bench_training.py`` with
pytest-benchmark, then ``report.py`` writes tables and plots under ``results/<machine>/``.
"""
