"""The results folder's README.md."""

from __future__ import annotations

from .data import DEVICE_ORDER, DTYPE_ORDER, FASTER, IMPL_ORDER, RULE_ORDER, SIZE_ORDER, SLOWER, order_key, tag_order
from .fmt import FLAG_NOTE, flag, fmt_bytes, fmt_change, fmt_pct, fmt_us, fmt_util, fmt_x, ordered, table, threads_label
from .freshness import freshness
from .recommend import labels, recommendation
from .targets import targets
from .store import PREVIOUS
from .tables import headline


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
        *_thread_lines(ab, torch_info, jax_info, threads, run.get("threads")),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        "- pytest-benchmark: " + ", ".join(f"{k}={v}" for k, v in opts.items()),
        f"- input: `{json_name}`; regenerate with `python -m bench report`",
    ]
    selection = run.get("selection") or {}
    if selection.get("partial"):
        lines.append(f"- **a slice, not the whole sweep**: {selection.get('deselected', 0)} benchmarks deselected"
                     + (f", not collected: {', '.join(selection['files_not_collected'])}"
                        if selection.get("files_not_collected") else "")
                     + f" (pytest arguments: `{' '.join(selection.get('args') or [])}`)")
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
        "Thread settings: each setting runs in its own process. *default* is what a user gets: no thread "
        "flag, torch's and XLA's own thread counts, every usable CPU as the budget of both. *pinned* (N threads) "
        "pins the whole process to N CPUs (`os.sched_setaffinity`) before either framework starts a thread, and "
        "sets torch's and XLA's thread counts to N: thread flags alone did not hold XLA to one core. CPU util "
        "is the process's CPU time per wall second while a benchmark ran; a row above its budget is marked †.",
        "",
        "Temporary memory: bytes one step allocates beyond params, grads and state, measured once per case "
        "outside the timed loop: jax from the compiled executable's `memory_analysis().temp_size_in_bytes`; "
        "torch on CPU as the peak of the allocations the profiler records during one step "
        "(`torch.profiler`, `profile_memory=True`); torch on CUDA as `torch.cuda.max_memory_allocated` above "
        "what was allocated before the step.",
        "",
    ]
    return lines


def _thread_lines(ab: dict, torch_info: dict, jax_info: dict, threads: dict, records) -> list[str]:
    settings = [s for s in ab.get("thread_settings") or [threads] if s]
    records = {r.get("thread_setting"): r for r in (records if isinstance(records, list) else [records]) if r}
    if not settings or all("setting" not in s for s in settings):  # runs before thread settings existed
        return [f"- threads: torch {torch_info.get('num_threads', '?')} intra-op; XLA_FLAGS "
                f"`{jax_info.get('xla_flags', '')}`; no CPU pinning (XLA could use more than that)"
                + ("" if threads.get("xla_flags_applied", True) else " (NOT applied: jax started first)")]
    out = []
    for s in settings:
        pinned = "" if s.get("setting") == "default" else f", pinned to CPUs {s.get('affinity')}"
        loose = (records.get(s.get("setting")) or {}).get("threads_unpinned")
        if loose:
            pinned += f" (**{loose} threads escaped the pin**)"
        elif loose == 0:
            pinned += " (every thread held to them at the end of the run)"
        out.append(f"- threads `{s.get('setting')}` ({s.get('tag')}): CPU budget {s.get('cpu_budget')}{pinned}; "
                   f"torch {s.get('torch_threads')} intra-op; XLA_FLAGS `{s.get('xla_flags', '')}`"
                   + ("" if s.get("xla_flags_applied", True) else " (NOT applied: jax started first)"))
    return out


def _residency(steps: list[dict], probes: list[dict], data: dict) -> list[str]:
    caches = ((data.get("machine_info") or {}).get("adaptbench") or {}).get("caches") or {}
    sizes = {}
    for r in steps:
        entry = sizes.setdefault((r["device"], r["dtype"], r["size"]), {"n": r["n"], "n_tensors": r["n_tensors"], "ws": {}})
        entry["ws"][r["rule"]] = (r.get("working_set_bytes"), r.get("cache_resident"))
    if not sizes:
        return []
    rules_present = ordered([r["rule"] for r in steps], RULE_ORDER)
    body = []
    for (device, dtype, size), e in sorted(sizes.items(), key=lambda kv: (
            order_key(kv[0][0], DEVICE_ORDER), order_key(kv[0][1], DTYPE_ORDER), order_key(kv[0][2], SIZE_ORDER))):
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
        table(["device", "dtype", "size", "elements", "tensors", *rules_present], body),
        "",
    ]


