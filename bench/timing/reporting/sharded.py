"""Tables and plots for the "sharded" family (bench/timing/bench_sharded.py).

``write(data, out, writer=None) -> str`` takes a pytest-benchmark JSON (already loaded) as
a pandas frame (``rows``),
writes ``sharded-<framework>-<scaling>.png`` under ``out`` and returns the Markdown
section (tables and image links). Nothing is written when the JSON has no sharded rows
(the section is then empty). ``rows(data)``, ``markdown(rows)`` and ``plot(rows, out)``
are its parts.

Per row: elements and bytes per device per step (the step's bytes, the rule's
``accesses_per_element`` x 4 B per fp32 element, divided by the device count), the step's median time as
timed inside its server, GB/s per device, the probe's GB/s per device (an in-place
``a + b`` with the same per-device working set, on the same devices, in the same server)
and the step's fraction of it; strong-scaling rows add the time relative to one device.
A fraction above 1 means the probe under-measured: shown as a probe error, never as a
result.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from .fmt import table
from .frame import order, records, rule_order

SCALING_TITLE = {
    "strong": "JAX SPMD, strong scaling: 1e7 fp32 elements in all over 1-8 devices",
    "weak": "JAX SPMD, weak scaling: 1e6 fp32 elements per device",
    "fsdp": "torch FSDP2 (fully_shard), 2 gloo ranks, 1e7 fp32 elements in all",
}
MEANING = (
    "What these figures mean: on a CPU the host devices (`--xla_force_host_platform_device_count`) "
    "and the gloo ranks share the machine's cores and memory bus, so more devices do not add "
    "bandwidth; the figures measure what sharding *adds* over one device at the same total "
    "(partitioning, per-device dispatch, barriers). On a multi-GPU machine the same command "
    "(`python -m bench run -- -k sharded`) places the mesh on the GPUs, where they measure scaling."
)


def rows(data: dict) -> pd.DataFrame:
    """The sharded benchmarks of a pytest-benchmark JSON, one row each (timed ones only)."""
    ei = pd.DataFrame([b.get("extra_info") or {} for b in data.get("benchmarks", [])])
    if ei.empty or "median_s" not in ei:
        return pd.DataFrame()
    ei = ei[(ei["kind"] == "sharded") & ei["median_s"].notna()].astype(object)
    if ei.empty:
        return pd.DataFrame()
    frac = ei["roofline_fraction"] if "roofline_fraction" in ei else pd.Series(None, index=ei.index)
    default = ei["thread_setting"] == "default" if "thread_setting" in ei else pd.Series(False, index=ei.index)
    out = ei.assign(
        devices=ei["devices"].astype(int), n=ei["n"].astype(int), n_per_device=ei["n_per_device"].astype(int),
        bytes_per_device=ei["bytes_per_device"].astype(float), median_s=ei["median_s"].astype(float),
        gbps_per_device=ei["gbps_per_device"].astype(float),
        probe_gbps_per_device=ei.get("probe_gbps_per_device"),
        roofline_fraction=frac.where(frac.notna() & (frac.astype(float) <= 1), None),
        probe_error=frac.notna() & (frac.astype(float) > 1),
        # the sweep runs each thread setting; their rows must not read as repeats
        threads=ei.get("threads", pd.Series("—", index=ei.index)).map(lambda t: "—" if pd.isna(t) else str(t))
        + default.map({True: " (default)", False: ""}))
    rank = {r: i for i, r in enumerate(order(out["rule"], rule_order()))}
    out = out.assign(_rule=out["rule"].map(rank)).sort_values(
        ["framework", "scaling", "_rule", "impl", "threads", "devices"], kind="stable")
    return out.drop(columns="_rule").reset_index(drop=True)


def _fmt(v, spec: str) -> str:
    return "—" if v is None or pd.isna(v) else format(v, spec)


def markdown(rs: pd.DataFrame) -> str:
    if rs.empty:
        return ""
    lines = ["## Sharded parameters (scaling out)", "", MEANING, ""]
    for (framework, scaling), sub in rs.groupby(["framework", "scaling"], sort=True):
        strong = scaling == "strong"
        one = sub[sub["devices"] == 1].set_index(["rule", "impl", "threads"])["median_s"]
        body = []
        for r in records(sub):
            cells = [r["rule"], f"`{r['impl']}`", r["threads"], str(r["devices"]), f"{r['n_per_device']:,}",
                     f"{r['bytes_per_device'] / 1e6:.1f}", f"{r['median_s'] * 1e3:.2f}",
                     f"{r['gbps_per_device']:.2f}", _fmt(r["probe_gbps_per_device"], ".2f"),
                     "probe error" if r["probe_error"] else _fmt(r["roofline_fraction"], ".0%")]
            if strong:
                base = one.get((r["rule"], r["impl"], r["threads"]))
                cells.append("—" if base is None else f"{r['median_s'] / base:.2f}x")
            body.append(cells)
        head = ["rule", "impl", "threads", "devices", "elements/device", "MB/device/step", "median ms",
                "GB/s per device", "probe GB/s per device", "of probe"] + (["time vs 1 device"] if strong else [])
        lines += [f"### {SCALING_TITLE.get(scaling, f'{framework} {scaling}')}", "", table(head, body), "",
                  f"![{framework} {scaling}](sharded-{framework}-{scaling}.png)", ""]
    return "\n".join(lines)


def _save(fig, path: Path, writer) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    if writer is None:
        path.write_bytes(buf.getvalue())
    else:
        writer(path, buf.getvalue())


def plot(rs: list[dict], out, writer=None) -> list[str]:
    """Per (framework, scaling): one panel per rule. Over device counts (JAX): GB/s per
    device per impl (solid) and the probe's GB/s per device (dotted); one device count
    (torch): bars of GB/s per device per impl, the probe a dotted line. Returns file names."""
    if rs.empty:
        return []
    rs = records(rs)
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = Path(out)
    written = []
    for (framework, scaling) in sorted({(r["framework"], r["scaling"]) for r in rs}):
        sub = [r for r in rs if (r["framework"], r["scaling"]) == (framework, scaling)]
        rules = order([r["rule"] for r in sub], rule_order())
        fig, axes = plt.subplots(1, len(rules), figsize=(5.2 * len(rules), 4.4), squeeze=False,
                                 layout="constrained")
        for ax, rule in zip(axes[0], rules):
            rr = [r for r in sub if r["rule"] == rule]
            impls = sorted({(r["impl"], r["threads"]) for r in rr})
            counts = sorted({r["devices"] for r in rr})
            if len(counts) > 1:
                for i, impl in enumerate(impls):
                    pts = [r for r in rr if (r["impl"], r["threads"]) == impl]
                    ax.plot([r["devices"] for r in pts], [r["gbps_per_device"] for r in pts],
                            marker="o", color=f"C{i}", label=f"{impl[0]}, {impl[1]} threads")
                probe: dict[int, float] = {}
                for r in rr:  # the best probe per device count, as bench/timing/probe.py's roofline
                    if r["probe_gbps_per_device"]:
                        probe[r["devices"]] = max(probe.get(r["devices"], 0.0), r["probe_gbps_per_device"])
                if probe:
                    ax.plot(sorted(probe), [probe[d] for d in sorted(probe)], ":", color="gray",
                            label="probe a+b (roofline)")
                ax.set_xscale("log", base=2)
                ax.set_xticks(counts, [str(c) for c in counts])
                ax.set_xlabel("devices")
            else:
                ax.bar(range(len(impls)),
                       [next(r["gbps_per_device"] for r in rr if (r["impl"], r["threads"]) == i) for i in impls],
                       color=[f"C{k}" for k in range(len(impls))])
                ax.set_xticks(range(len(impls)), [f"{i}, {t} thr." for i, t in impls], rotation=35, ha="right")
                probes = [r["probe_gbps_per_device"] for r in rr if r["probe_gbps_per_device"]]
                if probes:
                    ax.axhline(max(probes), linestyle=":", color="gray", label="probe a+b (roofline)")
                ax.set_xlabel(f"{counts[0]} ranks")
            ax.set_ylabel("GB/s per device")
            ax.set_title(rule)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(SCALING_TITLE.get(scaling, f"{framework} {scaling}"))
        name = f"sharded-{framework}-{scaling}.png"
        _save(fig, out / name, writer)
        written.append(name)
    return written


def write(data: dict, out, writer=None) -> str:
    """Plots under ``out`` (``writer(path, bytes)`` if given, e.g. the report's atomic
    writer) and the Markdown section; ``""`` when ``data`` has no sharded rows."""
    rs = rows(data)
    plot(rs, out, writer)
    return markdown(rs)
