"""Temporary memory of one step: bytes it allocates beyond params, grads and state.

Measured once per case, outside the timed loop, after warm-up (the state exists by then):

- jax: the compiled executable's ``memory_analysis().temp_size_in_bytes`` (XLA's own
  account of the scratch buffers the step needs; donated inputs are reused, not counted);
- torch on CPU: the peak of the running sum of the allocation and free events
  ``torch.profiler`` records (``profile_memory=True``) during one step;
- torch on CUDA: ``torch.cuda.max_memory_allocated()`` over one step, less what was
  allocated before it.

Each returns ``(bytes, source)``; bytes is None when the case offers no way to measure
(the source then says why).
"""

from __future__ import annotations

from typing import Callable


def torch_temp_bytes(step: Callable[[], object], device: str) -> tuple[int | None, str]:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        return max(0, torch.cuda.max_memory_allocated() - before), "torch.cuda.max_memory_allocated"
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak, "torch.profiler memory events (peak)"


def jax_temp_bytes(jitted, *args) -> tuple[int | None, str]:
    compiled = getattr(jitted, "compiled", None)
    if compiled is not None:
        # impl_jax's SplitStep: one executable per output for large steps (impl_jax/_core.py)
        analyses = [c.memory_analysis() for c in compiled(*args).values()]
        if any(a is None for a in analyses):
            return None, "memory_analysis() unavailable on this backend"
        return sum(int(a.temp_size_in_bytes) for a in analyses), "memory_analysis().temp_size_in_bytes, summed over the step's executables"
    lower = getattr(jitted, "lower", None)
    if lower is None:
        return None, "not one jitted call: no compiled executable to ask"
    analysis = lower(*args).compile().memory_analysis()
    if analysis is None:
        return None, "memory_analysis() unavailable on this backend"
    return int(analysis.temp_size_in_bytes), "memory_analysis().temp_size_in_bytes"
