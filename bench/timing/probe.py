"""Bandwidth probe: the roofline an optimizer step is judged against.

The probe is an in-place read-modify-write ``a += b`` (3 accesses, 12 B per fp32 element):
``a.add_(b)`` in torch and a jitted ``a + b`` with ``a`` donated in jax, on the same
device, in the same dtype and at the same working-set size as the step it judges: a step
over n elements touching k arrays (p, g and each state tensor) is judged
against a probe whose a and b hold ceil(k n / 2) elements each, so both live in the same
level of the memory hierarchy. Not a copy into a
fresh buffer: that pays write-allocate traffic that an in-place step does not (at 1e7
fp32 a copy reached 62 GB/s while torch's fused Adagrad reached 80 GB/s at 20 B/element).

In a benchmark session the probe runs as its own benchmarks (group
``probe-<size>-<dtype>-<device>``, one per framework) right before the steps of the same
size (bench/conftest.py orders them) and ``record()`` keeps their medians;
a step benchmark whose probe did not run (``-k`` filtered it out) measures it on the spot
with ``careful_median()``. The roofline for a (size, dtype, device) is the best bandwidth
either framework's probe achieved. A step that beats it (fraction > 1) means the probe
under-measured: that is recorded as a probe error and never reported as a result.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import Callable

import pytest

from . import cases


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    framework: str
    median_s: float
    bytes_per_call: int
    source: str  # "benchmark" (pytest-benchmark median) or "fixture" (careful_median here)

    @property
    def gbps(self) -> float:
        return self.bytes_per_call / self.median_s / 1e9


# (size id, dtype, device, arrays) -> {framework: ProbeResult}; lives for the pytest session.
_registry: dict[tuple, dict[str, ProbeResult]] = {}


def torch_probe(n: int, dtype: str, device: str) -> Callable[[], None]:
    import torch

    from .torch_cases import require_device, synchroniser, torch_dtype

    require_device(device)
    dt = torch_dtype(dtype)
    a = torch.ones(n, dtype=dt, device=device)
    b = torch.full((n,), 1e-3, dtype=dt, device=device)
    sync = synchroniser(device)
    add_ = a.add_

    def fn():
        add_(b)
        sync()

    for _ in range(3):
        fn()
    fn.arrays = lambda: (a, b)  # for tests
    return fn


def jax_probe(n: int, dtype: str, device: str) -> Callable[[], None]:
    import jax
    import numpy as np

    from .jax_cases import jax_device, np_dtype, require_dtype

    dev = jax_device(device)
    require_dtype(dtype)
    add = jax.jit(lambda a, b: a + b, donate_argnums=0)
    carry = [jax.device_put(np.ones(n, dtype=np_dtype(dtype)), dev)]
    b = jax.device_put(np.full(n, 1e-3, dtype=np_dtype(dtype)), dev)

    def fn():
        carry[0] = add(carry[0], b)
        carry[0].block_until_ready()

    for _ in range(3):
        fn()
    fn.arrays = lambda: (carry[0], b)  # for tests
    return fn


def make(framework: str, n: int, dtype: str, device: str) -> Callable[[], None]:
    return {"torch": torch_probe, "jax": jax_probe}[framework](n, dtype, device)


def careful_median(fn: Callable[[], None], *, min_rounds: int = 15, min_time: float = 0.2,
                   round_time: float = 2e-4, max_time: float = 2.0) -> float:
    """Median seconds per call: each round runs enough calls to last ``round_time``
    (timer resolution stops mattering), at least ``min_rounds`` rounds and ``min_time``
    seconds in all, at most ``max_time`` seconds (then no fewer than 3 rounds)."""
    timer = time.perf_counter
    fn()
    t0 = timer()
    fn()
    one = max(timer() - t0, 1e-9)
    per_round = max(1, int(round_time / one))
    samples: list[float] = []
    start = timer()
    while True:
        t0 = timer()
        for _ in range(per_round):
            fn()
        samples.append((timer() - t0) / per_round)
        elapsed = timer() - start
        if len(samples) >= min_rounds and elapsed >= min_time:
            break
        if elapsed >= max_time and len(samples) >= 3:
            break
    return statistics.median(samples)


def record(size_id: str, dtype: str, device: str, arrays: int, result: ProbeResult) -> None:
    _registry.setdefault((size_id, dtype, device, arrays), {})[result.framework] = result


def clear() -> None:
    _registry.clear()


def roofline(size: cases.Size, dtype: str, device: str, arrays: int, *,
             measure_missing: bool = True) -> dict[str, ProbeResult]:
    """Probe results for both frameworks at this size/dtype/device/working set, measuring any missing."""
    found = _registry.setdefault((size.id, dtype, device, arrays), {})
    if measure_missing:
        spec = cases.ProbeSpec(size, dtype, device, "torch", arrays)
        for framework in ("torch", "jax"):
            if framework in found:
                continue
            try:
                fn = make(framework, spec.elements, dtype, device)
            except pytest.skip.Exception:  # no such device, or fp64 without x64
                continue
            found[framework] = ProbeResult(framework, careful_median(fn), spec.bytes_per_call, "fixture")
            del fn
    return found


def best(results: dict[str, ProbeResult]) -> ProbeResult | None:
    return max(results.values(), key=lambda r: r.gbps, default=None)


def fraction(achieved_gbps: float, probe_gbps: float | None) -> tuple[float | None, str | None]:
    """(fraction of the roofline, probe error). Above 1 the probe is broken, not the step fast."""
    if not probe_gbps or probe_gbps <= 0:
        return None, "no probe measurement"
    frac = achieved_gbps / probe_gbps
    if frac > 1.0:
        return None, (
            f"step moved {achieved_gbps:.3g} GB/s, above the in-place probe's {probe_gbps:.3g} GB/s "
            f"({100 * frac:.0f}%): the probe under-measures this size"
        )
    return frac, None


class CpuMeter:
    """Process CPU time / wall time over a block: ~1.0 single-threaded, ~N with N busy threads."""

    def __enter__(self):
        self._wall = time.perf_counter()
        r = resource.getrusage(resource.RUSAGE_SELF)
        self._cpu = r.ru_utime + r.ru_stime
        return self

    def __exit__(self, *exc):
        r = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - self._wall
        self.utilisation = (r.ru_utime + r.ru_stime - self._cpu) / wall if wall > 0 else None
        return False
