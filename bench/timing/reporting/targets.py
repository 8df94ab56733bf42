"""The performance targets of issues #15 and #28, judged from one run: ``targets.md``.

One table per device and thread setting (fp32), one row per target: its wording (from
``RULE_TARGETS``, ``WORDING`` and the constants below), this run's numbers from the step
frame's rows (nothing is typed in) and met / missed / "not in this run"; "within noise"
marks a miss the run cannot separate from a tie (``frame.within_noise``).
"""

from __future__ import annotations

import pandas as pd

from adaptbench import rules

from bench.machine import fmt_bytes

from .fmt import fmt_us, table, threads_label
from .frame import records, sort, within_noise

PROBE_TARGET = 0.85
# The targets about one rule, as issues #15 and #28 word them (their definition): the kind,
# the rule, ours, the peer, the target ratio, the goal.
RULE_TARGETS = (
    ("fused_vs_torch", "adagrad", "ours-torch-fused", "torch.optim-fused", 1.0, None),
    ("fused_vs_torch", "adam", "ours-torch-fused", "torch.optim-fused", 1.0, None),
    ("fused_vs_torch", "adamw", "ours-torch-fused", "torch.optim-fused", 1.0, None),
    ("fused_vs_torch", "sgd", "ours-torch-fused", "torch.optim-fused", 1.0, None),
    ("jax_vs_optax", "adadelta", "ours-jax-step", "optax", 2.5, 4.0),
    ("jax_vs_optax", "adam", "ours-jax-step", "optax", 1.0, None),
    ("jax_vs_optax", "adamw", "ours-jax-step", "optax", 1.0, None),
    ("jax_vs_optax", "sgd", "ours-jax-step", "optax", 1.0, None),
)
# Each kind's (target, this run) wording, formatted with the rows' numbers.
WORDING = {
    "fused_vs_torch": ("1e7 fp32 {name}: ours fused >= {target}x torch.optim `fused=True`",
                       "{ratio:.2f}x (ours {ours} us, torch.optim {peer} us; % of probe: ours {ours_pct}, "
                       "torch.optim {peer_pct})"),
    "jax_vs_optax": ("1e7 fp32 JAX {name}: `make_step` >= {target}x optax",
                     "{ratio:.2f}x (ours {ours} us, optax {peer} us){goal}"),
}
TORCH_DEFAULT = {"cpu": "torch.optim-loop", "cuda": "torch.optim-foreach"}
FROM_1E5 = ("1e5", "1e6", "tfm100", "1e7")
BIG = "1e7"
NO_ROWS = "not in this run"
# The steps that should allocate no parameter-sized temporary.
NO_TEMPORARY = ("ours-torch-fused", "ours-torch-auto", "ours-jax-step")


def _ratio(peer: dict | None, ours: dict | None) -> tuple[float | None, bool]:
    if peer is None or ours is None:
        return None, False
    return peer["median_s"] / ours["median_s"], within_noise(*sorted((peer, ours), key=lambda r: r["median_s"]))


def _status(value: float | None, target: float, noisy: bool = False) -> str:
    if value is None:
        return NO_ROWS
    return "met" if value >= target else "missed (within noise)" if noisy else "missed"


def _pct(row: dict) -> str:
    f = row.get("roofline_fraction")
    return "probe error" if row.get("probe_error") or f is None else f"{100 * f:.0f} %"


def _one_rule(at: dict, kind: str, rule: str, ours_impl: str, peer_impl: str, target: float, goal) -> list[str]:
    """A ``RULE_TARGETS`` row judged at 1e7 elements."""
    ours, peer = at.get((rule, BIG, ours_impl)), at.get((rule, BIG, peer_impl))
    ratio, noisy = _ratio(peer, ours)
    label, result = WORDING[kind]
    if ratio is not None:
        result = result.format(ratio=ratio, ours=fmt_us(ours["median_s"]), peer=fmt_us(peer["median_s"]),
                               ours_pct=_pct(ours), peer_pct=_pct(peer), goal="" if goal is None else
                               f"; goal {goal:.0f}x {'met' if ratio >= goal else 'not met'}")
    name = getattr(rules.RULES.get(rule), "__name__", rule)
    return [label.format(name=name, target=target), NO_ROWS if ratio is None else result,
            _status(ratio, target, noisy)]


def _fused_vs_probe(at: dict) -> list[str]:
    fused = [r for (_, size, impl), r in at.items() if (size, impl) == (BIG, "ours-torch-fused")
             and not r.get("probe_error") and r.get("roofline_fraction") is not None]
    return [f"1e7 fp32: every rule's fused step >= {100 * PROBE_TARGET:.0f} % of the probe",
            ", ".join(f"{r['rule']} {_pct(r)}" for r in fused) or NO_ROWS,
            _status(min((r["roofline_fraction"] for r in fused), default=None), PROBE_TARGET)]


