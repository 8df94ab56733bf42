"""Adadelta (Zeiler 2012) as torch.optim.Adadelta computes it, in JAX.

Formula (``rules.Adadelta``'s docstring; ``v`` = ``square_avg``, ``u`` = ``acc_delta``)::

    g <- -g                              if maximize
    g <- g + weight_decay * p            (torch: grad.add(param, alpha=weight_decay))
                                         (decoupled_weight_decay: p <- p * (1 - lr * weight_decay)
                                         before p's update instead, see impl_jax._core)
    v <- rho * v + (1 - rho) * g * g     (torch: square_avg.mul_(rho).addcmul_(grad, grad, value=1-rho))
    d = sqrt(u + eps) / sqrt(v + eps) * g
        | (sqrt(u) + eps) / (sqrt(v) + eps) * g   if not eps_in_sqrt
                                         (torch: acc_delta.add(eps).sqrt_().div_(std).mul_(grad))
    u <- rho * u + (1 - rho) * d * d     (torch: acc_delta.mul_(rho).addcmul_(delta, delta, value=1-rho))
    delta = -lr * d                      (torch: param.add_(delta, alpha=-lr))
    p <- p + delta

Source: torch/optim/adadelta.py ``_single_tensor_adadelta``; optax/_src/transform.py
``scale_by_adadelta`` (same formula, eps inside both roots; ``optax.adadelta``'s lr
defaults to None, and lr = 1 is the paper's). Convention: torch.optim's.
Complex parameters: ``complex_as_real`` (``rules.Adadelta``; ``impl_jax/_core.py``); under
False ``v`` and ``u`` accumulate ``|g|^2`` and ``|d|^2`` (optax squares ``g`` itself, see
``rules.Adadelta``).
"""

from __future__ import annotations

from typing import Any, NamedTuple


from adaptbench import rules

from . import _core


class AdadeltaState(NamedTuple):
    """torch.optim.Adadelta's per-parameter state, for a whole tree.

    ``step``: int32 scalar, steps taken so far. ``square_avg``: running average of g*g;
    ``acc_delta``: running average of the squared updates (trees like the params).
    """

    step: Any
    square_avg: Any
    acc_delta: Any


def adadelta_leaf(P: _core.Precision, rule: rules.Adadelta, p, g, square_avg, acc_delta, lr):
    """One leaf of one step: ``(delta, new_square_avg, new_acc_delta)``; ``delta`` unrounded."""
    g = _core.prepare_grad(P, rule, p, g)
    rho, one_minus_rho = P.scalar(rule.rho), P.scalar(1 - rule.rho)
    u = P.up(acc_delta)
    v = P.rnd(P.square(g, one_minus_rho) + P.rnd(P.up(square_avg) * rho))
    std = P.root(v, rule.eps, rule.eps_in_sqrt)
    d = P.root(u, rule.eps, rule.eps_in_sqrt)
    d = P.rnd(P.div(d, std) * g)
    u = P.rnd(P.square(d, one_minus_rho) + P.rnd(u * rho))
    delta = P.stored(-lr) * d
    return delta, P.store(v), P.store(u)


# Passes: u's reads the old v, v's reads only v and g (impl_jax/_core.py, SplitStep).
SPEC = _core.RuleSpec(
    rule_cls=rules.Adadelta,
    state_cls=AdadeltaState,
    leaf=adadelta_leaf,
    passes=("params", "acc_delta", "square_avg"),
)


adadelta = _core.register(SPEC)
