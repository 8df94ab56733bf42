"""bench/timing/reporting/sharded.py on a synthetic pytest-benchmark JSON, and the sharded
benchmark's ids (bench/timing/bench_sharded.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from bench.timing import bench_sharded  # noqa: E402
from bench.timing.reporting import sharded as report_sharded  # noqa: E402
from bench.timing.reporting.frame import records  # noqa: E402


def _bench(framework, scaling, rule, impl, devices, n, median_s, probe_gbps_per_device):
    bytes_per_step = 20 * n
    gbps = bytes_per_step / median_s / 1e9
    return {
        "name": f"test_sharded_step[{framework}-{rule}-{devices}-{impl}]",
        "stats": {"median": median_s * 1.1},
        "extra_info": {
            "adaptbench": 1, "kind": "sharded", "framework": framework, "scaling": scaling,
            "rule": rule, "impl": impl, "devices": devices, "n": n, "n_per_device": n // devices,
            "bytes_per_device": bytes_per_step / devices, "median_s": median_s,
            "gbps_per_device": gbps / devices, "probe_gbps_per_device": probe_gbps_per_device,
            "roofline_fraction": gbps / devices / probe_gbps_per_device,
        },
    }


DATA = {
    "benchmarks": [
        _bench("jax", "strong", "adagrad", "ours-jax-step", 1, 10_000_000, 0.020, 20.0),
        _bench("jax", "strong", "adagrad", "ours-jax-step", 8, 10_000_000, 0.025, 2.5),
        # 200 MB in 5 ms: 40 GB/s against a 20 GB/s probe, a probe error
        _bench("jax", "strong", "adagrad", "optax", 1, 10_000_000, 0.005, 20.0),
        _bench("torch", "fsdp", "rmsprop", "ours-torch-fused", 2, 10_000_000, 0.040, 5.0),
        {"name": "other", "stats": {"median": 1.0}, "extra_info": {"adaptbench": 1, "kind": "step"}},
    ]
}


def _unpad(text: str) -> str:
    """``text`` with its Markdown tables' cells stripped of the padding that aligns them."""
    return "\n".join("| " + " | ".join(c.strip() for c in line.strip().strip("|").split("|")) + " |"
                     if line.startswith("|") else line for line in text.splitlines())


def test_rows_keep_only_sharded_and_flag_probe_errors():
    rs = records(report_sharded.rows(DATA))
    assert len(rs) == 4
    optax = next(r for r in rs if r["impl"] == "optax")
    assert optax["probe_error"] and optax["roofline_fraction"] is None
    eight = next(r for r in rs if r["devices"] == 8)
    assert eight["bytes_per_device"] == pytest.approx(20 * 10_000_000 / 8)


def test_markdown_tables_and_plots(tmp_path):
    text = _unpad(report_sharded.write(DATA, tmp_path))
    assert "### JAX SPMD, strong scaling" in text and "### torch FSDP2" in text
    assert "probe error" in text
    assert "| adagrad | `ours-jax-step` | — | 8 | 1,250,000 | 25.0 | 25.00 |" in text
    assert "1.25x" in text  # 25 ms on 8 devices against 20 ms on one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sharded-jax-strong.png", "sharded-torch-fsdp.png"]


def test_no_sharded_rows_writes_nothing(tmp_path):
    assert report_sharded.write({"benchmarks": DATA["benchmarks"][-1:]}, tmp_path) == ""
    assert list(tmp_path.iterdir()) == []


def test_benchmark_ids_unique_and_readable():
    ids = [s.id for s in bench_sharded.SPECS]
    assert len(ids) == len(set(ids))
    assert "sharded-jax-adagrad-strong-1e7-8dev-ours-jax-step" in ids
    assert "sharded-jax-rmsprop-weak-8e6-8dev-optax" in ids
    assert "sharded-torch-adadelta-fsdp-1e7-2dev-torch.optim-foreach" in ids


def test_thread_settings_are_rows_of_their_own():
    """The sweep runs every thread setting: the same (rule, impl, devices) at two settings
    is two labelled rows, each scaled against its own one-device time."""
    two = []
    for threads, setting, median in ((2, "default", 0.020), (1, "1", 0.030)):
        for devices, m in ((1, median), (8, 2 * median)):
            b = _bench("jax", "strong", "adagrad", "ours-jax-step", devices, 10_000_000, m, 20.0)
            b["extra_info"].update(threads=threads, thread_setting=setting)
            two.append(b)
    text = _unpad(report_sharded.markdown(report_sharded.rows({"benchmarks": two})))
    assert "| adagrad | `ours-jax-step` | 2 (default) | 8 |" in text
    assert "| adagrad | `ours-jax-step` | 1 | 8 |" in text
    assert text.count("| 2.00x |") == 2