def _overhead(steps: list[dict]) -> list[str]:
    """The call overhead of the steps that run fused kernels (bench/timing/overhead.py)."""
    measured = [r for r in steps if r.get("kernel_s") is not None]
    failed = [r for r in steps if r.get("overhead_error")]
    if not measured and not failed:
        return []
    out = [
        "## Call overhead of the fused steps", "",
        "What a step costs beyond its kernels: the median time of `Optimizer.step()` less the median time of the "
        "kernels one step runs (Inductor's generated C++ kernels for `ours-torch-fused`, and for `ours-torch-auto` "
        "where auto picks fused; the native `aten::_fused_*` op for `torch.optim-fused`), both measured on CPU in "
        "one process of its own, started beside the sweep with the same thread setting. That process builds the "
        "same case with Inductor's `cpp.enable_kernel_profile` on (a `RECORD_FUNCTION` range around each kernel, "
        "which changes the generated code: the sweep's own kernels never carry it), times the step with `timeit` "
        "and runs as many steps under `torch.profiler`, in alternating blocks, summing the kernel ranges of each "
        "step (bench/timing/overhead.py). So *step us* is that process's median, shown beside the sweep's; "
        "share = overhead / step. Where the kernel takes most of the step (large sizes) the overhead is the "
        "difference of two medians and within their run-to-run noise, negative at times.", "",
    ]
    if measured:
        body = [[r["device"], r["dtype"], threads_label(r), r["rule"], r["size"], r["impl"], fmt_us(r["median_s"]),
                 fmt_us(r.get("overhead_step_s")), fmt_us(r["kernel_s"]), r.get("kernel_calls", ""),
                 fmt_us(r.get("overhead_s")), _share(r)] for r in measured]
        out += [table(["device", "dtype", "threads", "rule", "size", "impl", "sweep median us", "step us",
                       "kernel us", "kernels per step", "overhead us", "overhead share"], body), ""]
    if failed:
        out += ["Not measured (the measurement failed):", ""]
        out += [f"- {r['rule']}-{r['size']}-{r['dtype']}-{r['device']}-{r['tag']} `{r['impl']}`: {r['overhead_error']}"
                for r in failed] + [""]
    return out


def _share(row) -> str:
    step, over = row.get("overhead_step_s"), row.get("overhead_s")
    return "" if not step or over is None else f"{100 * over / step:.0f}%"


