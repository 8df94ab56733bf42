"""``python -m bench report [--json PATH] [--out DIR]``: tables and plots from a results JSON.

Reads a pytest-benchmark JSON written by ``pytest bench --benchmark-only --benchmark-json``
(``python -m bench run`` does that) and writes into ``results/<machine>/`` (the name comes
from the JSON's machine info: ``gpu-<gpu-name>`` or ``cpu-<model>-<cores>c``; ``--out``
overrides it):

- ``benchmark.json``: the run the tables show (a copy of ``--json`` without the per-round
  samples, which pytest-benchmark writes by the thousand; summary statistics are kept);
- ``previous.json``: the run before it. Ingesting a new JSON moves the old
  ``benchmark.json`` here (ingesting the same JSON again changes nothing), and the report
  shows each benchmark's median before -> after and their ratio, so a slowdown is visible;
- ``README.md``: how the run was made (command, date, commit, machine, threads,
  versions), cache residency of each size, per-rule tables (median us per step, speedup over
  the best torch.optim variant and over optax, GB/s and % of the bandwidth probe), changes
  since the previous run, probe errors;
- ``results.csv`` (one row per step benchmark), ``probe.csv`` and, when the run includes
  bench/bench_training.py, ``training.csv`` (whole training steps per second on Iris);
- ``time-<device>-<dtype>.png`` and ``roofline-<device>-<dtype>.png``.

Without ``--json`` the report is regenerated from ``results/<this machine>/benchmark.json``.
Every file is written to a temporary file in the same folder and moved into place
(``os.replace``). A missing, unreadable or foreign JSON exits with status 2 and a message.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import tempfile
from pathlib import Path

from . import probe as probe_mod

RESULTS_ROOT = Path(__file__).resolve().parent.parent / "results"
SCHEMA = 1
CURRENT = "benchmark.json"
PREVIOUS = "previous.json"

DEVICE_ORDER = ("cpu", "cuda")
DTYPE_ORDER = ("fp32", "bf16", "fp64")
RULE_ORDER = ("adagrad", "adadelta", "rmsprop")
SIZE_ORDER = ("iris15", "1e3", "1e5", "1e6", "tfm100", "1e7")
IMPL_ORDER = (
    "ours-torch-loop",
    "ours-torch-foreach",
    "ours-torch-fused",
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


class ReportError(Exception):
    """A problem with the input that the user must fix; reported without a traceback."""


# ----------------------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------- reading


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


def _order(value, order) -> tuple:
    return (order.index(value), "") if value in order else (len(order), str(value))


def _step_key(r) -> tuple:
    return (r["device"], r["dtype"], r["rule"], r["size"], r["impl"])


def _sort_key(r) -> tuple:
    return (
        _order(r["device"], DEVICE_ORDER),
        _order(r["dtype"], DTYPE_ORDER),
        _order(r.get("rule"), RULE_ORDER),
        _order(r["size"], SIZE_ORDER),
        r["n"],
        _order(r["impl"], IMPL_ORDER),
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
                       recorded_probe_gbps=ei.get("probe_gbps"))
            row["gbps"] = row["bytes"] / row["median_s"] / 1e9
            steps.append(row)
    _derive(steps, probes)
    steps.sort(key=_sort_key)
    probes.sort(key=_sort_key)
    return steps, probes, ignored


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
        })
    out.sort(key=lambda r: (str(r["group"]), _order(r["rule"], RULE_ORDER), r["impl"]))
    return out


def _training_key(r) -> tuple:
    return ("training", r["group"], r["rule"], r["impl"])


def _derive(steps: list[dict], probes: list[dict]) -> None:
    """Speedups within each group and the roofline fraction, from the medians."""
    best_probe: dict[tuple, dict] = {}
    for p in probes:
        key = (p["device"], p["dtype"], p["size"], p.get("working_set_arrays"))
        if key not in best_probe or p["gbps"] > best_probe[key]["gbps"]:
            best_probe[key] = p
    for (device, dtype, _rule, size), members in _groups(steps).items():
        torch_optim = [m for m in members if m["impl"].startswith("torch.optim")]
        best_torch = min(torch_optim, key=lambda m: m["median_s"], default=None)
        optax = next((m for m in members if m["impl"] == "optax"), None)
        for m in members:
            probe = best_probe.get((device, dtype, size, m.get("working_set_arrays")))
            m["best_torch_optim"] = best_torch["impl"] if best_torch else None
            m["speedup_vs_torch_optim"] = best_torch["median_s"] / m["median_s"] if best_torch else None
            m["speedup_vs_optax"] = optax["median_s"] / m["median_s"] if optax else None
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
    old = {_step_key(r): r["median_s"] for r in old_steps + old_probes}
    old.update({_training_key(r): r["median_s"] for r in training_rows(previous)})
    for r in [*steps, *probes, *training]:
        before = old.get(_training_key(r) if "steps_per_s" in r else _step_key(r))
        r["prev_median_s"] = before
        r["change"] = r["median_s"] / before if before else None


# ----------------------------------------------------------------------------- formatting


def fmt_us(seconds) -> str:
    if seconds is None:
        return ""
    us = seconds * 1e6
    if us >= 100:
        return f"{us:,.0f}"
    if us >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_x(value) -> str:
    return "" if value is None else f"{value:.2f}x"


def fmt_pct(row) -> str:
    if row.get("probe_error"):
        return "probe error"
    f = row.get("roofline_fraction")
    return "" if f is None else f"{100 * f:.0f}%"


def fmt_bytes(n) -> str:
    if n is None:
        return ""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def fmt_change(row) -> str:
    c = row.get("change")
    if c is None:
        return ""
    tag = " **slower**" if c >= SLOWER else (" faster" if c <= FASTER else "")
    return f"{fmt_us(row['prev_median_s'])} -> {fmt_us(row['median_s'])} ({c:.2f}x){tag}"


def _table(header: list[str], body: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _ordered(values, order):
    return sorted(set(values), key=lambda v: _order(v, order))


# ----------------------------------------------------------------------------- outputs


CSV_COLUMNS = (
    "device", "dtype", "rule", "size", "n", "n_tensors", "impl", "family", "framework",
    "median_us", "iqr_us", "rounds", "iterations", "best_torch_optim", "speedup_vs_torch_optim",
    "speedup_vs_optax", "bytes_per_step", "gbps", "roofline_gbps", "roofline_source",
    "roofline_fraction", "probe_error", "working_set_bytes", "cache_resident", "cpu_util",
    "previous_median_us", "change",
)
PROBE_COLUMNS = ("device", "dtype", "size", "n", "working_set_arrays", "probe_elements", "framework",
                 "median_us", "iqr_us", "rounds",
                 "bytes_per_call", "gbps", "working_set_bytes", "cache_resident", "cpu_util",
                 "previous_median_us", "change")


TRAINING_COLUMNS = ("group", "rule", "impl", "framework", "dataset", "model", "batch_size", "steps_per_call",
                    "median_us", "iqr_us", "rounds", "steps_per_s", "previous_median_us", "change")


def _csv(columns, records) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for rec in records:
        w.writerow(["" if rec.get(c) is None else rec.get(c) for c in columns])
    return buf.getvalue()


def _us(s):
    return None if s is None else s * 1e6


def csv_text(steps: list[dict]) -> str:
    recs = [
        {**r, "median_us": _us(r["median_s"]), "iqr_us": _us(r.get("iqr_s")), "bytes_per_step": r["bytes"],
         "previous_median_us": _us(r.get("prev_median_s"))}
        for r in steps
    ]
    return _csv(CSV_COLUMNS, recs)


def probe_csv_text(probes: list[dict]) -> str:
    recs = [
        {**p, "median_us": _us(p["median_s"]), "iqr_us": _us(p.get("iqr_s")), "bytes_per_call": p["bytes"],
         "previous_median_us": _us(p.get("prev_median_s"))}
        for p in probes
    ]
    return _csv(PROBE_COLUMNS, recs)


def _how_made(data: dict, previous: dict | None, json_name: str) -> list[str]:
    mi = data.get("machine_info") or {}
    ab = mi.get("adaptbench") or {}
    run = data.get("adaptbench") or {}
    git = ab.get("git") or {}
    commit = git.get("commit") or (data.get("commit_info") or {}).get("id") or "unknown"
    dirty = git.get("dirty") if git.get("dirty") is not None else (data.get("commit_info") or {}).get("dirty")
    cores = ab.get("cores") or {}
    caches = ab.get("caches") or {}
    torch_info = ab.get("torch") or {}
    jax_info = ab.get("jax") or {}
    threads = ab.get("threads") or {}
    versions = ab.get("versions") or {}
    opts = run.get("benchmark_options") or {}
    lines = [
        "## How this was made",
        "",
        f"- command: `{run.get('command', 'unknown')}`" + (" (full sweep)" if run.get("full") else " (default sweep)"),
        f"- date: {data.get('datetime', 'unknown')}",
        f"- commit: `{commit}`" + (" (working tree dirty)" if dirty else ""),
        f"- machine: {ab.get('cpu_model', mi.get('processor', 'unknown'))}, {cores.get('physical', '?')} cores / "
        f"{cores.get('logical', '?')} threads ({cores.get('usable', '?')} usable), "
        + ", ".join(f"{k} {fmt_bytes(v)}" for k, v in caches.items())
        + (f"; GPU: {', '.join(map(str, ab.get('gpus')))}" if ab.get("gpus") else "; no GPU"),
        f"- threads: torch {torch_info.get('num_threads', '?')} intra-op; XLA_FLAGS `{jax_info.get('xla_flags', '')}`"
        + ("" if threads.get("xla_flags_applied", True) else " (NOT applied: jax started first)"),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "- pytest-benchmark: " + ", ".join(f"{k}={v}" for k, v in opts.items()),
        f"- input: `{json_name}`; regenerate with `python -m bench report`",
    ]
    if ab.get("env"):
        lines.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in ab["env"].items()))
    if previous is not None:
        pgit = ((previous.get("machine_info") or {}).get("adaptbench") or {}).get("git") or {}
        lines.append(f"- compared with: `{PREVIOUS}` from {previous.get('datetime', 'unknown')}, "
                     f"commit `{pgit.get('commit') or 'unknown'}`")
    lines += [
        "",
        "Timing: each callable is compiled and warmed up before pytest-benchmark sees it; jax steps are one "
        "jitted call with params and state donated and threaded through iterations, waited for with "
        "`jax.block_until_ready`; torch steps are `Optimizer.step()` (followed by `torch.cuda.synchronize()` on "
        "CUDA). Medians per step. Hyperparameters: the `torch` convention (torch.optim defaults) for every "
        "implementation; the optax peer uses the matching settings (Adagrad: `initial_accumulator_value=0`, "
        "eps inside the root as optax must; Adadelta: same formula; RMSprop: `decay=alpha`, `eps_in_sqrt=False`).",
        "",
        "Roofline: bytes one step must move (reads and writes of params, grads and each state tensor: "
        "`rules.<Rule>.accesses_per_element` x itemsize x n) over the median, as a fraction of the best "
        "in-place `a += b` probe (12 B per fp32 element, torch `a.add_(b)` or jitted donated `a + b`) "
        "measured in the same run on the same device at the same working-set size (a step over n elements "
        "touching k arrays is judged against a probe over ceil(k n / 2) elements), right before the steps of "
        "that size. A fraction above 100% is shown as *probe error*, never as a result.",
        "",
    ]
    return lines


def _residency(steps: list[dict], probes: list[dict], data: dict) -> list[str]:
    caches = ((data.get("machine_info") or {}).get("adaptbench") or {}).get("caches") or {}
    sizes = {}
    for r in steps:
        entry = sizes.setdefault((r["device"], r["dtype"], r["size"]), {"n": r["n"], "n_tensors": r["n_tensors"], "ws": {}})
        entry["ws"][r["rule"]] = (r.get("working_set_bytes"), r.get("cache_resident"))
    if not sizes:
        return []
    rules_present = _ordered([r["rule"] for r in steps], RULE_ORDER)
    body = []
    for (device, dtype, size), e in sorted(sizes.items(), key=lambda kv: (
            _order(kv[0][0], DEVICE_ORDER), _order(kv[0][1], DTYPE_ORDER), _order(kv[0][2], SIZE_ORDER))):
        cells = []
        for rule in rules_present:
            ws, res = e["ws"].get(rule, (None, None))
            cells.append("" if ws is None else f"{fmt_bytes(ws)} ({'resident' if res else 'not resident' if res is not None else '?'})")
        body.append([device, dtype, size, f"{e['n']:,}", str(e["n_tensors"]), *cells])
    llc = max(caches.values()) if caches else None
    return [
        "## Sizes and cache residency",
        "",
        "Working set = params + grads + state tensors (distinct bytes one step touches); *resident* when it fits the "
        f"last-level cache ({fmt_bytes(llc) if llc else 'unknown'} on CPU, the GPU's L2 on CUDA). `iris15` is the "
        "tutorial's Iris softmax regression (W [4,3] + b [3]); `tfm100` is 100 tensors, 999,360 elements, shaped "
        "like an 8-block GPT (d=96), where per-tensor overhead dominates.",
        "",
        _table(["device", "dtype", "size", "elements", "tensors", *rules_present], body),
        "",
    ]


def markdown(data: dict, steps: list[dict], probes: list[dict], previous: dict | None, plots: list[str],
             name: str, ignored: int, json_name: str, training: list[dict] = ()) -> str:
    out = [f"# adaptbench results: {name}", "",
           "Generated by `python -m bench report` from the pytest-benchmark JSON; do not edit by hand.", ""]
    out += _how_made(data, previous, json_name)
    out += ["## Headline: our fastest against the fastest peer, per framework", "",
            "Median us per step (% of the bandwidth roofline); speedup = peer / ours. Also in "
            "`headline.md`.", "", headline(steps)]
    out += _residency(steps, probes, data)
    combos = sorted({(r["device"], r["dtype"]) for r in steps},
                    key=lambda k: (_order(k[0], DEVICE_ORDER), _order(k[1], DTYPE_ORDER)))
    for device, dtype in combos:
        sub = [r for r in steps if r["device"] == device and r["dtype"] == dtype]
        out += [f"## {device} {dtype}", ""]
        for plot in plots:
            if plot.endswith(f"-{device}-{dtype}.png"):
                out += [f"![{plot}]({plot})", ""]
        for rule in _ordered([r["rule"] for r in sub], RULE_ORDER):
            rs = [r for r in sub if r["rule"] == rule]
            sizes = _ordered([r["size"] for r in rs], SIZE_ORDER)
            impls = _ordered([r["impl"] for r in rs], IMPL_ORDER)
            by = {(r["impl"], r["size"]): r for r in rs}
            best = {s: min((r["median_s"] for r in rs if r["size"] == s)) for s in sizes}

            def cell(impl, size, what):
                r = by.get((impl, size))
                if r is None:
                    return "-"
                if what == "us":
                    text = fmt_us(r["median_s"])
                    return f"**{text}**" if r["median_s"] == best[size] else text
                if what == "x":
                    return fmt_x(r.get("speedup_vs_torch_optim"))
                return fmt_pct(r)

            out += [f"### {rule} ({device}, {dtype})", "", "Median us per step (fastest in bold):", ""]
            out += [_table(["impl", *sizes], [[i, *(cell(i, s, "us") for s in sizes)] for i in impls]), ""]
            out += ["Speedup over the best torch.optim variant of the same group (>1: faster):", ""]
            out += [_table(["impl", *sizes], [[i, *(cell(i, s, "x") for s in sizes)] for i in impls]), ""]
            out += ["Fraction of the bandwidth roofline:", ""]
            out += [_table(["impl", *sizes], [[i, *(cell(i, s, "pct") for s in sizes)] for i in impls]), ""]
            header = ["size", "impl", "median us", "IQR us", "rounds", "x best torch.optim", "x optax", "GB/s",
                      "% roofline"] + (["previous -> now (ratio)"] if previous is not None else [])
            body = []
            for r in rs:
                line = [r["size"], r["impl"], fmt_us(r["median_s"]), fmt_us(r.get("iqr_s")), r.get("rounds", ""),
                        fmt_x(r.get("speedup_vs_torch_optim")), fmt_x(r.get("speedup_vs_optax")),
                        f"{r['gbps']:.3g}", fmt_pct(r)]
                if previous is not None:
                    line.append(fmt_change(r))
                body.append(line)
            out += ["<details><summary>all numbers</summary>", "", _table(header, body), "", "</details>", ""]
    if probes:
        out += ["## Bandwidth probe (in-place a += b)", ""]
        body = [[p["device"], p["dtype"], p["size"], p.get("working_set_arrays") or "?",
                 f"{p['probe_elements']:,}", p["framework"], fmt_us(p["median_s"]),
                 f"{p['gbps']:.3g}", fmt_bytes(p.get("working_set_bytes")),
                 {True: "yes", False: "no"}.get(p.get("cache_resident"), "?"),
                 "" if p.get("cpu_util") is None else f"{p['cpu_util']:.2f}"] for p in probes]
        out += [_table(["device", "dtype", "size", "for steps touching (arrays)", "elements in a and b",
                        "framework", "median us", "GB/s", "working set", "cache resident", "CPU util"], body), ""]
    if training:
        out += ["## Training throughput (Iris, bench/bench_training.py)", "",
                "One call is one epoch of the tutorial's setting (whole training steps: forward, backward, "
                "update); steps/s = steps per call / median.", ""]
        header = ["rule", "variant", "median ms per epoch", "IQR ms", "rounds", "steps/s"] + (
            ["previous -> now (ratio)"] if previous is not None else [])
        body = []
        for r in training:
            line = [r["rule"], r["impl"], f"{r['median_s'] * 1e3:.3g}",
                    "" if r.get("iqr_s") is None else f"{r['iqr_s'] * 1e3:.2g}", r.get("rounds", ""),
                    f"{r['steps_per_s']:,.0f}"]
            if previous is not None:
                line.append(fmt_change(r))
            body.append(line)
        out += [_table(header, body), ""]
    if previous is not None:
        both = [r for r in steps + probes if r.get("change") is not None]
        both.sort(key=lambda r: -r["change"])
        slower = sum(r["change"] >= SLOWER for r in both)
        faster = sum(r["change"] <= FASTER for r in both)
        out += ["## Change since the previous run", "",
                f"{len(both)} benchmarks in both runs: {slower} slower by >= 10%, {faster} faster by >= 10% "
                f"(ratio = now / before; noise on a loaded machine easily reaches 10%).", ""]
        body = [[r["device"], r["dtype"], r.get("rule") or "probe", r["size"], r["impl"], fmt_us(r["prev_median_s"]),
                 fmt_us(r["median_s"]), f"{r['change']:.2f}x" + (" **slower**" if r["change"] >= SLOWER else
                                                                  " faster" if r["change"] <= FASTER else "")]
                for r in both]
        out += [_table(["device", "dtype", "rule", "size", "impl", "before us", "now us", "ratio"], body), ""]
    errors = [r for r in steps if r.get("probe_error")]
    out += ["## Probe errors", ""]
    if errors:
        out += ["Steps that beat the probe; their roofline fraction is not a result:", ""]
        out += [_table(["group", "impl", "error"],
                       [[f"{r['rule']}-{r['size']}-{r['dtype']}-{r['device']}", r["impl"], r["probe_error"]]
                        for r in errors]), ""]
    else:
        out += ["None: every step stayed at or below its probe.", ""]
    if ignored:
        out += [f"({ignored} benchmarks in the JSON are not adaptbench step, probe or training benchmarks "
                "and were left out.)", ""]
    return "\n".join(out)


def _digest(data: dict) -> str:
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
        if old is not None and _digest(old) != _digest(new):
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


def _fastest(members: list[dict], prefix: str) -> dict | None:
    return min((m for m in members if m["impl"].startswith(prefix)), key=lambda m: m["median_s"], default=None)


def headline(steps: list[dict]) -> str:
    """Per device, dtype, rule and size: our fastest implementation in each framework
    against that framework's fastest peer (median us, % of roofline, speedup)."""

    def cell(r):
        pct = fmt_pct(r)
        return f"{r['impl']} {fmt_us(r['median_s'])}" + (f" ({pct})" if pct not in ("", "-") else "")

    body = []
    for (device, dtype, rule, size), members in sorted(
        _groups(steps).items(),
        key=lambda kv: (_order(kv[0][0], DEVICE_ORDER), _order(kv[0][1], DTYPE_ORDER),
                        _order(kv[0][2], RULE_ORDER), _order(kv[0][3], SIZE_ORDER)),
    ):
        line = [device, dtype, rule, size]
        for ours, peer in (("ours-torch", "torch.optim"), ("ours-jax", "optax")):
            a, b = _fastest(members, ours), _fastest(members, peer)
            if a is None or b is None:
                line += ["-", "-", "-"]
            else:
                line += [cell(a), cell(b), fmt_x(b["median_s"] / a["median_s"])]
        a, floor = _fastest(members, "ours-jax"), _fastest(members, "jax-empty-jit")
        line.append("-" if a is None or floor is None else fmt_x(a["median_s"] / floor["median_s"]))
        body.append(line)
    header = ["device", "dtype", "rule", "size", "ours, torch (us)", "best torch.optim (us)", "speedup",
              "ours, jax (us)", "optax (us)", "speedup", "ours, jax / empty jit"]
    return _table(header, body) + "\n"


