"""PNG plots for the report (matplotlib, Agg backend; no display needed).

Per device, dtype and thread setting (``t<CPU budget>``):
- ``time-<device>-<dtype>-<tag>.png``: median time per step against parameter count, log-log, one
  panel per rule, one line per implementation over the single-tensor sizes (and Iris); the
  many-tensor case (``tfm100``) is drawn as a hollow marker of the same colour.
- ``roofline-<device>-<dtype>-<tag>.png``: fraction of the bandwidth probe against parameter count;
  the dotted line marks where the working set outgrows the last-level cache. Steps with a
  probe error are left out (the Markdown lists them).
"""

from __future__ import annotations

import io

from .reporting.frame import order, records

STYLE = {
    "ours-torch-loop": ("tab:blue", "-", "o"),
    "ours-torch-foreach": ("tab:cyan", "-", "s"),
    "ours-torch-fused": ("navy", "-", "D"),
    "ours-torch-auto": ("tab:brown", "-", "P"),
    "ours-jax-step": ("tab:green", "-", "^"),
    "ours-jax-optax": ("olive", "-", "v"),
    "torch.optim-loop": ("tab:orange", "--", "o"),
    "torch.optim-foreach": ("tab:red", "--", "s"),
    "torch.optim-fused": ("darkred", "--", "D"),
    "optax": ("tab:purple", "--", "^"),
    "keras-jax": ("tab:pink", "-.", "v"),
    "keras-torch": ("goldenrod", "-.", "s"),
    "jax-empty-jit": ("tab:gray", ":", "."),
}
MANY = "tfm100"


def _style(impl: str, i: int):
    return STYLE.get(impl, (f"C{i % 10}", ":", "x"))


def figure(rules):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rules), figsize=(5.4 * len(rules), 5.0), squeeze=False, layout="constrained")
    return plt, fig, axes[0]


def save(plt, fig, path, writer) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    writer(path, buf.getvalue())




def _plot(rows, device, dtype, tag, out, writer, what: str) -> str | None:
    sub = [r for r in rows if r["device"] == device and r["dtype"] == dtype and r["tag"] == tag]
    rules = order([x["rule"] for x in sub], "rule")
    if not rules:
        return None
    plt, fig, axes = figure(rules)
    impls = order([x["impl"] for x in sub], "impl")
    handles = {}
    for ax, rule in zip(axes, rules):
        rs = [r for r in sub if r["rule"] == rule]
        for i, impl in enumerate(impls):
            color, ls, marker = _style(impl, i)
            pts = sorted((r for r in rs if r["impl"] == impl), key=lambda r: r["n"])
            if what == "time":
                value = lambda r: r["median_s"] * 1e6  # noqa: E731
            else:
                value = lambda r: r.get("roofline_fraction")  # noqa: E731
            line = [(r["n"], value(r)) for r in pts if r["size"] != MANY and value(r) is not None]
            many = [(r["n"], value(r)) for r in pts if r["size"] == MANY and value(r) is not None]
            if line:
                (h,) = ax.plot(*zip(*line), color=color, linestyle=ls, marker=marker, markersize=4, label=impl)
                handles.setdefault(impl, h)
            if many:
                h = ax.scatter(*zip(*many), s=60, facecolors="none", edgecolors=color, marker=marker, zorder=3)
                handles.setdefault(impl, h)
        ax.set_xscale("log")
        ax.set_xlabel("parameters (elements)")
        ax.set_title(f"{rule} ({device}, {dtype}, {tag[1:]} CPU{'s' if tag != 't1' else ''})")
        ax.grid(True, which="both", alpha=0.3)
        if what == "time":
            ax.set_yscale("log")
            ax.set_ylabel("median time per step (us)")
        else:
            ax.set_ylim(0, 1.05)
            ax.axhline(1.0, color="gray", linewidth=0.8)
            ax.set_ylabel("fraction of roofline")
            edge = _cache_edge(rs)
            if edge:
                ax.axvline(edge, color="gray", linestyle=":", linewidth=1)
    if handles:
        fig.legend(list(handles.values()), list(handles.keys()), loc="outside lower center",
                   ncol=min(5, len(handles)), frameon=False)
    else:
        fig.text(0.5, 0.5, "nothing to plot (see the report's probe errors)", ha="center", va="center")
    fig.suptitle(("Median time per step" if what == "time" else "Fraction of the in-place a += b bandwidth")
                 + f" (hollow markers: {MANY}, 100 tensors)")
    name = f"{what}-{device}-{dtype}-{tag}.png"
    save(plt, fig, out / name, writer)
    return name


def _cache_edge(rows) -> float | None:
    """Element count where this rule's working set reaches the cache size recorded in the JSON."""
    for r in rows:
        if r.get("working_set_bytes") and r.get("cache_resident") is not None and r.get("n"):
            per_element = r["working_set_bytes"] / r["n"]
            cache = r.get("cache_bytes")
            if cache:
                return cache / per_element
    return None


def write_all(steps, out, writer) -> list[str]:
    """Both plots per device, dtype and thread setting of the report's step frame; their file names."""
    rows = records(steps)
    combos = sorted({(r["device"], r["dtype"], r["tag"]) for r in rows})
    written = []
    for device, dtype, tag in combos:
        for what in ("time", "roofline"):
            name = _plot(rows, device, dtype, tag, out, writer, what)
            if name:
                written.append(name)
    return written
