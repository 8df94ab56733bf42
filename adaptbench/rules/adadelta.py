"""Adadelta's specification (Zeiler 2012), as torch.optim.Adadelta writes it.

Formula (``v``: state ``square_avg``, ``u``: ``acc_delta``)::

    g <- g + weight_decay * p                 (or, decoupled, p <- p - lr*weight_decay*p)
    v <- rho*v + (1-rho)*g*g
    d = sqrt(u + eps) / sqrt(v + eps) * g     ((sqrt(u)+eps) / (sqrt(v)+eps) * g when not eps_in_sqrt)
    u <- rho*u + (1-rho)*d*d
    p <- p - lr * d

Complex ``p`` with ``complex_as_real=False``: ``v`` and ``u`` accumulate ``|g|^2`` and
``|d|^2`` (real), ``d`` is complex. optax's ``scale_by_adadelta`` squares ``g`` itself
(``g**2``, complex) and declares Adadelta unsupported for complex parameters; this rule
keeps the ``|.|^2`` of optax's other rules instead.

Sources: torch/optim/adadelta.py; optax/_src/alias.py ``adadelta``, transform.py
``scale_by_adadelta``; keras/src/optimizers/adadelta.py.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from .base import Peer, Rule, check_unit_interval
from .reference import abs_sq, root
from .registry import register

__all__ = ["Adadelta"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Adadelta(Rule):
    """Adadelta (Zeiler 2012), as torch.optim.Adadelta writes it: see the module docstring
    for the formula. Keywords and defaults are torch.optim's (eps inside both roots:
    ``eps_in_sqrt`` defaults to True), plus ``eps_in_sqrt``, ``decoupled_weight_decay`` and
    ``complex_as_real``."""

    name: ClassVar[str] = "adadelta"
    STATE: ClassVar[tuple[str, ...]] = ("square_avg", "acc_delta")
    SECOND_MOMENTS: ClassVar[frozenset[str]] = frozenset({"square_avg", "acc_delta"})
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True),
        "torch": dict(),
        # optax.adadelta's learning_rate defaults to None (no sign flip: it ascends); an
        # explicit lr of 1 is the only reading that matches the paper
        "optax": dict(lr=1.0, rho=0.9, eps=1e-6, eps_in_sqrt=True, complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ("lr", "rho", "eps", "weight_decay", "foreach")
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = ("capturable", "maximize", "differentiable")
    PEERS: ClassVar[dict] = {
        "torch": Peer("Adadelta", {}, fixed=dict(eps_in_sqrt=True, decoupled_weight_decay=False,
                                                 complex_as_real=True)),
        "optax": Peer("adadelta", {"lr": "learning_rate"},
                      fixed=dict(eps_in_sqrt=True, maximize=False, decoupled_weight_decay=False,
                                 complex_as_real=False)),
        "keras": Peer("Adadelta", {"lr": "learning_rate", "eps": "epsilon"},
                      fixed=dict(eps_in_sqrt=True, maximize=False, decoupled_weight_decay=True,
                                 complex_as_real=True)),
    }

    lr: float = 1.0
    eps: float = 1e-6
    rho: float = 0.9
    eps_in_sqrt: bool = True

    def check(self) -> None:
        check_unit_interval("rho", self.rho)

    def reference_update(self, p, g, state, new, decay):
        v = self.rho * state["square_avg"] + (1.0 - self.rho) * abs_sq(g)
        d = root(state["acc_delta"], self) / root(v, self) * g
        new["square_avg"] = v
        new["acc_delta"] = self.rho * state["acc_delta"] + (1.0 - self.rho) * abs_sq(d)
        return decay(p, self.lr) - self.lr * d
