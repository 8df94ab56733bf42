"""Test seams of impl_torch: a stand-in for a GPU, and ``"auto"`` made to fuse small groups.

**The stand-in device.** The commonest GPU fault of an optimizer is a CPU tensor mixed
into device math. ``meta`` tensors apply CUDA's device rule (a CPU tensor may join their
math only as a 0-dim scalar) on a machine without a GPU, so every impl can be stepped on
them: ``loop`` and ``foreach`` run as they are (the ``"step"`` counters stay real CPU
tensors, as on CUDA), and under :func:`stand_in_device` the fused impl (explicit, or
chosen by ``"auto"``) accepts ``meta`` and traces its graphs through AOTAutograd's eager
backend, which generates no code: Dynamo and AOTAutograd raise a device mismatch while
tracing, before any backend, as a real CUDA compile would. What the stand-in cannot
reach (Triton code generation, CUDA graphs, ``capturable``, timings) is listed in
docs/gpu.md::

    import torch, impl_torch
    from impl_torch import testing

    with testing.stand_in_device() as device, testing.auto_fuses_every_group():
        p = torch.nn.Parameter(torch.empty(1 << 16, device=device))
        opt = impl_torch.RMSprop([p], centered=True, impl="fused")
        p.grad = torch.empty_like(p)
        opt.step()                       # traced as on CUDA; raises on a device fault
        assert opt.state[p]["square_avg"].device == device

Meta tensors hold no data: the stand-in proves where tensors live and that the graphs
trace, not what they compute (the CPU tests do that).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from . import functional, fused

__all__ = ["stand_in_device", "auto_fuses_every_group"]


@contextlib.contextmanager
def stand_in_device() -> Iterator[torch.device]:
    """Within the block, ``impl="fused"`` (``fused=True``) and ``"auto"``'s fused part
    accept tensors on the ``meta`` device, traced and not code-generated; yields that
    device. Kernels traced for ``meta`` are kept for ``meta`` only (the device is part of
    every kernel's key), so nothing traced here is ever called for a real device. Nests;
    thread-unsafe like every process-wide switch (open it around a test, not a server)."""
    fused._STAND_IN[0] += 1
    try:
        yield torch.device(fused.STAND_IN_DEVICE_TYPE)
    finally:
        fused._STAND_IN[0] -= 1


@contextlib.contextmanager
def auto_fuses_every_group() -> Iterator[None]:
    """Within the block, ``impl="auto"`` takes ``"fused"`` for every float32/float64 tensor
    of a supported device, whatever its size and its group's (the thresholds
    ``AUTO_FUSED_MIN_NUMEL`` and ``AUTO_FUSED_MIN_TENSOR_NUMEL`` are 0), so a test reaches
    auto's fused path with small tensors. Optimizers keep the plan made at their first
    step: build and step them inside the block."""
    saved = functional.AUTO_FUSED_MIN_NUMEL, functional.AUTO_FUSED_MIN_TENSOR_NUMEL
    functional.AUTO_FUSED_MIN_NUMEL = 0
    functional.AUTO_FUSED_MIN_TENSOR_NUMEL = 0
    try:
        yield
    finally:
        functional.AUTO_FUSED_MIN_NUMEL, functional.AUTO_FUSED_MIN_TENSOR_NUMEL = saved
