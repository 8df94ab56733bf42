"""A results JSON as pandas frames: validation, one typed row per benchmark, the derived
speedups and roofline fractions, and the comparison with the previous run.

Every table, ratio, recommendation and target of the report is computed from these frames.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from .. import cases, probe as probe_mod

SCHEMA = 1
KEYS = {"step": ("rule", "size", "n", "n_tensors", "dtype", "device", "impl", "framework", "family", "bytes_per_step"),
        "probe": ("size", "n", "dtype", "device", "framework", "bytes_per_call"),
        "training": ("rule", "impl", "steps_per_call")}
# What bench/conftest.py adds to every benchmark: the thread setting it ran under.
THREAD_KEYS = ("thread_setting", "threads", "cpu_budget", "thread_tag")
SLOWER, FASTER = 1.10, 1 / 1.10
# Two medians closer than this ratio (or than their IQRs) are a tie: the run does not separate them.
TIE = 1.05
# A row is over its CPU budget when its process CPU time per wall second exceeds the
# budget by more than this (the meter itself reads ~1.0 for a single busy thread).
BUDGET_SLACK = 0.1
GROUP = ["device", "dtype", "tag", "rule", "size"]
# Optional in a benchmark's extra_info; the frame has them all the same.
COLUMNS = ("kind", *dict.fromkeys(k for keys in KEYS.values() for k in keys), "threads",
           "cpu_budget", "cpu_util", "thread_setting", "thread_tag", "working_set_arrays", "probe_gbps",
           "impl_description", "temp_bytes", "overhead_s", "probe_elements")


class ReportError(Exception):
    """A problem with the input that the user must fix; reported without a traceback."""


def load(path) -> dict:
    """The parsed JSON at ``path``, checked to be an adaptbench pytest-benchmark run."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not JSON ({exc})") from None
    validate(data, str(path))
    return data


def validate(data, where: str = "JSON") -> None:
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{where}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    if not data["benchmarks"]:
        raise ReportError(f"{where}: holds no benchmarks (did every benchmark skip or fail?)")
    ours = [b for b in data["benchmarks"] if isinstance(b, dict) and "adaptbench" in (b.get("extra_info") or {})]
    if not ours:
        raise ReportError(
            f"{where}: foreign pytest-benchmark JSON: no benchmark carries adaptbench's extra_info "
            "(write it with `python -m bench run` or `pytest bench --benchmark-only --benchmark-json=...`)")
    schemas = {b["extra_info"]["adaptbench"] for b in ours}
    if schemas - {SCHEMA}:
        raise ReportError(f"{where}: adaptbench schema {sorted(schemas, key=str)} is not the supported {SCHEMA}")
    if not isinstance(data.get("machine_info"), dict):
        raise ReportError(f"{where}: no machine_info")
    for b in ours:
        kind = b["extra_info"].get("kind")
        missing = [k for k in (*KEYS[kind], *THREAD_KEYS) if k not in b["extra_info"]] if kind in KEYS else []
        if missing:
            raise ReportError(f"{where}: benchmark {b.get('name')!r}: extra_info lacks {missing}")
        median = (b.get("stats") or {}).get("median") if kind in KEYS else 1
        if not isinstance(median, (int, float)) or not median > 0 or not math.isfinite(median):
            raise ReportError(f"{where}: benchmark {b.get('name')!r}: no positive stats.median")
    if not any(b["extra_info"].get("kind") in ("step", "training") for b in ours):
        raise ReportError(f"{where}: no step or training benchmarks (only probes?)")


def known_order(column: str) -> tuple:
    """The sweep's order of a column's values (the rules read at call time: ``--rules-module`` adds some)."""
    return {"device": cases.DEVICES, "dtype": tuple(cases.ITEMSIZE), "rule": cases.rule_names(),
            "size": tuple(s.id for s in cases.SIZES), "impl": cases.IMPL_ORDER}.get(column, ())


def order(values, column: str) -> list:
    """``values``' distinct members in ``column``'s known order, the others after them, sorted."""
    known = known_order(column)
    present = set(values) - {None}
    return [v for v in known if v in present] + sorted((v for v in present if v not in known), key=str)


def tag_key(tag) -> tuple:
    """Thread tags from the most CPUs (the machine default, the headline) to one."""
    digits = str(tag).lstrip("t")
    return (-int(digits), "") if digits.isdigit() else (1, str(tag))


def sort(df: pd.DataFrame, by=("device", "dtype", "tag", "rule", "size", "n", "impl")) -> pd.DataFrame:
    """``df`` in report order: devices, dtypes, rules, sizes and implementations in the
    sweep's order, thread settings from the most CPUs down."""
    def key(col: pd.Series) -> pd.Series:
        if col.name == "tag":
            return col.map(tag_key)
        if known_order(col.name):
            return col.map({v: i for i, v in enumerate(order(col, col.name))})
        return col

    return df.sort_values(list(by), key=key, kind="stable").reset_index(drop=True)


def _threads(df: pd.DataFrame) -> pd.DataFrame:
    """The thread setting's tag, whether it pins CPUs, and whether each benchmark kept to its CPU budget."""
    return df.assign(tag=df["thread_tag"], pinned=df["thread_setting"] != "default", over_budget=[
        u is not None and u > b + BUDGET_SLACK for u, b in zip(df["cpu_util"], df["cpu_budget"])])


