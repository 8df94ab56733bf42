"""Adam's specification (Kingma & Ba 2015), as torch.optim.Adam writes it.

Formula (``m``: state ``exp_avg``, ``v``: ``exp_avg_sq``, ``v_max``: ``max_exp_avg_sq``,
``t`` the step count after the increment)::

    g <- g + weight_decay * p                 (or, decoupled, p <- p - lr*weight_decay*p: AdamW)
    m <- beta1*m + (1-beta1)*g
    v <- beta2*v + (1-beta2)*g*g
    c1 = 1 - beta1**t;  c2 = 1 - beta2**t
    amsgrad:  v_max <- max(v_max, v);  v~ = v_max          else v~ = v
    p <- p - (lr/c1) * m / (sqrt(v~)/sqrt(c2) + eps)

optax.adam's options (off by default, which is torch.optim's rule): ``eps_root``, added
inside the root to the bias-corrected ``v`` (``sqrt(v/c2 + eps_root)``); ``nesterov``
(Dozat 2016, optax's form), the numerator ``m/c1`` replaced by
``beta1*m/(1 - beta1**(t+1)) + (1-beta1)*g/c1``; ``amsgrad_bias_corrected``, the maximum
kept of the bias-corrected ``v/c2`` (optax.amsgrad) instead of the raw ``v`` (torch.optim),
so ``v~ = v_max`` enters the root uncorrected. Complex ``p`` with
``complex_as_real=False``: ``v`` (and ``v_max``) accumulate ``|g|^2`` (real), ``m`` is
complex.

The two libraries' unrelated defaults that a port must spell out: torch.optim.Adam's
``weight_decay`` is an L2 term added to ``g`` (optax: ``chain(add_decayed_weights(w),
adam)``, not ``adamw``); torch.optim.AdamW (``rules.AdamW``) decouples it with default
0.01, optax.adamw with default 1e-4.

Sources: torch/optim/adam.py (``_single_tensor_adam``, ``_multi_tensor_adam``);
optax/_src/alias.py ``adam``, ``adamw``, ``amsgrad``, transform.py ``scale_by_adam``,
``scale_by_amsgrad``.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np

from .base import Peer, Rule, check_unit_interval_open
from .reference import abs_sq
from .registry import register

__all__ = ["Adam"]


@register
@dataclasses.dataclass(frozen=True, kw_only=True)
class Adam(Rule):
    """Adam (Kingma & Ba 2015), as torch.optim.Adam writes it: see the module docstring for
    the formula and optax's options (``eps_root``, ``nesterov``, ``amsgrad_bias_corrected``).
    torch.optim's ``betas=(beta1, beta2)`` are the fields ``beta1`` and ``beta2`` (optax's
    ``b1``, ``b2``)."""

    name: ClassVar[str] = "adam"
    STATE: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    SECOND_MOMENTS: ClassVar[frozenset[str]] = frozenset({"exp_avg_sq", "max_exp_avg_sq"})
    # "seed": the tutorial's learning rate, with torch.optim's other defaults (the
    # tutorial stops at RMSprop; its training experiment runs every rule at lr 0.02)
    PRESETS: ClassVar[dict] = {
        "seed": dict(lr=0.02),
        "torch": dict(),
        "optax": dict(complex_as_real=False),
    }
    TORCH_POSITIONAL: ClassVar[tuple[str, ...]] = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    TORCH_KEYWORD_ONLY: ClassVar[tuple[str, ...]] = (
        "foreach", "maximize", "capturable", "differentiable", "fused", "decoupled_weight_decay",
    )
    TORCH_TUPLES: ClassVar[dict] = {"betas": ("beta1", "beta2")}
    STRUCTURE: ClassVar[tuple[str, ...]] = Rule.STRUCTURE + ("has_eps_root",)
    # No "keras": keras.optimizers.Adam adds eps to sqrt(v) before v's bias correction, which
    # is this rule only at eps = 0 (docs/porting-keras.md measures the rest).
    PEERS: ClassVar[dict] = {
        "torch": Peer("Adam", {}, fixed=dict(eps_root=0.0, nesterov=False, amsgrad_bias_corrected=False,
                                             complex_as_real=True)),
        "optax": Peer("adam", {"lr": "learning_rate", "beta1": "b1", "beta2": "b2"},
                      fixed=dict(weight_decay=0.0, maximize=False, decoupled_weight_decay=False, amsgrad=False,
                                 amsgrad_bias_corrected=False, complex_as_real=False)),
    }

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    amsgrad: bool = False
    eps_root: float = 0.0
    nesterov: bool = False
    amsgrad_bias_corrected: bool = False

    def check(self) -> None:
        # torch.optim.Adam: "Invalid beta parameter at index 0/1" unless 0 <= beta < 1
        check_unit_interval_open("beta1", self.beta1, alias="betas[0]")
        check_unit_interval_open("beta2", self.beta2, alias="betas[1]")

    @property
    def has_eps_root(self) -> bool:
        """Whether ``eps_root`` is added inside the root (``eps_root != 0``)."""
        return self.eps_root != 0

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.STATE if self.amsgrad else self.STATE[:2]

    def multiplier_only(self, field: str) -> bool:
        # lr is divided by 1 - beta1**t: a kernel must compute with it in float64
        if field == "lr":
            return False
        return field == "eps_root" or super().multiplier_only(field)

    def irrelevant(self, field: str) -> bool:
        if field == "amsgrad_bias_corrected":
            return not self.amsgrad
        return super().irrelevant(field)

    def reference_update(self, p, g, state, new, decay):
        t = new["step"]
        m = self.beta1 * state["exp_avg"] + (1.0 - self.beta1) * g
        v = self.beta2 * state["exp_avg_sq"] + (1.0 - self.beta2) * abs_sq(g)
        new["exp_avg"], new["exp_avg_sq"] = m, v
        c1, c2 = 1.0 - self.beta1**t, 1.0 - self.beta2**t
        v_hat = v / c2
        if self.amsgrad:
            v_max = np.maximum(state["max_exp_avg_sq"], v_hat if self.amsgrad_bias_corrected else v)
            new["max_exp_avg_sq"] = v_max
            v_hat = v_max if self.amsgrad_bias_corrected else v_max / c2
        if self.nesterov:
            m_hat = self.beta1 * m / (1.0 - self.beta1 ** (t + 1)) + (1.0 - self.beta1) * g / c1
        else:
            m_hat = m / c1
        return decay(p, self.lr) - self.lr * m_hat / (np.sqrt(v_hat + self.eps_root) + self.eps)
