"""The results folder's Markdown: README.md, recommendation.md and headline.md (what each
holds: docs/performance.md, "Reading the report"; the empty-jit floor is never a candidate)."""

from __future__ import annotations

import pandas as pd

from bench import machine
from bench.machine import fmt_bytes

from .fmt import (FLAG_NOTE, flag, fmt_change, fmt_pct, fmt_ratio, fmt_us, fmt_util, fmt_x, table,
                  threads_label)
from .frame import FASTER, GROUP, SLOWER, TIE, order, records, sort, within_noise
from .freshness import freshness, measured_commit
from .store import PREVIOUS, QUICK, sweep_name
from .targets import targets



def pick(members: list[dict], framework: str) -> dict | None:
    """``{"best": row, "tied": [rows], "runner_up": row or None, "margin": ratio or None}``."""
    ranked = sorted((m for m in members if m.get("framework") == framework and m.get("family") != "floor"),
                    key=lambda m: m["median_s"])
    if not ranked:
        return None
    best, runner = ranked[0], ranked[1] if len(ranked) > 1 else None
    return {"best": best, "tied": [m for m in ranked[1:] if within_noise(best, m)], "runner_up": runner,
            "margin": runner["median_s"] / best["median_s"] if runner else None}


def _cells(choice: dict | None) -> list[str]:
    if choice is None:
        return ["-", "-"]
    best = choice["best"]
    if choice["tied"]:
        names = ", ".join(f"{m['impl']} {fmt_us(m['median_s'])}{flag(m)}" for m in [best, *choice["tied"]])
        return [f"tie: {names}", f"{choice['margin']:.2f}x: within noise"]
    name = f"**{best['impl']}** {fmt_us(best['median_s'])}{flag(best)}"
    if choice["runner_up"] is None:
        return [name, "only one measured"]
    return [name, f"{choice['margin']:.2f}x over {choice['runner_up']['impl']}"]


def _groups(steps: pd.DataFrame):
    """(device, dtype, tag, rule, size) and its rows, in report order."""
    for key, members in steps.groupby(GROUP, sort=False):
        yield key, records(members)


def recommendation(steps: pd.DataFrame, level: int = 1) -> str:
    """Markdown: one table per device, dtype and thread setting (``recommendation.md``);
    ``level`` is the heading level of its title."""
    out = ["#" * level + " Which implementation at which size", "",
           "Per device, dtype and thread setting: for each rule and size, the fastest implementation in each "
           "framework (ours and the library's own together) and how much faster it is than the runner-up "
           "(runner-up median / fastest median). Two medians closer than the mean of their IQRs, or within "
           f"{100 * (TIE - 1):.0f} % of each other, are called a tie. Times in us per step; labels are defined in "
           "the report.", ""]
    for _, setting in steps.groupby(["device", "dtype", "tag"], sort=False):
        body = [[rule, size, *_cells(pick(members, "torch")), *_cells(pick(members, "jax"))]
                for (_, _, _, rule, size), members in _groups(setting)]
        out += ["#" * (level + 1) + f" {setting['device'].iloc[0]}, {setting['dtype'].iloc[0]}, threads "
                f"{threads_label(records(setting.head(1))[0])}", "",
                table(["rule", "size", "PyTorch: fastest", "margin", "JAX: fastest", "margin"], body), ""]
    if steps["over_budget"].any():
        out += [FLAG_NOTE, ""]
    return "\n".join(out)


