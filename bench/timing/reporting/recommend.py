"""Which implementation to use at which size: the recommendation table and the label glossary.

Per device, dtype and thread setting, for each rule and size: the fastest implementation
in each framework (ours and the peers together; the empty-jit floor is not a candidate)
and its margin over the runner-up. Two medians whose gap is smaller than the mean of their
IQRs, or whose ratio is below ``TIE`` (5 %), are a tie: the run does not separate them.
"""

from __future__ import annotations

from .data import groups
from .fmt import FLAG_NOTE, flag, fmt_us, table, threads_label
from .tables import group_order

TIE = 1.05
FRAMEWORKS = (("torch", "PyTorch"), ("jax", "JAX"))


def within_noise(fast: dict, slow: dict) -> bool:
    """True when ``slow``'s median is not clearly above ``fast``'s: the gap is smaller than
    the mean of the two IQRs, or the ratio is below ``TIE``."""
    gap = slow["median_s"] - fast["median_s"]
    noise = ((fast.get("iqr_s") or 0.0) + (slow.get("iqr_s") or 0.0)) / 2
    return gap <= noise or slow["median_s"] < TIE * fast["median_s"]


def pick(members: list[dict], framework: str) -> dict | None:
    """``{"best": row, "tied": [rows], "runner_up": row or None, "margin": ratio or None}``."""
    ranked = sorted((m for m in members if m.get("framework") == framework and m.get("family") != "floor"),
                    key=lambda m: m["median_s"])
    if not ranked:
        return None
    best = ranked[0]
    tied = [m for m in ranked[1:] if within_noise(best, m)]
    runner = ranked[1] if len(ranked) > 1 else None
    return {"best": best, "tied": tied, "runner_up": runner,
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


def recommendation(steps: list[dict], level: int = 1) -> str:
    """Markdown: one table per device, dtype and thread setting (``recommendation.md``);
    ``level`` is the heading level of its title."""
    by_setting: dict[tuple, list] = {}
    for key, members in sorted(groups(steps).items(), key=group_order):
        device, dtype, tag, rule, size = key
        by_setting.setdefault((device, dtype, tag), []).append((rule, size, members))
    out = [
        "#" * level + " Which implementation at which size",
        "",
        "Per device, dtype and thread setting: for each rule and size, the fastest implementation in each "
        "framework (ours and the library's own together) and how much faster it is than the runner-up "
        "(runner-up median / fastest median). Two medians closer than the mean of their IQRs, or within "
        f"{100 * (TIE - 1):.0f} % of each other, are called a tie. Times in us per step; labels are defined in the report.",
        "",
    ]
    for (device, dtype, _tag), entries in by_setting.items():
        out += ["#" * (level + 1) + f" {device}, {dtype}, threads {threads_label(entries[0][2][0])}", ""]
        body = []
        for rule, size, members in entries:
            body.append([rule, size, *_cells(pick(members, "torch")), *_cells(pick(members, "jax"))])
        out += [table(["rule", "size", "PyTorch: fastest", "margin", "JAX: fastest", "margin"], body), ""]
    if any(r.get("over_budget") for r in steps):
        out += [FLAG_NOTE, ""]
    return "\n".join(out)


def labels(steps: list[dict]) -> str:
    """Markdown: every implementation label in ``steps`` with the description its JSON carries."""
    from .data import IMPL_ORDER, order_key

    seen: dict[str, dict] = {}
    for r in steps:
        seen.setdefault(r["impl"], r)
    body = []
    for impl in sorted(seen, key=lambda v: order_key(v, IMPL_ORDER)):
        r = seen[impl]
        role = {"ours": "ours", "peer": "the library's own", "floor": "floor (a lower bound, not a competitor)"}
        body.append([f"`{impl}`", r.get("framework") or "", role.get(r.get("family"), r.get("family") or ""),
                     r.get("impl_description") or "(no description in the JSON)"])
    return table(["label", "framework", "role", "what is timed"], body)
