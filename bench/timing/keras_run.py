"""The Keras peers' processes for ``python -m bench run`` (``bench/timing/keras_cases.py``).

Keras fixes its backend at import, so after the main sweep (which skips the Keras cases)
each backend gets a pytest process of its own, ``KERAS_BACKEND=<backend>``, selecting
``keras-<backend>`` within the user's ``-k``; its benchmarks are appended to the main
JSON, so every table, plot and the headline see them like any other peer.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
from pathlib import Path
from typing import Callable

from .keras_cases import BACKENDS


def select(extra: list[str], backend: str) -> list[str]:
    """``extra`` with its ``-k`` expression narrowed to ``keras-<backend>`` (added if absent)."""
    keyword = f"keras-{backend}"
    out = list(extra)
    for i, arg in enumerate(out):
        if arg == "-k" and i + 1 < len(out):
            out[i + 1] = f"({out[i + 1]}) and {keyword}"
            return out
        if arg.startswith("-k") and len(arg) > 2:  # "-kEXPR"
            return out[:i] + ["-k", f"({arg[2:]}) and {keyword}"] + out[i + 1:]
    return out + ["-k", keyword]


def run(command: Callable[[Path, list[str]], list[str]], extra: list[str], main_json: Path,
        env: dict, cwd: Path) -> dict[str, int | str]:
    """Run each backend's Keras cases and append their benchmarks to ``main_json``.

    ``command(json_path, pytest_args)`` builds the pytest command line (the sweep's round
    settings). Returns each backend's exit code, or why it did not run.
    """
    if importlib.util.find_spec("keras") is None:
        return {backend: "keras is not installed" for backend in BACKENDS}
    outcome: dict[str, int | str] = {}
    for backend in BACKENDS:
        sub_env = {**env, "KERAS_BACKEND": backend}
        json_path = main_json.with_name(f"keras-{backend}.json")
        cmd = command(json_path, select(extra, backend))
        print(f"bench run: KERAS_BACKEND={backend}", shlex.join(cmd), flush=True)
        outcome[backend] = subprocess.call(cmd, cwd=cwd, env=sub_env)
        if json_path.exists() and main_json.exists():
            merged = json.loads(main_json.read_text())
            merged["benchmarks"].extend(json.loads(json_path.read_text()).get("benchmarks", []))
            main_json.write_text(json.dumps(merged))
    return outcome
