"""Per-step timing of every implementation and its peers (run with ``pytest --benchmark-only``).

Ids read ``<rule>-<size>-<dtype>-<device>-<impl>`` (``-k "adagrad and 1e6"`` selects);
benchmark groups are ``<rule>-<size>-<dtype>-<device>`` so each table compares like with
like, and ``probe-<size>-<dtype>-<device>`` for the bandwidth probe, which runs right
before the steps of its size (bench/conftest.py orders the items).
The callable handed to ``benchmark`` is compiled and warmed up already, threads donated
buffers through iterations and waits for its outputs (bench/timing/torch_cases.py,
bench/timing/jax_cases.py, keras_cases.py). Each benchmark's ``extra_info`` holds what the report needs: bytes per
step, working set, cache residency, achieved GB/s and its fraction of the probe, the CPU
utilisation while timing, the temporary memory of one step (bench/timing/memory.py,
measured after timing, outside the timed loop) and, for the steps that run compiled or
native fused kernels on CPU, their call overhead: step time less kernel time, measured in a
process of its own after timing (bench/timing/overhead.py); bench/conftest.py adds the
thread setting.
"""

from __future__ import annotations

import os

import pytest

from bench import machine
from bench.timing import cases, jax_cases, keras_cases, overhead, probe, torch_cases

SCHEMA = 1
STEP_SPECS = cases.step_specs()
PROBE_SPECS = cases.probe_specs()


def _median(benchmark) -> float | None:
    metadata = getattr(benchmark, "stats", None)
    if metadata is None or getattr(benchmark, "disabled", False):
        return None
    return float(metadata.stats.median)


def _common(spec, working_set: int) -> dict:
    import torch

    cache = machine.cache_bytes(spec.device)
    return {
        "working_set_arrays": spec.arrays,
        "adaptbench": SCHEMA,
        "size": spec.size.id,
        "n": spec.size.n,
        "n_tensors": spec.size.n_tensors,
        "dtype": spec.dtype,
        "itemsize": cases.ITEMSIZE[spec.dtype],
        "device": spec.device,
        "working_set_bytes": working_set,
        "cache_bytes": cache,
        "cache_resident": None if cache is None else working_set <= cache,
        "torch_threads": torch.get_num_threads(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


@pytest.mark.parametrize("spec", PROBE_SPECS, ids=[s.id for s in PROBE_SPECS])
def test_probe(benchmark, spec: cases.ProbeSpec):
    fn = probe.make(spec.framework, spec.elements, spec.dtype, spec.device)
    benchmark.group = spec.group
    info = benchmark.extra_info
    info.update(_common(spec, spec.working_set_bytes))
    info.update(kind="probe", framework=spec.framework, impl=f"probe-{spec.framework}",
                probe_elements=spec.elements, bytes_per_call=spec.bytes_per_call,
                operation="a.add_(b)" if spec.framework == "torch" else "jit(a + b, donate a)")
    with probe.CpuMeter() as meter:
        benchmark(fn)
    median = _median(benchmark)
    if median is None:
        return
    result = probe.ProbeResult(spec.framework, median, spec.bytes_per_call, "benchmark")
    probe.record(spec.size.id, spec.dtype, spec.device, spec.arrays, result)
    info.update(median_s=median, gbps=result.gbps, cpu_util=meter.utilisation)


@pytest.mark.parametrize("spec", STEP_SPECS, ids=[s.id for s in STEP_SPECS])
def test_step(benchmark, spec: cases.StepSpec):
    builder = torch_cases if spec.impl.framework == "torch" else jax_cases
    if keras_cases.handles(spec.impl):
        builder = keras_cases
    case = builder.build(spec)
    benchmark.group = spec.group
    info = benchmark.extra_info
    info.update(_common(spec, spec.working_set_bytes))
    info.update(
        kind="step",
        rule=spec.rule,
        convention=cases.CONVENTION,
        impl=spec.impl.id,
        framework=spec.impl.framework,
        family=spec.impl.family,
        impl_description=spec.impl.description,
        settings={k: v if isinstance(v, (bool, int, float, str, type(None))) else repr(v) for k, v in case.settings.items()},
        notes=case.notes,
        accesses_per_element=spec.rule_obj.accesses_per_element,
        bytes_per_step=0 if spec.impl.family == "floor" else spec.bytes_per_step,
    )
    with probe.CpuMeter() as meter:
        benchmark(case.fn)
    median = _median(benchmark)
    if median is not None and case.temp_bytes is not None:
        info["temp_bytes"], info["temp_source"] = case.temp_bytes()
    del case
    if median is None:
        return
    if overhead.applies(spec):
        info.update(overhead.for_case(spec))
    gbps = info["bytes_per_step"] / median / 1e9
    probes = probe.roofline(spec.size, spec.dtype, spec.device, spec.arrays)
    top = probe.best(probes)
    frac, error = probe.fraction(gbps, top.gbps if top else None)
    info.update(
        median_s=median,
        gbps=gbps,
        cpu_util=meter.utilisation,
        probe_gbps=top.gbps if top else None,
        probe_framework=top.framework if top else None,
        probe_source=top.source if top else None,
        probe_gbps_by_framework={k: v.gbps for k, v in probes.items()},
        roofline_fraction=frac,
        probe_error=error,
    )
