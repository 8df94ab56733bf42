"""The CSV files and the headline table."""

from __future__ import annotations

from .data import DEVICE_ORDER, DTYPE_ORDER, RULE_ORDER, SIZE_ORDER, groups, order_key, tag_order
from .fmt import FLAG_NOTE, csv_table, flag, fmt_pct, fmt_us, fmt_x, table, threads_label, us

CSV_COLUMNS = (
    "device", "dtype", "rule", "size", "n", "n_tensors", "impl", "family", "framework",
    "median_us", "iqr_us", "rounds", "iterations", "best_torch_optim", "speedup_vs_torch_optim",
    "speedup_vs_optax", "bytes_per_step", "gbps", "roofline_gbps", "roofline_source",
    "roofline_fraction", "probe_error", "working_set_bytes", "cache_resident",
    "thread_setting", "threads", "cpu_budget", "cpu_util", "over_budget", "temp_bytes", "temp_source",
    "overhead_step_us", "kernel_us", "kernel_calls", "overhead_us", "overhead_source", "overhead_error",
    "previous_median_us", "change",
)
PROBE_COLUMNS = ("device", "dtype", "size", "n", "working_set_arrays", "probe_elements", "framework",
                 "median_us", "iqr_us", "rounds",
                 "bytes_per_call", "gbps", "working_set_bytes", "cache_resident",
                 "thread_setting", "threads", "cpu_budget", "cpu_util", "over_budget",
                 "previous_median_us", "change")


TRAINING_COLUMNS = ("group", "rule", "impl", "framework", "dataset", "model", "batch_size", "steps_per_call",
                    "median_us", "iqr_us", "rounds", "steps_per_s", "thread_setting", "threads", "cpu_budget",
                    "cpu_util", "over_budget", "previous_median_us", "change")



def csv_text(steps: list[dict]) -> str:
    recs = [
        {**r, "median_us": us(r["median_s"]), "iqr_us": us(r.get("iqr_s")), "bytes_per_step": r["bytes"],
         "overhead_step_us": us(r.get("overhead_step_s")), "kernel_us": us(r.get("kernel_s")),
         "overhead_us": us(r.get("overhead_s")), "previous_median_us": us(r.get("prev_median_s"))}
        for r in steps
    ]
    return csv_table(CSV_COLUMNS, recs)


def probe_csv_text(probes: list[dict]) -> str:
    recs = [
        {**p, "median_us": us(p["median_s"]), "iqr_us": us(p.get("iqr_s")), "bytes_per_call": p["bytes"],
         "previous_median_us": us(p.get("prev_median_s"))}
        for p in probes
    ]
    return csv_table(PROBE_COLUMNS, recs)


def _fastest(members: list[dict], prefix: str) -> dict | None:
    return min((m for m in members if m["impl"].startswith(prefix)), key=lambda m: m["median_s"], default=None)


def group_order(kv) -> tuple:
    device, dtype, tag, rule, size = kv[0]
    return (order_key(device, DEVICE_ORDER), order_key(dtype, DTYPE_ORDER), tag_order(tag),
            order_key(rule, RULE_ORDER), order_key(size, SIZE_ORDER))


def headline(steps: list[dict]) -> str:
    """Per device, dtype, thread setting, rule and size: our fastest implementation in each
    framework against that framework's fastest peer (median us, % of roofline, speedup),
    and the floor: what an empty jitted call on the same arguments costs (not a competitor)."""

    def cell(r):
        pct = fmt_pct(r)
        return f"{r['impl']} {fmt_us(r['median_s'])}" + (f" ({pct})" if pct not in ("", "-") else "") + flag(r)

    body = []
    for (device, dtype, tag, rule, size), members in sorted(groups(steps).items(), key=group_order):
        line = [device, dtype, threads_label(members[0]), rule, size]
        for ours, peer in (("ours-torch", "torch.optim"), ("ours-jax", "optax")):
            a, b = _fastest(members, ours), _fastest(members, peer)
            if a is None or b is None:
                line += ["-", "-", "-"]
            else:
                line += [cell(a), cell(b), fmt_x(b["median_s"] / a["median_s"])]
        floor = _fastest(members, "jax-empty-jit")
        line.append("-" if floor is None else fmt_us(floor["median_s"]) + flag(floor))
        body.append(line)
    header = ["device", "dtype", "threads", "rule", "size", "ours, torch (us)", "best torch.optim (us)", "speedup",
              "ours, jax (us)", "optax (us)", "speedup", "floor: empty jit (us)"]
    notes = [FLAG_NOTE] if any(r.get("over_budget") for r in steps) else []
    return "\n".join([table(header, body), *notes]) + "\n"
