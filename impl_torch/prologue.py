"""The part of every rule's step before its own math, written once for all three.

torch.optim's Adagrad, Adadelta, RMSprop and SGD all begin the same way
(torch/optim/*.py, ``_single_tensor_*`` and ``_multi_tensor_*``)::

    g <- -g                    if maximize       (a new tensor: grads are never modified)
    t <- t + 1                                    (the "step" state; not SGD's)
    g <- g + weight_decay * p  if weight_decay != 0   (torch's ``add(p, alpha=wd)``)

With ``decoupled_weight_decay`` the gradient is left alone and the rule calls
:func:`decay_params_` once it knows the step's learning rate, before its own update of
``p`` (torch.optim.Adam's ``param.mul_(1 - lr * weight_decay)``; Keras 3 decays the same
way before ``update_step``).
"""

from __future__ import annotations


def effective_grads(ops, rule, params, grads, steps):
    """Increment ``steps`` (None for a rule that counts none, ``rule.STEP_IN_STATE``) and
    return ``(g, owned)``: the gradient the rule's math uses (``-g`` when maximizing, plus
    ``weight_decay * p``) and whether ``g`` is a temporary of our own that the caller may
    overwrite (False when it is the caller's ``grads``)."""
    owned = False
    if rule.maximize:
        grads = ops.neg(grads)
        owned = True
    if steps is not None:
        ops.increment_(steps)
    if rule.has_weight_decay and not rule.decoupled_weight_decay:
        if owned:
            ops.add_(grads, params, alpha=rule.weight_decay)
        else:
            grads = ops.add(grads, params, alpha=rule.weight_decay)
            owned = True
    return grads, owned


def decay_params_(ops, rule, params, minus_lrs) -> None:
    """Decoupled weight decay in place: ``p <- p * (1 - lr * weight_decay)``.

    ``minus_lrs`` is the step's ``-lr`` as the rule computes it (one scalar, or one per
    tensor from ``ops.scalar_map``: Adagrad's ``-clr``). Does nothing unless
    ``rule.decoupled_weight_decay`` and ``rule.weight_decay != 0``.
    """
    if rule.decoupled_weight_decay and rule.has_weight_decay:
        wd = rule.weight_decay
        ops.mul_(params, ops.scalar_map(lambda minus_lr: 1 + minus_lr * wd, minus_lrs))
