"""Reading a results JSON: validation, one row per benchmark, the derived speedups and
roofline fractions, and the comparison with the previous run."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

from .. import probe as probe_mod

SCHEMA = 1

DEVICE_ORDER = ("cpu", "cuda")
DTYPE_ORDER = ("fp32", "bf16", "fp64")
RULE_ORDER = ("adagrad", "adadelta", "rmsprop")
SIZE_ORDER = ("iris15", "1e3", "1e5", "1e6", "tfm100", "1e7")
IMPL_ORDER = (
    "ours-torch-loop",
    "ours-torch-foreach",
    "ours-torch-fused",
    "ours-torch-auto",
    "ours-jax-step",
    "ours-jax-optax",
    "torch.optim-loop",
    "torch.optim-foreach",
    "torch.optim-fused",
    "optax",
    "jax-empty-jit",
)
STEP_KEYS = ("rule", "size", "n", "n_tensors", "dtype", "device", "impl", "framework", "family", "bytes_per_step")
PROBE_KEYS = ("size", "n", "dtype", "device", "framework", "bytes_per_call")
TRAINING_KEYS = ("rule", "impl", "steps_per_call")  # bench/bench_training.py
SLOWER, FASTER = 1.10, 1 / 1.10
# A row is over its CPU budget when its process CPU time per wall second exceeds the
# budget by more than this (the meter itself reads ~1.0 for a single busy thread).
BUDGET_SLACK = 0.1


class ReportError(Exception):
    """A problem with the input that the user must fix; reported without a traceback."""


def load(path) -> dict:
    """The parsed JSON at ``path``, checked to be an adaptbench pytest-benchmark run."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not JSON ({exc})") from None
    validate(data, str(path))
    return data


def validate(data, where: str = "JSON") -> None:
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{where}: not a pytest-benchmark JSON (no 'benchmarks' list)")
    if not data["benchmarks"]:
        raise ReportError(f"{where}: holds no benchmarks (did every benchmark skip or fail?)")
    ours = [b for b in data["benchmarks"] if isinstance(b, dict) and isinstance(b.get("extra_info"), dict)
            and "adaptbench" in b["extra_info"]]
    if not ours:
        raise ReportError(
            f"{where}: foreign pytest-benchmark JSON: no benchmark carries adaptbench's extra_info "
            "(write it with `python -m bench run` or `pytest bench --benchmark-only --benchmark-json=...`)"
        )
    schemas = {b["extra_info"]["adaptbench"] for b in ours}
    if schemas - {SCHEMA}:
        raise ReportError(f"{where}: adaptbench schema {sorted(schemas, key=str)} is not the supported {SCHEMA}")
    if not isinstance(data.get("machine_info"), dict):
        raise ReportError(f"{where}: no machine_info")
    for b in ours:
        ei = b["extra_info"]
        keys = {"step": STEP_KEYS, "probe": PROBE_KEYS, "training": TRAINING_KEYS}.get(ei.get("kind"))
        if keys is None:
            continue
        missing = [k for k in keys if k not in ei]
        stats = b.get("stats")
        if missing:
            raise ReportError(f"{where}: benchmark {b.get('name')!r}: extra_info lacks {missing}")
        median = stats.get("median") if isinstance(stats, dict) else None
        if not isinstance(median, (int, float)) or not median > 0 or not math.isfinite(median):
            raise ReportError(f"{where}: benchmark {b.get('name')!r}: no positive stats.median")
    if not any(b["extra_info"].get("kind") in ("step", "training") for b in ours):
        raise ReportError(f"{where}: no step or training benchmarks (only probes?)")


def order_key(value, order) -> tuple:
    return (order.index(value), "") if value in order else (len(order), str(value))


def step_key(r) -> tuple:
    return (r["device"], r["dtype"], r["tag"], r["rule"], r["size"], r["impl"])


def tag_order(tag: str) -> tuple:
    """Thread tags from the most CPUs (the machine default, the headline) to one."""
    digits = str(tag).lstrip("t")
    return (-int(digits), "") if digits.isdigit() else (1, str(tag))


