"""RMSprop's update, written once against an ops namespace (``impl_torch.ops``).

Formula (``rules.RMSprop``; Tieleman & Hinton 2012, as torch.optim.RMSprop writes it)::

    g <- -g                                   if maximize
    t <- t + 1
    g <- g + weight_decay * p                 if weight_decay != 0, not decoupled
    p <- p * (1 - lr * weight_decay)          if decoupled_weight_decay (before p's update)
    v <- alpha * v + (1 - alpha) * g * g      (state "square_avg")
    centered:  m <- m + (1 - alpha) * (g - m) (state "grad_avg", torch's lerp_)
               v~ = v - m * m
    else:      v~ = v
    q = g / (sqrt(v~) + eps)                  torch convention (eps_in_sqrt=False)
    q = g / sqrt(v~ + eps)                    eps_in_sqrt=True (seed tutorial, optax)
    momentum > 0:  b <- momentum * b + q;  p <- p - lr * b   (state "momentum_buffer")
                   nesterov:  p <- p - lr * (q + momentum * b)
    else:          p <- p - lr * q

optax.rmsprop's options (``rules.RMSprop``; optax/_src/alias.py ``rmsprop``): the initial
``v`` is ``initial_scale`` (``functional.init_state``); ``bias_correction`` divides ``v``
and ``m`` by ``1 - alpha**t`` where they enter ``v~`` (the state keeps them uncorrected);
``nesterov`` as above. With all three off (torch.optim's rule) the ops below are exactly
torch.optim's.

The momentum buffer traces ``q`` before the lr scaling (torch.optim); optax traces the
already-scaled update, which is the same only for a constant lr.

Order of operations: torch/optim/rmsprop.py, ``_single_tensor_rmsprop`` and
``_multi_tensor_rmsprop`` (which perform the same operations), op for op:
``v.mul_(alpha).addcmul_(g, g, value=1-alpha)``; centered ``m.lerp_(g, 1-alpha)`` and
``avg = v.addcmul(m, m, value=-1).sqrt_()``, else ``avg = v.sqrt()``; ``avg.add_(eps)``;
momentum ``b.mul_(momentum).addcdiv_(g, avg)`` and ``p.add_(b, alpha=-lr)``, else
``p.addcdiv_(g, avg, value=-lr)``.
"""

from __future__ import annotations

from typing import Any

from .prologue import decay_params_, effective_grads
from .roots import root, root_
from .updates import register_rule

__all__ = ["update"]


def update(ops, rule, params, grads, state: dict[str, Any]) -> None:
    """One RMSprop step in place.

    ``ops`` is ``TensorOps`` (single tensors, ``state`` the parameter's state dict) or
    ``ForeachOps`` (lists of one device and dtype, ``state`` maps names to lists).
    ``state`` holds ``"step"``, ``"square_avg"``, ``"grad_avg"`` when centered and
    ``"momentum_buffer"`` when momentum > 0. ``grads`` are never modified.
    """
    square_avgs, steps = state["square_avg"], state["step"]
    lr, alpha, eps = rule.lr, rule.alpha, rule.eps

    grads, _ = effective_grads(ops, rule, params, grads, steps)

    ops.mul_(square_avgs, alpha)
    ops.addcmul_(square_avgs, grads, grads, value=1 - alpha)

    if rule.bias_correction:
        corrections = ops.scalar_map(lambda t: 1 - alpha**t, ops.values(steps))
        # New tensors: the state keeps the uncorrected averages.
        square_avgs = ops.div(square_avgs, corrections)

    if rule.centered:
        grad_avgs = state["grad_avg"]
        ops.lerp_(grad_avgs, grads, 1 - alpha)
        if rule.bias_correction:
            grad_avgs = ops.div(grad_avgs, corrections)
            variance = ops.addcmul_(square_avgs, grad_avgs, grad_avgs, value=-1)
        else:
            variance = ops.addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
        avg = root_(ops, variance, eps, rule.eps_in_sqrt)
    elif rule.bias_correction:
        avg = root_(ops, square_avgs, eps, rule.eps_in_sqrt)
    else:
        avg = root(ops, square_avgs, eps, rule.eps_in_sqrt)

    decay_params_(ops, rule, params, ops.scalar_map(lambda _: -lr, steps))

    if rule.has_momentum:
        bufs = state["momentum_buffer"]
        ops.mul_(bufs, rule.momentum)
        ops.addcdiv_(bufs, grads, avg)
        if rule.nesterov:
            lookahead = ops.mul(bufs, rule.momentum)
            ops.addcdiv_(lookahead, grads, avg)
            ops.add_(params, lookahead, alpha=-lr)
        else:
            ops.add_(params, bufs, alpha=-lr)
    else:
        ops.addcdiv_(params, grads, avg, value=-lr)


register_rule("rmsprop", update)
