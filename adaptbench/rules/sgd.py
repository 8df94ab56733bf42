"""SGD's specification (Robbins & Monro 1951; momentum Polyak 1964; Nesterov's form as
Sutskever et al. 2013 write it), as torch.optim.SGD writes it.

Formula (``b``: state ``momentum_buffer``)::

    g <- g + weight_decay * p                 (or, decoupled, p <- p - lr*weight_decay*p)
    momentum > 0:  b <- g                                  at a parameter's first step
                   b <- momentum*b + (1-dampening)*g       afterwards
                   nesterov:  u = g + momentum*b           else u = b
    else:          u = g
    p <- p - lr*u

torch.optim.SGD keeps no step count and creates ``b`` at the first step as a copy of the
gradient (``STEP_IN_STATE = False``, ``FIRST_GRADIENT_STATE``); the implementations start
``b`` at zero and take that step with ``dampening = 0`` (:meth:`SGD.first_step_rule`):
``momentum*0 + 1*g`` is ``g`` exactly (but for the sign of a zero gradient).

optax.sgd traces the unscaled gradient as torch.optim does (``optax.trace``: ``b <- g +
momentum*b`` from ``b = 0``, which is torch's rule without dampening) and has no weight
decay; Keras's SGD traces the lr-scaled update (``m <- momentum*m - lr*g; p <- p + m``),
the same rule for a constant lr.

Sources: torch/optim/sgd.py (``_single_tensor_sgd``, ``_multi_tensor_sgd``);
optax/_src/alias.py ``sgd``, transforms/_accumulation.py ``trace``;
keras/src/optimizers/sgd.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .base import Peer, Rule
from .registry import register

__all__ = ["SGD"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class SGD(Rule):
    """Stochastic gradient descent with momentum, dampening and Nesterov's variant, as
    torch.optim.SGD writes it: see the module docstring for the formula.

    ``dampening`` is checked like every float field (finite, >= 0); torch.optim takes any
    value, though only ``0 <= dampening <= 1`` keeps the buffer an average of gradients.
    ``nesterov`` needs ``momentum > 0`` and ``dampening == 0`` (torch.optim's check)."""

    name: ClassVar[str] = "sgd"
    STATE: ClassVar[tuple[str, ...]] = ("momentum_buffer",)
    STEP_IN_STATE: ClassVar[bool] = False
    FIRST_GRADIENT_STATE: ClassVar[frozenset[str]] = frozenset({"momentum_buffer"})
    # "seed": the training experiment's SGD baseline (lr 0.1), the curve the adaptive
    # rules are compared with; the tutorial's adaptive rules run at lr 0.02
    TYPICAL: ClassVar[dict] = {"momentum": 0.9}
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=0.1),
        "torch": dict(),
        # optax.sgd takes learning_rate without a default: torch's stands in for it
        "optax": dict(complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = ("maximize", "foreach", "differentiable", "fused")
    STRUCTURE: ClassVar[tuple[str, ...]] = Rule.STRUCTURE + ("has_momentum",)
    PEERS: ClassVar[dict] = {
        "torch": Peer("SGD", {}, fixed=dict(decoupled_weight_decay=False, complex_as_real=True)),
        "optax": Peer("sgd", {"lr": "learning_rate"},
                      fixed=dict(weight_decay=0.0, maximize=False, dampening=0.0,
                                 decoupled_weight_decay=False, complex_as_real=False)),
        # Keras decays weights decoupled, always (base_optimizer._apply_weight_decay)
        "keras": Peer("SGD", {"lr": "learning_rate"},
                      fixed=dict(dampening=0.0, maximize=False, decoupled_weight_decay=True,
                                 complex_as_real=True)),
    }

    lr: float = 1e-3
    momentum: float = 0.0
    dampening: float = 0.0
    nesterov: bool = False

    def check(self) -> None:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            # torch.optim.SGD's wording, then the arguments
            raise ValueError(
                f"Nesterov momentum requires a momentum and zero dampening: nesterov=True "
                f"needs momentum > 0 and dampening == 0, got momentum={self.momentum!r}, "
                f"dampening={self.dampening!r}"
            )

    @property
    def has_momentum(self) -> bool:
        """Whether a momentum buffer is kept (``momentum > 0``)."""
        return self.momentum > 0

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.has_momentum else ()

    def first_step_rule(self) -> "SGD":
        return self.replace(dampening=0.0)

    def irrelevant(self, field: str) -> bool:
        if field in ("dampening", "nesterov"):
            return not self.has_momentum
        return super().irrelevant(field)

    def reference_update(self, p, g, state, new, decay):
        u = g
        if self.has_momentum:
            if new["step"] == 1:
                b = g
            else:
                b = self.momentum * state["momentum_buffer"] + (1.0 - self.dampening) * g
            new["momentum_buffer"] = b
            u = g + self.momentum * b if self.nesterov else b
        return decay(p, self.lr) - self.lr * u