def sort_key(r) -> tuple:
    return (
        order_key(r["device"], DEVICE_ORDER),
        order_key(r["dtype"], DTYPE_ORDER),
        tag_order(r["tag"]),
        order_key(r.get("rule"), RULE_ORDER),
        order_key(r["size"], SIZE_ORDER),
        r["n"],
        order_key(r["impl"], IMPL_ORDER),
    )


def rows(data: dict) -> tuple[list[dict], list[dict], int]:
    """(step rows, probe rows, ignored count) with everything the tables need, computed
    from the JSON's medians."""
    steps, probes, ignored = [], [], 0
    for b in data["benchmarks"]:
        ei = b.get("extra_info") or {}
        kind = ei.get("kind") if "adaptbench" in ei else None
        if kind not in ("step", "probe"):
            ignored += kind != "training"  # training rows: training_rows()
            continue
        st = b["stats"]
        row = {
            "name": b.get("name"),
            "device": ei["device"],
            "dtype": ei["dtype"],
            "size": ei["size"],
            "n": int(ei["n"]),
            "working_set_bytes": ei.get("working_set_bytes"),
            "working_set_arrays": ei.get("working_set_arrays"),
            "cache_resident": ei.get("cache_resident"),
            "cache_bytes": ei.get("cache_bytes"),
            "median_s": float(st["median"]),
            "iqr_s": st.get("iqr"),
            "rounds": st.get("rounds"),
            "iterations": st.get("iterations"),
            "cpu_util": ei.get("cpu_util"),
            "temp_bytes": ei.get("temp_bytes"),
            "temp_source": ei.get("temp_source"),
            # bench/timing/overhead.py: measured in a process of its own, beside the sweep
            "overhead_step_s": ei.get("overhead_step_s"),
            "kernel_s": ei.get("kernel_s"),
            "overhead_s": ei.get("overhead_s"),
            "kernel_calls": ei.get("kernel_calls"),
            "overhead_source": ei.get("overhead_source"),
            "overhead_error": ei.get("overhead_error"),
            **thread_fields(ei),
        }
        if kind == "probe":
            row.update(framework=ei["framework"], rule=None, bytes=int(ei["bytes_per_call"]),
                       impl=f"probe-ws{ei.get('working_set_arrays', '')}-{ei['framework']}",
                       probe_elements=ei.get("probe_elements", ei["n"]))
            row["gbps"] = row["bytes"] / row["median_s"] / 1e9
            probes.append(row)
        else:
            row.update({k: ei[k] for k in ("rule", "impl", "framework", "family")},
                       n_tensors=int(ei["n_tensors"]), bytes=int(ei["bytes_per_step"]),
                       recorded_probe_gbps=ei.get("probe_gbps"), impl_description=ei.get("impl_description"))
            row["gbps"] = row["bytes"] / row["median_s"] / 1e9
            steps.append(row)
    derive(steps, probes)
    steps.sort(key=sort_key)
    probes.sort(key=sort_key)
    return steps, probes, ignored


def thread_fields(ei: dict) -> dict:
    """The thread setting a benchmark ran under and whether it kept to its CPU budget.

    Runs from before thread settings were recorded name only torch's thread count; their
    budget is that count (what their tables claimed), not a pinned set of CPUs."""
    threads = ei.get("threads", ei.get("torch_threads"))
    budget = ei.get("cpu_budget") or threads
    util = ei.get("cpu_util")
    return {
        "threads": threads,
        "thread_setting": ei.get("thread_setting") or (None if threads is None else str(threads)),
        "cpu_budget": budget,
        "pinned": ei.get("cpu_budget") is not None and ei.get("thread_setting") not in (None, "default"),
        "tag": ei.get("thread_tag") or f"t{budget if budget is not None else '?'}",
        "over_budget": bool(util is not None and budget and util > budget + BUDGET_SLACK),
    }


