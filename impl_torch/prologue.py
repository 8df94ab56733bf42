"""The part of every rule's step before its own math, written once for all three.

torch.optim's Adagrad, Adadelta and RMSprop all begin the same way (torch/optim/*.py,
``_single_tensor_*`` and ``_multi_tensor_*``)::

    g <- -g                    if maximize       (a new tensor: grads are never modified)
    t <- t + 1                                    (the "step" state)
    g <- g + weight_decay * p  if weight_decay != 0   (torch's ``add(p, alpha=wd)``)
"""

from __future__ import annotations


def effective_grads(ops, rule, params, grads, steps):
    """Increment ``steps`` and return ``(g, owned)``: the gradient the rule's math uses
    (``-g`` when maximizing, plus ``weight_decay * p``) and whether ``g`` is a temporary of
    our own that the caller may overwrite (False when it is the caller's ``grads``)."""
    owned = False
    if rule.maximize:
        grads = ops.neg(grads)
        owned = True
    ops.increment_(steps)
    if rule.weight_decay != 0:
        if owned:
            ops.add_(grads, params, alpha=rule.weight_decay)
        else:
            grads = ops.add(grads, params, alpha=rule.weight_decay)
            owned = True
    return grads, owned
