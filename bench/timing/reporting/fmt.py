"""Cell formatting and Markdown/CSV table text (pandas ``to_markdown``, ``to_csv``)."""

from __future__ import annotations

import pandas as pd

from .frame import FASTER, SLOWER


def fmt_us(seconds) -> str:
    if seconds is None:
        return ""
    us = seconds * 1e6
    return f"{us:,.0f}" if abs(us) >= 100 else f"{us:.1f}" if abs(us) >= 10 else f"{us:.2f}"


def fmt_x(value) -> str:
    """A speedup (peer time / ours): below 1 it is a slowdown, and says so."""
    return "" if value is None else f"{value:.2f}x" + (" (slower)" if value < 1 else "")


FLAG = " †"
FLAG_NOTE = ("† over its CPU budget: the process used more CPU time per second than its thread setting allows "
             "(see the CPU column of the full tables); not a like-for-like comparison.")


def flag(row) -> str:
    return FLAG if row.get("over_budget") else ""


def fmt_util(row) -> str:
    util = row.get("cpu_util")
    if util is None:
        return ""
    return f"**{util:.2f} > {row['cpu_budget']}** †" if row.get("over_budget") else f"{util:.2f}"


def threads_label(row) -> str:
    """e.g. ``2 (default)``, ``1 (pinned)``, or ``1`` for runs that recorded only torch's count."""
    budget = row.get("cpu_budget") if row.get("cpu_budget") is not None else row.get("threads")
    if row.get("thread_setting") == "default":
        return f"{budget} (default)"
    return f"{budget} (pinned)" if row.get("pinned") else f"{budget}"


def fmt_pct(row) -> str:
    if row.get("probe_error"):
        return "probe error"
    f = row.get("roofline_fraction")
    return "" if f is None else f"{100 * f:.0f}%"


def _verdict(c) -> str:
    return " **slower**" if c >= SLOWER else " faster" if c <= FASTER else ""


def fmt_ratio(c) -> str:
    return f"{c:.2f}x{_verdict(c)}"


def fmt_change(row) -> str:
    c = row.get("change")
    return "" if c is None else f"{fmt_us(row['prev_median_s'])} -> {fmt_us(row['median_s'])} ({c:.2f}x){_verdict(c)}"


def table(header: list[str], body: list[list]) -> str:
    """A Markdown table of already formatted cells (tabulate's GitHub format, no number parsing)."""
    return pd.DataFrame([[str(c) for c in row] for row in body], columns=header).to_markdown(
        index=False, tablefmt="github", disable_numparse=True)


def csv_text(df: pd.DataFrame, columns) -> str:
    """``df``'s ``columns`` as CSV, microseconds for the ``*_us`` columns made from ``*_s``."""
    out = df.copy()
    for col in columns:
        seconds = "prev_median_s" if col == "previous_median_us" else col[:-3] + "_s"
        if col.endswith("_us") and seconds in df:
            out[col] = df[seconds].map(lambda s: None if s is None else s * 1e6)
    return out.reindex(columns=list(columns)).to_csv(index=False, lineterminator="\n")
