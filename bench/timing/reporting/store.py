"""Where a report's files go, and the current/previous runs kept there."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from bench.machine import REPO_ROOT

from .data import ReportError, digest, load, slim
from .files import atomic_write_text

RESULTS_ROOT = REPO_ROOT / "results"
CURRENT = "benchmark.json"
PREVIOUS = "previous.json"


def ingest(src: Path, data: dict, out: Path) -> dict | None:
    """Make ``src`` the current run in ``out`` (moving the one there to ``previous.json``
    unless it is the same run); return the previous run, or None."""
    current, previous = out / CURRENT, out / PREVIOUS
    same_file = current.exists() and src.resolve() == current.resolve()
    if not same_file:
        new = slim(data)
        old = None
        if current.exists():
            try:
                old = slim(load(current))
            except ReportError as exc:
                print(f"bench report: warning: ignoring the earlier {current}: {exc}", file=sys.stderr)
        if old is not None and digest(old) != digest(new):
            os.replace(current, previous)
        atomic_write_text(current, json.dumps(new, indent=1) + "\n")
    if previous.exists():
        try:
            return load(previous)
        except ReportError as exc:
            print(f"bench report: warning: ignoring {previous}: {exc}", file=sys.stderr)
    return None


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

