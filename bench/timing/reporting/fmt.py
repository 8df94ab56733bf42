"""Cell formatting and Markdown/CSV table text."""

from __future__ import annotations

from .data import SLOWER, FASTER, order_key

def fmt_us(seconds) -> str:
    if seconds is None:
        return ""
    us = seconds * 1e6
    if abs(us) >= 100:
        return f"{us:,.0f}"
    if abs(us) >= 10:
        return f"{us:.1f}"
    return f"{us:.2f}"


def fmt_x(value) -> str:
    """A speedup (peer time / ours): below 1 it is a slowdown, and says so."""
    if value is None:
        return ""
    return f"{value:.2f}x" + (" (slower)" if value < 1 else "")


FLAG = " †"
FLAG_NOTE = ("† over its CPU budget: the process used more CPU time per second than its thread setting allows "
             "(see the CPU column of the full tables); not a like-for-like comparison.")


def flag(row) -> str:
    return FLAG if row.get("over_budget") else ""


def fmt_util(row) -> str:
    util = row.get("cpu_util")
    if util is None:
        return ""
    text = f"{util:.2f}"
    return f"**{text} > {row['cpu_budget']}** †" if row.get("over_budget") else text


def threads_label(row) -> str:
    """e.g. ``2 (default)``, ``1 (pinned)``, or ``1`` for runs that recorded only torch's count."""
    setting = row.get("thread_setting")
    budget = row.get("cpu_budget") if row.get("cpu_budget") is not None else row.get("threads")
    if setting == "default":
        return f"{budget} (default)"
    return f"{budget} (pinned)" if row.get("pinned") else f"{budget}"


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


def table(header: list[str], body: list[list[str]], align: list[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def ordered(values, order):
    return sorted(set(values), key=lambda v: order_key(v, order))


def csv_table(columns, records) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for rec in records:
        w.writerow(["" if rec.get(c) is None else rec.get(c) for c in columns])
    return buf.getvalue()


def us(s):
    return None if s is None else s * 1e6