def _default_vs(at: dict, sizes, peer_of, label: str) -> list[str]:
    """Our default step against ``peer_of(members)`` at every rule and size in ``sizes``
    (None: every size): the worst ratio and every miss."""
    by_case: dict[tuple, dict] = {}
    for (rule, size, impl), r in at.items():
        if sizes is None or size in sizes:
            by_case.setdefault((rule, size), {})[impl] = r
    judged = [(rule, size, members["ours-torch-auto"], peer, *_ratio(peer, members["ours-torch-auto"]))
              for (rule, size), members in by_case.items()
              if "ours-torch-auto" in members and (peer := peer_of(members)) is not None]
    if not judged:
        return [label, NO_ROWS, NO_ROWS]
    worst = min(ratio for *_, ratio, _ in judged)
    misses = [(f"{rule} {size} {ratio:.2f}x ({peer['impl']} {fmt_us(peer['median_s'])}, "
               f"ours {fmt_us(ours['median_s'])}{', within noise' if noisy else ''})", noisy)
              for rule, size, ours, peer, ratio, noisy in judged if ratio < 1.0]
    result = f"worst {worst:.2f}x over {len(judged)} cases" + (
        f"; below 1.0x: {'; '.join(m for m, _ in misses)}" if misses else "")
    return [label, result, _status(worst, 1.0, bool(misses) and all(noisy for _, noisy in misses))]


def _fastest_torch_optim(members: dict) -> dict | None:
    return min((r for impl, r in members.items() if impl.startswith("torch.optim-")),
               key=lambda r: r["median_s"], default=None)


def _memory(at: dict) -> list[str]:
    label = "1e7 fp32: fused paths and `make_step` allocate no parameter-sized temporary"
    found = [r for impl in NO_TEMPORARY for (_, size, i), r in at.items()
             if (size, i) == (BIG, impl) and r.get("temp_bytes") is not None]
    if not found:
        return [label, NO_ROWS, NO_ROWS]
    worst = pd.DataFrame(found).groupby("impl", sort=False)["temp_bytes"].max()
    # fp32: 4 bytes per element of the largest tensor (one tensor at 1e7)
    over = [f"{r['impl']} {r['rule']} {fmt_bytes(r['temp_bytes'])}" for r in found
            if r["temp_bytes"] >= 4 * r["n"] // max(1, r.get("n_tensors") or 1)]
    result = ", ".join(f"{impl} at most {fmt_bytes(b)}" for impl, b in worst.items())
    return [label, result + (f"; parameter-sized: {', '.join(over)}" if over else ""), "missed" if over else "met"]


def _training(training: list[dict], tag: str) -> list[str]:
    rows = {(r["rule"], r["impl"]): r for r in training if r.get("tag") == tag}
    pairs = [(rule, rows.get((rule, "torch-compiled-ours")), rows.get((rule, "torch-compiled-optim")))
             for rule in dict.fromkeys(r["rule"] for r in training)]
    parts = [f"{rule} {peer['median_s'] / ours['median_s']:.2f}x ({fmt_us(ours['median_s'])} against "
             f"{fmt_us(peer['median_s'])} us per call)" for rule, ours, peer in pairs if ours and peer]
    label = "compiled training step (`torch.compile` of forward, backward, `step`): ours vs torch.optim"
    return [label, "; ".join(parts) if parts else NO_ROWS, "measured" if parts else NO_ROWS]


def targets(steps, training, level: int = 1) -> str:
    """Markdown: one table per device and thread setting, each target with its numbers from
    this run and met/missed; ``level`` is the heading level of the title. ``steps`` and
    ``training`` are frames (or their rows)."""
    steps = sort(pd.DataFrame(steps)) if len(steps) else pd.DataFrame(columns=["device", "dtype", "tag"])
    training = records(sort(pd.DataFrame(training), ("tag", "rule", "impl"))) if len(training) else []
    out = ["#" * level + " Performance targets (issues #15 and #28)", "",
           "Each target judged from this run's medians (ratio = peer / ours; above 1.0x ours is faster). "
           "\"within noise\": the gap is smaller than the rows' IQRs or 5 %. How each miss is explained: "
           "docs/performance.md.", ""]
    fp32 = steps[steps["dtype"] == "fp32"]
    for (device, tag), setting in fp32.groupby(["device", "tag"], sort=False):
        at = {(r["rule"], r["size"], r["impl"]): r for r in records(setting)}
        body = [
            *[_one_rule(at, *row) for row in RULE_TARGETS if row[0] == "fused_vs_torch"],
            _fused_vs_probe(at),
            _default_vs(at, None, lambda m, d=device: m.get(TORCH_DEFAULT.get(d, "")),
                        f"default step (`auto`) >= 1.0x torch.optim's default ({TORCH_DEFAULT.get(device, '-')}) "
                        "at every rule and size"),
            _default_vs(at, FROM_1E5, _fastest_torch_optim,
                        "default step >= 1.0x torch.optim's fastest variant from 1e5 up"),
            _training(training, tag) if device == "cpu" else ["compiled training step", NO_ROWS, NO_ROWS],
            *[_one_rule(at, *row) for row in RULE_TARGETS if row[0] == "jax_vs_optax"],
            _memory(at),
        ]
        out += ["#" * (level + 1) + f" {device}, fp32, threads {threads_label(records(setting.head(1))[0])}", "",
                table(["target", "this run", "status"], body), ""]
    if "cuda" not in set(fp32["device"]):
        out += ["CUDA: no CUDA rows in this run (this machine has no GPU; `make bench-gpu` writes "
                "`results/gpu-<name>/` where one is present).", ""]
    return "\n".join(out)
