"""The bandwidth probe and the byte accounting the roofline rests on (no timing asserted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench import machine, threads
from bench.timing import cases, probe

SIZE_1E3 = cases.SIZE_BY_ID["1e3"]


def test_sizes():
    assert cases.SIZE_BY_ID["iris15"].shapes == ((4, 3), (3,)) and cases.SIZE_BY_ID["iris15"].n == 15
    many = cases.SIZE_BY_ID["tfm100"]
    assert many.n_tensors == 100 and 0.95e6 < many.n < 1.05e6
    for sid, n in (("1e3", 1e3), ("1e5", 1e5), ("1e6", 1e6), ("1e7", 1e7)):
        assert cases.SIZE_BY_ID[sid].n == n and cases.SIZE_BY_ID[sid].n_tensors == 1


def test_sweep_ids_and_groups(monkeypatch):
    monkeypatch.delenv("ADAPTBENCH_FULL", raising=False)
    specs = cases.step_specs()
    ids = [s.id for s in specs]
    assert len(ids) == len(set(ids))
    assert {s.dtype for s in specs} == {"fp32"}
    assert {s.rule for s in specs} == set(cases.rule_names())
    assert {s.device for s in specs} == {"cpu", "cuda"}
    assert {"torch.optim-loop", "torch.optim-foreach", "torch.optim-fused", "optax",
            "ours-jax-step", "ours-jax-optax", "ours-torch-loop", "ours-torch-foreach"} <= {s.impl.id for s in specs}
    spec = next(s for s in specs if s.id == "rmsprop-1e6-fp32-cpu-optax")
    assert spec.group == "rmsprop-1e6-fp32-cpu"
    probes = cases.probe_specs()
    assert cases.working_set_arrays() == (3, 4)  # Adagrad/RMSprop: p, g, 1 state; Adadelta: 2 states
    assert len({p.id for p in probes}) == len(probes) == len(cases.SIZES) * 2 * 2 * 2
    assert "probe-1e6-fp32-cpu-ws4-jax" in {p.id for p in probes}
    monkeypatch.setenv("ADAPTBENCH_FULL", "1")
    assert cases.dtypes() == ("fp32", "bf16", "fp64")


def test_the_quick_sweep_is_every_rule_at_fewer_sizes_and_peers(monkeypatch):
    monkeypatch.delenv("ADAPTBENCH_FULL", raising=False)
    monkeypatch.setenv("ADAPTBENCH_SWEEP", "quick")
    specs = cases.step_specs()
    assert {s.rule for s in specs} == set(cases.rule_names())
    assert {s.size.id for s in specs} == set(cases.QUICK_SIZES) and {s.dtype for s in specs} == {"fp32"}
    assert {s.impl.id for s in specs} == set(cases.QUICK_IMPLS)
    assert {p.size.id for p in cases.probe_specs()} == set(cases.QUICK_SIZES)
    monkeypatch.setenv("ADAPTBENCH_SWEEP", "everything")
    with pytest.raises(ValueError, match="ADAPTBENCH_SWEEP"):
        cases.sweep()


@pytest.mark.parametrize("rule, dtype, per_element", [
    ("adagrad", "fp32", 20), ("rmsprop", "fp32", 20), ("adadelta", "fp32", 28),
    ("adagrad", "bf16", 10), ("adadelta", "fp64", 56),
])
def test_bytes_per_step(rule, dtype, per_element):
    impl = cases.impls()[0]
    spec = cases.StepSpec(rule, cases.SIZE_BY_ID["1e7"], dtype, "cpu", impl)
    assert spec.bytes_per_step == per_element * 10**7
    arrays = 3 if rule != "adadelta" else 4  # p, g and the state tensors
    assert spec.working_set_bytes == arrays * cases.ITEMSIZE[dtype] * 10**7


def test_probe_matches_the_working_set_of_the_step():
    for rule in cases.rule_names():
        for size in cases.SIZES:
            step = cases.StepSpec(rule, size, "fp32", "cpu", cases.impls()[0])
            p = cases.ProbeSpec(size, "fp32", "cpu", "torch", step.arrays)
            assert 0 <= p.working_set_bytes - step.working_set_bytes <= 2 * 4  # equal up to rounding
            assert p.bytes_per_call == 12 * p.elements  # in place: read a, read b, write a
    p = cases.ProbeSpec(cases.SIZE_BY_ID["1e7"], "fp32", "cpu", "torch", 4)
    assert p.elements == 2 * 10**7 and p.bytes_per_call == 12 * 2 * 10**7 and p.working_set_bytes == 16 * 10**7
    assert cases.probe_elements(15, 3) == 23


def test_cache_residency():
    llc = machine.cache_bytes("cpu")
    if llc is None:
        pytest.skip("no cache information on this machine")
    big = cases.StepSpec("adagrad", cases.SIZE_BY_ID["1e7"], "fp32", "cpu", cases.impls()[0])
    small = cases.StepSpec("adadelta", cases.SIZE_BY_ID["1e3"], "fp32", "cpu", cases.impls()[0])
    assert small.working_set_bytes <= llc
    if llc < 120e6:  # the 1e7 working set (120-160 MB) is DRAM-resident on any ordinary CPU
        assert big.working_set_bytes > llc


def test_fraction_flags_anything_above_the_probe():
    assert probe.fraction(5.0, 10.0) == (0.5, None)
    assert probe.fraction(10.0, 10.0) == (1.0, None)
    frac, error = probe.fraction(12.0, 10.0)
    assert frac is None and "probe" in error and "120%" in error
    assert probe.fraction(1.0, None) == (None, "no probe measurement")


def test_careful_median_counts_calls():
    calls = []
    median = probe.careful_median(lambda: calls.append(1), min_rounds=5, min_time=0.001, max_time=0.5)
    assert median > 0 and math.isfinite(median) and len(calls) >= 7


def test_torch_probe_is_in_place():
    fn = probe.make("torch", 1000, "fp32", "cpu")
    a, b = fn.arrays()
    before_ptr, before = a.data_ptr(), a.clone()
    fn()
    a2, _ = fn.arrays()
    assert a2.data_ptr() == before_ptr  # read-modify-write in the same buffer
    np.testing.assert_allclose(a2.numpy(), before.numpy() + b.numpy())


def test_jax_probe_donates_its_buffer():
    pytest.importorskip("jax")
    fn = probe.make("jax", 1000, "fp32", "cpu")
    a, b = fn.arrays()
    expected = np.asarray(a) + np.asarray(b)
    fn()
    assert a.is_deleted()  # donated: XLA may write the sum into a's buffer, no fresh allocation
    np.testing.assert_allclose(np.asarray(fn.arrays()[0]), expected)


def test_roofline_uses_recorded_results_and_measures_missing_ones():
    pytest.importorskip("jax")  # measures the missing jax probe
    probe.clear()
    try:
        probe.record("1e3", "fp32", "cpu", 3, probe.ProbeResult("torch", 1e-6, 12_000, "benchmark"))
        found = probe.roofline(SIZE_1E3, "fp32", "cpu", 3, measure_missing=False)
        assert set(found) == {"torch"} and found["torch"].gbps == pytest.approx(12.0)
        assert probe.roofline(SIZE_1E3, "fp32", "cpu", 4, measure_missing=False) == {}
        found = probe.roofline(SIZE_1E3, "fp32", "cpu", 3)
        assert set(found) == {"torch", "jax"}
        assert found["jax"].source == "fixture" and found["jax"].gbps > 0
        assert probe.best(found).gbps == max(r.gbps for r in found.values())
        import torch

        if not torch.cuda.is_available():  # no device: nothing measured, nothing failed
            assert probe.roofline(SIZE_1E3, "fp32", "cuda", 3) == {}
    finally:
        probe.clear()


def test_thread_setting_parsing(monkeypatch):
    monkeypatch.delenv("ADAPTBENCH_THREADS", raising=False)
    assert threads.requested_setting() == "default"
    assert threads.thread_tag() == f"t{len(threads.usable_cpus())}"
    monkeypatch.setenv("ADAPTBENCH_THREADS", " Default ")
    assert threads.requested_setting() == "default"
    monkeypatch.setenv("ADAPTBENCH_THREADS", "4")
    assert threads.requested_setting() == "4" and threads.thread_tag() == "t4"
    for bad in ("zero", "0", "-1", "1.5"):
        monkeypatch.setenv("ADAPTBENCH_THREADS", bad)
        with pytest.raises(ValueError, match="ADAPTBENCH_THREADS"):
            threads.requested_setting()


def test_run_sweeps_default_and_one_thread_once_each(monkeypatch):
    from bench.timing import run

    monkeypatch.setenv("ADAPTBENCH_THREADS", "7")  # the environment plays no part here
    cpus = len(threads.usable_cpus())
    assert run.thread_settings(None) == (["default", "1"] if cpus > 1 else ["default"])
    assert run.thread_settings("1,1") == ["1"]
    assert threads.requested_setting() == "7"
    with pytest.raises(ValueError, match="ADAPTBENCH_THREADS"):
        run.thread_settings("default,many")


def test_run_and_plain_pytest_time_alike():
    """The round settings live in pyproject's addopts, which both entry points read; the
    default sweep adds none of its own (the full sweep only adds rounds)."""
    import tomllib

    from bench.timing import run

    addopts = tomllib.loads((machine.REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    for option in ("--benchmark-min-rounds=5", "--benchmark-max-time=1.0", "--benchmark-min-time=0.0005",
                   "--benchmark-disable-gc"):
        assert option in addopts
    default = run.pytest_command(machine.REPO_ROOT / "x.json", "default", ["-k", "1e3"])
    assert not [a for a in default if a.startswith(("--benchmark-min", "--benchmark-max", "--benchmark-disable"))]
    assert default[-2:] == ["-k", "1e3"]
    assert set(run.FULL_ROUNDS) <= set(run.pytest_command(machine.REPO_ROOT / "x.json", "full", []))
    quick = run.pytest_command(machine.REPO_ROOT / "x.json", "quick", [])
    assert set(run.QUICK_ROUNDS) <= set(quick) and "bench/timing/bench_step.py" in quick and "bench" not in quick
    with pytest.raises(ValueError, match="sweep"):
        run.pytest_command(machine.REPO_ROOT / "x.json", "huge", [])


def test_torch_temp_memory_counts_the_temporaries_of_one_step():
    import torch

    from bench.timing import memory

    a = torch.ones(1000)
    b = torch.ones(1000)
    in_place, _ = memory.torch_temp_bytes(lambda: a.add_(b), "cpu")
    fresh, source = memory.torch_temp_bytes(lambda: a.add_(b * 2), "cpu")  # one fp32 temporary of 1000
    assert in_place < 4000 <= fresh < 2 * 4000
    assert "profiler" in source


def test_jax_temp_memory_from_the_compiled_executable():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    from bench.timing import memory

    x = jnp.ones(1000)
    nbytes, source = memory.jax_temp_bytes(jax.jit(lambda a: a + 1), x)
    assert isinstance(nbytes, int) and nbytes >= 0 and "temp_size_in_bytes" in source
    assert memory.jax_temp_bytes(lambda a: a + 1, x) == (None, "not one jitted call: no compiled executable to ask")
