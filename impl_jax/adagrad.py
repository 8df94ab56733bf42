"""Adagrad (Duchi, Hazan & Singer 2011) as torch.optim.Adagrad computes it, in JAX.

Formula (``t`` = step count after the increment; ``rules.Adagrad``'s docstring)::

    g <- -g                              if maximize
    g <- g + weight_decay * p            (torch: grad.add(param, alpha=weight_decay))
                                         (decoupled_weight_decay: p <- p * (1 - lr * weight_decay)
                                         before p's update instead, see impl_jax._core)
    s <- s + g * g                       (torch: state_sum.addcmul_(grad, grad, value=1))
                                         (complex, complex_as_real=False: s <- s + |g|^2, real)
    std = sqrt(s) + eps                  (torch: state_sum.sqrt().add_(eps))
        | sqrt(s + eps)                  if eps_in_sqrt (optax's scale_by_rss, the seed tutorial)
    clr = lr / (1 + (t - 1) * lr_decay)
    delta = (-clr * g) / std             (torch CPU addcdiv_: p + value * g / std)
    delta = 0 where s == 0               if mask_zero_accumulator (optax's scale_by_rss)
    p <- p + delta

Source: torch/optim/adagrad.py ``_single_tensor_adagrad``; optax/_src/transform.py
``scale_by_rss`` and alias.py ``adagrad`` (the ``optax`` preset: eps 1e-7 in the root,
s0 = 0.1, masked). Convention: torch.optim's, keyword names and defaults included.
Complex parameters: ``complex_as_real`` (``rules.Adagrad``; ``impl_jax/_core.py``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from adaptbench import rules

from . import _core


class AdagradState(NamedTuple):
    """torch.optim.Adagrad's per-parameter state, for a whole tree.

    ``step``: int32 scalar, steps taken so far (torch keeps a float32 tensor per parameter).
    ``sum``: tree like the params (same dtype per leaf; real for a complex leaf under
    ``complex_as_real=False``), the sum of squared gradients.
    """

    step: Any
    sum: Any


def adagrad_leaf(P: _core.Precision, rule: rules.Adagrad, p, g, sum, clr):
    """One leaf of one step: ``(delta, new_sum)``; ``delta`` in the working dtype, unrounded.

    ``clr`` is this step's ``lr / (1 + (t - 1) * lr_decay)``. Each ``P.rnd`` ends one torch op.
    """
    g = _core.prepare_grad(P, rule, p, g)
    s = P.rnd(P.square(g) + P.up(sum))
    std = P.root(s, rule.eps, rule.eps_in_sqrt)
    delta = (P.scalar(-clr) * g) / std
    if rule.mask_zero_accumulator:
        delta = jnp.where(s > 0, delta, jnp.zeros_like(delta))
    return delta, P.store(s)


def _scalars(rule: rules.Adagrad, lr, count) -> dict:
    """``clr = lr / (1 + (t - 1) * lr_decay)`` with ``count = t - 1`` (the pre-increment count).

    torch evaluates it in Python float64; here it is float64 when x64 is enabled, else
    float32 (then ``clr`` may differ from torch's by an ulp of float32 when lr_decay != 0).
    """
    if not _core.maybe_nonzero(rule.lr_decay):
        return {"clr": lr}
    dt = _core.scalar_dtype()
    return {"clr": jnp.asarray(lr, dt) / (_core.unfused(jnp.asarray(count, dt) * rule.lr_decay) + 1)}


SPEC = _core.RuleSpec(
    rule_cls=rules.Adagrad,
    state_cls=AdagradState,
    leaf=adagrad_leaf,
    scalars=_scalars,
    lr_scalar="clr",
)


adagrad = _core.register(SPEC)
