"""One interface over every implementation, for the parity tests.

Each adapter starts a run from float64 NumPy params, takes float64 NumPy grads (rounded to
the working dtype on the way in, so every implementation sees identical inputs), and can
be re-synchronised to given params and state, so single-step error is measured from the
same starting point as the oracle's.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import impl_jax
import impl_torch
from tests.reference_libraries import x64

# fp16 is not in the oracle parity suite: with |g| ~ 1e-3, (1 - alpha) * g * g underflows to
# 0 and eps = 1e-8 rounds to 0, so every implementation divides by zero where the float64
# oracle does not. impl_torch's own tests run fp16 against fp32 instead.
TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16}
JAX_DTYPES = {"float64": jnp.float64, "float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _to_np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64).cpu().numpy()
    return np.asarray(jnp.asarray(x, dtype=jnp.float32) if x.dtype == jnp.bfloat16 else x, dtype=np.float64)


class TorchRun:
    """impl_torch's functional step with one ``impl``; ``strided`` params are non-contiguous views.

    The oracle's state always counts steps; for a rule whose torch state does not
    (``rules.Rule.STEP_IN_STATE``: SGD) the run counts them itself."""

    def __init__(self, impl: str, strided: bool, rule, params, dtype):
        self.impl, self.rule, self.dtype = impl, rule, TORCH_DTYPES[dtype]
        self.params = [self._tensor(p, strided) for p in params]
        self.states = [impl_torch.init_state(rule, p) for p in self.params]
        self.count = 0

    def _tensor(self, value, strided: bool) -> torch.Tensor:
        t = torch.tensor(np.asarray(value), dtype=self.dtype)
        if not strided or t.ndim == 0:
            return t
        # every other element of a wider buffer: same values, stride 2 in the last dim
        buffer = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=self.dtype)
        view = buffer[..., ::2]
        view.copy_(t)
        assert not view.is_contiguous()
        return view

    def step(self, grads) -> None:
        gs = [torch.tensor(np.asarray(g), dtype=self.dtype) for g in grads]
        impl_torch.step(self.rule, self.params, gs, self.states, impl=self.impl)
        self.count += 1

    def values(self):
        params = [_to_np(p) for p in self.params]
        states = [{n: _to_np(s[n]) for n in self.rule.state_names if n in s}
                  | {"step": int(s["step"]) if "step" in s else self.count} for s in self.states]
        return params, states

    def load(self, params, states) -> None:
        with torch.no_grad():
            for p, s, p_new, s_new in zip(self.params, self.states, params, states):
                p.copy_(torch.tensor(np.asarray(p_new), dtype=self.dtype))
                for n in self.rule.state_names:
                    value = torch.tensor(np.asarray(s_new[n]), dtype=self.dtype)
                    if n in s:
                        s[n].copy_(value)
                    elif s_new["step"] > 0:  # made at the first step (rules.Rule.FIRST_GRADIENT_STATE)
                        s[n] = self._tensor(value, not self.params[0].is_contiguous() and value.ndim > 0)
                if "step" in s:
                    s["step"].fill_(s_new["step"])
                self.count = s_new["step"]


class JaxRun:
    """impl_jax's jitted step: ``make_step`` (donated), or the optax transformation + apply_updates."""

    def __init__(self, via: str, rule, params, dtype):
        self.rule, self.dtype_name, self.dtype = rule, dtype, JAX_DTYPES[dtype]
        with x64(dtype):
            self.params = [jnp.asarray(p, dtype=self.dtype) for p in params]
            self.state = impl_jax.init(rule, self.params)
            if via == "make_step":
                self._step = impl_jax.make_step(rule)
            else:
                transform = impl_jax.transformation(rule)

                def step(ps, state, gs):
                    updates, state = transform.update(gs, state, ps)
                    return optax.apply_updates(ps, updates), state

                self._step = jax.jit(step, donate_argnums=(0, 1))

    def step(self, grads) -> None:
        with x64(self.dtype_name):
            gs = [jnp.asarray(g, dtype=self.dtype) for g in grads]
            self.params, self.state = self._step(self.params, self.state, gs)

    def values(self):
        params = [_to_np(p) for p in self.params]
        step = int(self.state.step)
        states = [
            {n: _to_np(getattr(self.state, n)[i]) for n in self.rule.state_names} | {"step": step}
            for i in range(len(params))
        ]
        return params, states

    def load(self, params, states) -> None:
        with x64(self.dtype_name):
            self.params = [jnp.asarray(p, dtype=self.dtype) for p in params]
            moments = {n: [jnp.asarray(s[n], dtype=self.dtype) for s in states] for n in self.rule.state_names}
            self.state = self.state._replace(step=jnp.asarray(states[0]["step"], dtype=self.state.step.dtype), **moments)


@dataclasses.dataclass(frozen=True)
class Implementation:
    id: str
    start: Callable  # (rule, params64, dtype) -> run
    dtypes: tuple[str, ...]


# impl "fused" compiles one graph per rule configuration and dtype (torch.compile, about
# 1 s each with Inductor's cache warm, several seconds cold): over the whole parity grid it
# ran 6m43s for float64/float32/bfloat16 + strided float32, so it runs here for float32 and
# float64, contiguous only (tests/test_torch_fused.py covers a strided case), and is left
# out where torch.compile is unavailable (impl_torch.fused.unavailable_reason()).
_FUSED_DTYPES = ("float64", "float32")


def _torch_impls():
    for impl in impl_torch.IMPLS:
        if impl == "auto":
            continue  # a dispatcher over foreach and fused: tests/test_torch_fused.py
        if impl == "fused":
            from impl_torch import fused

            if fused.unavailable_reason() is not None:
                continue
        yield impl


IMPLEMENTATIONS = [
    *(
        Implementation(
            f"torch-{impl}",
            lambda r, p, d, impl=impl: TorchRun(impl, False, r, p, d),
            _FUSED_DTYPES if impl == "fused" else tuple(TORCH_DTYPES),
        )
        for impl in _torch_impls()
    ),
    *(
        Implementation(
            f"torch-{impl}-strided", lambda r, p, d, impl=impl: TorchRun(impl, True, r, p, d), ("float32",)
        )
        for impl in _torch_impls()
        if impl != "fused"
    ),
    Implementation("jax-make_step", lambda r, p, d: JaxRun("make_step", r, p, d), tuple(JAX_DTYPES)),
    Implementation("jax-transformation", lambda r, p, d: JaxRun("transformation", r, p, d), tuple(JAX_DTYPES)),
]
