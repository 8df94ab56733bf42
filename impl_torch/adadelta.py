"""Adadelta's update, written once against an ops namespace (``impl_torch.ops``).

Formula (``rules.Adadelta``; Zeiler 2012, as torch.optim.Adadelta writes it)::

    g <- -g                                   if maximize
    t <- t + 1
    g <- g + weight_decay * p                 if weight_decay != 0, not decoupled
    p <- p * (1 - lr * weight_decay)          if decoupled_weight_decay (before p's update)
    v <- rho * v + (1 - rho) * g * g          (state "square_avg")
    d = root(u) / root(v) * g                 (u: state "acc_delta", its old value)
    u <- rho * u + (1 - rho) * d * d
    p <- p - lr * d

with ``root(x) = sqrt(x + eps)`` when ``eps_in_sqrt`` (the default here: torch.optim,
optax and the seed tutorial all put eps inside both roots) and ``sqrt(x) + eps``
otherwise (a switch torch.optim lacks).

Order of operations: torch/optim/adadelta.py, ``_single_tensor_adadelta`` and
``_multi_tensor_adadelta`` (which perform the same operations), op for op:
``v.mul_(rho).addcmul_(g, g, value=1-rho)``; ``std = v.add(eps).sqrt_()``;
``delta = u.add(eps).sqrt_()``; ``delta.div_(std).mul_(g)``;
``u.mul_(rho).addcmul_(delta, delta, value=1-rho)``; ``p.add_(delta, alpha=-lr)``.
"""

from __future__ import annotations

from typing import Any

from .prologue import decay_params_, effective_grads
from .roots import root
from .updates import register_rule

__all__ = ["update"]


def update(ops, rule, params, grads, state: dict[str, Any]) -> None:
    """One Adadelta step in place.

    ``ops`` is ``TensorOps`` (single tensors, ``state`` the parameter's state dict) or
    ``ForeachOps`` (lists of one device and dtype, ``state`` maps names to lists).
    ``state`` holds ``"step"``, ``"square_avg"`` and ``"acc_delta"``. ``grads`` are never
    modified.
    """
    square_avgs, acc_deltas, steps = state["square_avg"], state["acc_delta"], state["step"]
    lr, rho, eps = rule.lr, rule.rho, rule.eps

    grads, _ = effective_grads(ops, rule, params, grads, steps)

    ops.mul_(square_avgs, rho)
    ops.addcmul_(square_avgs, grads, grads, value=1 - rho)
    std = root(ops, square_avgs, eps, rule.eps_in_sqrt)
    deltas = root(ops, acc_deltas, eps, rule.eps_in_sqrt)
    ops.div_(deltas, std)
    # rebound: under AbsSqOps a real root times a complex gradient is a new tensor
    deltas = ops.mul_(deltas, grads)
    ops.mul_(acc_deltas, rho)
    ops.addcmul_(acc_deltas, deltas, deltas, value=1 - rho)
    decay_params_(ops, rule, params, ops.scalar_map(lambda _: -lr, steps))
    ops.add_(params, deltas, alpha=-lr)


register_rule("adadelta", update)
