"""Adam's update (``rules.Adam``; AdamW is the same math, ``rules.AdamW``), written once
against an ops namespace (``impl_torch.ops``).

Formula (``m``: state ``exp_avg``, ``v``: ``exp_avg_sq``, ``v_max``: ``max_exp_avg_sq``)::

    g <- -g                                   if maximize
    t <- t + 1
    g <- g + weight_decay * p                 if weight_decay != 0, not decoupled
    p <- p * (1 - lr * weight_decay)          if decoupled_weight_decay (AdamW)
    m <- m + (1 - beta1) * (g - m)            (torch's lerp_)
    v <- beta2 * v + (1 - beta2) * g * g
    amsgrad:  v_max <- max(v_max, v);  v~ = v_max      else v~ = v
    p <- p - (lr / (1 - beta1**t)) * m / (sqrt(v~) / sqrt(1 - beta2**t) + eps)

optax's options (``rules.Adam``): with ``eps_root != 0`` or ``amsgrad_bias_corrected`` the
denominator is optax's ``sqrt(v~/c2 + eps_root) + eps`` (``c2 = 1 - beta2**t``; the
corrected maximum enters uncorrected); ``nesterov`` replaces ``m / c1`` by
``beta1*m/(1 - beta1**(t+1)) + (1-beta1)*g/c1`` and scales the quotient by ``-lr``.
With all three off (torch.optim's rule) the ops below are exactly torch.optim's.

Order of operations: torch/optim/adam.py, ``_single_tensor_adam`` and
``_multi_tensor_adam`` (non-capturable), op for op: ``exp_avg.lerp_(g, 1-beta1)``;
``exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1-beta2)``; the corrections from the step
as a Python float (``1 - beta**t``, ``step_size = lr / c1``, ``c2 ** 0.5``); amsgrad
``maximum(v_max, v, out=v_max)``; ``denom = (v~.sqrt() / c2_sqrt).add_(eps)``;
``p.addcdiv_(m, denom, value=-step_size)``.
"""

from __future__ import annotations

from typing import Any

from .prologue import decay_params_, effective_grads
from .updates import register_rule

__all__ = ["update"]


def update(ops, rule, params, grads, state: dict[str, Any]) -> None:
    """One Adam step in place.

    ``ops`` is ``TensorOps`` (single tensors, ``state`` the parameter's state dict) or
    ``ForeachOps`` (lists of one device and dtype, ``state`` maps names to lists).
    ``state`` holds ``"step"``, ``"exp_avg"``, ``"exp_avg_sq"`` and, under ``amsgrad``,
    ``"max_exp_avg_sq"``. ``grads`` are never modified.
    """
    exp_avgs, exp_avg_sqs, steps = state["exp_avg"], state["exp_avg_sq"], state["step"]
    lr, beta1, beta2 = rule.lr, rule.beta1, rule.beta2

    grads, _ = effective_grads(ops, rule, params, grads, steps)
    decay_params_(ops, rule, params, ops.scalar_map(lambda _: -lr, steps))

    ops.lerp_(exp_avgs, grads, 1 - beta1)
    ops.mul_(exp_avg_sqs, beta2)
    ops.addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)

    counts = ops.values(steps)
    maxes = state["max_exp_avg_sq"] if rule.amsgrad else None
    if rule.has_eps_root or (rule.amsgrad and rule.amsgrad_bias_corrected):
        # optax's root: sqrt(v~ / c2 + eps_root), v~ corrected before (optax.amsgrad) or
        # after the maximum is taken
        corrections2 = ops.scalar_map(lambda t: 1 - beta2**t, counts)
        if rule.amsgrad and rule.amsgrad_bias_corrected:
            ops.maximum_(maxes, ops.div(exp_avg_sqs, corrections2))
            denom = ops.add(maxes, rule.eps_root)
        else:
            if rule.amsgrad:
                ops.maximum_(maxes, exp_avg_sqs)
            denom = ops.div(exp_avg_sqs if maxes is None else maxes, corrections2)
            ops.add_(denom, rule.eps_root)
        ops.sqrt_(denom)
    else:
        if rule.amsgrad:
            ops.maximum_(maxes, exp_avg_sqs)
        denom = ops.sqrt(exp_avg_sqs if maxes is None else maxes)
        ops.div_(denom, ops.scalar_map(lambda t: (1 - beta2**t) ** 0.5, counts))
    ops.add_(denom, rule.eps)

    if rule.nesterov:
        # optax's scale_by_adam(nesterov=True): the next step's corrected momentum plus the
        # current corrected gradient, both weighted as Dozat's Nadam weights them
        numer = ops.mul(exp_avgs, ops.scalar_map(lambda t: beta1 / (1 - beta1 ** (t + 1)), counts))
        ops.add_(numer, ops.mul(grads, ops.scalar_map(lambda t: (1 - beta1) / (1 - beta1**t), counts)))
        ops.addcdiv_(params, numer, denom, value=-lr)
    else:
        ops.addcdiv_(params, exp_avgs, denom, value=ops.scalar_map(lambda t: -(lr / (1 - beta1**t)), counts))


register_rule("adam", update)
