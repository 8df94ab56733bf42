"""Where a report's files go, and the current/previous runs kept there.

Why not pytest-benchmark's own storage (``--benchmark-autosave`` into ``.benchmarks/``,
``--benchmark-compare``): a run here is several pytest processes (one per thread setting,
one per Keras backend) merged into one JSON, which no single process's storage holds; the
runs are committed beside their report in ``results/<machine>/``, not in a per-user cache;
and only a run of the same sweep (quick, default or full; same thread settings) is a fair
"previous". The files are pytest-benchmark's format all the same, so its own command
compares any two of them in the terminal:
``pytest-benchmark compare results/<machine>/previous.json results/<machine>/benchmark.json``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from bench.machine import REPO_ROOT
from bench.writer import atomic_write_text

from .frame import ReportError, benchmarks, load

RESULTS_ROOT = REPO_ROOT / "results"
CURRENT = "benchmark.json"
PREVIOUS = "previous.json"
ARCHIVE = "archive"
SLICES = "slices"
QUICK = "quick"
# Runs that swept rules of the user's own (``--rules-module``): git-ignored, never in the committed folder.
RULES = "rules"


def selection(data: dict) -> tuple[bool, str]:
    """(is this JSON a slice of the sweep, why). Runs written before the harness recorded
    its selection count as whole sweeps."""
    sel = (data.get("adaptbench") or {}).get("selection")
    if not isinstance(sel, dict):
        return False, "the run records no selection"
    if not sel.get("partial"):
        return False, "every benchmark file collected, nothing deselected"
    why = []
    if sel.get("deselected"):
        why.append(f"{sel['deselected']} benchmarks deselected")
    if sel.get("files_not_collected"):
        why.append("not collected: " + ", ".join(sel["files_not_collected"]))
    return True, "; ".join(why) or "not every thread setting wrote results"


def sweep_name(data: dict) -> str:
    """quick, default or full (runs from before the quick sweep record only ``full``)."""
    meta = data.get("adaptbench") or {}
    return meta.get("sweep") or ("full" if meta.get("full") else "default")


def sweep(data: dict) -> tuple:
    """What makes two runs comparable: the sweep and the thread settings."""
    return sweep_name(data), tuple(sorted(set(benchmarks(data)["tag"])))


def slim(data: dict) -> dict:
    """``data`` without the per-round samples (``stats.data``): the summary statistics stay,
    and a results folder holds kilobytes instead of megabytes."""
    return {**data, "benchmarks": [{**b, "stats": {k: v for k, v in b["stats"].items() if k != "data"}}
                                   if isinstance(b.get("stats"), dict) else b for b in data["benchmarks"]]}


def _stamp(data: dict) -> str:
    text = str(data.get("datetime") or "undated")
    return re.sub(r"[^0-9A-Za-z]+", "", text.split(".")[0]) or "undated"


def output_folder(data: dict, out=None) -> Path:
    """Where the report of ``data`` goes: ``--out`` when given, else ``results/<machine>/``
    for a whole sweep and ``results/<machine>/slices/<run time>/`` for a slice; the quick
    sweep and runs with ``--rules-module`` in the ``quick/`` and ``rules/`` folders beneath
    it. A slice never lands on a whole sweep's folder: that raises ``ReportError``."""
    from bench import machine

    partial, why = selection(data)
    if out is None:
        base = RESULTS_ROOT / machine.slug((data.get("machine_info") or {}).get("adaptbench") or {})
        if sweep_name(data) == QUICK:
            base = base / QUICK
        elif (data.get("adaptbench") or {}).get("rules_modules"):
            base = base / RULES
        return base / SLICES / _stamp(data) if partial else base
    out = Path(out)
    if partial and (out / CURRENT).exists():
        held = _read(out / CURRENT)
        if held is None or not selection(held)[0]:
            raise ReportError(
                f"{out} holds a whole sweep's results and this JSON is a slice ({why}): a slice never replaces "
                f"them. Leave out --out (the slice goes to results/<machine>/{SLICES}/<time>/) or pick another folder")
    return out


def _read(path: Path, warning: str | None = None) -> dict | None:
    """The run at ``path``, or None when it cannot be read (then ``warning``, formatted with
    ``path`` and ``exc``, goes to stderr)."""
    try:
        return load(path)
    except ReportError as exc:
        if warning:
            print("bench report: warning: " + warning.format(path=path, exc=exc), file=sys.stderr)
        return None


def _archive(path: Path, out: Path) -> None:
    """Move ``path`` to ``archive/<name>-<its run time>.json``, never over an earlier one."""
    held = _read(path)
    stem = f"{path.stem}-{'unreadable' if held is None else _stamp(held)}"
    (out / ARCHIVE).mkdir(exist_ok=True)
    target, i = out / ARCHIVE / f"{stem}.json", 1
    while target.exists():
        target, i = out / ARCHIVE / f"{stem}-{i}.json", i + 1
    os.replace(path, target)
    print(f"bench report: kept {path.name} of another sweep as {target}", file=sys.stderr)


def ingest(src: Path, data: dict, out: Path) -> dict | None:
    """Make ``src`` the current run in ``out``; return the previous run of the same sweep, or None.

    The run there before becomes ``previous.json`` when it is of the same sweep (same
    default/full sweep and thread settings) and is not this very run; a run of another
    sweep, or one that cannot be read, goes to ``archive/`` together with its
    ``previous.json``, so no run is ever overwritten."""
    current, previous = out / CURRENT, out / PREVIOUS
    if not current.exists() or src.resolve() != current.resolve():
        new = slim(data)
        old = _read(current, "the earlier {path} is unreadable ({exc})") if current.exists() else None
        if old is not None and sweep(old) == sweep(new):
            if slim(old) != new:
                os.replace(current, previous)
        elif current.exists():  # another sweep's run, or an unreadable one: archived with its previous
            for held in (p for p in (current, previous) if p.exists()):
                _archive(held, out)
        atomic_write_text(current, json.dumps(new, indent=1) + "\n")
    before = _read(previous, "ignoring {path}: {exc}") if previous.exists() else None
    return before if before is not None and sweep(before) == sweep(data) else None


def default_json(out=None) -> Path:
    """``<out>/benchmark.json`` when ``--out`` is given, else ``results/<this machine>/benchmark.json``,
    else the only ``results/*/benchmark.json``."""
    from bench import machine

    if out is not None:
        if (Path(out) / CURRENT).exists():
            return Path(out) / CURRENT
        raise ReportError(f"{Path(out) / CURRENT}: no such file; pass --json PATH")
    try:
        here = RESULTS_ROOT / machine.slug(machine.collect()) / CURRENT
    except Exception:
        here = None
    if here is not None and here.exists():
        return here
    found = sorted(RESULTS_ROOT.glob(f"*/{CURRENT}"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ReportError(f"no results under {RESULTS_ROOT}: run `python -m bench run` or pass --json PATH")
    raise ReportError("several results folders and none for this machine; pass --json PATH: "
                      + ", ".join(str(p.parent.name) for p in found))