def _groups(steps: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in steps:
        groups.setdefault((r["device"], r["dtype"], r["rule"], r["size"]), []).append(r)
    return groups


def generate(json_path, out=None) -> Path:
    """Ingest ``json_path`` and write the report; return the output folder."""
    from bench import machine
    from . import plots

    src = Path(json_path)
    data = load(src)
    name = machine.slug((data.get("machine_info") or {}).get("adaptbench") or {})
    out = Path(out) if out else RESULTS_ROOT / name
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{out}: cannot create ({exc.strerror or exc})") from None
    previous = ingest(src, data, out)
    steps, probes, ignored = rows(data)
    training = training_rows(data)
    compare(steps, probes, previous, training)
    written = plots.write_all(steps, out, atomic_write_bytes)
    atomic_write_text(out / "results.csv", csv_text(steps))
    atomic_write_text(out / "probe.csv", probe_csv_text(probes))
    atomic_write_text(out / "headline.md", headline(steps))
    if training:
        recs = [{**r, "median_us": _us(r["median_s"]), "iqr_us": _us(r.get("iqr_s")),
                 "previous_median_us": _us(r.get("prev_median_s"))} for r in training]
        atomic_write_text(out / "training.csv", _csv(TRAINING_COLUMNS, recs))
    atomic_write_text(out / "README.md", markdown(data, steps, probes, previous, written, out.name, ignored,
                                                  CURRENT, training))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="pytest-benchmark JSON (default: results/<this machine>/benchmark.json)")
    parser.add_argument("--out", help="output folder (default: results/<machine from the JSON>)")
    args = parser.parse_args(argv)
    try:
        out = generate(args.json or default_json(args.out), args.out)
    except ReportError as exc:
        print(f"bench report: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"bench report: wrote {out}")
    return 0
