"""``targets.md``: issue #15's targets judged from a run's rows (bench/timing/reporting/targets.py).

Synthetic rows in the shape of the report's step frame (``frame.frames``): the verdicts follow the numbers, every
number shown is one of the rows', and a target without rows says so."""

from __future__ import annotations

import pytest

from adaptbench import rules
from bench.timing.reporting.targets import NO_ROWS, targets

RULES = tuple(rules.RULES)
SIZES = {"iris15": 15, "1e3": 1000, "1e5": 100_000, "1e7": 10_000_000}


def _row(rule, size, impl, us, *, tag="t2", frac=0.9, temp=0, iqr=0.0):
    return {
        "device": "cpu", "dtype": "fp32", "tag": tag, "rule": rule, "size": size, "impl": impl,
        "n": SIZES[size], "n_tensors": 1, "median_s": us * 1e-6, "iqr_s": iqr * 1e-6,
        "roofline_fraction": frac, "probe_error": None, "temp_bytes": temp,
        "thread_setting": "default" if tag == "t2" else "1", "cpu_budget": 2 if tag == "t2" else 1,
        "threads": 2 if tag == "t2" else 1, "pinned": tag != "t2",
    }


def _run(ours_auto=50.0, ours_fused_1e7=4000.0, torch_fused_1e7=4400.0, fused_frac=0.9, jax_step=15000.0,
         fused_temp=0):
    steps = []
    for rule in RULES:
        for size in SIZES:
            steps.append(_row(rule, size, "ours-torch-auto", ours_auto if size != "1e7" else ours_fused_1e7,
                              temp=fused_temp))
            steps.append(_row(rule, size, "torch.optim-loop", 60.0 if size != "1e7" else 30000.0))
        steps.append(_row(rule, "1e7", "ours-torch-fused", ours_fused_1e7, frac=fused_frac, temp=fused_temp))
        steps.append(_row(rule, "1e7", "ours-jax-step", jax_step))
        steps.append(_row(rule, "1e7", "optax", 50000.0))
    steps.append(_row("adagrad", "1e7", "torch.optim-fused", torch_fused_1e7))
    training = [{"rule": r, "impl": impl, "tag": "t2", "median_s": t}
                for r in RULES for impl, t in (("torch-compiled-ours", 2e-3), ("torch-compiled-optim", 2.2e-3))]
    return targets(steps, training)


def _line(text: str, start: str) -> str:
    """The table row starting with ``start``, its cells without the padding that aligns them."""
    rows = ["| " + " | ".join(c.strip() for c in line.strip().strip("|").split("|")) + " |"
            for line in text.splitlines() if line.startswith("|")]
    return next(row for row in rows if row.startswith(f"| {start}"))


def test_targets_met_when_the_numbers_meet_them():
    text = _run()
    for start in ("1e7 fp32 Adagrad", "1e7 fp32: every rule", "default step (`auto`) >= 1.0x torch.optim's default",
                  "default step >= 1.0x torch.optim's fastest", "1e7 fp32 JAX Adadelta", "1e7 fp32: fused paths"):
        assert _line(text, start).endswith("| met |"), start
    assert "1.10x (ours 4,000 us, torch.optim 4,400 us" in _line(text, "1e7 fp32 Adagrad")
    assert "adagrad 1.10x (2,000 against 2,200 us per call)" in _line(text, "compiled training step")
    assert "3.33x" in _line(text, "1e7 fp32 JAX Adadelta") and "goal 4x not met" in text


@pytest.mark.parametrize("change, start, shown", [
    ({"ours_fused_1e7": 5000.0}, "1e7 fp32 Adagrad", "0.88x"),
    ({"fused_frac": 0.8}, "1e7 fp32: every rule", "adagrad 80 %"),
    ({"ours_auto": 70.0}, "default step (`auto`) >= 1.0x torch.optim's default", "adagrad iris15 0.86x"),
    ({"jax_step": 25000.0}, "1e7 fp32 JAX Adadelta", "2.00x"),
    ({"fused_temp": 40_000_000}, "1e7 fp32: fused paths", "parameter-sized: ours-torch-fused adagrad 38.1 MiB"),
])
def test_a_miss_is_called_a_miss_with_its_numbers(change, start, shown):
    line = _line(_run(**change), start)
    assert line.endswith("| missed |") and shown in line


def test_a_gap_within_the_rows_noise_is_said_to_be():
    steps = [_row("adagrad", "1e7", "ours-torch-fused", 4500.0, iqr=600.0),
             _row("adagrad", "1e7", "torch.optim-fused", 4400.0, iqr=600.0)]
    assert _line(targets(steps, []), "1e7 fp32 Adagrad").endswith("| missed (within noise) |")


def test_targets_without_rows_say_so_and_name_the_missing_gpu():
    text = targets([_row("adagrad", "1e3", "ours-torch-loop", 30.0)], [])
    assert _line(text, "1e7 fp32 Adagrad").endswith(f"| {NO_ROWS} | {NO_ROWS} |")
    assert "no CUDA rows in this run" in text