def benchmarks(data: dict) -> pd.DataFrame:
    """One row per adaptbench benchmark: its ``extra_info`` and summary statistics."""
    records = [{**b["extra_info"], "name": b.get("name"), "group": b.get("group"),
                **{f"{k}_s" if k in ("median", "iqr") else k: (b.get("stats") or {}).get(k)
                   for k in ("median", "iqr", "rounds", "iterations")}}
               for b in data["benchmarks"] if "adaptbench" in (b.get("extra_info") or {})]
    # object columns keep each value as the JSON had it (an int stays an int beside a missing one)
    df = pd.DataFrame(records, dtype=object).reindex(columns=list(dict.fromkeys([*COLUMNS, *(
        k for r in records for k in r)])))
    df["median_s"] = df["median_s"].astype(float)
    return _threads(df.where(df.notna(), None))


def frames(data: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """(steps, probes, training, ignored count): the report's three tables of one run."""
    df = benchmarks(data)
    ignored = int((~df["kind"].isin(["step", "probe", "training", "sharded"])).sum())
    probes = df[df["kind"] == "probe"].assign(
        rule=None, bytes=lambda d: d["bytes_per_call"].astype(int),
        impl=lambda d: [f"probe-ws{'' if w is None else w}-{f}" for w, f in zip(d["working_set_arrays"],
                                                                                 d["framework"])])
    steps = df[df["kind"] == "step"].assign(bytes=lambda d: d["bytes_per_step"].astype(int))
    for frame in (steps, probes):
        frame["gbps"] = frame["bytes"] / frame["median_s"].astype(float) / 1e9
    training = df[df["kind"] == "training"].assign(
        steps_per_call=lambda d: d["steps_per_call"].astype(int),
        steps_per_s=lambda d: d["steps_per_call"] / d["median_s"].astype(float))
    training = sort(training, ("tag", "group", "rule", "impl"))
    return sort(derive(steps, probes)), sort(probes), training, ignored


def derive(steps: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Speedups within each group (device, dtype, thread setting, rule, size) and the
    roofline fraction against the best probe of the same working set, from the medians."""
    if steps.empty:
        return steps
    where = ["device", "dtype", "tag", "size", "working_set_arrays"]
    best_probe = (probes.sort_values("gbps", ascending=False, kind="stable").drop_duplicates(where)
                  [[*where, "gbps", "impl"]].rename(columns={"gbps": "probe_best_gbps", "impl": "probe_impl"}))
    steps = steps.merge(best_probe, on=where, how="left") if not probes.empty else steps.assign(
        probe_best_gbps=None, probe_impl=None)
    torch_optim = steps[steps["impl"].str.startswith("torch.optim")]
    best_torch = (torch_optim.sort_values("median_s", kind="stable").drop_duplicates(GROUP)
                  [[*GROUP, "impl", "median_s"]].rename(columns={"impl": "best_torch_optim", "median_s": "_torch"}))
    optax = steps[steps["impl"] == "optax"][[*GROUP, "median_s"]].rename(columns={"median_s": "_optax"})
    steps = steps.merge(best_torch, on=GROUP, how="left").merge(optax, on=GROUP, how="left")
    floor = steps["family"] == "floor"  # a lower bound, not a competitor: no speedup, no roofline
    steps["speedup_vs_torch_optim"] = (steps["_torch"] / steps["median_s"]).where(~floor & steps["_torch"].notna())
    steps["speedup_vs_optax"] = (steps["_optax"] / steps["median_s"]).where(~floor & steps["_optax"].notna())
    measured = steps["probe_best_gbps"].notna()  # else the probe did not run: what the step measured on the spot
    steps["roofline_gbps"] = steps["probe_best_gbps"].where(measured, steps["probe_gbps"])
    steps["roofline_source"] = steps["probe_impl"].where(measured, "fixture")
    judged = [(None, None) if fl else probe_mod.fraction(g, r)
              for fl, g, r in zip(floor, steps["gbps"], steps["roofline_gbps"])]
    steps["roofline_fraction"] = [f for f, _ in judged]
    steps["probe_error"] = [e for _, e in judged]
    steps = steps.drop(columns=["_torch", "_optax", "probe_best_gbps", "probe_impl"])
    return steps.astype(object).where(steps.notna(), None)


def compare(current: pd.DataFrame, previous: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``current`` with ``prev_median_s`` and ``change`` (now / before) where ``previous``
    has the same benchmark (``keys`` equal)."""
    if previous is None or previous.empty or current.empty:
        return current.assign(prev_median_s=None, change=None)
    before = previous[[*keys, "median_s"]].drop_duplicates(keys, keep="last").rename(columns={"median_s": "prev_median_s"})
    out = current.merge(before, on=keys, how="left")
    out["change"] = out["median_s"] / out["prev_median_s"]
    return out.astype(object).where(out.notna(), None)


STEP_KEYS = ["device", "dtype", "tag", "rule", "size", "impl"]
TRAINING_KEYS = ["tag", "group", "rule", "impl"]


def within_noise(fast: dict, slow: dict) -> bool:
    """True when ``slow``'s median is not clearly above ``fast``'s: the gap is smaller than
    the mean of the two IQRs, or the ratio is below ``TIE``."""
    gap = slow["median_s"] - fast["median_s"]
    noise = ((fast.get("iqr_s") or 0.0) + (slow.get("iqr_s") or 0.0)) / 2
    return gap <= noise or slow["median_s"] < TIE * fast["median_s"]


def records(df: pd.DataFrame) -> list[dict]:
    """The rows as dicts with None for a missing value, for the formatters."""
    return df.astype(object).where(df.notna(), None).to_dict("records")
