"""Tables and plots for the "sharded" family (bench/timing/bench_sharded.py).

Per row: elements and bytes per device per step, the step's median as timed inside its
server, GB/s per device, the probe's GB/s per device (an in-place ``a + b`` of the same
per-device working set, on the same devices, in the same server) and the step's fraction
of it (above 1 the probe under-measured: a probe error, never a result); strong scaling
adds the time relative to one device.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.writer import atomic_write_bytes

from .fmt import table
from .frame import order, records

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
    out = ei.astype({"devices": int, "n": int, "n_per_device": int, "bytes_per_device": float, "median_s": float,
                     "gbps_per_device": float}).assign(
        probe_gbps_per_device=ei.get("probe_gbps_per_device"),
        roofline_fraction=frac.where(frac.notna() & (frac.astype(float) <= 1), None),
        probe_error=frac.notna() & (frac.astype(float) > 1),
        # the sweep runs each thread setting; their rows must not read as repeats
        threads=ei.get("threads", pd.Series("—", index=ei.index)).map(lambda t: "—" if pd.isna(t) else str(t))
        + default.map({True: " (default)", False: ""}))
    rank = {r: i for i, r in enumerate(order(out["rule"], "rule"))}
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


def plot(rs: pd.DataFrame, out, writer=atomic_write_bytes) -> list[str]:
    """Per (framework, scaling): one panel per rule. Over device counts (JAX): GB/s per
    device per impl (solid) and the best probe per count (dotted); one device count
    (torch): bars of GB/s per device per impl, the probe a dotted line. Returns file names."""
    from ..plots import figure, save

    written = []
    for (framework, scaling), sub in rs.groupby(["framework", "scaling"], sort=True):
        rules = order(sub["rule"], "rule")
        plt, fig, axes = figure(rules)
        for ax, rule in zip(axes, rules):
            rr = sub[sub["rule"] == rule]
            gbps = rr.pivot_table(index="devices", columns=["impl", "threads"], values="gbps_per_device")
            probe = pd.to_numeric(rr["probe_gbps_per_device"]).groupby(rr["devices"]).max().dropna()
            if len(gbps) > 1:
                for i, ((impl, threads), line) in enumerate(gbps.items()):
                    line = line.dropna()
                    ax.plot(line.index, line, marker="o", color=f"C{i}", label=f"{impl}, {threads} threads")
                if not probe.empty:
                    ax.plot(probe.index, probe, ":", color="gray", label="probe a+b (roofline)")
                ax.set_xscale("log", base=2)
                ax.set_xticks(gbps.index, [str(c) for c in gbps.index])
                ax.set_xlabel("devices")
            else:
                bars = gbps.iloc[0]
                ax.bar(range(len(bars)), bars, color=[f"C{k}" for k in range(len(bars))])
                ax.set_xticks(range(len(bars)), [f"{i}, {t} thr." for i, t in bars.index], rotation=35, ha="right")
                if not probe.empty:
                    ax.axhline(probe.max(), linestyle=":", color="gray", label="probe a+b (roofline)")
                ax.set_xlabel(f"{gbps.index[0]} ranks")
            ax.set_ylabel("GB/s per device")
            ax.set_title(rule)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle(SCALING_TITLE.get(scaling, f"{framework} {scaling}"))
        name = f"sharded-{framework}-{scaling}.png"
        save(plt, fig, Path(out) / name, writer)
        written.append(name)
    return written


def write(data: dict, out, writer=atomic_write_bytes) -> str:
    """Plots under ``out`` and the Markdown section; ``""`` when ``data`` has no sharded rows."""
    rs = rows(data)
    if rs.empty:
        return ""
    plot(rs, out, writer)
    return markdown(rs)