def headline(steps: pd.DataFrame) -> str:
    """Per device, dtype, thread setting, rule and size: our fastest implementation in each
    framework against that framework's fastest peer (median us, % of roofline, speedup),
    and the floor: what an empty jitted call on the same arguments costs (not a competitor)."""

    def fastest(members, prefix):
        return min((m for m in members if m["impl"].startswith(prefix)), key=lambda m: m["median_s"], default=None)

    def cell(r):
        pct = fmt_pct(r)
        return f"{r['impl']} {fmt_us(r['median_s'])}" + (f" ({pct})" if pct not in ("", "-") else "") + flag(r)

    body = []
    for (device, dtype, _, rule, size), members in _groups(steps):
        line = [device, dtype, threads_label(members[0]), rule, size]
        for ours, peer in (("ours-torch", "torch.optim"), ("ours-jax", "optax")):
            a, b = fastest(members, ours), fastest(members, peer)
            line += ["-", "-", "-"] if a is None or b is None else [cell(a), cell(b), fmt_x(b["median_s"] / a["median_s"])]
        floor = fastest(members, "jax-empty-jit")
        body.append(line + ["-" if floor is None else fmt_us(floor["median_s"]) + flag(floor)])
    header = ["device", "dtype", "threads", "rule", "size", "ours, torch (us)", "best torch.optim (us)", "speedup",
              "ours, jax (us)", "optax (us)", "speedup", "floor: empty jit (us)"]
    return "\n".join([table(header, body), *([FLAG_NOTE] if steps["over_budget"].any() else [])]) + "\n"


def labels(steps: pd.DataFrame) -> str:
    """Markdown: every implementation label in ``steps`` with the description its JSON carries."""
    role = {"ours": "ours", "peer": "the library's own", "floor": "floor (a lower bound, not a competitor)"}
    first = records(sort(steps.drop_duplicates("impl"), ("impl",)))
    return table(["label", "framework", "role", "what is timed"],
                 [[f"`{r['impl']}`", r["framework"], role.get(r["family"], r["family"]),
                   r["impl_description"] or "(no description in the JSON)"] for r in first])


def _how_made(data: dict, previous: dict | None, json_name: str) -> list[str]:
    ab = data["machine_info"].get("adaptbench") or {}
    run = data.get("adaptbench") or {}
    sweep = sweep_name(data)
    commit, where, versions = machine.describe(ab)
    lines = [
        "## How this was made",
        "",
        f"- command: `{run.get('command', 'unknown')}` ({sweep} sweep)",
        f"- date: {data.get('datetime', 'unknown')}",
        commit,
        where,
        *_thread_lines(ab, run.get("threads")),
        versions,
        "- pytest-benchmark: " + ", ".join(f"{k}={v}" for k, v in (run.get("benchmark_options") or {}).items()),
        f"- input: `{json_name}`; regenerate with `python -m bench report`",
    ]
    if sweep == QUICK:
        lines.append("- **the quick sweep** (`make bench`): every rule at a subset of sizes against a subset of the "
                     "peers, shorter rounds (`QUICK_SIZES`, `QUICK_IMPLS` in bench/timing/cases.py); the whole "
                     "sweep's report is `results/<machine>/README.md`")
    sel = run.get("selection") or {}
    if sel.get("partial"):
        lines.append(f"- **a slice, not the whole sweep**: {sel.get('deselected', 0)} benchmarks deselected"
                     + (f", not collected: {', '.join(sel['files_not_collected'])}" if sel.get("files_not_collected")
                        else "") + f" (pytest arguments: `{' '.join(sel.get('args') or [])}`)")
    if ab.get("env"):
        lines.append("- environment: " + ", ".join(f"`{k}={v}`" for k, v in ab["env"].items()))
    if previous is not None:
        lines.append(f"- compared with: `{PREVIOUS}` from {previous.get('datetime', 'unknown')}, "
                     f"commit `{measured_commit(previous)[0] or 'unknown'}`")
    return lines + [
        "",
        "How each number is made (timing, the peers' hyperparameters, the roofline, thread settings and CPU "
        "budgets, temporary memory): docs/performance.md.",
        "",
    ]


def _thread_lines(ab: dict, run_threads) -> list[str]:
    """One line per thread setting; ``run_threads`` is each setting's end-of-run record
    (one dict, or a list of them in a merged run)."""
    unpinned = {r.get("thread_setting"): r.get("threads_unpinned")
                for r in (run_threads if isinstance(run_threads, list) else [run_threads]) if r}
    out = []
    for s in (s for s in ab.get("thread_settings") or [ab.get("threads")] if s):
        loose = unpinned.get(s["setting"])
        pinned = "" if s["setting"] == "default" else f", pinned to CPUs {s.get('affinity')}" + (
            f" (**{loose} threads escaped the pin**)" if loose else
            " (every thread held to them at the end of the run)" if loose == 0 else "")
        out.append(f"- threads `{s['setting']}` ({s.get('tag')}): CPU budget {s.get('cpu_budget')}{pinned}; "
                   f"torch {s.get('torch_threads')} intra-op; XLA_FLAGS `{s.get('xla_flags', '')}`"
                   + ("" if s.get("xla_flags_applied", True) else " (NOT applied: jax started first)"))
    return out


