"""SGD's update, written once against an ops namespace (``impl_torch.ops``).

Formula (``rules.SGD``; torch.optim.SGD)::

    g <- -g                                   if maximize
    g <- g + weight_decay * p                 if weight_decay != 0, not decoupled
    p <- p * (1 - lr * weight_decay)          if decoupled_weight_decay (before p's update)
    momentum > 0:  b <- momentum * b + (1 - dampening) * g    (state "momentum_buffer")
                   nesterov:  u = g + momentum * b            else u = b
    else:          u = g
    p <- p - lr * u

No step count. torch.optim creates ``b`` at a parameter's first step as a copy of ``g``;
here that step finds ``b`` allocated as zeros and runs with ``dampening = 0``
(``rules.SGD.first_step_rule``, ``functional.with_first_state``): ``0*momentum + 1*g`` is
``g`` exactly, but for the sign of a zero (``-0`` becomes ``+0``).

Order of operations: torch/optim/sgd.py, ``_single_tensor_sgd`` (``TensorOps``) and
``_multi_tensor_sgd`` (``ForeachOps``), op for op: ``g.add(p, alpha=weight_decay)`` (in
place on the negated gradient in the foreach path); ``b.mul_(momentum).add_(g,
alpha=1-dampening)``; nesterov ``g.add(b, alpha=momentum)``; ``p.add_(u, alpha=-lr)``.
One difference: torch.optim's foreach nesterov step adds ``momentum * b`` into the
caller's gradients in place (when neither ``maximize`` nor weight decay made a copy);
here the sum is a new tensor and gradients are never modified (the same values).
A complex parameter is stepped in complex arithmetic, as torch.optim.SGD steps it (no
``view_as_real``; the fused impl uses real views: ``updates.COMPLEX_ARITHMETIC``).
"""

from __future__ import annotations

from typing import Any

from .prologue import decay_params_, effective_grads
from .updates import register_rule

__all__ = ["update"]


def update(ops, rule, params, grads, state: dict[str, Any]) -> None:
    """One SGD step in place.

    ``ops`` is ``TensorOps`` (single tensors, ``state`` the parameter's state dict) or
    ``ForeachOps`` (lists of one device and dtype, ``state`` maps names to lists).
    ``state`` holds ``"momentum_buffer"`` when momentum > 0, else nothing. ``grads`` are
    never modified.
    """
    lr = rule.lr
    # The prologue only when it has work (SGD counts no steps): torch.optim.SGD's default
    # step is shallow, and the call's own has_weight_decay frame would make ours deeper
    # (tests/test_torch_default_path.py)
    if rule.maximize or rule.has_weight_decay:
        grads, owned = effective_grads(ops, rule, params, grads, None)
    else:
        owned = False
    if rule.has_momentum:
        bufs = state["momentum_buffer"]
        ops.mul_(bufs, rule.momentum)
        ops.add_(bufs, grads, alpha=1 - rule.dampening)
        if rule.nesterov:
            grads = (ops.add_ if owned else ops.add)(grads, bufs, alpha=rule.momentum)
        else:
            grads = bufs
    if rule.decoupled_weight_decay:  # tested here too: the step stays as shallow as torch.optim's
        decay_params_(ops, rule, params, ops.scalar_map(lambda _: -lr, params))
    ops.add_(params, grads, alpha=-lr)


# torch.optim.SGD never views a complex parameter as real
register_rule("sgd", update, complex_arithmetic=True)
