"""RMSprop's specification (Tieleman & Hinton 2012), as torch.optim.RMSprop writes it.

Formula (``v``: state ``square_avg``, ``m``: ``grad_avg``, ``b``: ``momentum_buffer``)::

    g <- g + weight_decay * p                 (or, decoupled, p <- p - lr*weight_decay*p)
    v <- alpha*v + (1-alpha)*g*g
    centered:  m <- alpha*m + (1-alpha)*g;  v~ = v - m*m      else v~ = v
    q = g / (sqrt(v~) + eps)                  (g / sqrt(v~ + eps) when eps_in_sqrt)
    momentum > 0:  b <- momentum*b + q;  p <- p - lr*b       else p <- p - lr*q

The momentum buffer is traced before scaling by lr (torch.optim); optax traces the
already-scaled update, which is the same only for a constant lr.

optax.rmsprop's options (off by default, which is torch.optim's rule): ``initial_scale``,
the initial ``v``; ``bias_correction``, ``v`` and (centered) ``m`` entering the denominator
divided by ``1 - alpha**t`` (``t`` the count after the increment; the state keeps them
uncorrected); ``nesterov``, the step using ``q + momentum*b`` (``b`` already updated)
instead of ``b`` (without momentum it changes nothing, as in optax). Complex ``p`` with
``complex_as_real=False``: ``v`` accumulates ``|g|^2`` (real), ``m``, ``b`` and ``q`` are
complex, and centered uses ``v - |m|^2``.

Sources: torch/optim/rmsprop.py; optax/_src/alias.py ``rmsprop``, transform.py
``scale_by_rms``, ``scale_by_stddev``, transforms/_accumulation.py ``trace``;
keras/src/optimizers/rmsprop.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .base import Peer, Rule, check_unit_interval
from .reference import abs_sq, root
from .registry import register

__all__ = ["RMSprop"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class RMSprop(Rule):
    """RMSprop (Tieleman & Hinton 2012), as torch.optim.RMSprop writes it: see the module
    docstring for the formula and optax.rmsprop's options (``initial_scale``,
    ``bias_correction``, ``nesterov``)."""

    name: ClassVar[str] = "rmsprop"
    STATE: ClassVar[tuple[str, ...]] = ("square_avg", "grad_avg", "momentum_buffer")
    SECOND_MOMENTS: ClassVar[frozenset[str]] = frozenset({"square_avg"})
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=0.02, alpha=0.9, eps=1e-6, eps_in_sqrt=True),
        "torch": dict(),
        "optax": dict(alpha=0.9, eps=1e-8, eps_in_sqrt=True, complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = (
        "lr", "alpha", "eps", "weight_decay", "momentum", "centered", "capturable", "foreach",
        "maximize", "differentiable",
    )
    STRUCTURE: ClassVar[tuple[str, ...]] = Rule.STRUCTURE + ("has_momentum",)
    PEERS: ClassVar[dict] = {
        "torch": Peer("RMSprop", {}, fixed=dict(eps_in_sqrt=False, decoupled_weight_decay=False,
                                                complex_as_real=True, initial_scale=0.0,
                                                nesterov=False, bias_correction=False)),
        "optax": Peer("rmsprop", {"lr": "learning_rate", "alpha": "decay"},
                      fixed=dict(weight_decay=0.0, maximize=False, decoupled_weight_decay=False,
                                 complex_as_real=False)),
        "keras": Peer("RMSprop", {"lr": "learning_rate", "alpha": "rho", "eps": "epsilon"},
                      fixed=dict(eps_in_sqrt=True, maximize=False, decoupled_weight_decay=True,
                                 complex_as_real=True, initial_scale=0.0, nesterov=False,
                                 bias_correction=False)),
    }

    lr: float = 1e-2
    eps: float = 1e-8
    eps_in_sqrt: bool = False
    alpha: float = 0.99
    momentum: float = 0.0
    centered: bool = False
    initial_scale: float = 0.0
    nesterov: bool = False
    bias_correction: bool = False

    def check(self) -> None:
        check_unit_interval("alpha", self.alpha)

    @property
    def has_momentum(self) -> bool:
        """Whether a momentum buffer is kept (``momentum > 0``)."""
        return self.momentum > 0

    @property
    def state_names(self) -> tuple[str, ...]:
        names = ("square_avg",)
        if self.centered:
            names += ("grad_avg",)
        if self.has_momentum:
            names += ("momentum_buffer",)
        return names

    def initial_value(self, name: str) -> float:
        return self.initial_scale if name == "square_avg" else 0.0

    def irrelevant(self, field: str) -> bool:
        if field == "nesterov":
            return not self.has_momentum
        return super().irrelevant(field)

    def reference_update(self, p, g, state, new, decay):
        v = self.alpha * state["square_avg"] + (1.0 - self.alpha) * abs_sq(g)
        new["square_avg"] = v
        correction = 1.0 - self.alpha ** new["step"] if self.bias_correction else 1.0
        v = v / correction
        if self.centered:
            m = self.alpha * state["grad_avg"] + (1.0 - self.alpha) * g
            new["grad_avg"] = m
            v = v - abs_sq(m / correction)
        q = g / root(v, self)
        if self.has_momentum:
            b = self.momentum * state["momentum_buffer"] + q
            new["momentum_buffer"] = b
            q = q + self.momentum * b if self.nesterov else b
        return decay(p, self.lr) - self.lr * q
