"""Adagrad's update, written once against an ops namespace (``impl_torch.ops``).

Formula (``rules.Adagrad``; Duchi, Hazan & Singer 2011, as torch.optim.Adagrad writes it)::

    g <- -g                                   if maximize
    t <- t + 1
    g <- g + weight_decay * p                 if weight_decay != 0, not decoupled
    p <- p * (1 - lr * weight_decay)          if decoupled_weight_decay (before p's update)
    clr = lr / (1 + (t - 1) * lr_decay)
    s <- s + g * g                            (state "sum")
    p <- p - clr * g / (sqrt(s) + eps)        torch convention (eps_in_sqrt=False)
    p <- p - clr * g / sqrt(s + eps)          eps_in_sqrt=True (seed tutorial, optax)

With ``mask_zero_accumulator`` the quotient ``g / root(s)`` is taken as 0 wherever
``s > 0`` does not hold, as optax's ``scale_by_rss`` does; torch.optim yields 0/0 = NaN
there when eps = 0.

Order of operations: torch/optim/adagrad.py, ``_single_tensor_adagrad`` (TensorOps) and
``_multi_tensor_adagrad`` (ForeachOps), op for op, so that under the torch convention the
results equal torch.optim's ``foreach=False`` / ``foreach=True`` bit for bit. The two
torch paths differ in the final update only: the single-tensor path calls
``p.addcdiv_(g, std, value=-clr)``, the multi-tensor path premultiplies
``num = g * -clr`` and calls ``addcdiv_(p, num, std)`` (on CUDA the addcdiv kernel
computes ``p + value * (a / b)``, so the two round differently there).
"""

from __future__ import annotations

from typing import Any

import torch

from .ops import TensorOps
from .prologue import decay_params_, effective_grads
from .roots import root
from .updates import register_rule

__all__ = ["update", "sparse_update"]


def update(ops, rule, params, grads, state: dict[str, Any]) -> None:
    """One Adagrad step in place.

    ``ops`` is ``TensorOps`` (``params``/``grads`` single tensors, ``state`` the
    parameter's state dict) or ``ForeachOps`` (lists of one device and dtype, ``state``
    maps each name to a list). ``state`` holds ``"step"`` (scalar tensors, incremented
    here) and ``"sum"``. ``grads`` are never modified.
    """
    sums, steps = state["sum"], state["step"]
    lr, lr_decay, eps = rule.lr, rule.lr_decay, rule.eps

    # owned: ``grads`` is now a temporary of our own that may be overwritten.
    grads, owned = effective_grads(ops, rule, params, grads, steps)

    # -lr / (...) is -(lr / (...)) exactly; torch's single path negates clr, the
    # multi path writes -lr / (...). Without decay (the default) the quotient is lr / 1,
    # exactly lr for every finite step, and leaving the step out keeps a float64
    # division out of the fused kernel's inner loop, where Inductor would otherwise
    # recompute it for every vector of elements (measured: 15-25 % of the 1e7 step).
    if not rule.has_lr_decay:
        minus_clr = ops.scalar_map(lambda t: -lr, steps)
    else:
        minus_clr = ops.scalar_map(
            lambda t: -lr / (1 + (t - 1) * lr_decay), ops.values(steps)
        )

    decay_params_(ops, rule, params, minus_clr)

    ops.addcmul_(sums, grads, grads, value=1)
    std = root(ops, sums, eps, rule.eps_in_sqrt)

    if rule.mask_zero_accumulator:
        # No torch.optim counterpart: q = g / std, masked, then p += -clr * q.
        q = ops.div(grads, std)
        ops.zero_unless_positive_(q, sums)
        ops.mul_(q, minus_clr)
        ops.add_(params, q)
    elif ops.multi_tensor:
        numerator = ops.mul_(grads, minus_clr) if owned else ops.mul(grads, minus_clr)
        ops.addcdiv_(params, numerator, std)
    else:
        ops.addcdiv_(params, grads, std, value=minus_clr)


def sparse_update(rule, param, grad, state: dict[str, Any]) -> None:
    """One Adagrad step in place for a sparse COO ``grad`` (``nn.Embedding(sparse=True)``):
    only the rows (elements) the gradient names are read and written.

    The same formula on those elements: ``s[i] += g[i]**2``,
    ``p[i] -= clr * g[i] / root(s[i])``. Duplicate indices are summed first
    (``coalesce``): the update is not linear in ``g``, so two half-gradients for one row
    must not be applied as two steps. Weight decay is refused by the caller (a dense
    ``weight_decay * p`` term would touch every row); ``maximize`` negates ``g``.

    Order of operations: torch/optim/adagrad.py, ``_single_tensor_adagrad``'s sparse
    branch (``sum`` updated by a sparse add of the squared values, the root of the updated
    ``sum`` at the gradient's indices, then one sparse add of ``g / root`` scaled by
    ``-clr``), so that results equal torch.optim's sparse Adagrad bit for bit.
    """
    sums, step = state["sum"], state["step"]
    TensorOps.increment_(step)
    if rule.maximize:
        grad = -grad
    clr = rule.lr / (1 + (TensorOps.values(step) - 1) * rule.lr_decay)
    grad = grad.coalesce()
    indices, values = grad._indices(), grad._values()
    sums.add_(_sparse_like(grad, indices, values * values))
    std = root(TensorOps, sums.sparse_mask(grad)._values(), rule.eps, rule.eps_in_sqrt)
    q = values / std
    if rule.mask_zero_accumulator:
        TensorOps.zero_unless_positive_(q, sums.sparse_mask(grad)._values())
    param.add_(_sparse_like(grad, indices, q), alpha=-clr)


def _sparse_like(grad, indices, values):
    # The indices come from a coalesced tensor: valid, so the invariant check is skipped.
    return torch.sparse_coo_tensor(indices, values, grad.size(), check_invariants=False)


register_rule("adagrad", update, sparse_update=sparse_update, state_at_construction=True)