def training_rows(data: dict) -> list[dict]:
    """Whole training steps on Iris (bench/bench_training.py): median per call (one epoch) and steps/s."""
    out = []
    for b in data["benchmarks"]:
        ei = b.get("extra_info") or {}
        if "adaptbench" not in ei or ei.get("kind") != "training":
            continue
        median = float(b["stats"]["median"])
        out.append({
            "group": b.get("group"), "rule": ei["rule"], "impl": ei["impl"], "framework": ei.get("framework"),
            "dataset": ei.get("dataset"), "model": ei.get("model"), "batch_size": ei.get("batch_size"),
            "steps_per_call": int(ei["steps_per_call"]), "median_s": median, "iqr_s": b["stats"].get("iqr"),
            "rounds": b["stats"].get("rounds"), "steps_per_s": int(ei["steps_per_call"]) / median,
            "cpu_util": ei.get("cpu_util"), **thread_fields(ei),
        })
    out.sort(key=lambda r: (tag_order(r["tag"]), str(r["group"]), order_key(r["rule"], RULE_ORDER), r["impl"]))
    return out


def training_key(r) -> tuple:
    return ("training", r["tag"], r["group"], r["rule"], r["impl"])


def derive(steps: list[dict], probes: list[dict]) -> None:
    """Speedups within each group and the roofline fraction, from the medians."""
    best_probe: dict[tuple, dict] = {}
    for p in probes:
        key = (p["device"], p["dtype"], p["tag"], p["size"], p.get("working_set_arrays"))
        if key not in best_probe or p["gbps"] > best_probe[key]["gbps"]:
            best_probe[key] = p
    for (device, dtype, tag, _rule, size), members in groups(steps).items():
        torch_optim = [m for m in members if m["impl"].startswith("torch.optim")]
        best_torch = min(torch_optim, key=lambda m: m["median_s"], default=None)
        optax = next((m for m in members if m["impl"] == "optax"), None)
        for m in members:
            probe = best_probe.get((device, dtype, tag, size, m.get("working_set_arrays")))
            floor = m.get("family") == "floor"  # a lower bound, not a competitor: no speedup
            m["best_torch_optim"] = best_torch["impl"] if best_torch else None
            m["speedup_vs_torch_optim"] = best_torch["median_s"] / m["median_s"] if best_torch and not floor else None
            m["speedup_vs_optax"] = optax["median_s"] / m["median_s"] if optax and not floor else None
            if probe is not None:
                m["roofline_gbps"], m["roofline_source"] = probe["gbps"], probe["impl"]
            else:  # the probe benchmark did not run; use what the step measured on the spot
                m["roofline_gbps"], m["roofline_source"] = m["recorded_probe_gbps"], "fixture"
            if m.get("family") == "floor":  # moves no data: no place on the roofline
                m["roofline_fraction"], m["probe_error"] = None, None
            else:
                m["roofline_fraction"], m["probe_error"] = probe_mod.fraction(m["gbps"], m["roofline_gbps"])


def compare(steps: list[dict], probes: list[dict], previous: dict | None, training: list[dict] = ()) -> None:
    """Attach ``prev_median_s`` and ``change`` (now / before) to rows also in ``previous``."""
    if previous is None:
        return
    old_steps, old_probes, _ = rows(previous)
    old = {step_key(r): r["median_s"] for r in old_steps + old_probes}
    old.update({training_key(r): r["median_s"] for r in training_rows(previous)})
    for r in [*steps, *probes, *training]:
        before = old.get(training_key(r) if "steps_per_s" in r else step_key(r))
        r["prev_median_s"] = before
        r["change"] = r["median_s"] / before if before else None


def groups(steps: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in steps:
        groups.setdefault((r["device"], r["dtype"], r["tag"], r["rule"], r["size"]), []).append(r)
    return groups



def digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def slim(data: dict) -> dict:
    """``data`` without the per-round samples (``stats.data``): the summary statistics stay,
    and a results folder holds kilobytes instead of megabytes."""
    out = dict(data)
    out["benchmarks"] = []
    for b in data["benchmarks"]:
        b = dict(b)
        if isinstance(b.get("stats"), dict):
            b["stats"] = {k: v for k, v in b["stats"].items() if k != "data"}
        out["benchmarks"].append(b)
    return out