def _residency(steps: pd.DataFrame, data: dict) -> list[str]:
    if steps.empty:
        return []
    caches = ((data.get("machine_info") or {}).get("adaptbench") or {}).get("caches") or {}
    rules = order(steps["rule"], "rule")

    def cell(r):
        res = r.get("cache_resident")
        state = "resident" if res else "not resident" if res is not None else "?"
        return "" if r.get("working_set_bytes") is None else f"{fmt_bytes(r['working_set_bytes'])} ({state})"

    body = []
    sizes = sort(steps.drop_duplicates(["device", "dtype", "size", "rule"]), ("device", "dtype", "size"))
    for (device, dtype, size), rs in sizes.groupby(["device", "dtype", "size"], sort=False):
        by_rule = {r["rule"]: r for r in records(rs)}
        first = records(rs.head(1))[0]
        body.append([device, dtype, size, f"{first['n']:,}", str(first["n_tensors"]),
                     *(cell(by_rule[rule]) if rule in by_rule else "" for rule in rules)])
    llc = max(caches.values()) if caches else None
    return [
        "## Sizes and cache residency",
        "",
        "Working set = params + grads + state tensors (distinct bytes one step touches); *resident* when it fits the "
        f"last-level cache ({fmt_bytes(llc) if llc else 'unknown'} on CPU, the GPU's L2 on CUDA). `iris15` is the "
        "tutorial's Iris softmax regression (W [4,3] + b [3]); `tfm100` is 100 tensors, 999,360 elements, shaped "
        "like an 8-block GPT (d=96), where per-tensor overhead dominates.",
        "",
        table(["device", "dtype", "size", "elements", "tensors", *rules], body),
        "",
    ]


def _rule_tables(rs: pd.DataFrame, previous) -> list[str]:
    """One rule at one device, dtype and thread setting: medians, speedups, roofline
    fractions and temporary memory by implementation and size (pivot tables), and every number."""
    rs = rs.assign(competitor=rs["family"] != "floor")
    best = rs[rs["competitor"]].groupby("size")["median_s"].min()
    sizes = order(rs["size"], "size")
    impls = order(rs["impl"], "impl")
    competitors = [i for i in impls if i in set(rs.loc[rs["competitor"], "impl"])]
    label = {i: i if i in competitors else f"{i} (floor)" for i in impls}

    def median(r):
        text = fmt_us(r["median_s"])
        text = f"*{text}*" if r.get("family") == "floor" else f"**{text}**" if r["median_s"] == best.get(r["size"]) \
            else text
        return text + flag(r)

    def grid(cell, rows):
        cells = rs.assign(cell=[cell(r) for r in records(rs)]).pivot_table(
            index="impl", columns="size", values="cell", aggfunc="first")
        cells = cells.reindex(index=rows, columns=sizes)
        return table(["impl", *sizes], [[label[i], *("-" if pd.isna(c) else c for c in cells.loc[i])]
                                        for i in rows])

    first = records(rs.head(1))[0]
    title = f"### {first['rule']}: {first['device']}, {first['dtype']}, threads {threads_label(first)}"
    out = [title, "", "Median us per step (fastest in bold; the floor in italics, never a candidate):", "",
           grid(median, impls), "",
           "Speedup over the best torch.optim variant of the same group (>1: faster; below 1 marked slower):", "",
           grid(lambda r: fmt_x(r.get("speedup_vs_torch_optim")) + flag(r), competitors), "",
           "Fraction of the bandwidth roofline:", "", grid(fmt_pct, competitors), ""]
    if rs["temp_bytes"].notna().any():
        out += ["Temporary memory of one step (bytes allocated beyond params, grads and state; ? = not measured):",
                "", grid(lambda r: fmt_bytes(r.get("temp_bytes")) or "?", impls), ""]
    header = ["size", "impl", "median us", "IQR us", "rounds", "x best torch.optim", "x optax", "GB/s",
              "% roofline", "CPU util", "temp memory", "call overhead us"] + (
        ["previous -> now (ratio)"] if previous is not None else [])
    body = [[r["size"], label[r["impl"]], fmt_us(r["median_s"]), fmt_us(r.get("iqr_s")), r.get("rounds", ""),
             fmt_x(r.get("speedup_vs_torch_optim")), fmt_x(r.get("speedup_vs_optax")), f"{r['gbps']:.3g}",
             fmt_pct(r), fmt_util(r), fmt_bytes(r.get("temp_bytes")), fmt_us(r.get("overhead_s"))]
            + ([fmt_change(r)] if previous is not None else []) for r in records(rs)]
    out += ["<details><summary>all numbers</summary>", "", table(header, body), "", "</details>", ""]
    return out + ([FLAG_NOTE, ""] if rs["over_budget"].any() else [])


