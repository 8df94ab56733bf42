"""RMSprop (Tieleman & Hinton 2012) as torch.optim.RMSprop computes it, in JAX.

Formula (``rules.RMSprop``'s docstring; ``v`` = ``square_avg``, ``m`` = ``grad_avg``,
``b`` = ``momentum_buffer``)::

    g <- -g                              if maximize
    g <- g + weight_decay * p            (torch: grad.add(param, alpha=weight_decay))
                                         (decoupled_weight_decay: p <- p * (1 - lr * weight_decay)
                                         before p's update instead, see impl_jax._core)
    v <- alpha * v + (1 - alpha) * g * g (torch: square_avg.mul_(alpha).addcmul_(grad, grad, value=1-alpha))
    centered: m <- lerp(m, g, 1 - alpha) (torch: grad_avg.lerp_(grad, 1-alpha)), v~ = v - m * m
    else:     v~ = v
    avg = sqrt(v~) + eps                 (torch: .sqrt_() then .add_(eps))
        | sqrt(v~ + eps)                 if eps_in_sqrt (optax's scale_by_rms / scale_by_stddev)
    momentum > 0: b <- momentum * b + g / avg; delta = -lr * b
                                         (torch: buf.mul_(momentum).addcdiv_(grad, avg);
                                          param.add_(buf, alpha=-lr))
                  nesterov: delta = -lr * (g / avg + momentum * b)
    else:         delta = (-lr * g) / avg   (torch CPU: param.addcdiv_(grad, avg, value=-lr))
    p <- p + delta

optax.rmsprop's options (``rules.RMSprop``): ``initial_scale`` is the initial ``v``;
``bias_correction`` divides ``v`` and ``m`` by ``1 - alpha**t`` (``t`` the step count after
the increment) where they enter ``v~``, the state keeping them uncorrected; ``nesterov``
as above. Complex parameters: ``complex_as_real`` (``impl_jax/_core.py``); under False
``v`` accumulates ``|g|^2`` and centered uses ``v - |m|^2``.

The momentum buffer traces the *unscaled* quotient and the lr multiplies it afterwards
(torch.optim); optax's ``rmsprop(momentum=...)`` traces the already lr-scaled update, which
is the same only for a constant lr. With a schedule this follows torch.

Source: torch/optim/rmsprop.py ``_single_tensor_rmsprop``; optax/_src/alias.py ``rmsprop``,
transform.py ``scale_by_rms``/``scale_by_stddev``. Convention: torch.optim's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from adaptbench import rules

from . import _core


class RMSpropState(NamedTuple):
    """torch.optim.RMSprop's per-parameter state, for a whole tree.

    ``step``: int32 scalar, steps taken so far. ``square_avg``: tree like the params.
    ``grad_avg`` (only when centered) and ``momentum_buffer`` (only when momentum > 0):
    trees like the params, else ``None``.
    """

    step: Any
    square_avg: Any
    grad_avg: Any = None
    momentum_buffer: Any = None


def rmsprop_leaf(
    P: _core.Precision, rule: rules.RMSprop, p, g, square_avg, grad_avg, momentum_buffer, lr, correction=None
):
    """One leaf of one step: ``(delta, new_square_avg, new_grad_avg, new_momentum_buffer)``.

    Absent moments come in and go out as ``None`` (the momentum branch follows the state);
    ``correction`` is ``1 - alpha**t`` under ``bias_correction``, else ``None``; ``delta``
    is unrounded (working dtype).
    """
    g = _core.prepare_grad(P, rule, p, g)
    alpha, one_minus_alpha = P.scalar(rule.alpha), P.scalar(1 - rule.alpha)
    v = P.rnd(P.square(g, one_minus_alpha) + P.rnd(P.up(square_avg) * alpha))
    var = v if correction is None else P.rnd(v / P.scalar(correction))
    new_grad_avg = None
    if rule.centered:
        m = P.rnd(_core.lerp(P, P.up(grad_avg), g, 1 - rule.alpha))
        new_grad_avg = P.store(m)
        m_hat = m if correction is None else P.rnd(m / P.scalar(correction))
        # torch: square_avg.addcmul(grad_avg, grad_avg, value=-1), an FMA
        var = P.rnd(var - P.square(m_hat))
    avg = P.root(var, rule.eps, rule.eps_in_sqrt)
    new_buf = None
    if momentum_buffer is not None:
        q = g / avg
        b = P.rnd(P.rnd(P.up(momentum_buffer) * P.scalar(rule.momentum)) + q)
        new_buf = P.store(b)
        if rule.nesterov:
            b = P.rnd(P.rnd(b * P.scalar(rule.momentum)) + P.rnd(q))
        delta = P.stored(-lr) * b
    else:
        delta = (P.scalar(-lr) * g) / avg
    return delta, P.store(v), new_grad_avg, new_buf


def _scalars(rule: rules.RMSprop, lr, count) -> dict:
    """``lr``, and under ``bias_correction`` ``1 - alpha**t`` (``t = count + 1``) computed
    as optax.tree.bias_correction does, in float32 (float64 under x64)."""
    if not rule.bias_correction:
        return {"lr": lr}
    alpha = jnp.asarray(rule.alpha, _core.scalar_dtype())
    return {"lr": lr, "correction": _core.one_minus_pow(alpha, optax.safe_increment(count))}


SPEC = _core.RuleSpec(
    rule_cls=rules.RMSprop,
    state_cls=RMSpropState,
    leaf=rmsprop_leaf,
    scalars=_scalars,
    switches=(("momentum", "momentum_buffer"),),
)


rmsprop = _core.register(SPEC)