def markdown(data: dict, steps: list[dict], probes: list[dict], previous: dict | None, plots: list[str],
             name: str, ignored: int, json_name: str, training: list[dict] = ()) -> str:
    out = [f"# adaptbench results: {name}", "",
           "Generated by `python -m bench report` from the pytest-benchmark JSON; do not edit by hand.", ""]
    out += _how_made(data, previous, json_name)
    out += freshness(data)
    out += [recommendation(steps, level=2), "Also in `recommendation.md`.", ""]
    out += [targets(steps, list(training), level=2), "Also in `targets.md`.", ""]
    out += ["## Headline: our fastest against the fastest peer, per framework", "",
            "Median us per step (% of the bandwidth roofline); speedup = peer / ours (below 1: ours is slower). "
            "The floor is what a jitted call on the same arguments costs with nothing inside: no step can beat "
            "it, and it is not a competitor. Also in `headline.md`.", "", headline(steps)]
    out += ["## Labels", "", labels(steps), ""]
    out += _residency(steps, probes, data)
    combos = sorted({(r["device"], r["dtype"], r["tag"]) for r in steps},
                    key=lambda k: (order_key(k[0], DEVICE_ORDER), order_key(k[1], DTYPE_ORDER), tag_order(k[2])))
    for device, dtype, tag in combos:
        sub = [r for r in steps if r["device"] == device and r["dtype"] == dtype and r["tag"] == tag]
        out += [f"## {device}, {dtype}, threads {threads_label(sub[0])}", ""]
        for plot in plots:
            if plot.endswith(f"-{device}-{dtype}-{tag}.png"):
                out += [f"![{plot}]({plot})", ""]
        for rule in ordered([r["rule"] for r in sub], RULE_ORDER):
            rs = [r for r in sub if r["rule"] == rule]
            sizes = ordered([r["size"] for r in rs], SIZE_ORDER)
            impls = ordered([r["impl"] for r in rs], IMPL_ORDER)
            competitors = [i for i in impls if not any(r["impl"] == i and r.get("family") == "floor" for r in rs)]
            by = {(r["impl"], r["size"]): r for r in rs}
            best = {s: min((r["median_s"] for r in rs if r["size"] == s and r.get("family") != "floor"),
                           default=None) for s in sizes}

            def label(impl):
                return f"{impl} (floor)" if impl not in competitors else impl

            def cell(impl, size, what):
                r = by.get((impl, size))
                if r is None:
                    return "-"
                if what == "us":
                    text = fmt_us(r["median_s"])
                    if r.get("family") == "floor":
                        text = f"*{text}*"
                    elif r["median_s"] == best[size]:
                        text = f"**{text}**"
                    return text + flag(r)
                if what == "x":
                    return fmt_x(r.get("speedup_vs_torch_optim")) + flag(r)
                if what == "mem":
                    return fmt_bytes(r.get("temp_bytes")) or "?"
                return fmt_pct(r)

            out += [f"### {rule}: {device}, {dtype}, threads {threads_label(rs[0])}", "",
                    "Median us per step (fastest in bold; the floor in italics, never a candidate):", ""]
            out += [table(["impl", *sizes], [[label(i), *(cell(i, s, "us") for s in sizes)] for i in impls]), ""]
            out += ["Speedup over the best torch.optim variant of the same group (>1: faster; "
                    "below 1 marked slower):", ""]
            out += [table(["impl", *sizes], [[i, *(cell(i, s, "x") for s in sizes)] for i in competitors]), ""]
            out += ["Fraction of the bandwidth roofline:", ""]
            out += [table(["impl", *sizes], [[i, *(cell(i, s, "pct") for s in sizes)] for i in competitors]), ""]
            if any(r.get("temp_bytes") is not None for r in rs):
                out += ["Temporary memory of one step (bytes allocated beyond params, grads and state; "
                        "? = not measured):", ""]
                out += [table(["impl", *sizes], [[label(i), *(cell(i, s, "mem") for s in sizes)] for i in impls]),
                        ""]
            header = ["size", "impl", "median us", "IQR us", "rounds", "x best torch.optim", "x optax", "GB/s",
                      "% roofline", "CPU util", "temp memory", "call overhead us"] + (
                ["previous -> now (ratio)"] if previous is not None else [])
            body = []
            for r in rs:
                line = [r["size"], label(r["impl"]), fmt_us(r["median_s"]), fmt_us(r.get("iqr_s")),
                        r.get("rounds", ""), fmt_x(r.get("speedup_vs_torch_optim")),
                        fmt_x(r.get("speedup_vs_optax")), f"{r['gbps']:.3g}", fmt_pct(r), fmt_util(r),
                        fmt_bytes(r.get("temp_bytes")), fmt_us(r.get("overhead_s"))]
                if previous is not None:
                    line.append(fmt_change(r))
                body.append(line)
            out += ["<details><summary>all numbers</summary>", "", table(header, body), "", "</details>", ""]
            if any(r.get("over_budget") for r in rs):
                out += [FLAG_NOTE, ""]
    out += _overhead(steps)
    if probes:
        out += ["## Bandwidth probe (in-place a += b)", ""]
        body = [[p["device"], p["dtype"], threads_label(p), p["size"], p.get("working_set_arrays") or "?",
                 f"{p['probe_elements']:,}", p["framework"], fmt_us(p["median_s"]),
                 f"{p['gbps']:.3g}", fmt_bytes(p.get("working_set_bytes")),
                 {True: "yes", False: "no"}.get(p.get("cache_resident"), "?"), fmt_util(p)] for p in probes]
        out += [table(["device", "dtype", "threads", "size", "for steps touching (arrays)", "elements in a and b",
                        "framework", "median us", "GB/s", "working set", "cache resident", "CPU util"], body), ""]
    if training:
        out += ["## Training throughput (Iris, bench/bench_training.py)", "",
                "One call is one epoch of the tutorial's setting (whole training steps: forward, backward, "
                "update); steps/s = steps per call / median.", ""]
        header = ["threads", "rule", "variant", "median ms per epoch", "IQR ms", "rounds", "steps/s",
                  "CPU util"] + (["previous -> now (ratio)"] if previous is not None else [])
        body = []
        for r in training:
            line = [threads_label(r), r["rule"], r["impl"], f"{r['median_s'] * 1e3:.3g}",
                    "" if r.get("iqr_s") is None else f"{r['iqr_s'] * 1e3:.2g}", r.get("rounds", ""),
                    f"{r['steps_per_s']:,.0f}", fmt_util(r)]
            if previous is not None:
                line.append(fmt_change(r))
            body.append(line)
        out += [table(header, body), ""]
    if previous is not None:
        both = [r for r in steps + probes if r.get("change") is not None]
        both.sort(key=lambda r: -r["change"])
        slower = sum(r["change"] >= SLOWER for r in both)
        faster = sum(r["change"] <= FASTER for r in both)
        out += ["## Change since the previous run", "",
                f"{len(both)} benchmarks in both runs: {slower} slower by >= 10%, {faster} faster by >= 10% "
                f"(ratio = now / before; noise on a loaded machine easily reaches 10%).", ""]
        body = [[r["device"], r["dtype"], threads_label(r), r.get("rule") or "probe", r["size"], r["impl"], fmt_us(r["prev_median_s"]),
                 fmt_us(r["median_s"]), f"{r['change']:.2f}x" + (" **slower**" if r["change"] >= SLOWER else
                                                                  " faster" if r["change"] <= FASTER else "")]
                for r in both]
        out += [table(["device", "dtype", "threads", "rule", "size", "impl", "before us", "now us", "ratio"], body),
                ""]
    errors = [r for r in steps if r.get("probe_error")]
    out += ["## Probe errors", ""]
    if errors:
        out += ["Steps that beat the probe; their roofline fraction is not a result:", ""]
        out += [table(["group", "impl", "error"],
                       [[f"{r['rule']}-{r['size']}-{r['dtype']}-{r['device']}-{r['tag']}", r["impl"], r["probe_error"]]
                        for r in errors]), ""]
    else:
        out += ["None: every step stayed at or below its probe.", ""]
    if ignored:
        out += [f"({ignored} benchmarks in the JSON are not adaptbench step, probe or training benchmarks "
                "and were left out.)", ""]
    return "\n".join(out)

