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
    else:         delta = (-lr * g) / avg   (torch CPU: param.addcdiv_(grad, avg, value=-lr))
    p <- p + delta

The momentum buffer traces the *unscaled* quotient and the lr multiplies it afterwards
(torch.optim); optax's ``rmsprop(momentum=...)`` traces the already lr-scaled update, which
is the same only for a constant lr. With a schedule this follows torch.

Source: torch/optim/rmsprop.py ``_single_tensor_rmsprop``; optax/_src/alias.py ``rmsprop``,
transform.py ``scale_by_rms``/``scale_by_stddev``. Convention: torch.optim's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

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


def _lerp(P: _core.Precision, start, end, weight: float):
    """torch's ``start.lerp_(end, weight)`` (ATen/native/Lerp.h: an FMA from the nearer end)."""
    if abs(weight) < 0.5:
        return P.scalar(weight) * (end - start) + start
    return (P.scalar(weight) - P.scalar(1.0)) * (end - start) + end


def rmsprop_leaf(
    P: _core.Precision, rule: rules.RMSprop, p, g, square_avg, grad_avg, momentum_buffer, lr
):
    """One leaf of one step: ``(delta, new_square_avg, new_grad_avg, new_momentum_buffer)``.

    Absent moments come in and go out as ``None``; ``delta`` is unrounded (working dtype).
    """
    g = _core.prepare_grad(P, rule, p, g)
    alpha, one_minus_alpha = P.scalar(rule.alpha), P.scalar(1 - rule.alpha)
    v = P.rnd((one_minus_alpha * g) * g + P.rnd(P.up(square_avg) * alpha))
    new_grad_avg = None
    if rule.centered:
        m = P.rnd(_lerp(P, P.up(grad_avg), g, 1 - rule.alpha))
        new_grad_avg = P.store(m)
        var = P.rnd(v - m * m)  # torch: square_avg.addcmul(grad_avg, grad_avg, value=-1), an FMA
    else:
        var = v
    avg = P.root(var, rule.eps, rule.eps_in_sqrt)
    new_buf = None
    if rule.momentum > 0:
        b = P.rnd(P.rnd(P.up(momentum_buffer) * P.scalar(rule.momentum)) + g / avg)
        new_buf = P.store(b)
        delta = P.stored(-lr) * b
    else:
        delta = (P.scalar(-lr) * g) / avg
    return delta, P.store(v), new_grad_avg, new_buf


SPEC = _core.RuleSpec(rule_cls=rules.RMSprop, state_cls=RMSpropState, leaf=rmsprop_leaf)


def rmsprop(
    lr=1e-2,
    alpha=0.99,
    eps=1e-8,
    weight_decay=0,
    momentum=0,
    centered=False,
    *,
    eps_in_sqrt=False,
    maximize=False,
    decoupled_weight_decay=False,
) -> optax.GradientTransformation:
    """RMSprop as an optax ``GradientTransformation``; keywords and defaults of torch.optim.RMSprop.

    The updates are the deltas to add (``optax.apply_updates``). ``lr`` may be an optax
    schedule, evaluated at the step count before the increment (``optax.scale_by_schedule``);
    the momentum buffer is traced before the lr scaling, as in torch (see the module
    docstring). ``weight_decay != 0`` needs ``update(grads, state, params)``.
    ``rmsprop(**rules.preset("rmsprop", "optax").as_dict())`` is ``optax.rmsprop`` with
    its defaults (decay 0.9, eps 1e-8 inside the root). Invalid values raise
    ``ValueError``/``TypeError`` naming the argument (``rules.RMSprop``).
    Under ``optax.inject_hyperparams`` ``lr`` may be a traced scalar (changed through
    ``state.hyperparams['lr']`` inside ``jit``); every other numeric hyperparameter must be
    concrete (0-d arrays are unwrapped and validated like numbers), so under ``jit`` list
    them in ``static_args``:
    ``optax.inject_hyperparams(impl_jax.rmsprop, static_args=("alpha", "eps", "weight_decay", "momentum"))``.
    """
    return _core.from_keywords(
        SPEC,
        lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        eps_in_sqrt=eps_in_sqrt,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
    )
