"""Run torch.optim and optax on the same NumPy arrays, step by step (test helpers)."""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from tests.peer_lookup import optax_factory


def x64(dtype) -> contextlib.AbstractContextManager:
    """JAX's 64-bit mode for float64 runs only; never switched on globally."""
    return jax.enable_x64(True) if np.dtype(dtype) == np.float64 else contextlib.nullcontext()


def torch_optim_trajectory(factory, params, grads, dtype) -> list[list[np.ndarray]]:
    """Params after each step of ``factory(list_of_params)`` fed ``grads[k]``."""
    tensors = [torch.tensor(p, dtype=getattr(torch, np.dtype(dtype).name)) for p in params]
    opt = factory(tensors)
    out = []
    for gs in grads:
        for t, g in zip(tensors, gs):
            t.grad = torch.tensor(g, dtype=t.dtype)
        opt.step()
        out.append([t.detach().numpy().astype(np.float64) for t in tensors])
    return out


def optax_trajectory(transform: optax.GradientTransformation, params, grads, dtype) -> list[list[np.ndarray]]:
    """Params after each ``update`` + ``apply_updates`` of ``transform`` fed ``grads[k]``."""
    with x64(dtype):
        ps = [jnp.asarray(p, dtype=dtype) for p in params]
        state = transform.init(ps)

        @jax.jit
        def step(ps, state, gs):
            updates, state = transform.update(gs, state, ps)
            return optax.apply_updates(ps, updates), state

        out = []
        for gs in grads:
            ps, state = step(ps, state, [jnp.asarray(g, dtype=dtype) for g in gs])
            out.append([np.asarray(p, dtype=np.float64) for p in ps])
    return out


def problem(seed: int = 0, steps: int = 20, shapes=((4, 3), (3,)), grad_scale: float = 1.0):
    """Seeded float64 params and per-step grads, shaped like the tutorial's model by default."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=s) for s in shapes]
    grads = [[grad_scale * rng.normal(size=s) for s in shapes] for _ in range(steps)]
    return params, grads


def max_relative_difference(a, b) -> float:
    """max |a - b| / max(|b|, tiny) over every leaf of every step."""
    worst = 0.0
    for step_a, step_b in zip(a, b, strict=True):
        for x, y in zip(step_a, step_b, strict=True):
            worst = max(worst, float(np.max(np.abs(x - y) / np.maximum(np.abs(y), 1e-300))))
    return worst


def optax_for(rule) -> optax.GradientTransformation:
    """optax's own transformation for an optax-convention ``rules`` object, with every
    option the rule carries (its ``PEERS["optax"]`` keywords; ``momentum`` 0 is optax's
    ``None``: no trace)."""
    kwargs = rule.peer_kwargs("optax")
    if kwargs.get("momentum", None) == 0:
        kwargs["momentum"] = None
    return optax_factory(rule.name)(**kwargs)
