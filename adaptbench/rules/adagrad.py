"""Adagrad's specification (Duchi, Hazan & Singer 2011), as torch.optim.Adagrad writes it.

Formula::

    g <- g + weight_decay * p                 (or, decoupled, p <- p - clr*weight_decay*p)
    s <- s + g*g                              (state "sum"; |g|^2 for complex, optax's way)
    clr = lr / (1 + (t - 1) * lr_decay)       t: the step count after the increment
    p <- p - clr * g / (sqrt(s) + eps)        (g / sqrt(s + eps) when eps_in_sqrt)

the quotient taken as 0 where ``s == 0`` when ``mask_zero_accumulator`` (optax's
``scale_by_rss``; torch.optim yields 0/0 = NaN there when eps = 0). The initial ``s`` is
``initial_accumulator_value`` in every real element (both parts of a complex one under
``complex_as_real``, as torch.optim fills them).

Sources: torch/optim/adagrad.py; optax/_src/alias.py ``adagrad``, transform.py
``scale_by_rss``; keras/src/optimizers/adagrad.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .base import Peer, Rule
from .reference import abs_sq, root
from .registry import register

__all__ = ["Adagrad"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Adagrad(Rule):
    """Adagrad (Duchi, Hazan & Singer 2011), as torch.optim.Adagrad writes it: see the
    module docstring for the formula. Keywords and defaults are torch.optim's, plus
    ``eps_in_sqrt``, ``mask_zero_accumulator``, ``decoupled_weight_decay`` and
    ``complex_as_real``."""

    name: ClassVar[str] = "adagrad"
    STATE: ClassVar[tuple[str, ...]] = ("sum",)
    SECOND_MOMENTS: ClassVar[frozenset[str]] = frozenset({"sum"})
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=0.02, eps=1e-6, eps_in_sqrt=True),
        "torch": dict(),
        "optax": dict(eps=1e-7, eps_in_sqrt=True, initial_accumulator_value=0.1,
                      mask_zero_accumulator=True, complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = (
        "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "foreach",
    )
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = ("maximize", "differentiable", "fused")
    STRUCTURE: ClassVar[tuple[str, ...]] = Rule.STRUCTURE + ("has_lr_decay",)
    PEERS: ClassVar[dict] = {
        "torch": Peer("Adagrad", {}, fixed=dict(eps_in_sqrt=False, mask_zero_accumulator=False,
                                                decoupled_weight_decay=False, complex_as_real=True)),
        # optax.adagrad's eps sits inside the root, it masks s == 0, and has no decay terms
        "optax": Peer("adagrad", {"lr": "learning_rate"},
                      fixed=dict(eps_in_sqrt=True, mask_zero_accumulator=True, weight_decay=0.0,
                                 lr_decay=0.0, maximize=False, decoupled_weight_decay=False,
                                 complex_as_real=False)),
        # Keras decays weights decoupled, always (base_optimizer._apply_weight_decay)
        "keras": Peer("Adagrad", {"lr": "learning_rate", "eps": "epsilon"},
                      fixed=dict(eps_in_sqrt=True, mask_zero_accumulator=True, lr_decay=0.0,
                                 maximize=False, decoupled_weight_decay=True,
                                 complex_as_real=True)),
    }

    lr: float = 1e-2
    eps: float = 1e-10
    eps_in_sqrt: bool = False
    lr_decay: float = 0.0
    initial_accumulator_value: float = 0.0
    mask_zero_accumulator: bool = False

    @property
    def has_lr_decay(self) -> bool:
        """Whether ``clr`` decays with the step count (``lr_decay != 0``)."""
        return self.lr_decay != 0

    def initial_value(self, name: str) -> float:
        return self.initial_accumulator_value if name == "sum" else 0.0

    def irrelevant(self, field: str) -> bool:
        # s == 0 only where every gradient so far was 0, where g / root(s) is 0 anyway
        # unless 0/0 (eps = 0, no initial accumulator)
        if field == "mask_zero_accumulator":
            return self.eps > 0 or self.initial_accumulator_value > 0
        return super().irrelevant(field)

    def multiplier_only(self, field: str) -> bool:
        # lr enters clr = lr / (1 + (t-1)*lr_decay) under decay
        if field == "lr" and self.has_lr_decay:
            return False
        return super().multiplier_only(field)

    def reference_update(self, p, g, state, new, decay):
        s = state["sum"] + abs_sq(g)
        clr = self.lr / (1.0 + (new["step"] - 1) * self.lr_decay)
        p = decay(p, clr)
        q = g / root(s, self)
        if self.mask_zero_accumulator:
            q = np.where(s > 0, q, 0.0)
        new["sum"] = s
        return p - clr * q
