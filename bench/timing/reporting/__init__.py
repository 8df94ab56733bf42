"""The report generator's parts (``bench/timing/report.py`` runs them)."""
