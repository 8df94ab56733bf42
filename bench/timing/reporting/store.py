"""Where a report's files go, and the run it is compared with.

Why not pytest-benchmark's own storage (``--benchmark-autosave``, ``--benchmark-compare``):
a run here is several pytest processes (one per thread setting, one per Keras backend)
merged into one JSON, which no single process's storage holds; runs are committed beside
their report in ``results/<machine>/`` (git keeps every earlier one), not in a per-user
cache; and only a run of the same sweep and thread settings is a fair "previous". The files
are pytest-benchmark's format all the same: ``pytest-benchmark compare
results/<machine>/previous.json results/<machine>/benchmark.json`` compares them in the terminal.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from bench.machine import REPO_ROOT
from bench.writer import atomic_write_text

from .frame import ReportError, benchmarks, load

RESULTS_ROOT = REPO_ROOT / "results"
CURRENT, PREVIOUS = "benchmark.json", "previous.json"
SLICES, QUICK = "slices", "quick"
# Runs that swept rules of the user's own (``--rules-module``): git-ignored, never in the committed folder.
RULES = "rules"


def selection(data: dict) -> tuple[bool, str]:
    """(is this JSON a slice of the sweep, why)."""
    sel = (data.get("adaptbench") or {}).get("selection") or {}
    if not sel.get("partial"):
        return False, "every benchmark file collected, nothing deselected"
    why = ([f"{sel['deselected']} benchmarks deselected"] if sel.get("deselected") else []) + (
        ["not collected: " + ", ".join(sel["files_not_collected"])] if sel.get("files_not_collected") else [])
    return True, "; ".join(why) or "not every thread setting wrote results"


def sweep_name(data: dict) -> str:
    """quick, default or full (runs from before the quick sweep record only ``full``)."""
    meta = data.get("adaptbench") or {}
    return meta.get("sweep") or ("full" if meta.get("full") else "default")


def sweep(data: dict) -> tuple:
    """What makes two runs comparable: the sweep and the thread settings."""
    return sweep_name(data), tuple(sorted(set(benchmarks(data)["tag"])))


def slim(data: dict) -> dict:
    """``data`` without the per-round samples (``stats.data``, which ``--benchmark-json``
    always writes): the summary statistics stay, and a results folder holds kilobytes."""
    return {**data, "benchmarks": [{**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
                                   if isinstance(b.get("stats"), dict) else b for b in data["benchmarks"]]}


def output_folder(data: dict, out=None) -> Path:
    """Where the report of ``data`` goes: ``--out`` when given, else ``results/<machine>/``
    for a whole sweep and ``results/<machine>/slices/<run time>/`` for a slice; the quick
    sweep and runs with ``--rules-module`` in the ``quick/`` and ``rules/`` folders beneath
    it. A slice never lands on a whole sweep's folder: that raises ``ReportError``."""
    from bench import machine

    partial, why = selection(data)
    if out is None:
        base = RESULTS_ROOT / machine.slug((data.get("machine_info") or {}).get("adaptbench") or {})
        base = base / QUICK if sweep_name(data) == QUICK else base / RULES if (
            data.get("adaptbench") or {}).get("rules_modules") else base
        stamp = re.sub(r"[^0-9A-Za-z]+", "", str(data.get("datetime") or "undated").split(".")[0])
        return base / SLICES / stamp if partial else base
    out = Path(out)
    if partial and (out / CURRENT).exists() and not selection(_read(out / CURRENT) or {})[0]:
        raise ReportError(
            f"{out} holds a whole sweep's results and this JSON is a slice ({why}): a slice never replaces "
            f"them. Leave out --out (the slice goes to results/<machine>/{SLICES}/<time>/) or pick another folder")
    return out


def _read(path: Path) -> dict | None:
    try:
        return load(path)
    except ReportError:
        return None


def ingest(src: Path, data: dict, out: Path) -> dict | None:
    """Make ``src`` the current run in ``out``; return the previous run of the same sweep, or None.

    The run there before becomes ``previous.json`` when it is of the same sweep and thread
    settings and is not this very run; otherwise ``previous.json`` goes (git holds the
    committed runs). Ingesting the same JSON again changes nothing."""
    current, previous = out / CURRENT, out / PREVIOUS
    key = sweep(data)
    if not (current.exists() and src.resolve() == current.resolve()):
        new, old = slim(data), _read(current) if current.exists() else None
        if old is None or sweep(old) != key:
            previous.unlink(missing_ok=True)
        elif slim(old) != new:
            os.replace(current, previous)
        atomic_write_text(current, json.dumps(new, indent=1) + "\n")
    before = _read(previous) if previous.exists() else None
    return before if before is not None and sweep(before) == key else None


def default_json(out=None) -> Path:
    """``<out>/benchmark.json`` when ``--out`` is given, else ``results/<this machine>/benchmark.json``,
    else the only ``results/*/benchmark.json``."""
    from bench import machine

    if out is not None:
        if not (Path(out) / CURRENT).exists():
            raise ReportError(f"{Path(out) / CURRENT}: no such file; pass --json PATH")
        return Path(out) / CURRENT
    here = RESULTS_ROOT / machine.slug(machine.collect()) / CURRENT
    found = [here] if here.exists() else sorted(RESULTS_ROOT.glob(f"*/{CURRENT}"))
    if len(found) == 1:
        return found[0]
    raise ReportError(f"no results under {RESULTS_ROOT}: run `python -m bench run` or pass --json PATH" if not found
                      else "several results folders and none for this machine; pass --json PATH: "
                      + ", ".join(p.parent.name for p in found))
