"""The tutorial's own PyTorch loop: plain tensors and hand-written updates under ``torch.no_grad``.

This is how the tutorial this project descends from trained its softmax regression: leaf
tensors with ``requires_grad``, ``loss.backward()``, then each rule written out in place
(``s[:] = ...``, ``p[:] -= ...``) and the gradients zeroed by hand. It is the eager
baseline of ``bench/training/bench_training.py`` and, for the seed presets, it must follow the same
trajectory as ``impl_torch`` (``tests/test_training_parity.py``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

# The rules the tutorial wrote out; the later ones (Adam, AdamW, SGD) have no tutorial loop.
RULES = ("adagrad", "adadelta", "rmsprop")


def check_rule(rule) -> None:
    """The tutorial wrote its three rules plain: eps inside the roots, nothing else switched on.
    Raises ``ValueError`` naming what it lacks."""
    if rule.name not in RULES:
        raise ValueError(f"the tutorial's loop has no rule {rule.name!r}: it wrote {', '.join(RULES)}")
    extras = {
        "weight_decay": rule.weight_decay != 0,
        "maximize": rule.maximize,
        "eps_in_sqrt=False": not rule.eps_in_sqrt,
        "lr_decay": getattr(rule, "lr_decay", 0) != 0,
        "initial_accumulator_value": getattr(rule, "initial_accumulator_value", 0) != 0,
        "momentum": getattr(rule, "momentum", 0) != 0,
        "centered": getattr(rule, "centered", False),
    }
    used = [name for name, on in extras.items() if on]
    if used:
        raise ValueError(f"the tutorial's loop does not implement {', '.join(used)}")


def init_states(rule, params: list[torch.Tensor]) -> list[dict]:
    """Zero accumulators per parameter: ``s`` (and ``delta`` for Adadelta)."""
    check_rule(rule)
    names = ("s", "delta") if rule.name == "adadelta" else ("s",)
    return [{n: torch.zeros_like(p) for n in names} for p in params]


@torch.no_grad()
def update(rule, params: list[torch.Tensor], states: list[dict]) -> None:
    """One hand-written step of the tutorial's rule (eps inside the roots), then zero grads."""
    eps = rule.eps
    for p, st in zip(params, states):
        g = p.grad
        if rule.name == "adagrad":
            st["s"][:] += torch.square(g)
            p[:] -= rule.lr * g / torch.sqrt(st["s"] + eps)
        elif rule.name == "rmsprop":
            gamma = rule.alpha
            st["s"][:] = gamma * st["s"] + (1 - gamma) * torch.square(g)
            p[:] -= rule.lr * g / torch.sqrt(st["s"] + eps)
        elif rule.name == "adadelta":
            rho = rule.rho
            s, delta = st["s"], st["delta"]
            s[:] = rho * s + (1 - rho) * torch.square(g)
            g_ = torch.sqrt(delta + eps) / torch.sqrt(s + eps) * g
            p[:] -= rule.lr * g_
            delta[:] = rho * delta + (1 - rho) * torch.square(g_)
        else:
            raise ValueError(f"the tutorial's loop has no rule {rule.name!r}: it wrote {', '.join(RULES)}")
        g.zero_()


def linear_step(rule, W, b, states, X, y) -> torch.Tensor:
    """Forward (``X @ W + b``), cross-entropy, backward and the hand-written update; the loss."""
    loss = F.cross_entropy(X @ W + b, y)
    loss.backward()
    update(rule, [W, b], states)
    return loss
