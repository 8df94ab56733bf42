"""Adam (Kingma & Ba 2015) as torch.optim.Adam computes it, in JAX; AdamW is the same math
with the decay decoupled (``impl_jax/adamw.py``).

Formula (``rules.Adam``'s docstring; ``m`` = ``exp_avg``, ``v`` = ``exp_avg_sq``,
``v_max`` = ``max_exp_avg_sq``, ``t`` the count after the increment)::

    g <- -g;  g <- g + weight_decay * p       (see impl_jax._core.prepare_grad; decoupled:
                                              p <- p * (1 - lr * weight_decay) first, _core)
    m <- lerp(m, g, 1 - beta1)                (torch: exp_avg.lerp_(grad, 1-beta1))
    v <- beta2 * v + (1 - beta2) * g * g      (torch: exp_avg_sq.mul_(beta2).addcmul_(...))
    amsgrad: v_max <- max(v_max, v); v~ = v_max       else v~ = v
    denom = sqrt(v~) / sqrt(c2) + eps         (torch: (v~.sqrt() / c2_sqrt).add_(eps))
          | sqrt(v~/c2 + eps_root) + eps      (optax: eps_root != 0, or the corrected maximum)
    delta = (-(lr / c1) * m) / denom          (torch CPU: param.addcdiv_(m, denom, value=-step_size))
          | (-lr * (beta1*m/c1' + (1-beta1)*g/c1)) / denom    nesterov (optax), c1' = 1 - beta1**(t+1)

with ``c1 = 1 - beta1**t``, ``c2 = 1 - beta2**t`` accurate to the working precision
(:func:`_correction`; torch computes them in Python floats). Complex parameters follow
``complex_as_real`` (``impl_jax/_core.py``).

Source: torch/optim/adam.py ``_single_tensor_adam``; optax/_src/transform.py
``scale_by_adam``, ``scale_by_amsgrad``. Convention: torch.optim's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import math

import jax
import jax.numpy as jnp
import optax

from adaptbench import rules

from . import _core


class AdamState(NamedTuple):
    """torch.optim.Adam's (and AdamW's) per-parameter state, for a whole tree.

    ``step``: int32 scalar, steps taken so far. ``exp_avg``, ``exp_avg_sq``: trees like the
    params. ``max_exp_avg_sq``: a tree like the params under ``amsgrad``, else ``None``.
    """

    step: Any
    exp_avg: Any
    exp_avg_sq: Any
    max_exp_avg_sq: Any = None


def adam_leaf(P: _core.Precision, rule: rules.Adam, p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, lr, c1, c2,
              c1_next=None):
    """One leaf of one step: ``(delta, new_exp_avg, new_exp_avg_sq, new_max_exp_avg_sq)``
    (``None`` for the maximum without ``amsgrad``); ``c1``, ``c2``, ``c1_next``: the bias
    corrections ``1 - beta**t`` (``c1_next`` at ``t + 1``, for ``nesterov``); ``delta`` is
    unrounded (working dtype)."""
    g = _core.prepare_grad(P, rule, p, g)
    m = P.rnd(_core.lerp(P, P.up(exp_avg), g, 1 - rule.beta1))
    v = P.rnd(P.square(g, P.scalar(1 - rule.beta2)) + P.rnd(P.up(exp_avg_sq) * P.scalar(rule.beta2)))
    new_max = None
    # a traced eps_root (inject_hyperparams) may be nonzero: optax's root then
    if _core.maybe_nonzero(rule.eps_root) or (rule.amsgrad and rule.amsgrad_bias_corrected):
        v_hat = P.div(v, P.scalar(c2))
        if rule.amsgrad:
            new_max = jnp.maximum(P.up(max_exp_avg_sq), v_hat if rule.amsgrad_bias_corrected else v)
            v_hat = new_max if rule.amsgrad_bias_corrected else P.div(new_max, P.scalar(c2))
        denom = P.rnd(P.root(v_hat, rule.eps_root, True) + P.stored(rule.eps))
    else:
        if rule.amsgrad:
            new_max = jnp.maximum(P.up(max_exp_avg_sq), v)
        second = v if new_max is None else new_max
        # torch divides by the scalar; XLA's simplifier would multiply by its reciprocal
        # instead (not the correctly rounded quotient, and contractible with + eps into an
        # FMA that some compilations form and others not: a sharded step then differed
        # from the single-device one). The barrier hides the broadcast divisor from it.
        c2_sqrt = jax.lax.optimization_barrier(jnp.broadcast_to(P.scalar(jnp.sqrt(c2)), jnp.shape(second)))
        denom = P.rnd(P.div(P.sqrt(second), c2_sqrt) + P.stored(rule.eps))
    if rule.nesterov:
        numer = P.rnd(P.rnd(m * P.scalar(rule.beta1 / c1_next)) + P.rnd(g * P.scalar((1 - rule.beta1) / c1)))
        delta = (P.scalar(-lr) * numer) / denom
    else:
        delta = (P.scalar(-(lr / c1)) * m) / denom
    return delta, P.store(m), P.store(v), None if new_max is None else P.store(new_max)


def _correction(beta, t, dtype):
    """``1 - beta**t`` in ``dtype``, to a few ulps. A Python ``beta`` gives
    ``-expm1(t * log(beta))`` with the logarithm taken in float64: float32 cannot hold
    ``beta2 = 0.999`` closer than 1.3e-8, which is 1.3e-5 of ``1 - beta2``, so optax's
    ``1 - b2**t`` in float32 is 100 ulps off at the first step (the update with it). A traced
    ``beta`` (``inject_hyperparams``) is computed as optax does (``_core.one_minus_pow``)."""
    if _core.is_traced(beta):
        return _core.one_minus_pow(jnp.asarray(beta, dtype), t)
    if beta == 0:
        return jnp.ones((), dtype)
    return -jnp.expm1(jnp.asarray(t, dtype) * jnp.asarray(math.log(beta), dtype))


def _scalars(rule: rules.Adam, lr, count) -> dict:
    """``lr`` and the bias corrections ``1 - beta**t`` (``t = count + 1``) in float32
    (float64 under x64)."""
    dtype = _core.scalar_dtype()
    t = optax.safe_increment(count)
    out = {"lr": lr, "c1": _correction(rule.beta1, t, dtype), "c2": _correction(rule.beta2, t, dtype)}
    if rule.nesterov:
        out["c1_next"] = _correction(rule.beta1, optax.safe_increment(t), dtype)
    return out


SPEC = _core.RuleSpec(rule_cls=rules.Adam, state_cls=AdamState, leaf=adam_leaf, scalars=_scalars)

adam = _core.register(SPEC)