def _overhead(steps: list[dict]) -> list[str]:
    """The call overhead of the steps that run fused kernels (bench/timing/overhead.py)."""
    measured = [r for r in steps if r.get("kernel_s") is not None]
    failed = [r for r in steps if r.get("overhead_error")]
    if not measured and not failed:
        return []
    out = [
        "## Call overhead of the fused steps", "",
        "What a step costs beyond its kernels: the median of `Optimizer.step()` less the median of the kernels "
        "one step runs, both measured on CPU in one process beside the sweep, with the same thread setting "
        "(how, and why in a process of its own: bench/timing/overhead.py). *step us* is that process's median, "
        "shown beside the sweep's; share = overhead / step. Where the kernel takes most of the step (large "
        "sizes) the overhead is the difference of two medians and within their noise, negative at times.", "",
    ]
    if measured:
        body = [[r["device"], r["dtype"], threads_label(r), r["rule"], r["size"], r["impl"], fmt_us(r["median_s"]),
                 fmt_us(r.get("overhead_step_s")), fmt_us(r["kernel_s"]), r.get("kernel_calls", ""),
                 fmt_us(r.get("overhead_s")),
                 f"{100 * r['overhead_s'] / r['overhead_step_s']:.0f}%" if r.get("overhead_step_s")
                 and r.get("overhead_s") is not None else ""] for r in measured]
        out += [table(["device", "dtype", "threads", "rule", "size", "impl", "sweep median us", "step us",
                       "kernel us", "kernels per step", "overhead us", "overhead share"], body), ""]
    if failed:
        out += ["Not measured (the measurement failed):", ""]
        out += [f"- {r['rule']}-{r['size']}-{r['dtype']}-{r['device']}-{r['tag']} `{r['impl']}`: {r['overhead_error']}"
                for r in failed] + [""]
    return out


def _probe_table(probes: pd.DataFrame) -> list[str]:
    if probes.empty:
        return []
    body = [[p["device"], p["dtype"], threads_label(p), p["size"], p.get("working_set_arrays") or "?",
             f"{p['probe_elements']:,}", p["framework"], fmt_us(p["median_s"]), f"{p['gbps']:.3g}",
             fmt_bytes(p.get("working_set_bytes")), {True: "yes", False: "no"}.get(p.get("cache_resident"), "?"),
             fmt_util(p)] for p in records(probes)]
    return ["## Bandwidth probe (in-place a += b)", "",
            table(["device", "dtype", "threads", "size", "for steps touching (arrays)", "elements in a and b",
                   "framework", "median us", "GB/s", "working set", "cache resident", "CPU util"], body), ""]


