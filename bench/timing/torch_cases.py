"""Build a warmed-up, synchronised one-step callable for a torch implementation.

Ours (``impl_torch.optimizer_for(rule, params, impl=...)``) and the peers (the rule's
``PEERS["torch"]`` class in ``torch.optim`` with ``foreach=False``, ``foreach=True`` or
``fused=True``) are all timed through ``Optimizer.step()`` with ``p.grad`` set, so both
sides pay the same Python-level optimizer overhead. torch.optim gets the rule's torch
keywords (``peers.peer_settings``; the ``torch`` convention is torch.optim's defaults),
i.e. exactly the update our implementations compute.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import pytest

from bench import peers

from . import cases, memory

WARMUP_STEPS = 3
# (impl id, rule, dtype, device) -> reason it cannot run, or None. "Check by trying once."
_unsupported: dict[tuple, str | None] = {}


@dataclasses.dataclass
class Case:
    fn: Callable[[], object]
    settings: dict
    notes: dict = dataclasses.field(default_factory=dict)
    # One more step, measured for its temporary memory: () -> (bytes or None, source).
    temp_bytes: Callable[[], tuple] | None = None


def torch_dtype(dtype: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}[dtype]


def require_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def synchroniser(device: str) -> Callable[[], None]:
    import torch

    if device == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def torch_optim(rule):
    """(the ``torch.optim`` class of ``rule``'s torch peer, its keywords)."""
    import torch

    name, kwargs = peers.peer_settings(rule, "torch")
    return getattr(torch.optim, name), kwargs


def tensors(size: cases.Size, dtype: str, device: str):
    import torch

    params_np, grads_np = cases.host_data(size)
    dt = torch_dtype(dtype)
    params = [torch.nn.Parameter(torch.tensor(a, dtype=dt, device=device)) for a in params_np]
    for p, g in zip(params, grads_np):
        p.grad = torch.tensor(g, dtype=dt, device=device)
    return params


def _optimizer(spec: cases.StepSpec, params):
    rule = spec.rule_obj
    impl = spec.impl
    if impl.family == "ours":
        try:
            import impl_torch
        except ModuleNotFoundError as exc:
            if exc.name != "impl_torch":
                raise
            pytest.skip("impl_torch is not written yet")
        return impl_torch.optimizer_for(rule, params, impl=impl.variant), {"impl": impl.variant, **rule.as_dict()}
    cls, kwargs = torch_optim(rule)
    key, _, value = impl.variant.partition("=")
    kwargs[key] = value == "True"
    return cls(params, **kwargs), {"class": f"torch.optim.{cls.__name__}", **kwargs}


def build(spec: cases.StepSpec) -> Case:
    """A callable that makes one step and waits for it; compiled/warmed up already."""
    require_device(spec.device)
    key = (spec.impl.id, spec.rule, spec.dtype, spec.device)
    may_be_unsupported = spec.impl.variant in ("fused", "fused=True")
    if not _unsupported.get(key):
        params = tensors(spec.size, spec.dtype, spec.device)
        sync = synchroniser(spec.device)
        try:
            opt, settings = _optimizer(spec, params)
            step = opt.step

            def fn():
                step()
                sync()

            for _ in range(WARMUP_STEPS):
                fn()
            _unsupported[key] = None
            return Case(fn, settings, {"optimizer": type(opt).__module__ + "." + type(opt).__qualname__},
                        temp_bytes=lambda: memory.torch_temp_bytes(step, spec.device))
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as exc:
            if not may_be_unsupported:
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            _unsupported[key] = f"{spec.impl.id} unsupported for {spec.rule}/{spec.dtype}/{spec.device}: {reason}"
    pytest.skip(_unsupported[key])