def _training_table(training: pd.DataFrame, previous) -> list[str]:
    if training.empty:
        return []
    compared = previous is not None
    body = [[threads_label(r), r["rule"], r["impl"], f"{r['median_s'] * 1e3:.3g}",
             "" if r.get("iqr_s") is None else f"{r['iqr_s'] * 1e3:.2g}", r.get("rounds", ""),
             f"{r['steps_per_s']:,.0f}", fmt_util(r)] + ([fmt_change(r)] if compared else [])
            for r in records(training)]
    return ["## Training throughput (Iris, bench/training/bench_training.py)", "",
            "One call is one epoch of the tutorial's setting (whole training steps: forward, backward, "
            "update); steps/s = steps per call / median.", "",
            table(["threads", "rule", "variant", "median ms per epoch", "IQR ms", "rounds", "steps/s", "CPU util"]
                  + (["previous -> now (ratio)"] if compared else []), body), ""]


def _changes(both: pd.DataFrame) -> list[str]:
    """Steps and probes measured in both runs, the most slowed down first."""
    both = both[both["change"].notna()].astype({"change": float}).sort_values("change", ascending=False,
                                                                                kind="stable")
    return ["## Change since the previous run", "",
            f"{len(both)} benchmarks in both runs: {int((both['change'] >= SLOWER).sum())} slower by >= 10%, "
            f"{int((both['change'] <= FASTER).sum())} faster by >= 10% "
            "(ratio = now / before; noise on a loaded machine easily reaches 10%).", "",
            table(["device", "dtype", "threads", "rule", "size", "impl", "before us", "now us", "ratio"],
                  [[r["device"], r["dtype"], threads_label(r), r.get("rule") or "probe", r["size"], r["impl"],
                    fmt_us(r["prev_median_s"]), fmt_us(r["median_s"]), fmt_ratio(r["change"])]
                   for r in records(both)]), ""]


def _probe_errors(steps: pd.DataFrame) -> list[str]:
    errors = records(steps[steps["probe_error"].notna()]) if not steps.empty else []
    if not errors:
        return ["## Probe errors", "", "None: every step stayed at or below its probe.", ""]
    return ["## Probe errors", "", "Steps that beat the probe; their roofline fraction is not a result:", "",
            table(["group", "impl", "error"],
                  [[f"{r['rule']}-{r['size']}-{r['dtype']}-{r['device']}-{r['tag']}", r["impl"], r["probe_error"]]
                   for r in errors]), ""]


def markdown(data: dict, steps: pd.DataFrame, probes: pd.DataFrame, previous: dict | None, plots: list[str],
             name: str, ignored: int, json_name: str, training: pd.DataFrame) -> str:
    out = [f"# adaptbench results: {name}", "",
           "Generated by `python -m bench report` from the pytest-benchmark JSON; do not edit by hand.", ""]
    out += _how_made(data, previous, json_name)
    out += freshness(data)
    out += [recommendation(steps, level=2), "Also in `recommendation.md`.", ""]
    out += [targets(steps, training, level=2), "Also in `targets.md`.", ""]
    out += ["## Headline: our fastest against the fastest peer, per framework", "",
            "Median us per step (% of the bandwidth roofline); speedup = peer / ours (below 1: ours is slower). "
            "The floor is what a jitted call on the same arguments costs with nothing inside: no step can beat "
            "it, and it is not a competitor. Also in `headline.md`.", "", headline(steps)]
    out += ["## Labels", "", labels(steps), ""]
    out += _residency(steps, data)
    for (device, dtype, tag), sub in steps.groupby(["device", "dtype", "tag"], sort=False):
        out += [f"## {device}, {dtype}, threads {threads_label(records(sub.head(1))[0])}", ""]
        out += [line for plot in plots if plot.endswith(f"-{device}-{dtype}-{tag}.png")
                for line in (f"![{plot}]({plot})", "")]
        for _, rs in sub.groupby("rule", sort=False):
            out += _rule_tables(rs, previous)
    out += _overhead(records(steps))
    out += _probe_table(probes) + _training_table(training, previous)
    if previous is not None:
        out += _changes(pd.concat([steps, probes]))
    out += _probe_errors(steps)
    if ignored:
        out += [f"({ignored} benchmarks in the JSON are not adaptbench step, probe or training benchmarks "
                "and were left out.)", ""]
    return "\n".join(out)
